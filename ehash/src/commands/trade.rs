//! `ehash trade`: offers on an exchange and the settlement of their trades (protocol §9–10),
//! with the wallet of `ehash wallet`.
//!
//! Every action but `list` and `status` opens the wallet's trade agent
//! ([`ehash_wallet::agent::Agent`]); `offer` and `take` run it until their trades are over, `run`
//! until Ctrl-C. `list` only asks the exchange's HTTP API, `status` only reads the agent's database
//! (so it works while another command runs the agent).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use ehash_protocol::api::{Book, BookEntry, MarketSummary};
use ehash_protocol::epoch::EpochUnit;
use ehash_protocol::market::{ExchangeInfo, Price, Side, whole_lots};
use ehash_wallet::agent::record::{OfferRecord, Step, TradeRecord};
use ehash_wallet::agent::store::Store;
use ehash_wallet::agent::{Agent, OfferRequest, TradeConfig};
use tokio_util::sync::CancellationToken;

use crate::config::FileConfig;

/// The long help of `ehash trade`.
pub const LONG_ABOUT: &str = "Trade ehash for sats on an exchange (protocol §9–10).\n\n\
    Offers are nostr events naming an exchange, which matches them (price-time priority) and \
    publishes each match. The two wallets then settle the trade themselves with a cross-mint HTLC \
    swap: ehash locked at the pool's mint against sats locked at a sat mint. Settlement needs this \
    wallet's trade agent running: `offer` and `take` run it until their trades are over, `ehash \
    trade run` runs it until Ctrl-C (and resumes or refunds whatever an interrupted run left). Only \
    one agent runs per wallet, so stop `ehash trade run` (or the proxy's auto-sell) before `offer`, \
    `take` or `cancel`.\n\n\
    Uses the wallet of `ehash wallet` ([wallet]) and the [trade] settings. Buying needs sats at a \
    sat mint: `ehash wallet deposit --sat-mint URL AMOUNT`.";

const HEADING: &str = "Wallet and exchange";

/// `ehash trade` and its flags (each overrides the config key named).
#[derive(Debug, Args)]
pub struct TradeCmd {
    /// Wallet directory (default `[wallet].dir`).
    #[arg(long, global = true, value_name = "DIR", help_heading = HEADING)]
    pub dir: Option<PathBuf>,
    /// The pool's mint URL (default `[wallet].mint_url`).
    #[arg(long, global = true, value_name = "URL", help_heading = HEADING)]
    pub mint_url: Option<String>,
    /// The exchange's HTTP API (default `[trade].exchange_url`).
    #[arg(long, global = true, value_name = "URL", help_heading = HEADING)]
    pub exchange: Option<String>,
    /// A relay for offers and settlement messages (repeatable; default `[trade].relays`, else the
    /// relays the exchange names).
    #[arg(long = "relay", global = true, value_name = "URL", help_heading = HEADING)]
    pub relays: Vec<String>,
    /// A sat mint you trust: you accept its sats when selling and hold sats there when buying
    /// (the first one) (repeatable; default `[trade].sat_mints`). No trade settles at a sat mint
    /// not named here, whatever an offer names.
    #[arg(long = "sat-mint", global = true, value_name = "URL", help_heading = HEADING)]
    pub sat_mints: Vec<String>,
    #[command(subcommand)]
    pub action: TradeAction,
}

/// `ehash trade` actions.
#[derive(Debug, Subcommand)]
pub enum TradeAction {
    /// Place an offer to sell or buy an epoch's ehash, then settle its trades.
    #[command(long_about = "Place an offer to sell or buy an epoch's ehash at a price in sats per lot.\n\n\
        The amount and the minimum fill are whole numbers of the exchange's lot (`ehash trade list` \
        shows it); a fill of Q ehash at price P costs exactly Q / lot × P sats. Selling needs the \
        ehash in this wallet; buying needs the sats at the first --sat-mint (`ehash wallet \
        deposit`). By default the command keeps the trade agent running until the offer is filled, \
        expires or is cancelled and every trade of it is settled or refunded, printing each step; \
        Ctrl-C stops waiting (the offer stays open). With --no-wait it returns once the offer is on \
        the relays, and its trades settle only while `ehash trade run` runs.")]
    Offer(OfferArgs),
    /// List the exchange's markets and the offers resting in their books.
    List(ListArgs),
    /// Take a resting offer: place the opposite offer at its price and settle the trade.
    #[command(long_about = "Take a resting offer (see `ehash trade list`): place the opposite offer \
        at the resting offer's price, with the sat mints both accept, and run the trade agent until \
        the trade is settled or refunded, printing each step.\n\n\
        The amount defaults to all that is left of the offer, limited to what this wallet can pay \
        (buying: sats at the sat mint) or deliver (selling: ehash), in whole lots. Whatever is not \
        matched at once rests in the book as your offer until --ttl passes (the command waits that \
        long) or you cancel it.")]
    Take(TakeArgs),
    /// Cancel one of your offers (fills already made are not undone).
    Cancel {
        /// The offer id (`ehash trade status` lists them).
        id: String,
    },
    /// Your offers and trades, or one trade in detail.
    #[command(long_about = "Your offers and trades, or one trade in detail. Reads the wallet's \
        trade database only, so it works while another command runs the agent.")]
    Status {
        /// A trade id (or a unique prefix of one) to show in detail.
        trade: Option<String>,
    },
    /// Run the trade agent until Ctrl-C: settle every trade, refund what expired.
    #[command(long_about = "Run the trade agent until Ctrl-C: deliver your offers to the relays, \
        watch the exchange's trades and your counterparties' messages, settle every trade (lock, \
        claim) and refund every lock whose trade failed once its locktime passes. Trades resume \
        where they stopped on the next run.")]
    Run,
}

/// A side of the market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SideArg {
    /// Sell ehash for sats.
    Sell,
    /// Buy ehash with sats.
    Buy,
}

impl From<SideArg> for Side {
    fn from(s: SideArg) -> Self {
        match s {
            SideArg::Sell => Side::Sell,
            SideArg::Buy => Side::Buy,
        }
    }
}

/// `ehash trade offer` flags.
#[derive(Debug, Args)]
pub struct OfferArgs {
    /// Sell ehash for sats, or buy ehash with sats.
    #[arg(long, value_enum)]
    pub side: SideArg,
    /// The epoch unit, e.g. hash_3f9a1c2e_7 (`ehash wallet balance` shows yours, `ehash trade
    /// list` the markets).
    #[arg(long)]
    pub unit: String,
    /// Ehash to sell or buy: a whole number of the exchange's lots.
    #[arg(long)]
    pub amount: u64,
    /// Price in sats per lot.
    #[arg(long, value_name = "SATS_PER_LOT")]
    pub price: u64,
    /// Smallest fill in ehash, whole lots (default: one lot).
    #[arg(long, value_name = "N")]
    pub min: Option<u64>,
    /// Seconds the offer stays open (default `[trade].offer_ttl_secs`).
    #[arg(long, value_name = "SECS")]
    pub ttl: Option<u64>,
    /// Return once the offer is on the relays instead of settling its trades; they then settle
    /// only while `ehash trade run` runs.
    #[arg(long)]
    pub no_wait: bool,
}

/// `ehash trade list` flags.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show only this market (an epoch's keyset id).
    #[arg(long, value_name = "KEYSET_ID", conflicts_with = "unit")]
    pub market: Option<String>,
    /// Show only the market of this epoch unit, e.g. hash_3f9a1c2e_7.
    #[arg(long)]
    pub unit: Option<String>,
}

/// `ehash trade take` flags.
#[derive(Debug, Args)]
pub struct TakeArgs {
    /// The resting offer: its address `38190:<pubkey>:<d>` or its event id (`ehash trade list`).
    #[arg(value_name = "ADDRESS_OR_EVENT_ID")]
    pub offer: String,
    /// Ehash to take, whole lots (default: all that is left of the offer, limited to your balance).
    #[arg(long, value_name = "N")]
    pub amount: Option<u64>,
    /// Seconds your offer stays open if it is not filled at once.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub ttl: u64,
    /// Return once your offer is on the relays instead of settling the trade; it then settles
    /// only while `ehash trade run` runs.
    #[arg(long)]
    pub no_wait: bool,
}

/// The layered settings with the flags applied.
struct Settings {
    wallet: ehash_wallet::Config,
    trade: TradeConfig,
}

fn settings(file: FileConfig, cmd: &TradeCmd) -> Settings {
    let mut wallet = file.wallet;
    let mut trade = file.trade;
    if let Some(d) = &cmd.dir {
        wallet.dir = d.clone();
    }
    if let Some(u) = &cmd.mint_url {
        wallet.mint_url = u.clone();
    }
    if let Some(u) = &cmd.exchange {
        trade.exchange_url = u.clone();
    }
    if !cmd.relays.is_empty() {
        trade.relays = cmd.relays.clone();
    }
    if !cmd.sat_mints.is_empty() {
        trade.sat_mints = cmd.sat_mints.clone();
    }
    Settings { wallet, trade }
}

/// Run one trade action.
pub async fn run(file: FileConfig, cmd: TradeCmd) -> Result<()> {
    let s = settings(file, &cmd);
    match cmd.action {
        TradeAction::Offer(a) => offer(&s, a).await,
        TradeAction::List(a) => list(&s, a).await,
        TradeAction::Take(a) => take(&s, a).await,
        TradeAction::Cancel { id } => cancel(&s, &id).await,
        TradeAction::Status { trade } => status(&s, trade.as_deref()).await,
        TradeAction::Run => run_agent(&s).await,
    }
}

// ---------------------------------------------------------------------------------------------
// the exchange's HTTP API

async fn get_json<T: serde::de::DeserializeOwned>(exchange: &str, path: &str) -> Result<T> {
    let url = format!("{}{path}", exchange.trim_end_matches('/'));
    let resp = bitreq::get(url.as_str()).with_timeout(15).send_async().await.map_err(|e| {
        anyhow::anyhow!("cannot reach the exchange at {url}: {e}; is `ehash exchange` running there? (pass --exchange URL or set [trade].exchange_url)")
    })?;
    if resp.status_code != 200 {
        let body = resp.as_str().unwrap_or("").chars().take(200).collect::<String>();
        bail!("the exchange answered HTTP {} to {url}: {body}", resp.status_code);
    }
    resp.json::<T>().map_err(|e| anyhow::anyhow!("the exchange at {url} answered something unexpected: {e} (is that URL an ehash exchange?)"))
}

async fn markets(exchange: &str) -> Result<Vec<MarketSummary>> {
    get_json(exchange, "/api/markets").await
}

async fn book(exchange: &str, market: &str) -> Result<Book> {
    get_json(exchange, &format!("/api/markets/{market}/book")).await
}

// ---------------------------------------------------------------------------------------------
// the wallet and its agent

async fn open_agent(s: &Settings) -> Result<Agent> {
    let wallet = Arc::new(super::wallet::open(&s.wallet).await?);
    let info: ExchangeInfo = match get_json(&s.trade.exchange_url, "/api/info").await {
        Ok(info) => info,
        // trades in flight settle without the exchange: claims and refunds need only the mints
        Err(e) => match ehash_wallet::agent::known_exchange(&s.wallet.dir, &s.trade.exchange_url).await? {
            Some(info) => {
                eprintln!("warning: {e:#}; settling open trades with what the exchange said before");
                info
            }
            None => return Err(e),
        },
    };
    Agent::open_with(wallet, &s.wallet.dir, s.trade.clone(), info).await.context("opening the trade agent")
}

/// Relays the agent publishes to, as the outbox names them.
fn agent_relays(agent: &Agent, s: &Settings) -> Vec<String> {
    let relays = if s.trade.relays.is_empty() { agent.exchange().relays.clone() } else { s.trade.relays.clone() };
    relays.iter().filter_map(|r| nostr_sdk::prelude::RelayUrl::parse(r).ok()).map(|u| u.to_string()).collect()
}

/// Run the agent until the outbox slot `key` (an offer address) has reached every relay, or
/// `timeout`. Returns the relays it reached and the relays it has not.
async fn deliver(agent: &Agent, s: &Settings, key: &str, timeout: Duration) -> Result<(Vec<String>, Vec<String>)> {
    let relays = agent_relays(agent, s);
    let outbox = ehash_outbox::Outbox::open(Store::open(&s.wallet.dir).await?.pool()).await.context("reading the agent's outbox")?;
    let cancel = CancellationToken::new();
    let handle = agent.run(cancel.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut reached, mut missing);
    loop {
        (reached, missing) = (vec![], vec![]);
        for r in &relays {
            let pending = outbox.undelivered(r, 10_000).await.context("reading the agent's outbox")?;
            if pending.iter().any(|p| p.key == key) {
                missing.push(r.clone());
            } else {
                reached.push(r.clone());
            }
        }
        if missing.is_empty() || tokio::time::Instant::now() >= deadline || handle.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // let messages queued alongside (e.g. a deletion) go out too
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    let _ = handle.await;
    Ok((reached, missing))
}

fn report_delivery(reached: &[String], missing: &[String]) {
    if missing.is_empty() {
        println!("published to {}", reached.join(", "));
    } else if reached.is_empty() {
        println!(
            "NOT published yet: no relay accepted it ({}); it is queued and goes out whenever the agent runs (`ehash trade run`)",
            missing.join(", ")
        );
    } else {
        println!("published to {}; not yet to {} (retried whenever the agent runs)", reached.join(", "), missing.join(", "));
    }
}

/// How one of my trades reads.
fn describe(t: &TradeRecord) -> String {
    let verb = match t.role {
        Side::Sell => "selling",
        Side::Buy => "buying",
    };
    format!("{verb} {} {} for {} sat at {}", t.terms.amount, t.terms.unit, t.terms.sats, t.terms.sat_mint)
}

fn step_line(t: &TradeRecord, first: bool) -> String {
    let note = t.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
    if first {
        format!("trade {}: {}: {}{note}", t.id, describe(t), t.step.as_str())
    } else {
        format!("trade {}: {}{note}", t.id, t.step.as_str())
    }
}

/// What the waiting loop waits for.
enum Until<'a> {
    /// Ctrl-C.
    Stopped,
    /// This offer is no longer open and every trade of it is final.
    OfferDone(&'a str),
}

/// Run the agent, printing every step of the trades concerned, until `until` or Ctrl-C.
/// Returns whether `until` was reached.
async fn run_until(agent: &Agent, until: Until<'_>) -> Result<bool> {
    let offer_d = match until {
        Until::OfferDone(d) => Some(d),
        Until::Stopped => None,
    };
    let concerns = |t: &TradeRecord| offer_d.is_none_or(|d| t.offer_d == d);
    let mut seen: HashMap<String, Step> = HashMap::new();
    for t in agent.trades().await? {
        // trades finished before this run are not news
        if t.step.is_final() || !concerns(&t) {
            seen.insert(t.id.clone(), t.step.clone());
        }
    }
    let cancel = CancellationToken::new();
    let handle = agent.run(cancel.clone());
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut done_since: Option<tokio::time::Instant> = None;
    let reached = loop {
        tokio::select! {
            _ = &mut shutdown => break false,
            _ = tick.tick() => {}
        }
        if handle.is_finished() {
            bail!("the trade agent stopped; see the log above");
        }
        let trades = match agent.trades().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "reading trades");
                continue;
            }
        };
        for t in trades.iter().filter(|t| concerns(t)) {
            let before = seen.get(&t.id);
            if before != Some(&t.step) {
                println!("{}", step_line(t, before.is_none()));
                seen.insert(t.id.clone(), t.step.clone());
            }
        }
        let Some(d) = offer_d else { continue };
        let open = match agent.offers().await {
            Ok(offers) => offers.into_iter().any(|o| o.offer.d == d && o.open),
            Err(e) => {
                tracing::warn!(error = %e, "reading offers");
                continue;
            }
        };
        let finished = !open && trades.iter().filter(|t| t.offer_d == d).all(|t| t.step.is_final());
        // a trade matched just before the offer closed may still be on its way: wait a moment
        done_since = if finished { done_since.or(Some(tokio::time::Instant::now())) } else { None };
        if done_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(3)) {
            break true;
        }
    };
    cancel.cancel();
    let _ = handle.await;
    Ok(reached)
}

/// Sum up an offer's trades once it is over.
async fn summary(agent: &Agent, d: &str) -> Result<()> {
    let trades: Vec<TradeRecord> = agent.trades().await?.into_iter().filter(|t| t.offer_d == d).collect();
    let settled: Vec<&TradeRecord> = trades.iter().filter(|t| t.step == Step::Settled).collect();
    let amount: u64 = settled.iter().map(|t| t.terms.amount).sum();
    let sats: u64 = settled.iter().map(|t| t.terms.sats).sum();
    let others = trades.len() - settled.len();
    let verb = match agent.offers().await?.into_iter().find(|o| o.offer.d == d).map(|o| o.offer.side) {
        Some(Side::Buy) => "bought",
        _ => "sold",
    };
    println!(
        "offer {d} is over: {verb} {amount} ehash for {sats} sat in {} trade(s){}",
        settled.len(),
        if others > 0 { format!("; {others} trade(s) failed or refunded (ehash trade status)") } else { String::new() }
    );
    Ok(())
}

async fn wait_or_return(agent: &Agent, s: &Settings, record: &OfferRecord, no_wait: bool) -> Result<()> {
    let address = format!("{}:{}:{}", ehash_protocol::events::KIND_OFFER, record.pubkey, record.d);
    if no_wait {
        let (reached, missing) = deliver(agent, s, &address, Duration::from_secs(20)).await?;
        report_delivery(&reached, &missing);
        println!("its trades settle only while the trade agent runs: ehash trade run");
        return Ok(());
    }
    println!("running the trade agent until the offer is over; Ctrl-C stops waiting");
    if run_until(agent, Until::OfferDone(&record.d)).await? {
        summary(agent, &record.d).await
    } else {
        let unfinished = agent.trades().await?.iter().filter(|t| t.offer_d == record.d && !t.step.is_final()).count();
        let open = agent.offers().await?.into_iter().any(|o| o.offer.d == record.d && o.open);
        println!("stopped waiting.");
        if open {
            println!("the offer stays open; it expires {} (or: ehash trade cancel {})", when(record.expiration), record.d);
        }
        if unfinished > 0 || open {
            println!("its trades settle only while the trade agent runs: ehash trade run");
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// actions

async fn offer(s: &Settings, a: OfferArgs) -> Result<()> {
    EpochUnit::parse(&a.unit).map_err(|e| anyhow::anyhow!("--unit: {e}, e.g. hash_3f9a1c2e_7"))?;
    let agent = open_agent(s).await?;
    let lot = agent.exchange().lot;
    check_lots("--amount", a.amount, lot)?;
    if let Some(min) = a.min {
        check_lots("--min", min, lot)?;
    }
    let side = Side::from(a.side);
    let record = agent
        .place_offer(OfferRequest {
            side,
            unit: a.unit.clone(),
            amount: a.amount,
            min: a.min,
            sats_per_lot: a.price,
            sat_mints: vec![],
            ttl_secs: a.ttl,
        })
        .await
        .with_context(|| format!("placing the {side} offer"))?;
    print_offer(&record)?;
    wait_or_return(&agent, s, &record, a.no_wait).await
}

fn check_lots(flag: &str, n: u64, lot: u64) -> Result<()> {
    if n == 0 || !n.is_multiple_of(lot) {
        let below = whole_lots(n, lot);
        let hint = if below == 0 { format!("use {lot} or a multiple") } else { format!("use {below} or {}", below.saturating_add(lot)) };
        bail!("{flag} {n} is not a whole number of the exchange's lot of {lot} ehash; {hint}");
    }
    Ok(())
}

fn print_offer(r: &OfferRecord) -> Result<()> {
    let sats = r.price.sats_for(r.amount).context("the offer's sats total")?;
    println!("offer    {}", r.d);
    println!("address  {}:{}:{}", ehash_protocol::events::KIND_OFFER, r.pubkey, r.d);
    match r.side {
        Side::Sell => println!("sells    {} {} for {sats} sat if filled entirely ({})", r.amount, r.unit, r.price),
        Side::Buy => println!("buys     {} {} for {sats} sat if filled entirely ({})", r.amount, r.unit, r.price),
    }
    println!("min fill {} ehash", r.min);
    println!("sat mint {}", r.sat_mints.join(", "));
    println!("expires  {}", when(r.expiration));
    Ok(())
}

async fn list(s: &Settings, a: ListArgs) -> Result<()> {
    let exchange = &s.trade.exchange_url;
    let all = markets(exchange).await?;
    let chosen: Vec<&MarketSummary> = all
        .iter()
        .filter(|m| a.market.as_ref().is_none_or(|k| m.market.eq_ignore_ascii_case(k)))
        .filter(|m| a.unit.as_ref().is_none_or(|u| m.unit.eq_ignore_ascii_case(u)))
        .collect();
    if chosen.is_empty() {
        let names: Vec<String> = all.iter().map(|m| format!("{} ({})", m.market, m.unit)).collect();
        match (&a.market, &a.unit) {
            (Some(k), _) => bail!("the exchange at {exchange} has no market {k}; it has: {}", or_none(&names)),
            (_, Some(u)) => bail!("the exchange at {exchange} has no market for {u}; it has: {}", or_none(&names)),
            _ => {
                println!("the exchange at {exchange} has no markets yet");
                return Ok(());
            }
        }
    }
    for (i, m) in chosen.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let b = book(exchange, &m.market).await?;
        let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "market {}  {}  epoch {} {}{}  mint {}",
            m.market,
            m.unit,
            m.epoch,
            m.state,
            m.issued.map(|n| format!(" (issued {n})")).unwrap_or_default(),
            m.mint_url
        );
        println!(
            "  lot {} ehash; prices in sats per lot: bid {} ask {} last {}; 24h volume {} ehash",
            m.lot,
            opt(m.bid),
            opt(m.ask),
            opt(m.last),
            m.volume_24h
        );
        if b.asks.is_empty() && b.bids.is_empty() {
            println!("  no resting offers");
            continue;
        }
        println!("  {:<4} {:>10} {:>14} {:>14}  {:<11} {:<88} sat mints", "side", "sats/lot", "remaining", "min", "expires", "address");
        // asks from the highest down to the best, then bids from the best down: the spread in the middle
        for e in b.asks.iter().rev().chain(b.bids.iter()) {
            println!(
                "  {:<4} {:>10} {:>14} {:>14}  {:<11} {:<88} {}",
                e.side.as_str(),
                e.price,
                e.remaining,
                e.min,
                when(e.expiration),
                e.address,
                e.sat_mints.join(" ")
            );
        }
    }
    Ok(())
}

fn or_none(names: &[String]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

/// Find a resting offer by address or event id in every market of the exchange.
async fn find_offer(exchange: &str, wanted: &str) -> Result<(MarketSummary, u64, BookEntry)> {
    let wanted = wanted.trim();
    let is_address = wanted.starts_with(&format!("{}:", ehash_protocol::events::KIND_OFFER));
    let is_id = wanted.len() == 64 && wanted.chars().all(|c| c.is_ascii_hexdigit());
    if !is_address && !is_id {
        bail!("{wanted:?} is neither an offer address (38190:<pubkey>:<d>) nor an event id (64 hex); copy one from `ehash trade list`");
    }
    for m in markets(exchange).await? {
        let b = book(exchange, &m.market).await?;
        let found = b.asks.into_iter().chain(b.bids).find(|e| {
            if is_address { e.address.eq_ignore_ascii_case(wanted) } else { e.event_id.eq_ignore_ascii_case(wanted) }
        });
        if let Some(e) = found {
            return Ok((m, b.lot, e));
        }
    }
    bail!("no offer {wanted} rests in any book of the exchange at {exchange}: it was filled, cancelled or expired, or never booked (see `ehash trade list`)")
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/'))
}

async fn take(s: &Settings, a: TakeArgs) -> Result<()> {
    let exchange = &s.trade.exchange_url;
    let (market, lot, entry) = find_offer(exchange, &a.offer).await?;
    if entry.remaining == 0 {
        bail!("nothing to take: offer {} has no ehash left", entry.address);
    }
    let agent = open_agent(s).await?;
    if agent.exchange().lot != lot {
        bail!("the exchange's book uses a lot of {lot} but its /api/info says {}; try again", agent.exchange().lot);
    }
    let wallet = agent.wallet().clone();
    if !same_url(&market.mint_url, &wallet.mint_url()) {
        bail!(
            "the offer is in a market of the pool mint {}, but this wallet is for {}; use --mint-url {} (a wallet holds one pool's ehash)",
            market.mint_url,
            wallet.mint_url(),
            market.mint_url
        );
    }
    if agent.offers().await?.iter().any(|o| o.offer.pubkey.eq_ignore_ascii_case(&entry.pubkey)) {
        bail!("offer {} is your own; cancel it with `ehash trade cancel` instead", entry.address);
    }
    // the trade's sat mint is the first of the resting offer's that we trust: never one named
    // only by the counterparty (its mint could print the sats it pays with)
    if s.trade.sat_mints.is_empty() {
        bail!(
            "the offer settles at the sat mint {}, and this wallet trusts no sat mint yet; if you trust it, pass --sat-mint URL or add it to [trade].sat_mints",
            or_none(&entry.sat_mints)
        );
    }
    let sat_mints: Vec<String> = entry.sat_mints.iter().filter(|m| s.trade.sat_mints.iter().any(|o| same_url(o, m))).cloned().collect();
    let Some(sat_mint) = sat_mints.first().cloned() else {
        bail!(
            "the offer accepts the sat mints {} and you trust {}; if you trust one of the offer's, pass --sat-mint URL or add it to [trade].sat_mints",
            or_none(&entry.sat_mints),
            s.trade.sat_mints.join(", ")
        );
    };
    let side = entry.side.opposite();
    let price = Price::new(entry.price, lot).context("the offer's price")?;
    // what this wallet holds, and how much of the offer that pays for or delivers (whole lots)
    let (have, affordable) = match side {
        Side::Buy => {
            let have = wallet.balance_at(&sat_mint, "sat").await.with_context(|| format!("reading your sats at {sat_mint}"))?;
            (have, (have / entry.price).saturating_mul(lot))
        }
        Side::Sell => {
            let have = wallet.balance_at(&wallet.mint_url(), &market.unit).await.with_context(|| format!("reading your {}", market.unit))?;
            (have, whole_lots(have, lot))
        }
    };
    let insufficient = |amount: u64| -> anyhow::Error {
        match side {
            Side::Buy => anyhow::anyhow!(
                "insufficient balance: {amount} {} costs {} sat and you hold {have} sat at {sat_mint}; deposit with `ehash wallet deposit --sat-mint {sat_mint} AMOUNT`",
                market.unit,
                u128::from(amount / lot) * u128::from(entry.price)
            ),
            Side::Sell => anyhow::anyhow!("insufficient balance: you hold {have} {}, and {amount} is needed", market.unit),
        }
    };
    let least = entry.min.min(entry.remaining);
    let amount = match a.amount {
        Some(n) => {
            check_lots("--amount", n, lot)?;
            if n > entry.remaining {
                bail!("--amount {n} is more than the {} ehash left of the offer", entry.remaining);
            }
            if n > affordable {
                return Err(insufficient(n));
            }
            n
        }
        None => match entry.remaining.min(affordable) {
            0 => return Err(insufficient(least.max(lot))),
            n => n,
        },
    };
    if amount < least {
        bail!(
            "{amount} ehash is below the offer's minimum fill of {least} ehash{}",
            if a.amount.is_none() { " (all this wallet can pay or deliver)" } else { "" }
        );
    }
    let sats = price.sats_for(amount)?;
    let verb = match side {
        Side::Buy => "buying",
        Side::Sell => "selling",
    };
    println!("taking {}: {verb} {amount} {} for {sats} sat ({price}) at {sat_mint}", entry.address, market.unit);
    let record = agent
        .place_offer(OfferRequest {
            side,
            unit: market.unit.clone(),
            amount,
            min: None,
            sats_per_lot: entry.price,
            sat_mints,
            ttl_secs: Some(a.ttl),
        })
        .await
        .with_context(|| format!("placing the {side} offer that takes {}", entry.address))?;
    print_offer(&record)?;
    wait_or_return(&agent, s, &record, a.no_wait).await
}

async fn cancel(s: &Settings, id: &str) -> Result<()> {
    let id = id.trim();
    let known = match store(&s.wallet.dir).await? {
        Some(st) => st.offer(id).await?,
        None => None,
    };
    match known {
        None => bail!("no offer {id} in the wallet in {}; `ehash trade status` lists your offers", s.wallet.dir.display()),
        Some(o) if o.canceled => bail!("offer {id} is already cancelled"),
        Some(_) => {}
    }
    let agent = open_agent(s).await?;
    let record = agent.cancel_offer(id).await.with_context(|| format!("cancelling offer {id}"))?;
    println!("cancelled offer {} (fills already made stand; their trades still settle)", record.d);
    let address = format!("{}:{}:{}", ehash_protocol::events::KIND_OFFER, record.pubkey, record.d);
    let (reached, missing) = deliver(&agent, s, &address, Duration::from_secs(20)).await?;
    report_delivery(&reached, &missing);
    Ok(())
}

/// The agent's database, read-only use (`None` if this wallet never traded).
async fn store(dir: &Path) -> Result<Option<Store>> {
    if !dir.join("agent.sqlite").exists() {
        return Ok(None);
    }
    Ok(Some(Store::open(dir).await?))
}

async fn status(s: &Settings, trade: Option<&str>) -> Result<()> {
    let dir = &s.wallet.dir;
    let Some(store) = store(dir).await? else {
        if let Some(id) = trade {
            bail!("no trade {id}: the wallet in {} has never traded", dir.display());
        }
        println!("no offers or trades yet in {} (ehash trade offer / take)", dir.display());
        return Ok(());
    };
    if let Some(id) = trade {
        let trades = store.trades(false).await?;
        let id = id.trim().to_ascii_lowercase();
        let found: Vec<&TradeRecord> = trades.iter().filter(|t| t.id == id || t.id.starts_with(&id)).collect();
        let t = match found.as_slice() {
            [t] => *t,
            [] => bail!("no trade {id} in {} (ehash trade status lists them)", dir.display()),
            _ if found.iter().any(|t| t.id == id) => found.iter().copied().find(|t| t.id == id).context("trade")?,
            _ => bail!("{id} is the start of {} trade ids; give more of it", found.len()),
        };
        let offer = store.offer(&t.offer_d).await?;
        return print_trade(t, offer.as_ref());
    }
    let offers = store.offer_states().await?;
    if offers.is_empty() {
        println!("no offers");
    } else {
        println!("offers");
        println!("  {:<16} {:<4} {:<22} {:>14} {:>14} {:>10}  {:<8} expires", "id", "side", "unit", "amount", "remaining", "sats/lot", "state");
        for o in &offers {
            let state = if o.open {
                "open"
            } else if o.offer.canceled {
                "canceled"
            } else if o.remaining == 0 {
                "filled"
            } else {
                "expired"
            };
            println!(
                "  {:<16} {:<4} {:<22} {:>14} {:>14} {:>10}  {:<8} {}",
                o.offer.d,
                o.offer.side.as_str(),
                o.offer.unit,
                o.offer.amount,
                o.remaining,
                o.offer.price.sats_per_lot,
                state,
                when(o.offer.expiration)
            );
        }
    }
    let trades = store.trades(false).await?;
    if trades.is_empty() {
        println!("no trades");
    } else {
        println!("trades");
        println!("  {:<32} {:<4} {:<12} {:>14} {:>12}  note", "id", "role", "step", "amount", "sats");
        for t in &trades {
            println!(
                "  {:<32} {:<4} {:<12} {:>14} {:>12}  {}",
                t.id,
                t.role.as_str(),
                t.step.as_str(),
                t.terms.amount,
                t.terms.sats,
                t.note.as_deref().unwrap_or("")
            );
        }
        if trades.iter().any(|t| !t.step.is_final()) {
            println!("unfinished trades move only while the trade agent runs (ehash trade run)");
        }
    }
    Ok(())
}

fn print_trade(t: &TradeRecord, offer: Option<&OfferRecord>) -> Result<()> {
    let lock_sum = |l: &ehash_wallet::agent::record::Lock| l.proofs.iter().map(|p| p.amount.to_u64()).sum::<u64>();
    println!("trade        {}", t.id);
    println!("step         {}{}", t.step.as_str(), if t.step.is_final() { " (final)" } else { "" });
    println!("role         {} ({})", t.role.as_str(), describe(t));
    println!("offer        {}{}", t.offer_d, offer.map(|o| format!(" ({} {} at {})", o.side, o.unit, o.price)).unwrap_or_default());
    println!("market       {} at {}", t.terms.market, t.terms.mint_url);
    println!("sat mint     {}", t.terms.sat_mint);
    println!("counterparty {}", t.terms.counterparty);
    println!("exchange     {}", t.terms.exchange);
    let times = &t.terms.times;
    println!("seller locks by {}; buyer locks by {}", when(times.seller_lock_by), when(times.buyer_lock_by));
    println!("ehash lock refundable {}; sats lock refundable {}", when(times.ehash_locktime), when(times.sats_locktime));
    if let Some(h) = &t.hash {
        println!("hash         {h}");
    }
    println!("preimage     {}", if t.preimage.is_some() { "known" } else { "not known" });
    match &t.my_lock {
        Some(l) => println!("my lock      {} in {} proofs", lock_sum(l), l.proofs.len()),
        None => println!("my lock      none"),
    }
    match (&t.their_lock, &t.their_token) {
        (Some(l), _) => println!("their lock   {} in {} proofs (verified)", lock_sum(l), l.proofs.len()),
        (None, Some(_)) => println!("their lock   received, not verified yet"),
        (None, None) => println!("their lock   none"),
    }
    if let Some(r) = &t.their_abort {
        println!("they aborted {r}");
    }
    if let Some(p) = &t.pending {
        println!("in flight    a swap at {} ({}), resent on the next run", p.mint_url, p.unit);
    }
    if let Some(n) = &t.note {
        println!("note         {n}");
    }
    println!("updated      {}", when(t.updated_at));
    Ok(())
}

async fn run_agent(s: &Settings) -> Result<()> {
    let agent = open_agent(s).await?;
    let open_offers = agent.offers().await?.iter().filter(|o| o.open).count();
    let unfinished = agent.trades().await?.iter().filter(|t| !t.step.is_final()).count();
    println!(
        "trade agent on the exchange at {} ({}), relays {}",
        s.trade.exchange_url,
        agent.exchange().pubkey,
        agent_relays(&agent, s).join(", ")
    );
    println!("{open_offers} open offer(s), {unfinished} unfinished trade(s); Ctrl-C stops (trades resume on the next run)");
    run_until(&agent, Until::Stopped).await?;
    let unfinished = agent.trades().await?.iter().filter(|t| !t.step.is_final()).count();
    if unfinished > 0 {
        println!("stopped with {unfinished} unfinished trade(s); run `ehash trade run` again before their deadlines");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// time

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn span(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// A unix time relative to now: `in 3h05m` or `12m00s ago`.
fn when(t: u64) -> String {
    let now = now();
    if t >= now { format!("in {}", span(t - now)) } else { format!("{} ago", span(now - t)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_well() {
        assert_eq!(span(5), "5s");
        assert_eq!(span(125), "2m05s");
        assert_eq!(span(3 * 3600 + 5 * 60), "3h05m");
        assert_eq!(span(2 * 86400 + 3600), "2d01h");
    }

    #[test]
    fn lots_are_checked() {
        assert!(check_lots("--amount", 2000, 1000).is_ok());
        let e = check_lots("--amount", 1500, 1000).unwrap_err().to_string();
        assert!(e.contains("use 1000 or 2000"), "{e}");
        assert!(check_lots("--amount", 0, 1000).is_err());
    }
}
