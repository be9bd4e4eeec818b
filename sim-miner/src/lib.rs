//! # ehash-sim-miner
//!
//! A CPU Stratum V1 miner for devnets and tests: [`client::Sv1Client`] speaks the protocol (and
//! lets tests send anything), [`work`] assembles and hashes headers independently of the pool's
//! validator, and [`miner::Miner`] mines continuously with reconnects.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod miner;
pub mod work;

pub use client::{ClientError, Sv1Client, response_error};
pub use miner::{Miner, MinerConfig, MinerStats};
pub use work::Job;
