//! # ehash-exchange
//!
//! The exchange (`ehash exchange`, protocol §9–10): it reads offers (kind 38190) that name it
//! from its relays, keeps one order book per epoch market ([`book`]), matches them with
//! price-time priority, and publishes every match as a kind-38191 trade signed by its key. It
//! never holds money: the two counterparties settle each trade with a cross-mint HTLC swap,
//! sending the exchange a copy of each settlement message; the exchange verifies the locks with
//! the same code as the agents (`ehash_wallet::htlc`), watches both mints over NUT-07, enforces
//! deadlines, blames whoever missed one, and publishes the trade's progress ([`settle`]).
//!
//! Every book event is written to the journal ([`store`]) before it is applied, and every trade
//! event goes through the durable outbox, so a restarted exchange rebuilds its books by
//! replaying the journal, republishes what was not delivered, and resumes watching settlements.
//! The journal is public (`GET /api/markets/<market>/journal`) and [`verify`] replays it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod api;
pub mod book;
pub mod config;
mod engine;
pub mod reach;
pub mod settle;
pub mod store;
pub mod verify;

pub use config::Config;
pub use engine::Exchange;

/// Exchange errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database.
    #[error("exchange database: {0}")]
    Database(String),
    /// The key file or key.
    #[error(transparent)]
    Key(#[from] ehash_keyfile::Error),
    /// Binding the API port.
    #[error("exchange API on {addr}: {source}; is another process using the port? (set [exchange].listen)")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Configuration.
    #[error("exchange configuration: {0}")]
    Config(String),
    /// Talking to the exchange or the relays (verification).
    #[error("{0}")]
    Remote(String),
}

impl From<ehash_outbox::Error> for Error {
    fn from(e: ehash_outbox::Error) -> Self {
        Self::Database(e.to_string())
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
