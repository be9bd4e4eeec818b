//! # ehash-mint-bridge
//!
//! The pool's side of ehash. A pool operator runs it as `ehash mint-bridge`; it
//!
//! - serves a cdk Cashu mint over the standard HTTP API, with one unit and keyset per pool
//!   epoch ([`mint`]), issuing ehash only through NUT-20-locked quotes of the custom method
//!   `ehash` that the pool credits per accepted share;
//! - runs a Stratum V1 pool endpoint ([`pool`], on the shared `ehash-stratum` server) whose `mining.authorize` username names the
//!   quote to credit (`<quote-id>.<worker>`), with vardiff, BIP310 version rolling and exact
//!   share validation, fed by an [`ehash_stratum::JobSource`] (a devnet source ships here);
//! - records every accepted share durably, in groups, before acknowledging it ([`record`],
//!   [`ledger`]), crediting its work by its assigned target to the quote, and pays the mint
//!   what was credited in aggregated payments ([`credit`]);
//! - closes an epoch when a block is found or on the operator's command, opening the next;
//! - announces the mint (NIP-87) and every epoch's keyset and state on nostr ([`announce`]).
//!
//! Start it with [`MintBridge::start`].

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod announce;
pub mod config;
pub mod credit;
pub mod epochs;
pub mod error;
mod fault;
pub mod http;
pub mod ledger;
pub mod mint;
pub mod pool;
pub mod record;
mod service;
pub mod ws;

pub use config::Config;
pub use error::{Error, Result};
pub use service::MintBridge;
