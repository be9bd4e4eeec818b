//! Mint-bridge errors.

use std::path::PathBuf;

/// A mint-bridge error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory could not be created.
    #[error("{path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A seed or key file.
    #[error(transparent)]
    Key(#[from] ehash_keyfile::Error),
    /// The share ledger failed.
    #[error("share ledger: {0}")]
    Ledger(#[from] sqlx::Error),
    /// A ledger migration failed.
    #[error("share ledger migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The cdk mint failed.
    #[error("mint: {0}")]
    Mint(#[from] cdk::Error),
    /// The cdk mint database failed.
    #[error("mint database: {0}")]
    MintDatabase(#[from] cdk::cdk_database::Error),
    /// A protocol-level value was invalid.
    #[error(transparent)]
    Ident(#[from] ehash_protocol::IdentError),
    /// Work math failed.
    #[error(transparent)]
    Work(#[from] ehash_protocol::WorkError),
    /// Binding or serving a socket failed.
    #[error("{what} {addr}: {source}")]
    Listen {
        /// What was being bound.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Bitcoin node cannot be used as the job source.
    #[error("{0}")]
    Node(String),
    /// The request cannot be done now; it can be later.
    #[error("{0}")]
    Busy(String),
    /// The ledger and the mint disagree in a way that needs an operator.
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
