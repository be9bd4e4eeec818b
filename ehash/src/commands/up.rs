//! `ehash up`: the local market in one process — a relay, the pool's mint-bridge on a devnet
//! tuned for a CPU miner, a mining proxy earning into its own wallet, a simulated miner mining
//! through the proxy, a sat mint (fake Lightning), the exchange, the web UI pointed at them, and
//! a simulated seller (the miner's wallet) and buyer trading on it, so a newcomer watches offers
//! match and swaps settle, and can trade in a browser.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use ehash_exchange::Exchange;
use ehash_mint_bridge::MintBridge;
use ehash_mint_bridge::pool::bitcoind::local::{BITCOIND_ENV, LocalNode, find_bitcoind};
use ehash_protocol::api::{Book, MarketSummary};
use ehash_protocol::market::{ExchangeInfo, Side};
use ehash_proxy::Proxy;
use ehash_satmint::SatMint;
use ehash_sim_miner::{Miner, MinerConfig};
use ehash_wallet::agent::record::{Step, TradeRecord};
use ehash_wallet::agent::{Agent, OfferRequest, TradeConfig};
use ehash_wallet::{DepositOutcome, MinerWallet, seed};
use tokio_util::sync::CancellationToken;

use crate::UpArgs;
use crate::config::{FileConfig, UpConfig};

/// One ehash = 2^20 hashes in the local market.
/// Blocks on top of a found block before its epoch is redeemable in the local market.
const UP_MATURITY_BLOCKS: u32 = 3;
/// Seconds a local epoch stays redeemable.
const UP_REDEEM_WINDOW_SECS: u64 = 3600;
const UP_UNIT_LOG2: u32 = 20;
/// On a node's chain (signet: about 4.8 M hashes per block), one ehash = 2^14 hashes: about 290
/// ehash per block, so an epoch fills lots.
const UP_CHAIN_UNIT_LOG2: u32 = 14;
/// The simulated miner's hashes per second on a node's chain.
const UP_CHAIN_HASHRATE: u64 = 150_000;
/// Shares of one ehash on a node's chain.
const UP_CHAIN_MIN_DIFFICULTY_EXP: i32 = -18;
/// Shares start at one ehash (2^-12 difficulty = 2^20 hashes); vardiff adjusts.
const UP_MIN_DIFFICULTY_EXP: i32 = -12;
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
    mb.stratum.initial_difficulty_exp = UP_MIN_DIFFICULTY_EXP;
    mb.stratum.target_share_secs = 2;
    mb.stratum.retarget_secs = 20;
    mb.devnet.network_difficulty_exp = file.up.network_difficulty_exp;
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
    pc.stratum.initial_difficulty_exp = UP_MIN_DIFFICULTY_EXP;
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
            "  traders  simulated seller: the miner's wallet offers its whole lots every {} s (ehash trade --dir {} status)",
            file.up.trade_secs.max(1),
            wallet_dir.display()
        );
        if file.up.simulate_buyer {
            println!(
                "           simulated buyer: {} deposits sats at the sat mint and bids for one lot of the best ask each round",
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
                format!("book epoch {}: bid {} ask {}", m.epoch, opt(m.bid), opt(m.ask))
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

// ---------------------------------------------------------------------------------------------
// the simulated seller and buyer

/// What the status line shows of the simulated traders' trades.
#[derive(Debug, Default)]
struct SimStats {
    settled: AtomicU64,
    open: AtomicU64,
    failed: AtomicU64,
}

/// What the simulation needs from the running services.
struct SimSetup {
    root: std::path::PathBuf,
    mint_url: String,
    sat_mint: String,
    relay: String,
    exchange_url: String,
    exchange: ExchangeInfo,
    up: UpConfig,
}

/// One simulated trader: a wallet and its trade agent.
struct Trader {
    wallet: Arc<MinerWallet>,
    agent: Agent,
}

impl Trader {
    /// Open the wallet in `dir` (created if absent) and its agent, whose database and lock file
    /// live in the same directory (one agent per wallet, as with `ehash trade --dir`).
    async fn open(dir: &Path, s: &SimSetup) -> Result<Self> {
        let (mnemonic, _) = seed::load_or_create(dir).with_context(|| format!("the wallet in {}", dir.display()))?;
        let wallet = Arc::new(MinerWallet::open(&dir.join("wallet.sqlite"), &s.mint_url, seed::seed_of(&mnemonic)).await?);
        let offer_ttl = (s.up.trade_secs.max(1) * 10).max(120);
        let config = TradeConfig {
            exchange_url: s.exchange_url.clone(),
            relays: vec![s.relay.clone()],
            sat_mints: vec![s.sat_mint.clone()],
            offer_ttl_secs: offer_ttl,
            min_margin_secs: UP_WINDOWS.2.min(TradeConfig::default().min_margin_secs),
            ..Default::default()
        };
        let agent = Agent::open_with(wallet.clone(), dir, config, s.exchange.clone())
            .await
            .with_context(|| format!("opening the trade agent of {}", dir.display()))?;
        Ok(Self { wallet, agent })
    }
}

/// The simulated market: the seller (the miner's wallet) and the buyer (its own wallet; `None`
/// when `[up].simulate_buyer` is off).
struct Sim {
    setup: SimSetup,
    seller: Trader,
    buyer: Option<Trader>,
    stats: Arc<SimStats>,
    out: Out,
    /// Trade ids already reported as matched, and as over.
    matched: HashSet<String>,
    over: HashSet<String>,
    /// Warnings already logged (each once until it changes).
    warned: HashMap<&'static str, String>,
}

/// The simulated seller's ask: a deterministic walk within ±5 % of `base`.
fn ask_price(base: u64, n: u64) -> u64 {
    let step = (n.wrapping_mul(7) % 11) as i128 - 5; // 0 … 10 - 5: -5, +2, -2, +5, +1, …
    let p = i128::from(base) + i128::from(base) * step / 100;
    u64::try_from(p.max(1)).unwrap_or(1)
}

async fn simulate(setup: SimSetup, stats: Arc<SimStats>, out: Out, cancel: CancellationToken) {
    let seller = Trader::open(&setup.root.join("wallet"), &setup).await;
    let buyer = match setup.up.simulate_buyer {
        true => Some(Trader::open(&setup.root.join("buyer"), &setup).await).transpose(),
        false => Ok(None),
    };
    let (seller, buyer) = match (seller, buyer) {
        (Ok(s), Ok(b)) => (s, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = format!("{e:#}"), "simulated trading is off");
            out.event(&format!("simulated trading is off: {e:#}"));
            return;
        }
    };
    let mut sim = Sim { setup, seller, buyer, stats, out, matched: HashSet::new(), over: HashSet::new(), warned: HashMap::new() };
    // trades of earlier runs are not news
    for t in sim.all_trades().await.into_iter().flat_map(|(_, t)| t) {
        sim.matched.insert(t.id.clone());
        if t.step.is_final() {
            sim.over.insert(t.id.clone());
        }
    }
    let mut tasks: Vec<_> = sim.traders().into_iter().map(|(_, t)| t.agent.run(cancel.child_token())).collect();
    let round_every = Duration::from_secs(sim.setup.up.trade_secs.max(1));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // the first round once the exchange has had time to read the pool's announcements
    let mut next_round = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut restarts = 0u64;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        // an agent stops only when told to, or when it cannot start: start it again
        for ((who, trader), task) in sim.traders().into_iter().zip(tasks.iter_mut()) {
            if task.is_finished() {
                restarts += 1;
                if restarts.is_power_of_two() {
                    tracing::warn!(restarts, "the simulated {who}'s trade agent stopped (see above); restarting it");
                }
                *task = trader.agent.run(cancel.child_token());
            }
        }
        sim.report().await;
        if tokio::time::Instant::now() >= next_round {
            sim.round().await;
            next_round = tokio::time::Instant::now() + round_every;
        }
    }
    for task in tasks {
        let _ = task.await;
    }
}

impl Sim {
    fn warn(&mut self, what: &'static str, e: &anyhow::Error) {
        let msg = format!("{e:#}");
        if self.warned.get(what) != Some(&msg) {
            tracing::warn!(error = %msg, "{what}; retrying");
            self.warned.insert(what, msg);
        }
    }

    fn ok(&mut self, what: &'static str) {
        self.warned.remove(what);
    }

    /// The simulated traders that run.
    fn traders(&self) -> Vec<(&'static str, &Trader)> {
        let mut v = vec![("seller", &self.seller)];
        v.extend(self.buyer.as_ref().map(|b| ("buyer", b)));
        v
    }

    async fn all_trades(&self) -> Vec<(&'static str, Vec<TradeRecord>)> {
        let mut out = vec![];
        for (who, t) in self.traders() {
            match t.agent.trades().await {
                Ok(v) => out.push((who, v)),
                Err(e) => tracing::warn!(error = %e, "reading the simulated {who}'s trades"),
            }
        }
        out
    }

    /// Print trades as they are matched and as they end; count them for the status line.
    async fn report(&mut self) {
        // a trade between the two simulated traders appears in both agents (a trade with someone
        // trading in the browser, in one)
        let mut by_id: HashMap<String, Vec<TradeRecord>> = HashMap::new();
        for (_, trades) in self.all_trades().await {
            for t in trades {
                by_id.entry(t.id.clone()).or_default().push(t);
            }
        }
        let (mut settled, mut open, mut failed) = (0, 0, 0);
        let mut ids: Vec<&String> = by_id.keys().collect();
        ids.sort();
        for id in ids {
            let records = &by_id[id];
            let short = &id[..id.len().min(8)];
            let first = &records[0];
            if self.matched.insert(id.clone()) {
                self.out.event(&format!(
                    "trade {short} matched: {} {} for {} sat at {}",
                    first.terms.amount, first.terms.unit, first.terms.sats, first.terms.sat_mint
                ));
            }
            if !records.iter().all(|t| t.step.is_final()) {
                open += 1;
                continue;
            }
            let unsettled = records.iter().find(|t| t.step != Step::Settled);
            match unsettled {
                None => settled += 1,
                Some(_) => failed += 1,
            }
            if self.over.insert(id.clone()) {
                match unsettled {
                    None => self.out.event(&format!("trade {short} settled: the seller has the sats, the buyer the ehash")),
                    Some(t) => self.out.event(&format!(
                        "trade {short} {} ({} side{})",
                        t.step.as_str(),
                        t.role.as_str(),
                        t.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default()
                    )),
                }
            }
        }
        self.stats.settled.store(settled, Ordering::Relaxed);
        self.stats.open.store(open, Ordering::Relaxed);
        self.stats.failed.store(failed, Ordering::Relaxed);
    }

    /// One round: the seller offers what it has not offered yet, the buyer bids for one lot.
    async fn round(&mut self) {
        let markets = match get_json::<Vec<MarketSummary>>(&self.setup.exchange_url, "/api/markets").await {
            Ok(m) => m,
            Err(e) => return self.warn("the simulated traders cannot read the exchange's markets", &e),
        };
        let markets: Vec<MarketSummary> = markets
            .into_iter()
            .filter(|m| !m.state.has_ended() && m.mint_url.trim_end_matches('/') == self.setup.mint_url.trim_end_matches('/'))
            .collect();
        match self.sell().await {
            Ok(()) => self.ok("the simulated seller could not offer"),
            Err(e) => self.warn("the simulated seller could not offer", &e),
        }
        if self.buyer.is_some() {
            match self.buy(&markets).await {
                Ok(()) => self.ok("the simulated buyer could not bid"),
                Err(e) => self.warn("the simulated buyer could not bid", &e),
            }
        }
    }

    /// Offer what the miner's wallet can sell, as the proxy's auto-sell does, at this round's
    /// price.
    async fn sell(&mut self) -> Result<()> {
        let lot = self.setup.exchange.lot;
        let n = self.seller.agent.offers().await?.len() as u64;
        let policy = ehash_wallet::agent::sell::SellPolicy { sats_per_lot: ask_price(self.setup.up.base_price, n), ..Default::default() };
        for o in self.seller.agent.sell_once(&policy).await? {
            self.out.event(&format!("simulated seller asks {} {} at {} sat per lot of {lot}", o.amount, o.unit, policy.sats_per_lot));
        }
        Ok(())
    }

    /// Bid for one lot of the best ask of the first market where the buyer has no open bid and
    /// one lot can fill: the simulated buyer takes one lot a round, so asks stay in the book for
    /// people trading in the browser.
    async fn buy(&mut self, markets: &[MarketSummary]) -> Result<()> {
        let Some(buyer) = &self.buyer else { return Ok(()) };
        let lot = self.setup.exchange.lot;
        let sat_mint = self.setup.sat_mint.clone();
        let mut sats = buyer.wallet.balance_at(&sat_mint, "sat").await.context("reading the buyer's sats")?;
        let target = self.setup.up.buyer_sats;
        if sats < target / 2 {
            match buyer.wallet.deposit(&sat_mint, target - sats, Duration::from_secs(30)).await.context("depositing sats")? {
                DepositOutcome::Minted(n) => self.out.event(&format!("simulated buyer deposited {n} sat at {sat_mint}")),
                DepositOutcome::Unpaid { .. } => anyhow::bail!("the sat mint at {sat_mint} did not pay its own invoice"),
            }
            sats = buyer.wallet.balance_at(&sat_mint, "sat").await?;
        }
        // what open bids hold is not bid again
        sats = sats.saturating_sub(buyer.wallet.reserved_at(&sat_mint, "sat").await?.0);
        let offers = buyer.agent.offers().await?;
        let mine: HashSet<&str> = offers.iter().map(|o| o.offer.pubkey.as_str()).collect();
        for m in markets.iter().filter(|m| m.ask.is_some()) {
            // one bid per market at a time
            if offers.iter().any(|o| o.open && o.offer.side == Side::Buy && o.offer.market == m.market) {
                continue;
            }
            let book: Book = get_json(&self.setup.exchange_url, &format!("/api/markets/{}/book?depth=10", m.market)).await?;
            let Some(ask) = book.asks.iter().find(|a| !mine.contains(a.pubkey.as_str()) && a.sat_mints.iter().any(|s| same_url(s, &sat_mint)))
            else {
                continue;
            };
            let price = ask.price.max(1);
            let Some(amount) = one_lot_bid(lot, sats, price, ask.remaining, ask.min) else { continue };
            buyer
                .agent
                .place_offer(OfferRequest {
                    side: Side::Buy,
                    unit: m.unit.clone(),
                    amount,
                    min: None,
                    sats_per_lot: price,
                    sat_mints: vec![sat_mint.clone()],
                    ttl_secs: Some((self.setup.up.trade_secs.max(1) * 3).max(60)),
                })
                .await
                .with_context(|| format!("bidding for {amount} {}", m.unit))?;
            self.out.event(&format!("simulated buyer bids {amount} {} at {price} sat per lot", m.unit));
            return Ok(());
        }
        Ok(())
    }
}

/// The simulated buyer's bid against an ask of `remaining` ehash with minimum fill `min` at
/// `price` sats per lot: one lot, if the buyer has the sats and the ask accepts a fill of one lot
/// (its minimum, or what is left of it when that is less, is at most a lot).
fn one_lot_bid(lot: u64, sats: u64, price: u64, remaining: u64, min: u64) -> Option<u64> {
    (lot > 0 && sats >= price && remaining >= lot && lot >= min.min(remaining)).then_some(lot)
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_stay_within_five_percent_and_vary() {
        let prices: Vec<u64> = (0..22).map(|n| ask_price(100, n)).collect();
        assert!(prices.iter().all(|p| (95..=105).contains(p)), "{prices:?}");
        assert!(prices.iter().collect::<HashSet<_>>().len() >= 5, "{prices:?}");
        assert_eq!(prices, (0..22).map(|n| ask_price(100, n)).collect::<Vec<_>>());
        assert_eq!(ask_price(1, 0), 1);
    }

    #[test]
    fn the_buyer_bids_for_one_lot_when_it_can_fill() {
        assert_eq!(one_lot_bid(8, 1000, 100, 64, 8), Some(8));
        assert_eq!(one_lot_bid(8, 99, 100, 64, 8), None, "cannot pay");
        assert_eq!(one_lot_bid(8, 1000, 100, 64, 16), None, "the ask's minimum fill is two lots");
        assert_eq!(one_lot_bid(8, 1000, 100, 0, 8), None);
        assert_eq!(one_lot_bid(0, 1000, 100, 64, 0), None);
    }
}
