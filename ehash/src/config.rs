//! Configuration layering for every command: built-in defaults, then the TOML file
//! (`--config`, default `ehash.toml` if present), then `EHASH_<SECTION>__<KEY>` environment
//! variables (nested keys joined by `__`, e.g. `EHASH_MINT_BRIDGE__STRATUM__TARGET_SHARE_SECS=5`),
//! then command-line flags. Any value that does not parse aborts with the key named.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// `[mint_bridge]`: the pool's mint-bridge.
    pub mint_bridge: ehash_mint_bridge::Config,
    /// `[relay]`: the nostr relay.
    pub relay: ehash_relay::Config,
    /// `[proxy]`: the miner's mining proxy.
    pub proxy: ehash_proxy::Config,
    /// `[wallet]`: the user's wallet.
    pub wallet: ehash_wallet::Config,
    /// `[up]`: the local market.
    pub up: UpConfig,
    /// `[sat_mint]`: the sat mint (fake Lightning, or LND).
    pub sat_mint: ehash_satmint::Config,
    /// `[trade]`: `ehash trade` (exchange, relays, sat mints, settlement limits).
    pub trade: ehash_wallet::agent::TradeConfig,
    /// `[exchange]`: the exchange (order books, matching, settlement watching).
    pub exchange: ehash_exchange::Config,
    /// `[web]`: the web UI (`ehash web`; `ehash up` uses its `listen`).
    pub web: ehash_web::Config,
}

/// `[up]`: settings of `ehash up` beyond the services it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpConfig {
    /// Root of the local market's data (each service gets a subdirectory).
    pub data_dir: PathBuf,
    /// Seconds between status lines.
    pub status_secs: u64,
    /// Seconds between mints of credited ehash by the simulated miner.
    pub mint_secs: u64,
    /// Devnet network difficulty exponent: a share meeting DIFF1/2^N is a block (-5: 2^27
    /// hashes, about a block a minute for the simulated miner, 2048 ehash).
    pub network_difficulty_exp: i32,
    /// The devnet block's reward, sats (replaces `[mint_bridge.devnet].block_reward_sat`): small,
    /// so the sat values of lots read easily (10 000: a lot of 128 is worth about 610 sats at
    /// the default block rate). On a node's chain the node's reward counts.
    pub block_reward_sat: u64,
    /// The local exchange's lot (ehash per lot); small, so the simulated miner earns a lot in
    /// seconds. Keep it for the life of the data directory (the journal replays with
    /// it).
    pub lot: u64,
    /// Run the simulated seller (the miner's wallet) and buyer that trade on the exchange.
    pub simulate_trading: bool,
    /// Run the simulated buyer (with `simulate_trading`); off, the simulated seller's asks wait
    /// for buyers in the browser.
    pub simulate_buyer: bool,
    /// Seconds between the simulated traders' rounds: the seller offers every whole lot it has
    /// not offered yet, the buyer bids for one lot; both at prices within 5 % of what a lot is
    /// worth (the market's value).
    pub trade_secs: u64,
    /// Sats the simulated buyer deposits at the sat mint (again whenever it holds less than half),
    /// or twice a lot's price when that is more.
    pub buyer_sats: u64,
    /// The chain the pool mines: `devnet`, `regtest` or `signet` (`--chain`).
    pub chain: String,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".ehash/up"),
            status_secs: 2,
            mint_secs: 5,
            network_difficulty_exp: -5,
            block_reward_sat: 10_000,
            lot: 128,
            simulate_trading: true,
            simulate_buyer: true,
            trade_secs: 10,
            buyer_sats: 100_000,
            chain: "devnet".into(),
        }
    }
}

/// The prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "EHASH_";

/// Load the layered configuration (flags are applied by each command afterwards).
pub fn load(path: Option<&Path>) -> Result<FileConfig> {
    let mut table = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading config file {}", p.display()))?;
            text.parse::<toml::Table>().with_context(|| format!("{}: not valid TOML", p.display()))?
        }
        None => match std::fs::read_to_string("ehash.toml") {
            Ok(text) => text.parse::<toml::Table>().context("ehash.toml: not valid TOML")?,
            Err(_) => toml::Table::new(),
        },
    };
    apply_env(&mut table, std::env::vars())?;
    toml::Value::Table(table)
        .try_into::<FileConfig>()
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))
}

/// Apply `EHASH_SECTION__KEY=value` variables to a TOML table.
pub fn apply_env(table: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) -> Result<()> {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        if !rest.contains("__") {
            continue; // not a config key (e.g. EHASH_REQUIRE_EXTERNAL)
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            bail!("{name}: empty key segment");
        }
        let parsed = parse_env_value(&value);
        let mut t = &mut *table;
        for (i, key) in path.iter().enumerate() {
            if i + 1 == path.len() {
                t.insert(key.clone(), parsed.clone());
            } else {
                let entry = t.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                t = entry.as_table_mut().with_context(|| format!("{name}: {key} is not a section"))?;
            }
        }
    }
    Ok(())
}

fn parse_env_value(v: &str) -> toml::Value {
    // a TOML literal (number, bool, array, inline table) if it parses as one, else a string
    match format!("x = {v}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("x").unwrap_or_else(|| toml::Value::String(v.to_owned())),
        Err(_) => toml::Value::String(v.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nested_keys_and_typos_are_refused() {
        let mut t: toml::Table = "[mint_bridge]\nunit_log2_hashes = 20\n".parse().unwrap();
        apply_env(
            &mut t,
            [
                ("EHASH_MINT_BRIDGE__STRATUM__TARGET_SHARE_SECS".to_owned(), "5".to_owned()),
                ("EHASH_MINT_BRIDGE__PUBLIC_URL".to_owned(), "https://mint.example".to_owned()),
                ("EHASH_MINT_BRIDGE__SV2_LISTEN".to_owned(), "127.0.0.1:3336".to_owned()),
                ("EHASH_REQUIRE_EXTERNAL".to_owned(), "1".to_owned()),
                ("PATH".to_owned(), "/bin".to_owned()),
            ]
            .into_iter(),
        )
        .unwrap();
        let c: FileConfig = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(c.mint_bridge.unit_log2_hashes, 20);
        assert_eq!(c.mint_bridge.stratum.target_share_secs, 5);
        assert_eq!(c.mint_bridge.public_url.as_deref(), Some("https://mint.example"));
        assert_eq!(c.mint_bridge.sv2_listen, Some("127.0.0.1:3336".parse().unwrap()));
        let mut t = toml::Table::new();
        apply_env(&mut t, [("EHASH_MINT_BRIDGE__UNIT_LOG2_HASHS".to_owned(), "3".to_owned())].into_iter()).unwrap();
        let e = toml::Value::Table(t).try_into::<FileConfig>().unwrap_err().to_string();
        assert!(e.contains("unit_log2_hashs"), "{e}");
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../ehash.example.toml");
        let c: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(c.mint_bridge.stratum_listen.port(), 3333);
        assert_eq!(c.mint_bridge.sv2_listen, None, "Stratum V2 is off by default");
        assert_eq!((c.exchange.lot, c.exchange.listen.port()), (1024, 8090));
        assert_eq!(c.up.lot, UpConfig::default().lot);
        assert_eq!(c.web, ehash_web::Config::default());
    }
}
