//! The running exchange: intake of offers, deletions and epoch announcements; the books; the
//! trades they make; recovery after a restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ehash_outbox::Outbox;
use ehash_outbox::watch::watch;
use ehash_protocol::api::{JournalEntry, JournalKind, TradeView};
use ehash_protocol::events::{
    Blame, EpochAnnouncement, KIND_EPOCH_ANNOUNCEMENT, KIND_OFFER, KIND_SETTLEMENT, KIND_TRADE, LockStatus, OfferRef, OfferStatus, Trade,
    TradeState,
};
use ehash_protocol::market::{ExchangeInfo, SettlementTimes};
use nostr_sdk::prelude::*;
use serde::Serialize;
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;

use crate::book::{Book, Fill, OfferVersion, Refusal};
use crate::reach;
use crate::store::{Settlement, Store};
use crate::{Config, Error, Result};

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    Timestamp::now().as_secs()
}

/// Offers kept waiting for their market's announcement.
const MAX_PARKED: usize = 10_000;
/// How long after catching up with the relays the messages read are taken as handled (each is
/// handled in a task of its own).
const CATCH_UP_SETTLE: Duration = Duration::from_secs(2);

/// How far the exchange has read the relays. Deadlines are judged only while it is caught up,
/// and a message's own date is believed only for messages that may have waited on a relay while
/// the exchange could not read it.
#[derive(Debug)]
pub(crate) struct Reading {
    /// Since when the relays' stored events are read (`None`: behind, while starting or while
    /// no relay is connected).
    caught_up_at: Option<std::time::Instant>,
    /// When it last stopped reading (unix seconds; 0 at the start: unknown).
    behind_since: u64,
    /// Since when no event read from the relays waits to be taken up (`None`: some do).
    drained_at: Option<std::time::Instant>,
}

impl Reading {
    fn new() -> Self {
        Self { caught_up_at: None, behind_since: 0, drained_at: Some(std::time::Instant::now()) }
    }

    /// Whether deadlines may be judged: caught up, every event read taken up, and a moment
    /// given to the tasks writing settlement messages down (a lock message still queued, say
    /// behind a long history of offers, may be the one a deadline asks about).
    pub(crate) fn caught_up(&self) -> bool {
        let settled = |at: Option<std::time::Instant>| at.is_some_and(|at| at.elapsed() >= CATCH_UP_SETTLE);
        settled(self.caught_up_at) && settled(self.drained_at)
    }

    /// Note whether events wait to be taken up.
    fn backlog(&mut self, waiting: bool) {
        match (waiting, self.drained_at.is_some()) {
            (true, true) => self.drained_at = None,
            (false, false) => self.drained_at = Some(std::time::Instant::now()),
            _ => {}
        }
    }

    /// The time a message dated `sent` counts as received: its arrival (`now`), except for one
    /// read while the exchange is behind or just after it caught up (the stored messages it
    /// fetched then), dated before that, which may have waited on a relay: its date, but never
    /// before `floor` (the trade's start), before the exchange stopped reading, nor after now.
    /// A message arriving live later counts at its arrival whatever its date.
    pub(crate) fn received(&self, sent: u64, floor: u64, now: u64) -> u64 {
        let catching_up = self.caught_up_at.is_none_or(|at| at.elapsed() < CATCH_UP_SETTLE * 2);
        if catching_up { sent.max(self.behind_since).max(floor).min(now) } else { now }
    }

    fn set(&mut self, caught_up: bool) {
        match (caught_up, self.caught_up_at.is_some()) {
            (true, false) => self.caught_up_at = Some(std::time::Instant::now()),
            (false, true) => {
                self.caught_up_at = None;
                self.behind_since = now();
            }
            _ => {}
        }
    }
}

/// Refusals remembered for the API.
const MAX_REFUSALS: usize = 1_000;

/// An epoch the exchange knows.
#[derive(Debug, Clone)]
pub(crate) struct Epoch {
    pub announcement: EpochAnnouncement,
    pub pool: PublicKey,
    pub event: Event,
}

/// A trade and its settlement record.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub trade: Trade,
    pub event: Event,
    pub s: Settlement,
}

impl Live {
    pub fn view(&self) -> TradeView {
        TradeView {
            id: self.trade.id.clone(),
            market: self.trade.market.clone(),
            amount: self.trade.amount,
            sats: self.trade.sats,
            price: self.trade.price.sats_per_lot,
            maker_side: self.trade.maker_side,
            state: self.trade.state,
            reason: self.trade.reason.clone(),
            blame: self.trade.blame.map(|b| b.as_str().to_owned()),
            matched_at: self.s.matched_at,
            event: serde_json::to_value(&self.event).unwrap_or_default(),
        }
    }
}

/// An offer or deletion the exchange did not book, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    /// The event.
    pub event_id: String,
    /// The offer address, if known.
    pub address: Option<String>,
    /// Why.
    pub reason: String,
    /// When (unix seconds).
    pub at: u64,
}

#[derive(Default)]
pub(crate) struct State {
    pub epochs: HashMap<String, Epoch>,
    pub books: HashMap<String, Book>,
    pub trades: HashMap<String, Live>,
    pub refusals: VecDeque<Refused>,
    parked: Vec<Event>,
    /// Trades whose failure is in the journal.
    failed_journaled: HashSet<String>,
}

pub(crate) struct Inner {
    pub config: Config,
    pub keys: Keys,
    pub store: Store,
    pub outbox: Outbox,
    pub info: ExchangeInfo,
    pub state: Mutex<State>,
    pub updates: broadcast::Sender<String>,
    pub mints: crate::settle::Mints,
    /// Pools whose epochs are traded (empty: any).
    pub pools: Vec<PublicKey>,
    /// How far the relays are read.
    pub reading: std::sync::Mutex<Reading>,
}

/// A running exchange.
pub struct Exchange {
    inner: Arc<Inner>,
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").field("addr", &self.addr).field("pubkey", &self.inner.info.pubkey).finish_non_exhaustive()
    }
}

impl Exchange {
    /// Open the store, rebuild the books from the journal, and start watching the relays and
    /// serving the API.
    pub async fn start(config: Config) -> Result<Self> {
        if config.lot == 0 {
            return Err(Error::Config("lot must be at least 1".into()));
        }
        if config.relays.is_empty() {
            return Err(Error::Config("name at least one relay ([exchange].relays or --relay)".into()));
        }
        if config.lock_secs == 0 || config.claim_secs == 0 || config.margin_secs == 0 {
            return Err(Error::Config("lock_secs, claim_secs and margin_secs must be positive".into()));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::Config(format!("data_dir {}: {e}", config.data_dir.display())))?;
        let keys = ehash_keyfile::load_or_create_nostr_keys(&config.data_dir, config.nostr_secret_key.as_deref())?;
        let pools = config
            .pools
            .iter()
            .map(|p| PublicKey::parse(p).map_err(|e| Error::Config(format!("pools: {p:?} is not a nostr public key ({e})"))))
            .collect::<Result<Vec<_>>>()?;
        let store = Store::open(config.database_url.as_deref(), &config.data_dir).await?;
        store.check_lot(config.lot).await?;
        let outbox = Outbox::open(store.pool()).await?;
        let info = ExchangeInfo {
            pubkey: keys.public_key().to_hex(),
            lot: config.lot,
            relays: config.relays.clone(),
            lock_secs: config.lock_secs,
            claim_secs: config.claim_secs,
            margin_secs: config.margin_secs,
            max_clock_skew_secs: config.max_clock_skew_secs,
        };
        let (updates, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            config: config.clone(),
            keys,
            store,
            outbox,
            info,
            state: Mutex::new(State::default()),
            updates,
            mints: crate::settle::Mints::new(config.private_mints),
            pools,
            reading: std::sync::Mutex::new(Reading::new()),
        });
        inner.recover().await?;
        let cancel = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|source| Error::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: config.listen, source })?;
        let mut tasks = vec![inner.outbox.spawn_delivery(config.relays.clone(), cancel.clone())];
        let router = crate::api::router(inner.clone());
        let c = cancel.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { c.cancelled().await })
                .await
            {
                tracing::error!(error = %e, "exchange API stopped");
            }
        }));
        tasks.push(tokio::spawn(run(inner.clone(), cancel.clone())));
        tasks.push(tokio::spawn(watch_settlements(inner.clone(), cancel.clone())));
        tracing::info!(%addr, pubkey = %inner.info.pubkey, "exchange started");
        Ok(Self { inner, addr, cancel, tasks })
    }

    /// The API address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the exchange says about itself.
    pub fn info(&self) -> &ExchangeInfo {
        &self.inner.info
    }

    /// Handle an event as if it had been read from a relay: for events a relay no longer serves
    /// (an older version of an addressable event) and for tests.
    pub async fn handle(&self, ev: Event) {
        self.inner.handle(ev).await;
    }

    /// Stop everything.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.inner.store.pool().close().await;
    }
}

/// Watch the relays and drive settlements until `cancel`.
async fn run(inner: Arc<Inner>, cancel: CancellationToken) {
    let me = inner.keys.public_key();
    let mut pools = Filter::new().kind(Kind::Custom(KIND_EPOCH_ANNOUNCEMENT));
    if !inner.pools.is_empty() {
        pools = pools.authors(inner.pools.clone());
    }
    let filters = vec![
        pools,
        Filter::new().kind(Kind::Custom(KIND_OFFER)).pubkey(me),
        Filter::new().kind(Kind::EventDeletion).custom_tag(SingleLetterTag::from_char('k').expect("k is a single-letter tag"), KIND_OFFER.to_string()),
        Filter::new().kind(Kind::Custom(KIND_SETTLEMENT)).pubkey(me),
    ];
    let (watcher, mut events) = watch(inner.config.relays.clone(), filters, Duration::from_secs(15), cancel.clone());
    {
        // caught up or behind, as it changes (a relay outage makes it behind again)
        let (inner, mut changes) = (inner.clone(), watcher.caught_up_changes());
        tokio::spawn(async move {
            loop {
                let now_caught_up = *changes.borrow_and_update();
                inner.reading().set(now_caught_up);
                if changes.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    let period = Duration::from_secs(inner.config.poll_secs.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            ev = events.recv() => match ev {
                // a settlement message or an epoch announcement may make the exchange ask a
                // mint: handled beside the loop, so a mint that stalls never holds up offers
                Some(ev) if matches!(ev.kind.as_u16(), KIND_SETTLEMENT | KIND_EPOCH_ANNOUNCEMENT) => {
                    let (inner, cancel) = (inner.clone(), cancel.clone());
                    inner.reading().backlog(!events.is_empty());
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = inner.handle(ev) => {}
                        }
                    });
                }
                Some(ev) => {
                    inner.reading().backlog(!events.is_empty());
                    inner.handle(ev).await;
                    inner.reading().backlog(!events.is_empty());
                }
                None => break,
            },
            _ = tick.tick() => inner.sweep_all().await,
        }
    }
}

/// Watch the trades being settled until `cancel`: deadlines and mint checks, every
/// `poll_secs`. Deadlines are enforced only while the relays are read (see [`Reading`]).
async fn watch_settlements(inner: Arc<Inner>, cancel: CancellationToken) {
    let period = Duration::from_secs(inner.config.poll_secs.max(1));
    let inner = &inner;
    ehash_outbox::rounds::every(tokio::time::Instant::now(), period, cancel, || inner.watch_settlements()).await;
}

impl Inner {
    /// How far the relays are read.
    pub(crate) fn reading(&self) -> std::sync::MutexGuard<'_, Reading> {
        self.reading.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handle one event from the relays.
    pub(crate) async fn handle(&self, ev: Event) {
        let r = match ev.kind.as_u16() {
            KIND_EPOCH_ANNOUNCEMENT => self.on_epoch(&ev).await,
            KIND_OFFER => self.on_offer(&ev).await,
            5 => self.on_deletion(&ev).await,
            KIND_SETTLEMENT => self.on_message(&ev).await,
            _ => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!(event = %ev.id, error = %e, "handling an event");
        }
    }

    fn refuse(&self, st: &mut State, ev: &Event, address: Option<String>, reason: String) {
        tracing::info!(event = %ev.id, address = address.as_deref().unwrap_or(""), %reason, "offer refused");
        st.refusals.push_back(Refused { event_id: ev.id.to_hex(), address, reason, at: now() });
        while st.refusals.len() > MAX_REFUSALS {
            st.refusals.pop_front();
        }
    }

    pub(crate) fn notify(&self, kind: &str, market: &str, body: impl Serialize) {
        let msg = serde_json::json!({"type": kind, "market": market, "data": body});
        let _ = self.updates.send(msg.to_string());
    }

    async fn on_epoch(&self, ev: &Event) -> Result<()> {
        if ev.verify().is_err() {
            return Ok(());
        }
        if !self.pools.is_empty() && !self.pools.contains(&ev.pubkey) {
            return Ok(());
        }
        let a = match EpochAnnouncement::parse(ev) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(event = %ev.id, error = %e, "ignoring a malformed epoch announcement");
                return Ok(());
            }
        };
        let market = a.keyset.id.to_string();
        // with no pools configured, a market belongs to the key its keyset names (the owner
        // proof, checked by `parse`): nobody else can re-sign a pool's keyset and take its market
        if self.pools.is_empty() && a.owner_proof.is_none() {
            tracing::warn!(event = %ev.id, %market, signer = %ev.pubkey, "ignoring an epoch announcement without its keyset's owner proof");
            return Ok(());
        }
        let parked = {
            let mut st = self.state.lock().await;
            if let Some(old) = st.epochs.get(&market)
                && (old.event.created_at >= ev.created_at || old.pool != ev.pubkey)
            {
                return Ok(());
            }
            self.store.save_epoch(&market, ev.created_at.as_secs(), &ev.as_json()).await?;
            st.epochs.insert(market.clone(), Epoch { announcement: a.clone(), pool: ev.pubkey, event: ev.clone() });
            let (mine, rest): (Vec<Event>, Vec<Event>) =
                std::mem::take(&mut st.parked).into_iter().partition(|p| p.tags.iter().any(|t| t.as_slice().first().map(String::as_str) == Some("market") && t.as_slice().get(1) == Some(&market)));
            st.parked = rest;
            mine
        };
        tracing::info!(%market, unit = %a.keyset.unit, state = %a.state.as_str(), "epoch announcement");
        self.notify("epoch", &market, serde_json::json!({"state": a.state, "epoch": a.epoch}));
        if a.state.has_ended() {
            self.expire_market(&market, ev).await?;
        }
        for p in parked {
            self.on_offer(&p).await?;
        }
        Ok(())
    }

    /// An expired epoch's offers leave the book.
    async fn expire_market(&self, market: &str, announcement: &Event) -> Result<()> {
        let mut st = self.state.lock().await;
        let Some(book) = st.books.get(market) else { return Ok(()) };
        let all = book.expired(u64::MAX);
        let event = Some(serde_json::to_value(announcement).map_err(|e| Error::Database(e.to_string()))?);
        for address in all {
            let entry = JournalEntry { seq: 0, kind: JournalKind::Expire, at: now(), event: event.clone(), address: Some(address), trade: None, remove: None, restore: None };
            self.journal(&mut st, market, entry).await?;
        }
        Ok(())
    }

    async fn on_offer(&self, ev: &Event) -> Result<()> {
        let mut st = self.state.lock().await;
        let v = match OfferVersion::from_event(ev) {
            Ok(v) => v,
            Err(e) => {
                self.refuse(&mut st, ev, None, e.to_string());
                return Ok(());
            }
        };
        if v.offer.exchange != self.keys.public_key() {
            return Ok(());
        }
        let t = now();
        let address = Some(v.address.clone());
        if v.created_at.abs_diff(t) > self.config.max_clock_skew_secs {
            self.refuse(&mut st, ev, address, format!("created_at {} is more than {} s from the exchange's clock {t}", v.created_at, self.config.max_clock_skew_secs));
            return Ok(());
        }
        if v.offer.status == OfferStatus::Pending && v.offer.expiration <= t {
            self.refuse(&mut st, ev, address, format!("expired at {}", v.offer.expiration));
            return Ok(());
        }
        let market = v.offer.market.clone();
        let Some(epoch) = st.epochs.get(&market).cloned() else {
            if st.parked.len() < MAX_PARKED && !st.parked.iter().any(|p| p.id == ev.id) {
                st.parked.push(ev.clone());
            }
            self.refuse(&mut st, ev, address, format!("market {market} has no epoch announcement yet (kept until one arrives)"));
            return Ok(());
        };
        let a = &epoch.announcement;
        let problem = if epoch.pool != v.offer.pool {
            Some(format!("a: the epoch {market} is announced by {}, not {}", epoch.pool, v.offer.pool))
        } else if a.mint_url != v.offer.mint_url {
            Some(format!("mint: the epoch's mint is {}, not {}", a.mint_url, v.offer.mint_url))
        } else if !a.keyset.unit.to_string().eq_ignore_ascii_case(&v.offer.unit) {
            Some(format!("unit: the epoch's unit is {}, not {}", a.keyset.unit, v.offer.unit))
        } else if a.state.has_ended() {
            Some(format!("the epoch of {market} is {}: it pays nothing more", a.state))
        } else if let Some(why) = reach::address_refusal(&v.offer.mint_url, self.config.private_mints) {
            Some(format!("mint: {why}"))
        } else {
            v.offer.sat_mints.iter().find_map(|m| reach::sat_mint_refusal(m, &self.config.sat_mints, self.config.private_mints)).map(|why| format!("sat_mints: {why}"))
        };
        if let Some(why) = problem {
            self.refuse(&mut st, ev, address, why);
            return Ok(());
        }
        let lot = self.config.lot;
        let book = st.books.entry(market.clone()).or_insert_with(|| Book::new(market.clone(), lot));
        if let Err(e) = book.check_offer(&v) {
            if e != Refusal::Duplicate {
                self.refuse(&mut st, ev, address, e.to_string());
            }
            return Ok(());
        }
        self.sweep(&mut st, &market, t).await?;
        let kind = if v.offer.status == OfferStatus::Canceled { JournalKind::Cancel } else { JournalKind::Offer };
        let entry = JournalEntry {
            seq: 0,
            kind,
            at: t,
            event: Some(serde_json::to_value(ev).map_err(|e| Error::Database(e.to_string()))?),
            address,
            trade: None,
            remove: None,
            restore: None,
        };
        self.journal(&mut st, &market, entry).await
    }

    async fn on_deletion(&self, ev: &Event) -> Result<()> {
        if ev.verify().is_err() {
            return Ok(());
        }
        let mut st = self.state.lock().await;
        let targets: Vec<String> = ev
            .tags
            .iter()
            .filter_map(|t| match t.as_slice() {
                [k, a, ..] if k == "a" && a.starts_with(&format!("{KIND_OFFER}:")) => Some(a.clone()),
                _ => None,
            })
            .collect();
        for address in targets {
            let market = st.books.iter().find(|(_, b)| b.version(&address).is_some()).map(|(m, _)| m.clone());
            let Some(market) = market else { continue };
            let Some(book) = st.books.get(&market) else { continue };
            if let Err(e) = book.check_deletion(&ev.pubkey, &address, ev.created_at.as_secs()) {
                self.refuse(&mut st, ev, Some(address), e.to_string());
                continue;
            }
            let entry = JournalEntry {
                seq: 0,
                kind: JournalKind::Cancel,
                at: now(),
                event: Some(serde_json::to_value(ev).map_err(|e| Error::Database(e.to_string()))?),
                address: Some(address),
                trade: None,
                remove: None,
                restore: None,
            };
            self.journal(&mut st, &market, entry).await?;
        }
        Ok(())
    }

    /// Journal expiries of offers in `market` due at `t`.
    async fn sweep(&self, st: &mut State, market: &str, t: u64) -> Result<()> {
        let Some(book) = st.books.get(market) else { return Ok(()) };
        for address in book.expired(t) {
            let entry = JournalEntry { seq: 0, kind: JournalKind::Expire, at: t, event: None, address: Some(address), trade: None, remove: None, restore: None };
            self.journal(st, market, entry).await?;
        }
        Ok(())
    }

    /// Number, write and apply a book event, then create the trades it makes.
    pub(crate) async fn journal(&self, st: &mut State, market: &str, mut entry: JournalEntry) -> Result<()> {
        let lot = self.config.lot;
        let book = st.books.entry(market.to_owned()).or_insert_with(|| Book::new(market, lot));
        entry.seq = book.seq() + 1;
        // Applying to a copy first: nothing reaches the journal that the book would refuse.
        let mut next = book.clone();
        let fills = match next.apply(&entry) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%market, seq = entry.seq, error = %e, "book event not applicable");
                return Ok(());
            }
        };
        self.store.append(market, &entry).await?;
        *book = next;
        if let Some(t) = &entry.trade {
            st.failed_journaled.insert(t.clone());
        }
        for fill in fills {
            self.create_trade(st, fill).await?;
        }
        if let Some(book) = st.books.get(market) {
            self.notify("book", market, book.view(50));
        }
        Ok(())
    }

    /// Publish a new trade (state `matched`).
    async fn create_trade(&self, st: &mut State, fill: Fill) -> Result<()> {
        let id = fill.trade_id();
        if st.trades.contains_key(&id) {
            return Ok(());
        }
        let r = |v: &OfferVersion| OfferRef { event_id: v.event_id, pubkey: v.pubkey, d: v.offer.id.clone() };
        let trade = Trade {
            id: id.clone(),
            market: fill.maker.offer.market.clone(),
            unit: fill.maker.offer.unit.clone(),
            mint_url: fill.maker.offer.mint_url.clone(),
            sat_mint: fill.sat_mint.clone(),
            maker: r(&fill.maker),
            taker: r(&fill.taker),
            maker_side: fill.maker_side(),
            amount: fill.amount,
            sats: fill.sats,
            price: fill.price,
            seq: fill.seq,
            state: TradeState::Matched,
            times: SettlementTimes::new(fill.at, self.config.lock_secs, self.config.claim_secs, self.config.margin_secs),
            hash: None,
            preimage: None,
            ehash_lock: LockStatus::None,
            sats_lock: LockStatus::None,
            reason: None,
            blame: None,
        };
        let s = Settlement { market: trade.market.clone(), matched_at: fill.at, ..Default::default() };
        self.store.save_settlement(&id, &s).await?;
        let event = self.outbox.publish_addressable(&self.trade_address(&id), trade.to_builder(), &self.keys).await?;
        tracing::info!(trade = %id, market = %trade.market, amount = trade.amount, sats = trade.sats, "matched");
        let live = Live { trade, event, s };
        self.notify("trade", &live.trade.market, live.view());
        st.trades.insert(id, live);
        Ok(())
    }

    pub(crate) fn trade_address(&self, id: &str) -> String {
        format!("{KIND_TRADE}:{}:{id}", self.keys.public_key().to_hex())
    }

    /// Publish a trade's new state (after its record is saved).
    pub(crate) async fn publish(&self, live: &mut Live) -> Result<()> {
        self.store.save_settlement(&live.trade.id, &live.s).await?;
        live.event = self.outbox.publish_addressable(&self.trade_address(&live.trade.id), live.trade.to_builder(), &self.keys).await?;
        self.notify("trade", &live.trade.market, live.view());
        Ok(())
    }

    /// A trade failed: publish it, and journal its effect on the book (the blamed party's offer
    /// leaves; the other party's quantity returns if it had nothing locked).
    pub(crate) async fn fail(&self, st: &mut State, id: &str, blame: Blame, reason: String) -> Result<()> {
        let Some(mut live) = st.trades.get(id).cloned() else { return Ok(()) };
        if matches!(live.trade.state, TradeState::Failed | TradeState::Refunded | TradeState::Settled) {
            return Ok(());
        }
        tracing::info!(trade = %id, blame = blame.as_str(), %reason, "trade failed");
        live.trade.state = TradeState::Failed;
        live.trade.blame = Some(blame);
        live.trade.reason = Some(reason);
        self.publish(&mut live).await?;
        st.trades.insert(id.to_owned(), live);
        self.journal_failure(st, id).await
    }

    async fn journal_failure(&self, st: &mut State, id: &str) -> Result<()> {
        if st.failed_journaled.contains(id) {
            return Ok(());
        }
        let Some(live) = st.trades.get(id) else { return Ok(()) };
        let t = &live.trade;
        let (remove, restore) = match t.blame {
            Some(Blame::Seller) => (Some(t.seller().address()), (t.sats_lock == LockStatus::None).then(|| (t.buyer().address(), t.amount))),
            Some(Blame::Buyer) => (Some(t.buyer().address()), (t.ehash_lock == LockStatus::None).then(|| (t.seller().address(), t.amount))),
            _ => (None, (t.sats_lock == LockStatus::None).then(|| (t.buyer().address(), t.amount))),
        };
        let market = t.market.clone();
        let entry = JournalEntry { seq: 0, kind: JournalKind::Fail, at: now(), event: None, address: None, trade: Some(id.to_owned()), remove, restore };
        self.journal(st, &market, entry).await
    }

    /// Rebuild state from the store: epochs, books (replaying the journal), trades (from the
    /// outbox, creating any that a crash kept from being published), settlements.
    async fn recover(&self) -> Result<()> {
        let mut st = self.state.lock().await;
        for json in self.store.epochs().await? {
            let Ok(ev) = Event::from_json(&json) else { continue };
            let Ok(a) = EpochAnnouncement::parse(&ev) else { continue };
            st.epochs.insert(a.keyset.id.to_string(), Epoch { announcement: a, pool: ev.pubkey, event: ev });
        }
        let settlements: HashMap<String, Settlement> = self.store.settlements().await?.into_iter().collect();
        let mut missing = vec![];
        for market in self.store.journal_markets().await? {
            let mut book = Book::new(market.clone(), self.config.lot);
            let mut after = 0;
            loop {
                let entries = self.store.journal(&market, after, 1000).await?;
                if entries.is_empty() {
                    break;
                }
                for e in &entries {
                    let fills = book.apply(e).map_err(|err| Error::Database(format!("journal of {market} does not replay at {}: {err}", e.seq)))?;
                    if let Some(t) = &e.trade {
                        st.failed_journaled.insert(t.clone());
                    }
                    for f in fills {
                        let id = f.trade_id();
                        match self.outbox.get(&self.trade_address(&id)).await? {
                            Some(stored) => {
                                let ev = Event::from_json(&stored.event_json).map_err(|e| Error::Database(e.to_string()))?;
                                let trade = Trade::parse(&ev).map_err(|e| Error::Database(format!("stored trade {id}: {e}")))?;
                                let s = settlements.get(&id).cloned().unwrap_or_else(|| Settlement { market: market.clone(), matched_at: f.at, ..Default::default() });
                                st.trades.insert(id, Live { trade, event: ev, s });
                            }
                            None => missing.push(f),
                        }
                    }
                }
                after = entries.last().map(|e| e.seq).unwrap_or(after);
            }
            st.books.insert(market, book);
        }
        for f in missing {
            self.create_trade(&mut st, f).await?;
        }
        let failed: Vec<String> =
            st.trades.values().filter(|l| matches!(l.trade.state, TradeState::Failed | TradeState::Refunded)).map(|l| l.trade.id.clone()).collect();
        for id in failed {
            self.journal_failure(&mut st, &id).await?;
        }
        tracing::info!(markets = st.books.len(), trades = st.trades.len(), "exchange state recovered");
        Ok(())
    }

    /// Periodic work: offers that expired leave the books.
    async fn sweep_all(&self) {
        let markets: Vec<String> = self.state.lock().await.books.keys().cloned().collect();
        for m in markets {
            let mut st = self.state.lock().await;
            if let Err(e) = self.sweep(&mut st, &m, now()).await {
                tracing::warn!(market = %m, error = %e, "expiring offers");
            }
        }
    }
}
