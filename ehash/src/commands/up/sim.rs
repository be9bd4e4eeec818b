//! The simulated seller (the miner's wallet) and buyer (its own wallet) of `ehash up`, trading
//! on the local exchange so a newcomer watches offers match and swaps settle.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use ehash_protocol::api::{Book, MarketSummary};
use ehash_protocol::market::{ExchangeInfo, Side};
use ehash_wallet::agent::record::{Step, TradeRecord};
use ehash_wallet::agent::{Agent, OfferRequest, TradeConfig};
use ehash_wallet::{DepositOutcome, MinerWallet, seed};
use tokio_util::sync::CancellationToken;

use super::{Out, UP_WINDOWS, get_json};
use crate::config::UpConfig;

/// What the status line shows of the simulated traders' trades.
#[derive(Debug, Default)]
pub(super) struct SimStats {
    pub(super) settled: AtomicU64,
    pub(super) open: AtomicU64,
    pub(super) failed: AtomicU64,
}

/// What the simulation needs from the running services.
pub(super) struct SimSetup {
    pub(super) root: std::path::PathBuf,
    pub(super) mint_url: String,
    pub(super) sat_mint: String,
    pub(super) relay: String,
    pub(super) exchange_url: String,
    pub(super) exchange: ExchangeInfo,
    pub(super) up: UpConfig,
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

/// Run the simulated traders until `cancel`.
pub(super) async fn simulate(setup: SimSetup, stats: Arc<SimStats>, out: Out, cancel: CancellationToken) {
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
        match self.sell().await {
            Ok(()) => self.ok("the simulated seller could not offer"),
            Err(e) => self.warn("the simulated seller could not offer", &e),
        }
        if self.buyer.is_none() {
            return;
        }
        // read after the seller's offers, so the buyer can bid for them in the same round
        let Some(markets) = self.markets().await else { return };
        match self.buy(&markets).await {
            Ok(()) => self.ok("the simulated buyer could not bid"),
            Err(e) => self.warn("the simulated buyer could not bid", &e),
        }
    }

    /// The exchange's markets of the local pool that still trade (`None`, warned, when the
    /// exchange does not answer).
    async fn markets(&mut self) -> Option<Vec<MarketSummary>> {
        let markets = match get_json::<Vec<MarketSummary>>(&self.setup.exchange_url, "/api/markets").await {
            Ok(m) => m,
            Err(e) => {
                self.warn("the simulated traders cannot read the exchange's markets", &e);
                return None;
            }
        };
        self.ok("the simulated traders cannot read the exchange's markets");
        Some(markets.into_iter().filter(|m| !m.state.has_ended() && same_url(&m.mint_url, &self.setup.mint_url)).collect())
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
