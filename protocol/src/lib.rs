//! # ehash-protocol
//!
//! Every ehash wire format, defined once and free of I/O:
//!
//! - [`work`]: power-of-two share difficulties, targets, and the ehash amount a share earns;
//! - [`stratum`]: Stratum V1 requests, responses and notifications, the `<quote-id>.<worker>`
//!   username, and exact share validation (coinbase, merkle root, header, sha256d ≤ target);
//! - [`epoch`]: epoch states and the per-epoch unit name `hash_<pool-id>_<epoch>`;
//! - [`events`]: the nostr events the pool publishes (NIP-87 mint announcement, epoch/keyset
//!   announcement), the market's offers, trades and settlement messages, with builders and
//!   validating parsers;
//! - [`market`]: sides, prices per lot, exact trade amounts, trade ids, settlement times;
//! - [`api`]: the exchange's HTTP API bodies.
//!
//! The human-readable specification is `docs/protocol.md` in the repository.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod api;
pub mod audit;
pub mod epoch;
pub mod error;
pub mod events;
pub mod market;
pub mod stratum;
pub mod work;

pub use error::{IdentError, MarketError, RequestError, SchemaError, ShareError, WorkError};
