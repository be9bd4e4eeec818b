//! The trade agent: offers on nostr and the settlement of every match (protocol §9–10).
//!
//! An [`Agent`] works on a [`MinerWallet`]: it publishes offers signed by a key made for each
//! offer ([`keys`]), watches the exchange's trade events and its counterparties' settlement
//! messages, and settles each trade as a cross-mint HTLC swap with the state machine in
//! `machine.rs`. Offers, trades and outgoing events live in `agent.sqlite` beside the wallet
//! ([`store`]); every step is written there before the network action it leads to, so a
//! restarted agent resumes every trade or refunds it. Only one agent runs per wallet directory
//! (a lock file keeps a second one out).

pub mod backing;
pub mod keys;
mod machine;
pub mod pace;
pub mod record;
pub mod sell;
pub mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ehash_outbox::Outbox;
use ehash_outbox::watch::{Watcher, watch};
use ehash_protocol::events::settlement::{Body, Message};
use ehash_protocol::events::{Blame, EpochAnnouncement, KIND_SETTLEMENT, KIND_TRADE, Offer, OfferStatus, Trade, TradeState};
use ehash_protocol::market::{ExchangeInfo, Price, Side};
use nostr_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{Error, MinerWallet, Result};
use record::{OfferRecord, Step, Terms, TradeRecord};
use store::Store;

/// Offer keys watched ahead of use.
const LOOKAHEAD: u32 = 16;

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    Timestamp::now().as_secs()
}

/// Settings of `ehash trade` and of the proxy's auto-sell (`[trade]`).
///
/// | key | default | meaning |
/// |-----|---------|---------|
/// | `exchange_url` | `http://127.0.0.1:8090` | the exchange's HTTP API (its key, lot and relays) |
/// | `relays` | the exchange's | relays for offers and settlement messages |
/// | `sat_mints` | `[]` | sat mints you accept (selling) or hold sats at (buying, the first) |
/// | `offer_ttl_secs` | `86400` | how long an offer stays open |
/// | `min_margin_secs` | `30` | least time between the two locktimes a buyer accepts |
/// | `max_lock_secs` | `7200` | longest your own lock may stay locked |
/// | `claim_guard_secs` | `10` | a seller never claims later than this before the sats lock expires |
/// | `lock_guard_secs` | `2` | never lock later than this before your deadline |
/// | `grace_secs` | `5` | wait this long past the other side's deadline for its message |
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TradeConfig {
    /// The exchange's HTTP API.
    pub exchange_url: String,
    /// Relays (default: the ones the exchange names).
    pub relays: Vec<String>,
    /// Sat mints.
    pub sat_mints: Vec<String>,
    /// Offer lifetime.
    pub offer_ttl_secs: u64,
    /// Least margin between locktimes.
    pub min_margin_secs: u64,
    /// Longest own lock.
    pub max_lock_secs: u64,
    /// Seller's claim guard.
    pub claim_guard_secs: u64,
    /// Lock guard.
    pub lock_guard_secs: u64,
    /// Grace past a counterparty deadline.
    pub grace_secs: u64,
}

impl Default for TradeConfig {
    fn default() -> Self {
        Self {
            exchange_url: "http://127.0.0.1:8090".into(),
            relays: vec![],
            sat_mints: vec![],
            offer_ttl_secs: 86_400,
            min_margin_secs: 30,
            max_lock_secs: 7_200,
            claim_guard_secs: 10,
            lock_guard_secs: 2,
            grace_secs: 5,
        }
    }
}

/// A new offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRequest {
    /// Sell or buy ehash.
    pub side: Side,
    /// The epoch unit.
    pub unit: String,
    /// Ehash (whole lots).
    pub amount: u64,
    /// Smallest fill (default: one lot).
    pub min: Option<u64>,
    /// Sats per lot.
    pub sats_per_lot: u64,
    /// Sat mints (default: the configured ones).
    pub sat_mints: Vec<String>,
    /// Lifetime (default: the configured one).
    pub ttl_secs: Option<u64>,
}

/// An offer and what is left of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferState {
    /// The offer.
    pub offer: OfferRecord,
    /// Ehash not yet taken by a trade that is going on or done.
    pub remaining: u64,
    /// Whether it is still open (not cancelled, expired or filled).
    pub open: bool,
}

/// Ask an exchange about itself.
pub async fn exchange_info(url: &str) -> Result<ExchangeInfo> {
    let u = format!("{}/api/info", url.trim_end_matches('/'));
    let err = |reason: String| Error::Exchange { url: u.clone(), reason: format!("{reason}; is `ehash exchange` running there? (set [trade].exchange_url)") };
    let resp = bitreq::get(u.as_str()).with_timeout(10).send_async().await.map_err(|e| err(e.to_string()))?;
    if resp.status_code != 200 {
        return Err(err(format!("HTTP {}", resp.status_code)));
    }
    resp.json::<ExchangeInfo>().map_err(|e| err(format!("unexpected answer: {e}")))
}

/// What the exchange at `url` said about itself when an agent in `dir` last reached it (`None`
/// if never).
pub async fn known_exchange(dir: &Path, url: &str) -> Result<Option<ExchangeInfo>> {
    if !dir.join("agent.sqlite").exists() {
        return Ok(None);
    }
    Store::open(dir).await?.exchange(url).await
}

/// How long after reading the relays' stored messages the agent trusts that a message it has
/// not seen was not sent (the messages read are handled by then).
const CATCH_UP_SETTLE: Duration = Duration::from_secs(2);

struct Inner {
    wallet: Arc<MinerWallet>,
    store: Store,
    outbox: Outbox,
    config: TradeConfig,
    exchange: ExchangeInfo,
    exchange_key: PublicKey,
    relays: Vec<String>,
    keys: Mutex<HashMap<String, Keys>>,
    watcher: Mutex<Option<Watcher>>,
    /// Offer-key indices below this are in the running subscription.
    watched_until: Mutex<u32>,
    /// One lock per trade: a trade is moved by one task at a time, and a trade waiting on a
    /// stalled mint holds up no other.
    steps: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    pace: pace::Pace,
    /// When the relays' stored messages had been read after the start (`None`: not yet).
    caught_up_at: std::sync::Mutex<Option<std::time::Instant>>,
    _lock: std::fs::File,
}

/// The trade agent of one wallet.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("exchange", &self.inner.exchange.pubkey).finish_non_exhaustive()
    }
}

impl Agent {
    /// Open the agent of the wallet in `dir`, asking the exchange at `config.exchange_url` for its
    /// key, lot and relays. Fails if another agent runs for this wallet.
    /// If the exchange cannot be reached but was before, the agent starts with what it said
    /// then: claims and refunds need only the mints and relays.
    pub async fn open(wallet: Arc<MinerWallet>, dir: &Path, config: TradeConfig) -> Result<Self> {
        let exchange = match exchange_info(&config.exchange_url).await {
            Ok(info) => info,
            Err(e) => match known_exchange(dir, &config.exchange_url).await? {
                Some(info) => {
                    tracing::warn!(exchange = %config.exchange_url, error = %e, "the exchange cannot be reached; settling open trades with what it said before");
                    info
                }
                None => return Err(e),
            },
        };
        Self::open_with(wallet, dir, config, exchange).await
    }

    /// [`Agent::open`] with the exchange's details already known.
    pub async fn open_with(wallet: Arc<MinerWallet>, dir: &Path, config: TradeConfig, exchange: ExchangeInfo) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Database(format!("{}: {e}", dir.display())))?;
        let lock_path = dir.join("agent.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::Database(format!("{}: {e}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(Error::Database(format!(
                "another trade agent is running for the wallet in {} (the proxy's auto-sell or `ehash trade run`); stop it first",
                dir.display()
            )));
        }
        let exchange_key = PublicKey::parse(&exchange.pubkey).map_err(|e| Error::Nostr(format!("exchange key {:?}: {e}", exchange.pubkey)))?;
        let store = Store::open(dir).await?;
        wallet.reserve_for(store.clone());
        store.save_exchange(&config.exchange_url, &exchange).await?;
        let outbox = Outbox::open(store.pool()).await.map_err(|e| Error::Database(e.to_string()))?;
        let relays = if config.relays.is_empty() { exchange.relays.clone() } else { config.relays.clone() };
        if relays.is_empty() {
            return Err(Error::Nostr("no relays: the exchange names none and [trade].relays is empty".into()));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                wallet,
                store,
                outbox,
                config,
                exchange,
                exchange_key,
                relays,
                keys: Mutex::new(HashMap::new()),
                watcher: Mutex::new(None),
                watched_until: Mutex::new(0),
                steps: Mutex::new(HashMap::new()),
                pace: pace::Pace::default(),
                caught_up_at: std::sync::Mutex::new(None),
                _lock: lock,
            }),
        })
    }

    /// The exchange this agent trades on.
    pub fn exchange(&self) -> &ExchangeInfo {
        &self.inner.exchange
    }

    /// The wallet.
    pub fn wallet(&self) -> &Arc<MinerWallet> {
        &self.inner.wallet
    }

    /// The keys of one of my offers, by its public key (hex).
    async fn offer_keys(&self, pubkey: &str) -> Result<Keys> {
        if let Some(k) = self.inner.keys.lock().await.get(pubkey) {
            return Ok(k.clone());
        }
        let offer = self
            .inner
            .store
            .offers()
            .await?
            .into_iter()
            .find(|o| o.pubkey == pubkey)
            .ok_or_else(|| Error::Nostr(format!("{pubkey} is not one of this wallet's offer keys")))?;
        let keys = keys::offer_keys(self.inner.wallet.seed(), offer.key_index)?;
        self.inner.keys.lock().await.insert(pubkey.to_owned(), keys.clone());
        Ok(keys)
    }

    /// The epoch announcement of `unit` at this wallet's pool, from the relays.
    pub async fn market_of(&self, unit: &str) -> Result<(String, EpochAnnouncement)> {
        let mint = self.inner.wallet.mint_url();
        let epochs = crate::pool_epochs(&mint).await?;
        let found = crate::announced::fetch_epochs(&self.inner.relays, &epochs.pool_pubkey, &mint).await?;
        let a = found
            .into_iter()
            .find(|a| a.keyset.unit.to_string().eq_ignore_ascii_case(unit))
            .ok_or_else(|| Error::Nostr(format!("the pool has announced no keyset for {unit} on {:?}", self.inner.relays)))?;
        if a.state.has_ended() {
            return Err(Error::Nostr(format!("{unit} is {}: it pays nothing more and can no longer be traded", a.state)));
        }
        Ok((epochs.pool_pubkey, a))
    }

    /// Publish a new offer.
    pub async fn place_offer(&self, req: OfferRequest) -> Result<OfferRecord> {
        let lot = self.inner.exchange.lot;
        let price = Price::new(req.sats_per_lot, lot).map_err(|e| Error::Nostr(format!("price: {e}")))?;
        let sats = price.sats_for(req.amount).map_err(|e| Error::Nostr(format!("amount: {e}")))?;
        if req.amount == 0 {
            return Err(Error::Nostr(format!("amount: offer at least one lot ({lot} ehash)")));
        }
        let min = req.min.unwrap_or(lot);
        if min == 0 || !min.is_multiple_of(lot) || min > req.amount {
            return Err(Error::Nostr(format!("min: must be a whole number of lots of {lot}, at most the amount {}", req.amount)));
        }
        let sat_mints = if req.sat_mints.is_empty() { self.inner.config.sat_mints.clone() } else { req.sat_mints.clone() };
        if sat_mints.is_empty() {
            return Err(Error::Nostr("name the sat mint(s) you trade against: --sat-mint URL or [trade].sat_mints".into()));
        }
        let (pool, announcement) = self.market_of(&req.unit).await?;
        match req.side {
            // what other offers hold is not on offer twice
            Side::Sell => self.inner.wallet.ensure_free(&self.inner.wallet.mint_url(), &req.unit, req.amount).await?,
            Side::Buy => {
                // the lock carries the seller's claim fee and the locking swap pays its own:
                // at most one input fee each for up to 64 proofs at the mint's active keyset
                let w = self.inner.wallet.wallet_at(&sat_mints[0], "sat").await?;
                let ppk = w.active_keyset().await.map(|k| k.input_fee_ppk).unwrap_or(0);
                let need = sats.saturating_add(2 * crate::htlc::input_fee(64, ppk));
                match self.inner.wallet.ensure_free(&sat_mints[0], "sat", need).await {
                    Err(Error::Insufficient { have, need, .. }) => {
                        return Err(Error::Insufficient { unit: format!("sat at {} (the price plus up to {} in mint fees)", sat_mints[0], need - sats), have, need });
                    }
                    r => r?,
                }
            }
        }
        let index = self.inner.store.next_key_index().await?;
        let keys = keys::offer_keys(self.inner.wallet.seed(), index)?;
        let expiration = now() + req.ttl_secs.unwrap_or(self.inner.config.offer_ttl_secs);
        let offer = Offer {
            id: hex::encode(rand::random::<[u8; 8]>()),
            side: req.side,
            status: OfferStatus::Pending,
            market: announcement.keyset.id.to_string(),
            unit: announcement.keyset.unit.to_string(),
            mint_url: self.inner.wallet.mint_url(),
            pool: PublicKey::parse(&pool).map_err(|e| Error::Nostr(e.to_string()))?,
            sat_mints: sat_mints.clone(),
            amount: req.amount,
            min,
            price,
            exchange: self.inner.exchange_key,
            expiration,
            note: String::new(),
        };
        let event = self
            .inner
            .outbox
            .publish_addressable(&offer.address(&keys.public_key()), offer.to_builder(), &keys)
            .await
            .map_err(|e| Error::Database(e.to_string()))?;
        let record = OfferRecord {
            d: offer.id.clone(),
            key_index: index,
            pubkey: keys.public_key().to_hex(),
            side: req.side,
            market: offer.market.clone(),
            unit: offer.unit.clone(),
            mint_url: offer.mint_url.clone(),
            pool,
            keyset: announcement.keyset.clone(),
            sat_mints,
            amount: req.amount,
            min,
            price,
            expiration,
            canceled: false,
            event_id: event.id.to_hex(),
            created_at: event.created_at.as_secs(),
        };
        self.inner.store.save_offer(&record).await?;
        self.inner.keys.lock().await.insert(record.pubkey.clone(), keys);
        // renew the subscription only when the keys watched ahead run low
        if index.saturating_add(LOOKAHEAD / 4) >= *self.inner.watched_until.lock().await {
            self.refresh_filters().await?;
        }
        tracing::info!(offer = %record.d, side = %record.side, amount = record.amount, price = %price, "offer published");
        Ok(record)
    }

    /// Cancel an offer: a new version with `s = canceled` and a NIP-09 deletion. Trades already
    /// matched go on.
    pub async fn cancel_offer(&self, d: &str) -> Result<OfferRecord> {
        let mut record = self.inner.store.offer(d).await?.ok_or_else(|| Error::Nostr(format!("no offer {d} in this wallet (see `ehash trade status`)")))?;
        let keys = self.offer_keys(&record.pubkey).await?;
        let offer = Offer {
            id: record.d.clone(),
            side: record.side,
            status: OfferStatus::Canceled,
            market: record.market.clone(),
            unit: record.unit.clone(),
            mint_url: record.mint_url.clone(),
            pool: PublicKey::parse(&record.pool).map_err(|e| Error::Nostr(e.to_string()))?,
            sat_mints: record.sat_mints.clone(),
            amount: record.amount,
            min: record.min,
            price: record.price,
            exchange: self.inner.exchange_key,
            expiration: record.expiration,
            note: String::new(),
        };
        let address = offer.address(&keys.public_key());
        let event = self
            .inner
            .outbox
            .publish_addressable(&address, offer.to_builder(), &keys)
            .await
            .map_err(|e| Error::Database(e.to_string()))?;
        record.canceled = true;
        record.event_id = event.id.to_hex();
        self.inner.store.save_offer(&record).await?;
        Ok(record)
    }

    /// Every offer with what is left of it.
    pub async fn offers(&self) -> Result<Vec<OfferState>> {
        self.inner.store.offer_states().await
    }

    async fn remaining(&self, offer: &OfferRecord) -> Result<u64> {
        self.inner.store.remaining(offer).await
    }

    /// Every trade, newest first.
    pub async fn trades(&self) -> Result<Vec<TradeRecord>> {
        self.inner.store.trades(false).await
    }

    /// One trade.
    pub async fn trade(&self, id: &str) -> Result<Option<TradeRecord>> {
        self.inner.store.trade(id).await
    }

    /// Offer keys worth watching: offers not long expired, offers with unfinished trades, and the
    /// keys of the next [`LOOKAHEAD`] offers (so a new offer's first match and messages arrive on
    /// the running subscription, not after renewing it).
    async fn watched_keys(&self) -> Result<Vec<PublicKey>> {
        let open: std::collections::HashSet<String> = self.inner.store.trades(true).await?.into_iter().map(|t| t.offer_d).collect();
        let horizon = now().saturating_sub(86_400);
        let mut keys: Vec<PublicKey> = self
            .inner
            .store
            .offers()
            .await?
            .into_iter()
            .filter(|o| o.expiration > horizon || open.contains(&o.d))
            .filter_map(|o| PublicKey::parse(&o.pubkey).ok())
            .collect();
        let next = self.inner.store.peek_key_index().await?;
        for i in next..next.saturating_add(LOOKAHEAD) {
            keys.push(keys::offer_keys(self.inner.wallet.seed(), i)?.public_key());
        }
        *self.inner.watched_until.lock().await = next.saturating_add(LOOKAHEAD);
        Ok(keys)
    }

    async fn filters(&self) -> Result<Vec<Filter>> {
        let keys = self.watched_keys().await?;
        Ok(vec![
            Filter::new().kind(Kind::Custom(KIND_TRADE)).author(self.inner.exchange_key).pubkeys(keys.clone()),
            Filter::new().kind(Kind::Custom(KIND_SETTLEMENT)).pubkeys(keys),
        ])
    }

    async fn refresh_filters(&self) -> Result<()> {
        let filters = self.filters().await?;
        if let Some(w) = self.inner.watcher.lock().await.as_ref() {
            w.set_filters(filters);
        }
        Ok(())
    }

    /// Run the agent until `cancel`: deliver outgoing events, watch trades and messages, and
    /// move every unfinished trade along.
    pub fn run(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let agent = self.clone();
        tokio::spawn(async move {
            let delivery = agent.inner.outbox.spawn_delivery(agent.inner.relays.clone(), cancel.clone());
            let filters = match agent.filters().await {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "trade agent cannot start");
                    return;
                }
            };
            let (watcher, mut events) = watch(agent.inner.relays.clone(), filters, Duration::from_secs(15), cancel.clone());
            // this run has read nothing yet
            *agent.inner.caught_up_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
            {
                let (agent, watcher) = (agent.clone(), watcher.clone());
                // caught up since when, as it changes (a relay outage makes it behind again)
                let mut changes = watcher.caught_up_changes();
                tokio::spawn(async move {
                    loop {
                        let now_caught_up = *changes.borrow_and_update();
                        {
                            let mut at = agent.inner.caught_up_at.lock().unwrap_or_else(|p| p.into_inner());
                            match (now_caught_up, at.is_some()) {
                                (true, false) => *at = Some(std::time::Instant::now()),
                                (false, true) => *at = None,
                                _ => {}
                            }
                        }
                        if changes.changed().await.is_err() {
                            break;
                        }
                    }
                });
            }
            *agent.inner.watcher.lock().await = Some(watcher);
            if let Err(e) = agent.recover().await {
                tracing::warn!(error = %e, "releasing reservations of interrupted locks");
            }
            // trades move on a ticker of their own, and each event is handled in a task of its
            // own (trades are locked one by one): a mint that stalls one trade holds up no other
            // the ticker stops with the run, also when the relay events end
            let stop = cancel.child_token();
            let ticker = {
                let (agent, cancel) = (agent.clone(), stop.clone());
                tokio::spawn(async move {
                    let agent = &agent;
                    ehash_outbox::rounds::every(tokio::time::Instant::now(), Duration::from_millis(500), cancel, || agent.tick()).await;
                })
            };
            // the funds behind open offers, checked with their mints now and then
            let backing = {
                let (agent, cancel) = (agent.clone(), stop.clone());
                tokio::spawn(async move {
                    let agent = &agent;
                    let period = Duration::from_secs(backing::BACKING_SECS);
                    ehash_outbox::rounds::every(tokio::time::Instant::now() + period, period, cancel, || async {
                        if let Err(e) = agent.check_backing().await {
                            tracing::warn!(error = %e, "checking the funds behind open offers");
                        }
                    })
                    .await;
                })
            };
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    ev = events.recv() => match ev {
                        Some(ev) => {
                            let (agent, cancel) = (agent.clone(), cancel.clone());
                            tokio::spawn(async move {
                                tokio::select! {
                                    _ = cancel.cancelled() => {}
                                    _ = agent.handle(ev) => {}
                                }
                            });
                        }
                        None => break,
                    },
                }
            }
            stop.cancel();
            let _ = ticker.await;
            let _ = backing.await;
            let _ = delivery.await;
        })
    }

    /// Whether the counterparties' messages stored on the relays have been read since the
    /// start (and since the last relay outage), and handled (a moment later): before that, a
    /// missing message is not evidence that it was never sent.
    pub(crate) fn caught_up(&self) -> bool {
        self.inner.caught_up_at.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|at| at.elapsed() >= CATCH_UP_SETTLE)
    }

    /// Move every unfinished trade along once.
    pub async fn tick(&self) {
        let open = match self.inner.store.trades(true).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "reading trades");
                return;
            }
        };
        // forget the locks of finished trades, but never one somebody holds or waits for (a
        // trade being created is not in `open` yet)
        self.inner.steps.lock().await.retain(|id, lock| Arc::strong_count(lock) > 1 || open.iter().any(|t| &t.id == id));
        // every trade at once; one waiting on a mint (a poll interval, a backoff) is stepped
        // when its wait is over
        let ready = open.iter().filter(|t| self.inner.pace.ready(&t.id));
        futures::future::join_all(ready.map(|t| self.step_id(&t.id))).await;
    }

    /// Wait for trade `id`'s turn.
    async fn trade_lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.inner.steps.lock().await.entry(id.to_owned()).or_default().clone();
        lock.lock_owned().await
    }

    async fn step_id(&self, id: &str) {
        let _guard = self.trade_lock(id).await;
        match self.inner.store.trade(id).await {
            Ok(Some(mut t)) => {
                let before = t.step.clone();
                let stepped = self.step(&mut t).await;
                if t.step != before {
                    self.inner.pace.moved(id);
                }
                if let Err(e) = stepped {
                    tracing::warn!(trade = %id, error = %e, "trade step failed; will retry");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(trade = %id, error = %e, "reading a trade"),
        }
    }

    /// Give back wallet proofs reserved for a lock that was never written down (a crash between
    /// reserving and recording).
    async fn recover(&self) -> Result<()> {
        let trades = self.inner.store.trades(true).await?;
        let pending: std::collections::HashSet<String> = trades.iter().filter_map(|t| t.pending.as_ref().map(|p| p.id.clone())).collect();
        let mut wallets = vec![];
        for o in self.inner.store.offers().await? {
            wallets.push((o.mint_url.clone(), o.unit.clone()));
            for m in &o.sat_mints {
                wallets.push((m.clone(), "sat".to_owned()));
            }
        }
        wallets.sort();
        wallets.dedup();
        for (mint, unit) in wallets {
            let Ok(w) = self.inner.wallet.wallet_at(&mint, &unit).await else { continue };
            let reserved = w.localstore.get_proofs(Some(w.mint_url.clone()), Some(w.unit.clone()), Some(vec![cdk::nuts::State::Reserved]), None).await;
            let Ok(reserved) = reserved else { continue };
            let ops: std::collections::HashSet<uuid::Uuid> = reserved.into_iter().filter_map(|p| p.used_by_operation).collect();
            for id in ops {
                let op = id.to_string();
                if pending.contains(&op) || w.localstore.get_saga(&id).await.ok().flatten().is_some() {
                    continue;
                }
                tracing::info!(%mint, %unit, operation = %op, "releasing proofs reserved by an interrupted lock");
                w.localstore.release_proofs(&id).await.map_err(|e| Error::Database(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Handle one event from the relays.
    async fn handle(&self, ev: Event) {
        if ev.verify().is_err() {
            return;
        }
        let r = match ev.kind.as_u16() {
            KIND_TRADE => self.on_trade(&ev).await,
            KIND_SETTLEMENT => self.on_message(&ev).await,
            _ => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!(event = %ev.id, error = %e, "handling an event");
        }
    }

    async fn on_trade(&self, ev: &Event) -> Result<()> {
        if ev.pubkey != self.inner.exchange_key {
            return Ok(());
        }
        let trade = match Trade::parse(ev) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(event = %ev.id, error = %e, "the exchange published a malformed trade");
                return Ok(());
            }
        };
        let offers = self.inner.store.offers().await?;
        let (offer, role) = match offers.iter().find(|o| o.pubkey == trade.seller().pubkey.to_hex()) {
            Some(o) => (o.clone(), Side::Sell),
            None => match offers.iter().find(|o| o.pubkey == trade.buyer().pubkey.to_hex()) {
                Some(o) => (o.clone(), Side::Buy),
                None => return Ok(()),
            },
        };
        // a party the exchange blames leaves its book: the offer is over, its funds free
        let blamed = matches!((trade.blame, role), (Some(Blame::Seller), Side::Sell) | (Some(Blame::Buyer), Side::Buy));
        if trade.state == TradeState::Failed && blamed {
            self.withdraw_offer(&offer.d, "the exchange blamed this side of a trade and took the offer off its book").await?;
        }
        let _guard = self.trade_lock(&trade.id).await;
        if let Some(mut t) = self.inner.store.trade(&trade.id).await? {
            let mut changed = false;
            if t.judged_hash.is_none()
                && let Some(h) = &trade.hash
            {
                t.judged_hash = Some(h.clone());
                changed = true;
            }
            if t.role == Side::Buy
                && t.preimage.is_none()
                && let Some(p) = &trade.preimage
            {
                t.preimage_hint = Some(p.clone());
                changed = true;
            }
            if trade.state == TradeState::Failed && t.step == Step::Matched {
                // nothing of mine is locked, and the exchange does not go on with the trade
                let why = match &t.bad_lock {
                    Some(b) => format!("the counterparty's lock is not acceptable: {b}"),
                    None => format!("the exchange ended the trade: {}", trade.reason.as_deref().unwrap_or("no reason given")),
                };
                tracing::info!(trade = %t.id, reason = %why, "trade failed");
                t.step = Step::Failed;
                t.note = Some(why);
                t.pending = None;
                changed = true;
            }
            if changed {
                self.save_and_step(&mut t).await?;
            }
            return Ok(());
        }
        let counterparty = match role {
            Side::Sell => trade.buyer().pubkey,
            Side::Buy => trade.seller().pubkey,
        };
        let mut t = TradeRecord {
            id: trade.id.clone(),
            offer_d: offer.d.clone(),
            role,
            terms: Terms {
                market: trade.market.clone(),
                unit: trade.unit.clone(),
                mint_url: trade.mint_url.clone(),
                sat_mint: trade.sat_mint.clone(),
                amount: trade.amount,
                sats: trade.sats,
                times: trade.times,
                counterparty: counterparty.to_hex(),
                exchange: self.inner.exchange_key.to_hex(),
            },
            step: Step::Matched,
            hash: None,
            preimage: None,
            preimage_hint: trade.preimage.clone(),
            my_lock: None,
            their_token: None,
            their_lock: None,
            their_abort: None,
            pending: None,
            note: None,
            updated_at: now(),
            bad_lock: None,
            judged_hash: trade.hash.clone(),
            refund_preimage: false,
        };
        // one new trade of an offer at a time: two checked at once could overfill it
        let _offer_guard = self.trade_lock(&format!("offer:{}", offer.d)).await;
        let problem = self.check_trade(&offer, role, &trade).await?;
        match problem {
            Some(why) => {
                tracing::warn!(trade = %t.id, reason = %why, "refusing a trade");
                t.step = Step::Failed;
                t.note = Some(format!("refused: {why}"));
                self.inner.store.save_trade(&t).await?;
                if matches!(trade.state, TradeState::Matched | TradeState::EhashLocked) {
                    self.send(&t, Body::Abort { reason: why }).await?;
                }
                Ok(())
            }
            None => {
                tracing::info!(trade = %t.id, role = %role, amount = t.terms.amount, sats = t.terms.sats, "matched");
                self.inner.store.save_trade(&t).await?;
                for json in self.inner.store.unstash(&t.id).await? {
                    if let Ok(m) = Event::from_json(&json) {
                        self.apply_message(&mut t, &m).await?;
                    }
                }
                self.save_and_step(&mut t).await
            }
        }
    }

    /// Whether a trade the exchange published is one this offer agreed to; `Some(why)` if not.
    async fn check_trade(&self, offer: &OfferRecord, role: Side, trade: &Trade) -> Result<Option<String>> {
        if role != offer.side {
            return Ok(Some(format!("the offer is a {} offer", offer.side)));
        }
        if trade.market != offer.market || !trade.unit.eq_ignore_ascii_case(&offer.unit) || trade.mint_url != offer.mint_url {
            return Ok(Some("the trade is in another market".into()));
        }
        if !offer.sat_mints.contains(&trade.sat_mint) {
            return Ok(Some(format!("the offer does not accept the sat mint {}", trade.sat_mint)));
        }
        let price_ok = match role {
            Side::Sell => trade.price.cmp_rate(&offer.price) != std::cmp::Ordering::Less,
            Side::Buy => trade.price.cmp_rate(&offer.price) != std::cmp::Ordering::Greater,
        };
        if !price_ok {
            return Ok(Some(format!("the price {} is worse than the offer's {}", trade.price, offer.price)));
        }
        let remaining = self.remaining(offer).await?;
        if trade.amount > remaining {
            return Ok(Some(format!("{} ehash is more than the {remaining} left of the offer", trade.amount)));
        }
        if trade.amount < offer.min.min(remaining) {
            return Ok(Some(format!("{} ehash is less than the offer's minimum fill {}", trade.amount, offer.min)));
        }
        // Relays keep only the newest version of a trade, so a buyer may first see it after the
        // seller's lock was verified; anything later means its turn has passed.
        let fresh = match role {
            Side::Sell => trade.state == TradeState::Matched,
            Side::Buy => matches!(trade.state, TradeState::Matched | TradeState::EhashLocked),
        };
        if !fresh {
            return Ok(Some(format!("the trade was already {} when this agent first saw it", trade.state)));
        }
        Ok(trade.times.refusal(role, now(), self.inner.config.min_margin_secs, self.inner.config.max_lock_secs))
    }

    async fn on_message(&self, ev: &Event) -> Result<()> {
        let Some(to) = ev.tags.public_keys().next() else { return Ok(()) };
        let Ok(keys) = self.offer_keys(&to.to_hex()).await else { return Ok(()) };
        let msg = match Message::from_event(ev, &keys) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(event = %ev.id, error = %e, "unreadable settlement message");
                return Ok(());
            }
        };
        let _guard = self.trade_lock(&msg.trade).await;
        match self.inner.store.trade(&msg.trade).await? {
            Some(mut t) => {
                if self.apply_message(&mut t, ev).await? {
                    self.save_and_step(&mut t).await?;
                }
            }
            None => self.inner.store.stash(&msg.trade, &ev.id.to_hex(), &ev.as_json()).await?,
        }
        Ok(())
    }

    /// Record what a counterparty's message says; `true` if the trade changed.
    async fn apply_message(&self, t: &mut TradeRecord, ev: &Event) -> Result<bool> {
        // the counterparty's messages, and the exchange's copy of a lock it verified (a sender
        // cannot show the exchange one lock and us another, or none); every lock is verified
        // here before anything depends on it
        let from_exchange = ev.pubkey == self.inner.exchange_key;
        if ev.pubkey.to_hex() != t.terms.counterparty && !from_exchange {
            return Ok(false);
        }
        let offer = self.inner.store.offer(&t.offer_d).await?.ok_or_else(|| Error::Database(format!("trade {} names an unknown offer", t.id)))?;
        let keys = self.offer_keys(&offer.pubkey).await?;
        let Ok(msg) = Message::from_event(ev, &keys) else { return Ok(false) };
        if msg.trade != t.id {
            return Ok(false);
        }
        match msg.body {
            // the exchange's copy replaces another lock until one is used (verified and
            // answered or claimed)
            Body::Lock { token } if t.their_lock.is_none() && (t.their_token.is_none() || (from_exchange && t.their_token.as_deref() != Some(token.as_str()))) => {
                t.their_token = Some(token)
            }
            _ if from_exchange => return Ok(false),
            Body::Preimage { preimage } if t.preimage.is_none() => t.preimage_hint = Some(preimage),
            Body::Abort { reason } if t.their_abort.is_none() => t.their_abort = Some(reason),
            _ => return Ok(false),
        }
        Ok(true)
    }

    async fn save_and_step(&self, t: &mut TradeRecord) -> Result<()> {
        t.updated_at = now();
        self.inner.store.save_trade(t).await?;
        self.step(t).await
    }

    /// Send a settlement message to the counterparty and a copy to the exchange (through the
    /// outbox).
    async fn send(&self, t: &TradeRecord, body: Body) -> Result<()> {
        let offer = self.inner.store.offer(&t.offer_d).await?.ok_or_else(|| Error::Database(format!("trade {} names an unknown offer", t.id)))?;
        let keys = self.offer_keys(&offer.pubkey).await?;
        let msg = Message::new(t.id.clone(), body);
        let expiration = t.terms.times.ehash_locktime + 86_400;
        let counterparty = PublicKey::parse(&t.terms.counterparty).map_err(|e| Error::Nostr(e.to_string()))?;
        for to in [counterparty, self.inner.exchange_key] {
            let ev = msg.to_event(&keys, &to, expiration).map_err(|e| Error::Nostr(e.to_string()))?;
            self.inner.outbox.queue(&ev).await.map_err(|e| Error::Database(e.to_string()))?;
        }
        Ok(())
    }
}
