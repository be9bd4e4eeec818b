//! `ehash up`: the local market in one process — a relay, the pool's mint-bridge on a devnet
//! tuned for a CPU miner, a mining proxy earning into its own wallet, a simulated miner mining
//! through the proxy, a sat mint (fake Lightning), the exchange, the web UI pointed at them, and
//! a simulated seller (the miner's wallet) and buyer trading on it, so a newcomer watches offers
//! match and swaps settle, and can trade in a browser.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use ehash_exchange::Exchange;
use ehash_mint_bridge::MintBridge;
use ehash_mint_bridge::pool::bitcoind::local::{BITCOIND_ENV, LocalNode, find_bitcoind};
use ehash_protocol::api::MarketSummary;
use ehash_proxy::Proxy;
use ehash_satmint::SatMint;
use ehash_sim_miner::{Miner, MinerConfig};
use tokio_util::sync::CancellationToken;

use crate::UpArgs;
use crate::config::FileConfig;

mod sim;

use sim::{SimSetup, SimStats, simulate};

/// Blocks on top of a found block before its epoch is redeemable in the local market.
const UP_MATURITY_BLOCKS: u32 = 3;
/// Seconds a local epoch stays redeemable.
const UP_REDEEM_WINDOW_SECS: u64 = 3600;
/// One ehash = 2^16 hashes in the local market. The simulated miner (one core) does 1 to 3 M
/// hashes a second on a busy to idle two-core machine, so it earns a lot of 128 ehash (2^23
/// hashes) in a few seconds, and a devnet block of 2^27 hashes (`[up].network_difficulty_exp`
/// -5) holds 16 lots: the first trade comes within the first minute.
const UP_UNIT_LOG2: u32 = 16;
/// Shares of at least one ehash (difficulty 2^-16 = 2^16 hashes) ...
const UP_MIN_DIFFICULTY_EXP: i32 = -16;
/// ... starting at 16 (2^20 hashes, a fraction of a second); vardiff aims at a share every 2 s.
const UP_INITIAL_DIFFICULTY_EXP: i32 = -12;
/// On a node's chain (signet: about 4.8 M hashes per block), one ehash = 2^14 hashes: about 290
/// ehash per block, so an epoch fills lots.
const UP_CHAIN_UNIT_LOG2: u32 = 14;
/// The simulated miner's hashes per second on a node's chain.
const UP_CHAIN_HASHRATE: u64 = 150_000;
/// Shares of one ehash on a node's chain.
const UP_CHAIN_MIN_DIFFICULTY_EXP: i32 = -18;
/// The local exchange's settlement windows (lock, claim, margin), seconds: short, so a failed
/// trade is refunded within two minutes.
const UP_WINDOWS: (u64, u64, u64) = (30, 30, 30);

/// Run until Ctrl-C.
pub async fn run(file: FileConfig, args: UpArgs) -> Result<()> {
    let chain = args.chain.unwrap_or_else(|| file.up.chain.clone());
    if !["devnet", "regtest", "signet"].contains(&chain.as_str()) {
        anyhow::bail!("[up].chain is {chain:?}: use devnet, regtest or signet");
    }
    // a chain's market keeps its own data: a ledger never mixes two chains' blocks
    let root = args.data_dir.unwrap_or_else(|| {
        let d = file.up.data_dir.clone();
        if chain == "devnet" { d } else { d.with_file_name(format!("{}-{chain}", d.file_name().and_then(|n| n.to_str()).unwrap_or("up"))) }
    });
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let out = Out { tty: std::io::stdout().is_terminal() };

    let mut mb = file.mint_bridge.clone();
    mb.data_dir = root.join("mint-bridge");
    // the relay accepts the pool's announcements and the exchange's trades: it needs both keys
    // before they start
    std::fs::create_dir_all(&mb.data_dir).with_context(|| format!("creating {}", mb.data_dir.display()))?;
    let pool_keys = ehash_keyfile::load_or_create_nostr_keys(&mb.data_dir, mb.nostr_secret_key.as_deref())?;
    let mut ex = file.exchange.clone();
    ex.data_dir = root.join("exchange");
    // every mint of the local market is on this machine
    ex.private_mints = true;
    std::fs::create_dir_all(&ex.data_dir).with_context(|| format!("creating {}", ex.data_dir.display()))?;
    let exchange_keys = ehash_keyfile::load_or_create_nostr_keys(&ex.data_dir, ex.nostr_secret_key.as_deref())?;

    let mut relay_config = file.relay.clone();
    relay_config.data_dir = root.join("relay");
    relay_config.pool_keys.push(pool_keys.public_key().to_hex());
    relay_config.exchange_keys.push(exchange_keys.public_key().to_hex());
    // budgets are per client address, and every service of the local market (and its browser)
    // shares loopback: ten times the defaults, unless the file sets them
    let defaults = ehash_relay::Limits::default();
    if relay_config.limits.events_per_minute == defaults.events_per_minute {
        relay_config.limits.events_per_minute = defaults.events_per_minute * 10;
    }
    if relay_config.limits.reqs_per_minute == defaults.reqs_per_minute {
        relay_config.limits.reqs_per_minute = defaults.reqs_per_minute * 10;
    }
    let relay = ehash_relay::Relay::start(&relay_config).await.context("starting the relay")?;

    if !mb.relays.iter().any(|r| r == relay.url()) {
        mb.relays.push(relay.url().to_owned());
    }
    mb.unit_log2_hashes = UP_UNIT_LOG2;
    mb.stratum.min_difficulty_exp = UP_MIN_DIFFICULTY_EXP;
    mb.stratum.initial_difficulty_exp = UP_INITIAL_DIFFICULTY_EXP;
    mb.stratum.target_share_secs = 2;
    mb.stratum.retarget_secs = 20;
    mb.devnet.network_difficulty_exp = file.up.network_difficulty_exp;
    mb.devnet.block_reward_sat = file.up.block_reward_sat;
    mb.devnet.job_refresh_secs = 30;
    // epochs mature after a few devnet blocks and stay redeemable for an hour, so the whole
    // lifecycle shows in one session
    mb.payout.maturity_blocks = UP_MATURITY_BLOCKS;
    mb.payout.redeem_window_secs = UP_REDEEM_WINDOW_SECS;
    // redeemed sats can be withdrawn (to fake invoices) unless the file names a backend
    if mb.lightning.is_none() {
        mb.lightning = Some(ehash_lightning::Lightning::Fake);
    }
    let mut node = match chain.as_str() {
        "devnet" => None,
        chain => Some(start_node(&root, chain, &pool_keys, &mut mb).await?),
    };
    let bridge = MintBridge::start(mb).await.context("starting the mint-bridge")?;

    let mut pc = file.proxy.clone();
    pc.data_dir = root.join("proxy");
    pc.wallet_dir = root.join("wallet");
    pc.pool = bridge.stratum_addr().to_string();
    pc.mint_url = bridge.mint_url().to_owned();
    pc.mint_secs = file.up.mint_secs;
    pc.worker = "up".into();
    pc.stratum.initial_difficulty_exp = UP_INITIAL_DIFFICULTY_EXP;
    pc.stratum.min_difficulty_exp = UP_MIN_DIFFICULTY_EXP;
    pc.stratum.target_share_secs = 2;
    pc.stratum.retarget_secs = 20;
    let proxy = Proxy::start(pc).await.context("starting the proxy")?;

    let mut sc = file.sat_mint.clone();
    sc.data_dir = root.join("sat-mint");
    let sat_mint = SatMint::start(&sc).await.context("starting the sat mint ([sat_mint].listen sets its port)")?;

    ex.relays = vec![relay.url().to_owned()];
    ex.database_url = None;
    ex.pools = vec![pool_keys.public_key().to_hex()];
    ex.lot = file.up.lot;
    (ex.lock_secs, ex.claim_secs, ex.margin_secs) = UP_WINDOWS;
    let (listen, lot, ex_dir) = (ex.listen, ex.lot, ex.data_dir.clone());
    let exchange = Exchange::start(ex).await.with_context(|| {
        format!(
            "starting the exchange on {listen} ([exchange].listen) with a lot of {lot} ([up].lot, which must stay what {} was first started with)",
            ex_dir.display()
        )
    })?;

    let exchange_url = super::exchange::local_url(exchange.local_addr());
    let mut wc = file.web.clone();
    wc.exchange_url = exchange_url.clone();
    wc.sat_mints = vec![sat_mint.url().to_owned()];
    wc.relays = vec![relay.url().to_owned()];
    let web_listen = wc.listen;
    let web = ehash_web::Web::start(wc)
        .await
        .with_context(|| format!("starting the web UI on {web_listen} ([web].listen or EHASH_WEB__LISTEN sets its port)"))?;

    let cancel = CancellationToken::new();
    let miner = Miner::start(
        MinerConfig {
            pool: proxy.local_addr(),
            username: "sim1".into(),
            agent: "ehash-sim-miner/0.1".into(),
            version_rolling: true,
            // on a node's chain, a signet block every half minute or so (about 4.8 M hashes)
            max_hashrate: node.is_some().then_some(UP_CHAIN_HASHRATE),
        },
        cancel.clone(),
    );

    let wallet_dir = root.join("wallet");
    println!("ehash local market");
    println!("  web      {}   (open this in a browser to trade)", web.url());
    println!("  relay    {}", relay.url());
    println!("  mint     {}   (Cashu HTTP API; epochs at /v1/ehash/epochs; ehash wallet redeem, then withdraw to a Lightning invoice)", bridge.mint_url());
    println!("  pool     stratum+tcp://{}   (username: <quote-id>.<worker>)", bridge.stratum_addr());
    println!("  proxy    stratum+tcp://{}   (point your miners here; status: http://{}/status)", proxy.local_addr(), proxy.status_addr());
    println!("  pool key {}", pool_keys.public_key().to_hex());
    if let Some(n) = &node {
        println!("  bitcoind {}   ({chain}, data in {}; bitcoin-cli -{chain} -rpcport=… for a look)", n.rpc_url(), root.join(format!("bitcoind-{chain}")).display());
    }
    println!("  wallet   {}   (ehash wallet --dir {} balance)", wallet_dir.display(), wallet_dir.display());
    println!("  exchange {exchange_url}   (ehash trade --exchange {exchange_url} list; API /api/markets)");
    println!("           key {}, lot {} ehash, prices in sats per lot", exchange.info().pubkey, exchange.info().lot);
    println!("  sat mint {}   (FAKE Lightning: every invoice is paid; ehash wallet deposit --sat-mint {} AMOUNT)", sat_mint.url(), sat_mint.url());
    let stats = Arc::new(SimStats::default());
    let sim = if file.up.simulate_trading {
        println!(
            "  traders  simulated seller: the miner's wallet offers its whole lots every {} s, around what a lot is worth (ehash trade --dir {} status)",
            file.up.trade_secs.max(1),
            wallet_dir.display()
        );
        if file.up.simulate_buyer {
            println!(
                "           simulated buyer: {} deposits sats at the sat mint and bids for one lot each round, around what it is worth",
                root.join("buyer").display()
            );
        } else {
            println!("           simulated buyer is off ([up].simulate_buyer): buy in the browser");
        }
        let setup = SimSetup {
            root: root.clone(),
            mint_url: bridge.mint_url().to_owned(),
            sat_mint: sat_mint.url().to_owned(),
            relay: relay.url().to_owned(),
            exchange_url: exchange_url.clone(),
            exchange: exchange.info().clone(),
            up: file.up.clone(),
            max_deposit: sc.max_deposit,
        };
        Some(tokio::spawn(simulate(setup, stats.clone(), out, cancel.clone())))
    } else {
        println!("  traders  simulated trading is off ([up].simulate_trading)");
        None
    };
    println!("Ctrl-C stops it; the data directory keeps everything for the next run.");

    let mut status = tokio::time::interval(Duration::from_secs(file.up.status_secs.max(1)));
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = status.tick() => {
                let line = status_line(&bridge, &proxy, &exchange_url, sim.is_some().then_some(&*stats)).await;
                out.status(&line);
            }
        }
    }
    println!();
    tracing::info!("stopping");
    cancel.cancel();
    if let Some(sim) = sim {
        let _ = sim.await;
    }
    miner.join().await;
    web.shutdown().await;
    proxy.shutdown();
    exchange.shutdown().await;
    sat_mint.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    bridge.shutdown().await;
    relay.shutdown();
    if let Some(n) = node.as_mut() {
        n.stop().await;
    }
    Ok(())
}

/// Start a Bitcoin Core node on `chain` for the local market and point the pool at it, paying
/// a taproot output of the pool's key.
async fn start_node(root: &Path, chain: &str, pool_keys: &nostr_sdk::prelude::Keys, mb: &mut ehash_mint_bridge::Config) -> Result<LocalNode> {
    let bin = find_bitcoind().with_context(|| format!("--chain {chain} needs Bitcoin Core: set {BITCOIND_ENV} to a bitcoind binary or put bitcoind on PATH (or run without --chain: the devnet)"))?;
    let node = LocalNode::start(&bin, &root.join(format!("bitcoind-{chain}")), chain)
        .await
        .with_context(|| format!("starting {} on {chain}", bin.display()))?;
    let network = if chain == "signet" { bitcoin::Network::Signet } else { bitcoin::Network::Regtest };
    let xonly = bitcoin::XOnlyPublicKey::from_slice(&pool_keys.public_key().to_bytes()).context("the pool's key is not an x-only key")?;
    let payout = bitcoin::Address::p2tr(&bitcoin::secp256k1::Secp256k1::verification_only(), xonly, None, network);
    let mut source = node.job_source(&payout.to_string());
    source.job_refresh_secs = 30;
    mb.bitcoind = Some(source);
    // more ehash per block than the devnet's: a 2^14-hash unit, shares of one unit
    mb.unit_log2_hashes = UP_CHAIN_UNIT_LOG2;
    mb.stratum.min_difficulty_exp = UP_CHAIN_MIN_DIFFICULTY_EXP;
    mb.stratum.initial_difficulty_exp = UP_CHAIN_MIN_DIFFICULTY_EXP;
    Ok(node)
}

/// Standard output: the live status line (redrawn in place on a terminal) and event lines.
#[derive(Debug, Clone, Copy)]
struct Out {
    tty: bool,
}

impl Out {
    fn status(&self, line: &str) {
        if self.tty {
            print!("\r\x1b[2K{line}");
            let _ = std::io::stdout().flush();
        } else {
            println!("{line}");
        }
    }

    /// A line that stays (the status line is redrawn below it).
    fn event(&self, line: &str) {
        if self.tty {
            println!("\r\x1b[2K{line}");
        } else {
            println!("{line}");
        }
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(base: &str, path: &str) -> Result<T> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let resp = bitreq::get(url.as_str()).with_timeout(5).send_async().await.with_context(|| format!("GET {url}"))?;
    if resp.status_code != 200 {
        anyhow::bail!("GET {url}: HTTP {}", resp.status_code);
    }
    resp.json::<T>().with_context(|| format!("GET {url}: unexpected answer"))
}

async fn status_line(bridge: &MintBridge, proxy: &Proxy, exchange: &str, sim: Option<&SimStats>) -> String {
    let pool = bridge.stats();
    let epoch = bridge.epochs().current().await.map(|e| format!("epoch {} ({})", e.epoch, e.unit)).unwrap_or_default();
    let p = proxy.status().await;
    let wallet: u64 = p.earnings.wallet.values().sum();
    let credited: u64 = p.earnings.credited.values().sum();
    let rejected: u64 = p.shares_rejected.iter().map(|(_, n)| n).sum();
    let book = match get_json::<Vec<MarketSummary>>(exchange, "/api/markets").await {
        // the newest epoch with offers resting (markets come newest first)
        Ok(markets) => match markets.iter().find(|m| m.bid.is_some() || m.ask.is_some()) {
            Some(m) => {
                let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
                format!("book epoch {}: value {} bid {} ask {}", m.epoch, opt(m.value), opt(m.bid), opt(m.ask))
            }
            None => "book empty".into(),
        },
        Err(_) => "book ?".into(),
    };
    let trades = match sim {
        Some(s) => format!(
            " | trades {} settled, {} open, {} failed",
            s.settled.load(Ordering::Relaxed),
            s.open.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed)
        ),
        None => String::new(),
    };
    format!(
        "{epoch} | miners {} {:.2} MH/s | shares {} accepted, {} to pool, {rejected} rejected | credited {credited} | wallet {wallet} ehash | blocks {} | {book}{trades}",
        p.miners,
        p.hashrate / 1e6,
        p.shares_accepted,
        p.shares_forwarded,
        pool.blocks
    )
}
