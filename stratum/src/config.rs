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
        }
    }
}
