//! Proxy configuration.
//!
//! | key | default | meaning |
//! |-----|---------|---------|
//! | `data_dir` | `.ehash/proxy` | the audit log |
//! | `wallet_dir` | `.ehash/wallet` | the miner's wallet (seed and cdk database), shared with `ehash wallet` |
//! | `listen` | `127.0.0.1:3334` | Stratum V1 for the miners |
//! | `pool` | `127.0.0.1:3333` | the pool's Stratum V1 endpoint |
//! | `mint_url` | `http://127.0.0.1:3338` | the pool's mint |
//! | `status_listen` | `127.0.0.1:3335` | `GET /status` for `ehash proxy status` |
//! | `worker` | `proxy` | worker name sent upstream after the quote id |
//! | `mint_secs` | 10 | how often credited ehash is minted and the pool audited |
//! | `version_rolling` | true | negotiate BIP310 with the pool and offer it to miners |
//! | `backup_relays` | `[]` | relays for the wallet's NIP-60 backup after each mint (retried while down) |
//! | `nostr_secret_key` | `wallet_dir/nostr.key` | the key the backup is encrypted to |
//! | `stratum.*` | see `ehash_stratum::Config` | the miners' side: vardiff, limits |
//! | `auto_redeem` | false | redeem every redeemable epoch's ehash for sats at the pool's mint each round |
//! | `auto_sell.*` | off | sell minted ehash by policy (`ehash_wallet::agent::sell::SellPolicy`): `sats_per_lot` (0: off), `keep`, `interval_secs`, `ttl_secs` |
//! | `trade.*` | see `ehash_wallet::agent::TradeConfig` | the exchange and sat mints auto-sell trades on |

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The proxy configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the audit log lives.
    pub data_dir: PathBuf,
    /// The miner's wallet directory.
    pub wallet_dir: PathBuf,
    /// Stratum V1 listen address for miners.
    pub listen: SocketAddr,
    /// The pool's Stratum endpoint: `host:port` (V1), or `sv2://host:port` (V2, encrypted; needs
    /// `pool_authority_key`).
    pub pool: String,
    /// The pool's Stratum V2 authority public key, as the pool prints it at start.
    pub pool_authority_key: Option<String>,
    /// The pool's mint URL.
    pub mint_url: String,
    /// Status endpoint listen address.
    pub status_listen: SocketAddr,
    /// Worker name sent upstream.
    pub worker: String,
    /// Seconds between mints and audits.
    pub mint_secs: u64,
    /// Negotiate version rolling upstream and offer it downstream.
    pub version_rolling: bool,
    /// Relays for the NIP-60 backup of the wallet (none: no backup).
    pub backup_relays: Vec<String>,
    /// The nostr key of the backup (hex or nsec); default: the wallet's `nostr.key`.
    pub nostr_secret_key: Option<String>,
    /// The miners' side.
    pub stratum: ehash_stratum::Config,
    /// Redeem each redeemable epoch's ehash for sats at the pool's mint every round.
    pub auto_redeem: bool,
    /// Selling minted ehash by policy (off while `sats_per_lot` is 0).
    pub auto_sell: ehash_wallet::agent::sell::SellPolicy,
    /// Where auto-sell trades.
    pub trade: ehash_wallet::agent::TradeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".ehash/proxy"),
            wallet_dir: PathBuf::from(".ehash/wallet"),
            listen: SocketAddr::from(([127, 0, 0, 1], 3334)),
            pool: "127.0.0.1:3333".into(),
            pool_authority_key: None,
            mint_url: "http://127.0.0.1:3338".into(),
            status_listen: SocketAddr::from(([127, 0, 0, 1], 3335)),
            worker: "proxy".into(),
            mint_secs: 10,
            version_rolling: true,
            backup_relays: vec![],
            nostr_secret_key: None,
            stratum: ehash_stratum::Config { initial_difficulty_exp: 0, min_difficulty_exp: -32, ..Default::default() },
            auto_redeem: false,
            auto_sell: Default::default(),
            trade: Default::default(),
        }
    }
}
