//! `[exchange]` settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Exchange settings.
///
/// | key | default | meaning |
/// |-----|---------|---------|
/// | `data_dir` | `.ehash/exchange` | nostr key file and SQLite database |
/// | `listen` | `127.0.0.1:8090` | HTTP + WebSocket API |
/// | `database_url` | none (SQLite in `data_dir`) | `postgres://…` to use PostgreSQL |
/// | `relays` | `["ws://127.0.0.1:7777"]` | relays offers are read from and trades published to |
/// | `nostr_secret_key` | generated into `data_dir/nostr.key` | the exchange's key (hex or nsec) |
/// | `pools` | `[]` (any) | pool keys (hex) whose epochs may be traded |
/// | `lot` | `1024` | ehash units per lot; every price is sats per lot |
/// | `lock_secs` | `60` | each party's time to lock |
/// | `claim_secs` | `120` | the seller's time to claim the sats |
/// | `margin_secs` | `120` | the buyer's margin between the two locktimes |
/// | `grace_secs` | `5` | a lock seen this late after its deadline still counts |
/// | `max_clock_skew_secs` | `600` | offers dated further from the exchange's clock are refused |
/// | `poll_secs` | `2` | how often both mints are asked (NUT-07) about open locks |
/// | `sat_mints` | `[]` (any) | sat mints offers may name; an offer naming another is refused |
/// | `private_mints` | `false` | contact mints at loopback or private addresses (a local market) |
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Key file and SQLite database.
    pub data_dir: PathBuf,
    /// API listen address (port 0 picks one).
    pub listen: SocketAddr,
    /// PostgreSQL URL; SQLite in `data_dir` when unset.
    pub database_url: Option<String>,
    /// Relays.
    pub relays: Vec<String>,
    /// The exchange's nostr secret key.
    pub nostr_secret_key: Option<String>,
    /// Pools whose epochs are tradable (empty: any pool announcing on the relays).
    pub pools: Vec<String>,
    /// Ehash per lot.
    pub lot: u64,
    /// Lock window.
    pub lock_secs: u64,
    /// Claim window.
    pub claim_secs: u64,
    /// Locktime margin.
    pub margin_secs: u64,
    /// Grace after a deadline.
    pub grace_secs: u64,
    /// Largest accepted clock difference of an offer.
    pub max_clock_skew_secs: u64,
    /// Mint polling interval.
    pub poll_secs: u64,
    /// Sat mints offers may name (empty: any mint at a public address).
    pub sat_mints: Vec<String>,
    /// Whether mints at loopback, private or link-local addresses may be contacted.
    pub private_mints: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".ehash/exchange"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            database_url: None,
            relays: vec!["ws://127.0.0.1:7777".into()],
            nostr_secret_key: None,
            pools: vec![],
            lot: 1024,
            lock_secs: 60,
            claim_secs: 120,
            margin_secs: 120,
            grace_secs: 5,
            max_clock_skew_secs: 600,
            poll_secs: 2,
            sat_mints: vec![],
            private_mints: false,
        }
    }
}
