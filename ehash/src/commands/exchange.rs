//! `ehash exchange`: run the exchange (protocol §9–10) until Ctrl-C, or verify a running one by
//! replaying its public journal.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use nostr_sdk::prelude::{PublicKey, RelayUrl, ToBech32};

use crate::config::FileConfig;

/// The long help of `ehash exchange`.
pub const LONG_ABOUT: &str = "Run the exchange until Ctrl-C (protocol §9–10).\n\n\
    The exchange reads offers (kind 38190) that name its nostr key from its relays, keeps one order \
    book per epoch market, matches offers with price-time priority and publishes every match as a \
    kind-38191 trade signed by its key. It never holds money: the two wallets settle each trade \
    with a cross-mint HTLC swap; the exchange verifies their locks, watches both mints and \
    publishes each trade's progress, blaming whoever misses a deadline.\n\n\
    Its relays must accept its trade events: start them with `ehash relay --exchange-key <its \
    pubkey>` (printed at start; the key is kept in <data-dir>/nostr.key unless \
    [exchange].nostr_secret_key is set). Book events go to a journal (SQLite in the data directory, \
    or PostgreSQL with --database-url) that anyone can replay with `ehash exchange verify`.\n\n\
    Settings: [exchange] (see ehash.example.toml); the flags override them. The HTTP + WebSocket \
    API (GET /api/info, /api/markets, /api/markets/<market>/book, …/trades, …/journal, /api/ws) \
    serves `ehash trade` and the web UI.";

const VERIFY_ABOUT: &str = "Check that an exchange matched correctly: fetch its public journal \
    (GET /api/markets/<market>/journal), replay every market's book events with the same \
    price-time matching code, check every booked offer's signature and schema, and compare the \
    trades the replay makes with the kind-38191 trades the exchange published on its relays. \
    Prints the markets and journal entries replayed, the trades expected and published, every \
    mismatch, and the offers to this exchange found on the relays that the journal never booked \
    (refused or never seen; informational). Exits with an error if there is any mismatch.\n\n\
    A trade matched in the very moment of the check may not be on the relays yet; run it again \
    before trusting a single \"not published\" mismatch.";

const HEADING: &str = "Exchange settings";

/// `ehash exchange`: run, or `verify`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExchangeCmd {
    #[command(subcommand)]
    pub action: Option<ExchangeAction>,
    #[command(flatten)]
    pub run: ExchangeArgs,
}

/// `ehash exchange` actions.
#[derive(Debug, Subcommand)]
pub enum ExchangeAction {
    /// Replay an exchange's public journal and check the trades it published.
    #[command(long_about = VERIFY_ABOUT)]
    Verify(VerifyArgs),
}

/// `ehash exchange` flags (each overrides the `[exchange]` config key named).
#[derive(Debug, Args, Default)]
pub struct ExchangeArgs {
    /// HTTP + WebSocket API listen address; port 0 picks a free one (default `[exchange].listen`,
    /// 127.0.0.1:8090).
    #[arg(long, value_name = "ADDR", help_heading = HEADING)]
    pub listen: Option<SocketAddr>,
    /// Data directory: the nostr key file and the SQLite database (default
    /// `[exchange].data_dir`, .ehash/exchange).
    #[arg(long, value_name = "DIR", help_heading = HEADING)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…) for the journal, trades and outbox instead of SQLite in the
    /// data directory (default `[exchange].database_url`).
    #[arg(long, value_name = "URL", help_heading = HEADING)]
    pub database_url: Option<String>,
    /// A relay offers are read from and trades published to (repeatable; replaces
    /// `[exchange].relays`, default ws://127.0.0.1:7777).
    #[arg(long = "relay", value_name = "URL", help_heading = HEADING)]
    pub relays: Vec<String>,
    /// Ehash units per lot: every offer's amount is whole lots and every price is sats per lot
    /// (default `[exchange].lot`, 1024). Keep it for the life of the data directory: the journal
    /// replays with it.
    #[arg(long, value_name = "EHASH", help_heading = HEADING)]
    pub lot: Option<u64>,
    /// A pool key (hex or npub) whose epochs may be traded (repeatable; replaces
    /// `[exchange].pools`; default: any pool announcing on the relays).
    #[arg(long = "pool", value_name = "PUBKEY", help_heading = HEADING)]
    pub pools: Vec<String>,
    /// A sat mint offers may name (repeatable; replaces `[exchange].sat_mints`; default: any
    /// mint at a public address). An offer naming another is refused.
    #[arg(long = "sat-mint", value_name = "URL", help_heading = HEADING)]
    pub sat_mints: Vec<String>,
    /// Contact mints at loopback or private addresses (a local market; `[exchange].private_mints`).
    /// Off by default: offers could otherwise point the exchange at its own network.
    #[arg(long, help_heading = HEADING)]
    pub private_mints: bool,
}

/// `ehash exchange verify` flags.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The exchange's HTTP API (default: http://<[exchange].listen>).
    #[arg(long, value_name = "URL")]
    pub exchange: Option<String>,
    /// A relay to read the published trades and offers from (repeatable; default: the relays the
    /// exchange names in GET /api/info).
    #[arg(long = "relay", value_name = "URL")]
    pub relays: Vec<String>,
}

/// A pool key as hex (the exchange compares hex keys).
fn pool_hex(p: &str, what: &str) -> Result<String> {
    PublicKey::parse(p.trim()).map(|k| k.to_hex()).map_err(|e| anyhow::anyhow!("{what} {p:?} is not a nostr public key (64 hex digits or npub1…): {e}"))
}

fn check_relay(r: &str, what: &str) -> Result<()> {
    RelayUrl::parse(r).map(|_| ()).map_err(|e| anyhow::anyhow!("{what} {r:?} is not a relay URL (ws://host:port or wss://host): {e}"))
}

/// Apply flags over the layered `[exchange]` section, and check what the exchange would
/// otherwise take silently (pool keys, relay URLs).
pub fn apply_flags(mut c: ehash_exchange::Config, a: ExchangeArgs) -> Result<ehash_exchange::Config> {
    let from_flags = (!a.relays.is_empty(), !a.pools.is_empty());
    if let Some(v) = a.listen {
        c.listen = v;
    }
    if let Some(v) = a.data_dir {
        c.data_dir = v;
    }
    if let Some(v) = a.database_url {
        c.database_url = Some(v);
    }
    if !a.relays.is_empty() {
        c.relays = a.relays;
    }
    if let Some(v) = a.lot {
        c.lot = v;
    }
    if !a.pools.is_empty() {
        c.pools = a.pools;
    }
    if !a.sat_mints.is_empty() {
        c.sat_mints = a.sat_mints;
    }
    c.private_mints |= a.private_mints;
    let relay_src = if from_flags.0 { "--relay" } else { "[exchange].relays:" };
    let pool_src = if from_flags.1 { "--pool" } else { "[exchange].pools:" };
    for r in &c.relays {
        check_relay(r, relay_src)?;
    }
    c.pools = c.pools.iter().map(|p| pool_hex(p, pool_src)).collect::<Result<_>>()?;
    if c.lot == 0 {
        bail!("the lot must be at least 1 ehash (--lot or [exchange].lot)");
    }
    if c.relays.is_empty() {
        bail!("the exchange needs at least one relay: --relay ws://127.0.0.1:7777 (or [exchange].relays)");
    }
    Ok(c)
}

/// Run until Ctrl-C / SIGTERM.
pub async fn run(file: FileConfig, a: ExchangeArgs) -> Result<()> {
    let c = apply_flags(file.exchange, a)?;
    let ex = ehash_exchange::Exchange::start(c.clone()).await.context("starting the exchange")?;
    let info = ex.info().clone();
    let npub = PublicKey::parse(&info.pubkey).ok().and_then(|k| k.to_bech32().ok()).unwrap_or_default();
    println!("exchange {}   (HTTP API: /api/info, /api/markets; WebSocket /api/ws)", ex.url());
    println!("pubkey   {}   ({npub})", info.pubkey);
    println!("relays   {}   (each must accept its trades: ehash relay --exchange-key {})", info.relays.join(", "), info.pubkey);
    println!("lot      {} ehash; prices are sats per lot", info.lot);
    println!("windows  lock {} s, claim {} s, margin {} s", info.lock_secs, info.claim_secs, info.margin_secs);
    if c.pools.is_empty() {
        println!("pools    any pool announcing on the relays");
    } else {
        println!("pools    {}", c.pools.join(", "));
    }
    let private = if c.private_mints { "; private addresses allowed" } else { "" };
    if c.sat_mints.is_empty() {
        println!("sat mint any at a public address{private}");
    } else {
        println!("sat mint {}{private}", c.sat_mints.join(", "));
    }
    match &c.database_url {
        Some(_) => println!("data     {} (key); journal in PostgreSQL", c.data_dir.display()),
        None => println!("data     {}", c.data_dir.display()),
    }
    println!("verify   ehash exchange verify --exchange {}", ex.url());
    super::shutdown_signal().await;
    tracing::info!("shutting down");
    ex.shutdown().await;
    Ok(())
}

/// The URL of the exchange a local `[exchange].listen` serves.
pub(crate) fn local_url(listen: SocketAddr) -> String {
    let host = if listen.ip().is_unspecified() { "127.0.0.1".to_owned() } else { listen.ip().to_string() };
    match listen {
        SocketAddr::V6(_) if !listen.ip().is_unspecified() => format!("http://[{host}]:{}", listen.port()),
        _ => format!("http://{host}:{}", listen.port()),
    }
}

/// `ehash exchange verify`.
pub async fn verify(file: FileConfig, a: VerifyArgs) -> Result<()> {
    let url = a.exchange.unwrap_or_else(|| local_url(file.exchange.listen));
    for r in &a.relays {
        check_relay(r, "--relay")?;
    }
    println!("verifying the exchange at {url}");
    let report = ehash_exchange::verify::verify(&url, &a.relays)
        .await
        .with_context(|| format!("cannot verify the exchange at {url} (pass --exchange URL of a running `ehash exchange`)"))?;
    println!("markets     {} replayed, {} journal entries", report.markets, report.entries);
    println!("trades      {} expected by the replay, {} published on the relays", report.expected, report.published);
    if report.mismatches.is_empty() {
        println!("mismatches  none");
    } else {
        println!("mismatches  {}", report.mismatches.len());
        for m in &report.mismatches {
            println!("  {m}");
        }
    }
    if report.unbooked.is_empty() {
        println!("unbooked    none");
    } else {
        println!("unbooked    {} offer(s) on the relays the journal never booked (refused or never seen; see GET /api/refusals):", report.unbooked.len());
        for o in &report.unbooked {
            println!("  {o}");
        }
    }
    if !report.ok() {
        bail!("the exchange at {url} FAILED verification: {} mismatch(es) between its journal and its published trades", report.mismatches.len());
    }
    println!("OK: the published trades are exactly the trades its journal makes");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_and_pool_keys_become_hex() {
        let keys = nostr_sdk::prelude::Keys::generate();
        let npub = keys.public_key().to_bech32().unwrap();
        let a = ExchangeArgs {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            relays: vec!["ws://127.0.0.1:1".into()],
            lot: Some(8),
            pools: vec![npub],
            ..Default::default()
        };
        let c = apply_flags(ehash_exchange::Config::default(), a).unwrap();
        assert_eq!(c.lot, 8);
        assert_eq!(c.relays, vec!["ws://127.0.0.1:1".to_owned()]);
        assert_eq!(c.pools, vec![keys.public_key().to_hex()]);
        let e = apply_flags(ehash_exchange::Config::default(), ExchangeArgs { pools: vec!["nope".into()], ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("--pool \"nope\""), "{e}");
        let e = apply_flags(ehash_exchange::Config::default(), ExchangeArgs { relays: vec!["http//x".into()], ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("--relay"), "{e}");
    }

    #[test]
    fn local_urls() {
        assert_eq!(local_url("0.0.0.0:8090".parse().unwrap()), "http://127.0.0.1:8090");
        assert_eq!(local_url("127.0.0.1:1".parse().unwrap()), "http://127.0.0.1:1");
        assert_eq!(local_url("[::1]:2".parse().unwrap()), "http://[::1]:2");
    }
}
