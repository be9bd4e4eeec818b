//! Server settings.

use serde::{Deserialize, Serialize};

/// Stratum V1 endpoint settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Initial share difficulty exponent (difficulty = 2^exp).
    pub initial_difficulty_exp: i32,
    /// Lowest difficulty exponent vardiff may assign.
    pub min_difficulty_exp: i32,
    /// Highest difficulty exponent vardiff may assign.
    pub max_difficulty_exp: i32,
    /// Vardiff aims at one share per this many seconds per connection.
    pub target_share_secs: u64,
    /// Vardiff re-evaluates after this many seconds.
    pub retarget_secs: u64,
    /// Extranonce2 size given to miners, in bytes.
    pub extranonce2_size: usize,
    /// Version-rolling mask offered in `mining.configure` (BIP310); 0 disables rolling.
    pub version_mask: u32,
    /// Maximum concurrent connections.
    pub max_connections: usize,
    /// Longest accepted request line, in bytes.
    pub max_line_bytes: usize,
    /// Seconds a connection may stay silent before it is closed.
    pub idle_timeout_secs: u64,
    /// Maximum concurrent connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Most workers (usernames) one connection may authorize.
    pub max_workers: usize,
    /// Most shares of one connection being recorded at once (further lines wait).
    pub max_in_flight: usize,
    /// Offer the `ehash-share-difficulty` extension (`mining.configure`): the client declares
    /// each share's difficulty in the first byte of its extranonce2, never below its job's
    /// (protocol §4). The ehash proxy uses it to have every miner credited exactly.
    pub share_difficulty_extension: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            initial_difficulty_exp: 10,
            min_difficulty_exp: 0,
            max_difficulty_exp: 60,
            target_share_secs: 10,
            retarget_secs: 60,
            extranonce2_size: 8,
            version_mask: ehash_protocol::stratum::messages::DEFAULT_VERSION_MASK,
            max_connections: 10_000,
            max_line_bytes: ehash_protocol::stratum::messages::MAX_LINE_BYTES,
            idle_timeout_secs: 900,
            max_connections_per_ip: 1000,
            max_workers: 16,
            max_in_flight: 1024,
            share_difficulty_extension: true,
        }
    }
}
