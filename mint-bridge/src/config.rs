//! Mint-bridge configuration.
//!
//! | key | default | meaning |
//! |-----|---------|---------|
//! | `data_dir` | `.ehash/mint-bridge` | seed, keys, SQLite databases |
//! | `http_listen` | `127.0.0.1:3338` | Cashu HTTP API, `/v1/ehash/*`, `/admin/*`, `/health` |
//! | `public_url` | `http://<http_listen>` | the mint URL announced on nostr and in NUT-06 |
//! | `stratum_listen` | `127.0.0.1:3333` | Stratum V1 pool endpoint |
//! | `sv2_listen` | unset (off) | Stratum V2 pool endpoint (Noise, standard and extended channels); its authority key is `sv2-authority.key` in `data_dir`, its public key printed at start |
//! | `pool_id` | first 8 hex digits of the pool's nostr key | `<pool-id>` in unit names |
//! | `unit_log2_hashes` | `32` | one ehash unit = 2^this expected hashes |
//! | `network` | the job source's chain | NIP-87 `n` tag (`mainnet`, `testnet`, `signet`, `regtest`); with `bitcoind`, the node's chain, and a different value set here refuses to start |
//! | `relays` | `[]` | nostr relays to announce on |
//! | `database` | `sqlite` | `sqlite` or `{ postgres = "postgres://…" }` |
//! | `stratum.*` | see [`StratumConfig`] (`ehash_stratum::Config`) | vardiff, extranonce, connection caps |
//! | `devnet.*` | see [`DevnetConfig`] | synthetic job source (used when `bitcoind` is unset) |
//! | `bitcoind` | unset | mine Bitcoin through a node's `getblocktemplate`: see [`BitcoindConfig`] |
//! | `payout.*` | see [`PayoutConfig`] | pool fee, maturity, redemption window |
//! | `max_ws_connections` | `1000` | NUT-17 WebSockets open at once |
//! | `credit_sync_secs` | `60` | how often the mint is paid credit no wallet asked about (a wallet reading or minting a quote is paid up first) |
//! | `lightning` | unset | pays withdrawals of redeemed sats (NUT-05 bolt11 in `sat`): `"fake"` (development: nothing is really paid) or `{ lnd = { address, cert_file, macaroon_file } }`; unset: no withdrawals |

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The mint-bridge configuration. See the module docs for defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the seed, keys and SQLite databases live.
    pub data_dir: PathBuf,
    /// HTTP listen address (port 0 picks a free port).
    pub http_listen: SocketAddr,
    /// The mint URL clients use; defaults to `http://<http_listen>`.
    pub public_url: Option<String>,
    /// Stratum V1 listen address (port 0 picks a free port).
    pub stratum_listen: SocketAddr,
    /// Stratum V2 listen address (port 0 picks a free port); `None`: no V2 endpoint.
    pub sv2_listen: Option<SocketAddr>,
    /// Pool id used in unit names (1–16 of `[0-9a-z]`).
    pub pool_id: Option<String>,
    /// log2 of the expected hashes per ehash unit.
    pub unit_log2_hashes: u32,
    /// The Bitcoin network announced in NIP-87 (`mainnet`, `testnet`, `signet`, `regtest`);
    /// unset: the job source's (the node's chain, or `regtest` for the devnet).
    pub network: Option<String>,
    /// Mint name (NUT-06 and NIP-87 metadata).
    pub mint_name: String,
    /// Mint description.
    pub mint_description: String,
    /// Nostr relays for announcements.
    pub relays: Vec<String>,
    /// The pool's nostr secret key (hex or nsec); generated and kept in `data_dir` if unset.
    pub nostr_secret_key: Option<String>,
    /// Storage backend.
    pub database: DatabaseConfig,
    /// Stratum endpoint tuning.
    pub stratum: StratumConfig,
    /// The devnet job source.
    pub devnet: DevnetConfig,
    /// Bitcoin Core as the job source; `None`: the devnet.
    pub bitcoind: Option<BitcoindConfig>,
    /// What an epoch closed on a found block pays, and when (protocol §2).
    pub payout: PayoutConfig,
    /// The Lightning backend paying withdrawals of redeemed sats; `None`: no withdrawals.
    pub lightning: Option<ehash_lightning::Lightning>,
    /// Seconds between payments to the mint of credit no wallet asked about.
    pub credit_sync_secs: u64,
    /// NUT-17 WebSockets open at once.
    pub max_ws_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".ehash/mint-bridge"),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 3338)),
            public_url: None,
            stratum_listen: SocketAddr::from(([127, 0, 0, 1], 3333)),
            sv2_listen: None,
            pool_id: None,
            unit_log2_hashes: 32,
            network: None,
            mint_name: "ehash pool mint".into(),
            mint_description: "Mining-share ecash: one unit per pool epoch".into(),
            relays: vec![],
            nostr_secret_key: None,
            database: DatabaseConfig::default(),
            stratum: StratumConfig::default(),
            devnet: DevnetConfig::default(),
            bitcoind: None,
            payout: PayoutConfig::default(),
            lightning: None,
            credit_sync_secs: 60,
            max_ws_connections: 1000,
        }
    }
}

/// The payout of an epoch closed on a found block (protocol §2, "Payout").
///
/// | key | default | meaning |
/// |-----|---------|---------|
/// | `pool_fee_ppm` | `20000` | the pool's fee, parts per million of the block reward (floored) |
/// | `maturity_blocks` | `100` | blocks on top of the found block before its epoch is redeemable (coinbase maturity) |
/// | `redeem_window_secs` | `2592000` | seconds an epoch stays redeemable before it expires (30 days) |
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayoutConfig {
    /// The pool's fee in parts per million of the block reward.
    pub pool_fee_ppm: u32,
    /// Confirmations on top of the found block before the epoch becomes redeemable.
    pub maturity_blocks: u32,
    /// Seconds from redeemable to expired.
    pub redeem_window_secs: u64,
}

impl Default for PayoutConfig {
    fn default() -> Self {
        Self { pool_fee_ppm: 20_000, maturity_blocks: 100, redeem_window_secs: 30 * 86_400 }
    }
}

/// Storage backend for both the cdk mint and the share ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseConfig {
    /// SQLite files in the data directory (`mint.sqlite`, `ledger.sqlite`).
    #[default]
    Sqlite,
    /// One PostgreSQL database (cdk-postgres tables plus `ehash_*` tables).
    Postgres(String),
}

/// Stratum V1 endpoint settings (the shared server's).
pub use ehash_stratum::Config as StratumConfig;

/// The devnet job source: synthetic block templates with a real coinbase and merkle branch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevnetConfig {
    /// Network difficulty exponent: a share whose hash meets `DIFF1 / 2^exp` is a block.
    pub network_difficulty_exp: i32,
    /// Seconds between fresh jobs (new ntime, same chain tip).
    pub job_refresh_secs: u64,
    /// Synthetic transactions per template (they shape the merkle branch).
    pub tx_count: usize,
    /// Coinbase reward in satoshis.
    pub block_reward_sat: u64,
    /// Height of the first template.
    pub start_height: u32,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            network_difficulty_exp: 20,
            job_refresh_secs: 30,
            tx_count: 7,
            block_reward_sat: 312_500_000,
            start_height: 1,
        }
    }
}

/// Bitcoin Core as the job source (protocol §2, "Job sources").
///
/// | key | default | meaning |
/// |-----|---------|---------|
/// | `rpc_url` | `http://127.0.0.1:8332` | the node's JSON-RPC endpoint |
/// | `cookie_file` | unset | the node's `.cookie` (read at every call) |
/// | `rpc_user`, `rpc_password` | unset | credentials when there is no cookie file |
/// | `chain` | required | `main`, `testnet4`, `signet` or `regtest`: the node must run it |
/// | `payout_address` | required | the address every found block's coinbase pays, of that chain |
/// | `coinbase_tag` | `/ehash/` | bytes in the coinbase scriptSig after the extranonce |
/// | `job_refresh_secs` | `30` | new work on the same tip (mempool, time) |
/// | `tip_poll_ms` | `1000` | how often the best block hash is asked (besides the long poll) |
/// | `rpc_timeout_secs` | `30` | the longest an RPC call may take |
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BitcoindConfig {
    /// The node's JSON-RPC URL.
    pub rpc_url: String,
    /// The node's cookie file.
    pub cookie_file: Option<PathBuf>,
    /// RPC user (with `rpc_password`), when there is no cookie file.
    pub rpc_user: Option<String>,
    /// RPC password.
    pub rpc_password: Option<String>,
    /// The chain the node must run.
    pub chain: String,
    /// Where found blocks pay.
    pub payout_address: String,
    /// The coinbase tag.
    pub coinbase_tag: String,
    /// Seconds between fresh templates on one tip.
    pub job_refresh_secs: u64,
    /// Milliseconds between best-block-hash polls.
    pub tip_poll_ms: u64,
    /// RPC call timeout in seconds.
    pub rpc_timeout_secs: u64,
}

impl Default for BitcoindConfig {
    fn default() -> Self {
        Self {
            rpc_url: "http://127.0.0.1:8332".into(),
            cookie_file: None,
            rpc_user: None,
            rpc_password: None,
            chain: String::new(),
            payout_address: String::new(),
            coinbase_tag: "/ehash/".into(),
            job_refresh_secs: 30,
            tip_poll_ms: 1000,
            rpc_timeout_secs: 30,
        }
    }
}

impl Config {
    /// The mint URL clients use.
    pub fn mint_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_owned()
    }
}
