//! # ehash-stratum
//!
//! Stratum V1 server machinery shared by the pool's endpoint (mint-bridge) and the miner's proxy:
//! TCP sessions with every SV1 method real miners use, BIP310 version rolling, vardiff in
//! powers of two, exact share validation (from `ehash-protocol`), and specific errors for every
//! bad input. What a share is worth and where it goes is a [`Backend`]'s business; jobs come from
//! a [`JobSource`]. [`sv2`] is a Stratum V2 server (Noise, standard and extended channels) over
//! the same [`Backend`] and job source.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backend;
pub mod config;
pub mod job;
mod lines;
pub mod server;
mod session;
pub mod sv2;
pub mod vardiff;

pub use backend::{Backend, Refusal, Work};
pub use config::Config;
pub use job::{BlockOutcome, FoundBlock, JobSource, JobSourceError, Template, WITNESS_COMMITMENT_PREFIX};
pub use server::{Difficulty, Server, Stats, StatsSnapshot};
pub use sv2::{AuthorityKey, Sv2Server};

/// Server errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("stratum listen {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Stratum V2 authority key is not usable.
    #[error("stratum v2 authority key: {0}")]
    Sv2Authority(String),
    /// A difficulty setting is out of range.
    #[error(transparent)]
    Work(#[from] ehash_protocol::WorkError),
}
