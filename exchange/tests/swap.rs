//! The whole market over real parts: a relay, the pool's mint-bridge, a separate sat mint (with
//! input fees), the exchange, and two trade agents on their own wallets, all over HTTP and
//! WebSocket. Offers match with price-time priority, each trade settles as a cross-mint HTLC
//! swap, and every failure ends with nothing lost and a trade state saying what happened.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cdk::nuts::Token;
use ehash_exchange::{Config, Exchange};
use ehash_protocol::api::{Book, TradeView};
use ehash_protocol::events::settlement::{Body, Message};
use ehash_protocol::events::{Offer, Trade, TradeState};
use ehash_protocol::market::{Price, Side, lock_key};
use ehash_wallet::{durable, htlc};
use nostr_sdk::prelude::{Client, EventBuilder, FinalizeEvent, Keys, PublicKey, Timestamp};
use ehash_testkit::front::{Fault as MintFault, Front};
use ehash_testkit::gate::Gate;
use ehash_testkit::market::Market;
use ehash_wallet::MinerWallet;
use ehash_wallet::agent::record::Step;
use ehash_wallet::agent::{Agent, OfferRequest};
use tokio_util::sync::CancellationToken;

const SAT_FEE_PPK: u64 = 100;
const LOT: u64 = 4;

fn exchange_config(m: &Market) -> Config {
    m.exchange_config(LOT, 15, 15, 10)
}

struct Party {
    wallet: Arc<MinerWallet>,
    agent: Agent,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Party {
    async fn new(dir: &Path, m: &Market, ex: &Exchange, seed: u8) -> Self {
        Self::with_relay(dir, m, ex, seed, m.relay.url()).await
    }

    /// A party that reaches the market's relay at `relay` (a gate before it, say).
    async fn with_relay(dir: &Path, m: &Market, ex: &Exchange, seed: u8, relay: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let wallet = Arc::new(MinerWallet::open(&dir.join("wallet.sqlite"), m.pool.mint_url(), [seed; 64]).await.unwrap());
        let config = ehash_wallet::agent::TradeConfig { exchange_url: ex.url(), relays: vec![relay.to_owned()], ..m.trade_config() };
        let agent = Agent::open_with(wallet.clone(), dir, config, ex.info().clone()).await.unwrap();
        let mut p = Self { wallet, agent, cancel: CancellationToken::new(), task: None };
        p.start();
        p
    }

    fn start(&mut self) {
        self.cancel = CancellationToken::new();
        self.task = Some(self.agent.run(self.cancel.clone()));
    }

    async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    async fn offer(&self, side: Side, unit: &str, amount: u64, price: u64) -> String {
        let o = self
            .agent
            .place_offer(OfferRequest { side, unit: unit.into(), amount, min: None, sats_per_lot: price, sat_mints: vec![], ttl_secs: Some(600) })
            .await
            .unwrap();
        format!("38190:{}:{}", o.pubkey, o.d)
    }

    async fn sats(&self, m: &Market) -> u64 {
        self.wallet.balance_at(&m.sat_url, "sat").await.unwrap()
    }

    async fn ehash(&self, m: &Market, unit: &str) -> u64 {
        self.wallet.balance_at(m.pool.mint_url(), unit).await.unwrap()
    }

    /// Wait until every trade of this agent is final, and return them.
    async fn wait_trades(&self, n: usize, secs: u64) -> Vec<ehash_wallet::agent::record::TradeRecord> {
        for _ in 0..secs * 4 {
            let t = self.agent.trades().await.unwrap();
            if t.len() >= n && t.iter().all(|t| t.step.is_final()) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("trades not final after {secs} s: {:#?}", self.agent.trades().await.unwrap());
    }
}

async fn get<T: serde::de::DeserializeOwned>(url: String) -> T {
    let r = bitreq::get(url.as_str()).with_timeout(10).send_async().await.unwrap();
    assert_eq!(r.status_code, 200, "{url}");
    r.json().unwrap()
}

async fn book(ex: &Exchange, market: &str) -> Book {
    get(format!("{}/api/markets/{market}/book", ex.url())).await
}

async fn trades(ex: &Exchange, market: &str) -> Vec<TradeView> {
    get(format!("{}/api/markets/{market}/trades", ex.url())).await
}

/// Wait until the exchange's trades of `market` satisfy `done`.
async fn wait_exchange(ex: &Exchange, market: &str, secs: u64, done: impl Fn(&[TradeView]) -> bool) -> Vec<TradeView> {
    for _ in 0..secs * 4 {
        let t = trades(ex, market).await;
        if done(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the exchange's trades did not get there in {secs} s: {:#?}", trades(ex, market).await);
}

/// Wait until the book of `market` satisfies `done`.
async fn wait_book(ex: &Exchange, market: &str, done: impl Fn(&Book) -> bool) -> Book {
    for _ in 0..80 {
        let b = book(ex, market).await;
        if done(&b) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("book not as expected: {:#?}", book(ex, market).await);
}

/// The market (keyset id) of `unit`, once the exchange has seen its announcement.
async fn market_id(ex: &Exchange, unit: &str) -> String {
    for _ in 0..80 {
        let ms: Vec<ehash_protocol::api::MarketSummary> = get(format!("{}/api/markets", ex.url())).await;
        if let Some(m) = ms.into_iter().find(|m| m.unit.eq_ignore_ascii_case(unit)) {
            return m.market;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the exchange never saw the announcement of {unit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_match_by_price_and_time_and_the_swap_settles_across_two_mints() {
    let _ = tracing_subscriber::fmt().with_env_filter("ehash=info,ehash_exchange=info,ehash_wallet=info").with_test_writer().try_init();
    settle_and_restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_postgresql() {
    let Some(pg) = ehash_testkit::postgres::PgCluster::start() else { return };
    settle_and_restart(Some(pg.url())).await;
}

/// A partial fill settles; the restarted exchange (same database) shows the same book and trades.
async fn settle_and_restart(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let config = Config { database_url, ..exchange_config(&m) };
    let ex = Exchange::start(config.clone()).await.unwrap();
    // a live view of the market, as the web UI gets it
    let tcp = tokio::net::TcpStream::connect(ex.local_addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/api/ws", ex.local_addr()), tcp).await.unwrap();
    let pushed = tokio::spawn(async move {
        use futures::StreamExt;
        let mut got: Vec<serde_json::Value> = vec![];
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            if let Ok(t) = m.to_text() {
                got.push(serde_json::from_str(t).unwrap());
            }
            if got.iter().any(|v| v["type"] == "trade" && v["data"]["state"] == "settled") {
                break;
            }
        }
        got
    });
    let seller = Party::new(&dir.path().join("seller"), &m, &ex, 1).await;
    let buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let unit = m.earn(&seller.wallet, 3).await; // 12 ehash
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;

    // 12 ehash offered at 10 sat per lot of 4; the buyer bids 12 for 8: it trades at the resting
    // offer's price, 2 lots, 20 sats, and 4 ehash keep resting.
    let ask = seller.offer(Side::Sell, &unit, 12, 10).await;
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;
    // a bid the buyer cannot pay for (with the mint's fees) is refused before it is published
    let too_much = OfferRequest { side: Side::Buy, unit: unit.clone(), amount: 32, min: None, sats_per_lot: 12, sat_mints: vec![], ttl_secs: None };
    let e = buyer.agent.place_offer(too_much).await.unwrap_err().to_string();
    assert!(e.contains("mint fees") && e.contains("100"), "{e}");
    assert!(buyer.agent.offers().await.unwrap().is_empty());
    let bid = buyer.offer(Side::Buy, &unit, 8, 12).await;
    let done = wait_exchange(&ex, &market, 90, |t| t.len() == 1 && t[0].state == TradeState::Settled).await;
    assert_eq!((done[0].amount, done[0].sats, done[0].price), (8, 20, 10));
    let b = book(&ex, &market).await;
    assert_eq!(b.asks.iter().map(|e| (e.address.clone(), e.remaining)).collect::<Vec<_>>(), vec![(ask, 4)]);
    assert!(b.bids.is_empty(), "the bid was filled: {bid}");

    let s = seller.wait_trades(1, 60).await;
    let bt = buyer.wait_trades(1, 60).await;
    assert_eq!(s[0].step, Step::Settled, "{:?}", s[0].note);
    assert_eq!(bt[0].step, Step::Settled, "{:?}", bt[0].note);
    // The seller nets the 20 sats (the buyer paid the seller's claim fee on top), the buyer
    // nets 8 ehash; each paid the sat mint's fees of its own swaps.
    assert_eq!(seller.sats(&m).await, 20);
    assert_eq!(seller.ehash(&m, &unit).await, 4);
    assert_eq!(buyer.ehash(&m, &unit).await, 8);
    let left = buyer.sats(&m).await;
    assert!((100 - 20 - 3..100 - 20).contains(&left), "the buyer has {left} sats left of 100 after paying 20 and fees");

    let report = ehash_exchange::verify::verify(&ex.url(), &[]).await.unwrap();
    assert!(report.ok(), "{report:#?}");
    assert_eq!((report.expected, report.published), (1, 1));
    // pushed live: the book as offers came and went, and every state of the trade in order
    let pushed = pushed.await.unwrap();
    let mut states: Vec<&str> = pushed.iter().filter(|v| v["type"] == "trade").filter_map(|v| v["data"]["state"].as_str()).collect();
    states.dedup(); // a new version in the same state (the preimage learnt) is pushed too
    // (two changes seen in one poll of the mints are pushed as one)
    let order = ["matched", "ehash_locked", "sats_locked", "sats_claimed", "settled"];
    let pos: Vec<usize> = states.iter().map(|s| order.iter().position(|o| o == s).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]) && states.first() == Some(&"matched") && states.last() == Some(&"settled"), "{states:?}");
    assert!(states.contains(&"ehash_locked") && states.contains(&"sats_locked"), "{states:?}");
    assert!(pushed.iter().any(|v| v["type"] == "book" && v["market"] == market.as_str() && v["data"]["asks"][0]["remaining"] == 4));
    let candles: Vec<ehash_protocol::api::Candle> = get(format!("{}/api/markets/{market}/candles?interval=3600", ex.url())).await;
    assert_eq!(candles.len(), 1);
    assert_eq!((candles[0].open, candles[0].high, candles[0].low, candles[0].close, candles[0].volume, candles[0].sats), (10, 10, 10, 10, 8, 20));
    let before = (book(&ex, &market).await, trades(&ex, &market).await);
    // a trade event the journal does not justify (here: a smaller fill, re-signed with the
    // exchange's key) is caught
    let mut forged = parse_trade(&before.1[0]);
    forged.amount = 4;
    forged.sats = 10;
    let newer = Timestamp::from_secs(now() + 5);
    let forged = forged.to_builder().custom_created_at(newer).finalize(&m.exchange_keys).unwrap();
    let client = Client::default();
    client.add_relay(m.relay.url()).await.unwrap();
    client.connect().await;
    client.send_event(&forged).await.unwrap();
    client.shutdown().await;
    let report = ehash_exchange::verify::verify(&ex.url(), &[]).await.unwrap();
    assert!(!report.ok() && report.mismatches.iter().any(|m| m.contains("amount 4 sats 10")), "{report:#?}");
    ex.shutdown().await;
    let ex = Exchange::start(config).await.unwrap();
    assert_eq!((book(&ex, &market).await, trades(&ex, &market).await), before, "the journal replays to the same state");
    ex.shutdown().await;
    m.shutdown().await;
}

fn now() -> u64 {
    Timestamp::now().as_secs()
}

fn parse_trade(v: &TradeView) -> Trade {
    let ev: nostr_sdk::prelude::Event = serde_json::from_value(v.event.clone()).unwrap();
    Trade::parse(&ev).unwrap()
}

/// A counterparty that does not run our agent: it signs its own offers and messages, so it can
/// send anything.
struct Rogue {
    keys: Keys,
    wallet: Arc<MinerWallet>,
    client: Client,
    my_lock: std::sync::Mutex<Option<String>>,
}

impl Rogue {
    async fn new(dir: &Path, m: &Market) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let wallet = Arc::new(MinerWallet::open(&dir.join("wallet.sqlite"), m.pool.mint_url(), [9; 64]).await.unwrap());
        let client = Client::default();
        client.add_relay(m.relay.url()).await.unwrap();
        client.connect().await;
        Self { keys: Keys::generate(), wallet, client, my_lock: Default::default() }
    }

    /// Publish a sell offer (a new offer key each time) dated `created_at`.
    #[allow(clippy::too_many_arguments)]
    async fn offer(&mut self, m: &Market, ex: &Exchange, market: &str, unit: &str, amount: u64, price: u64, created_at: u64) -> nostr_sdk::prelude::Event {
        self.offer_side(Side::Sell, m, ex, market, unit, amount, price, created_at).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn offer_side(&mut self, side: Side, m: &Market, ex: &Exchange, market: &str, unit: &str, amount: u64, price: u64, created_at: u64) -> nostr_sdk::prelude::Event {
        let exchange = PublicKey::parse(&ex.info().pubkey).unwrap();
        let offer = m.offer(format!("rogue{created_at}{amount}{price}{side}"), side, market, unit, amount, price, LOT, exchange);
        let ev = offer.to_builder().custom_created_at(Timestamp::from_secs(created_at)).finalize(&self.keys).unwrap();
        self.client.send_event(&ev).await.unwrap();
        ev
    }

    /// Send `body` to the counterparty and the exchange.
    async fn send(&self, ex: &Exchange, trade: &Trade, to: PublicKey, body: Body) {
        for r in [to, PublicKey::parse(&ex.info().pubkey).unwrap()] {
            self.send_to(trade, r, body.clone()).await;
        }
    }

    /// Send `body` to `to` only.
    async fn send_to(&self, trade: &Trade, to: PublicKey, body: Body) {
        let ev = Message::new(trade.id.clone(), body).to_event(&self.keys, &to, now() + 86_400).unwrap();
        self.client.send_event(&ev).await.unwrap();
    }
}

impl Rogue {
    /// A correct seller's lock for `trade`, sent to the buyer and the exchange; returns the
    /// preimage.
    async fn lock(&self, ex: &Exchange, trade: &Trade) -> String {
        let (preimage, token) = self.make_lock(trade).await;
        self.send(ex, trade, trade.buyer().pubkey, Body::Lock { token }).await;
        preimage
    }

    /// A correct seller's lock for `trade`, not sent: (preimage, token).
    async fn make_lock(&self, trade: &Trade) -> (String, String) {
        let preimage = htlc::new_preimage();
        let hash = htlc::hash_of(&preimage).unwrap();
        let w = self.wallet.wallet_at(&trade.mint_url, &trade.unit).await.unwrap();
        let cond = htlc::conditions(&hash, trade.times.ehash_locktime, lock_key(&trade.buyer().pubkey).unwrap(), lock_key(&self.keys.public_key()).unwrap()).unwrap();
        let swap = durable::prepare_lock(&w, &[9; 64], trade.amount, &cond).await.unwrap();
        let locked = durable::finish(&w, &swap, durable::execute(&w, &swap).await.unwrap()).await.unwrap();
        let token = Token::new(w.mint_url.clone(), locked, None, w.unit.clone()).to_string();
        *self.my_lock.lock().unwrap() = Some(token.clone());
        (preimage, token)
    }

    /// The counterparty's lock token, read from its message to us.
    async fn their_lock(&self) -> String {
        let filter = nostr_sdk::prelude::Filter::new().kind(nostr_sdk::prelude::Kind::Custom(4190)).pubkey(self.keys.public_key());
        let events = self.client.fetch_events(filter).timeout(Duration::from_secs(10)).await.unwrap();
        events
            .into_iter()
            .filter_map(|ev| Message::from_event(&ev, &self.keys).ok())
            .find_map(|msg| match msg.body {
                Body::Lock { token } => Some(token),
                _ => None,
            })
            .expect("the counterparty's lock message")
    }

    /// Spend `token` (an HTLC at `mint`) with the preimage (claim) or, with `None`, over the
    /// refund path, into our own wallet.
    async fn spend(&self, mint: &str, unit: &str, token: &str, preimage: Option<&str>) -> Result<u64, durable::SwapError> {
        let w = self.wallet.wallet_at(mint, unit).await.unwrap();
        let keysets = w.mint_connector().get_mint_keysets().await.unwrap().keysets;
        let proofs = Token::from_str(token).unwrap().proofs(&keysets).unwrap();
        let sk = ehash_protocol::market::signing_key(self.keys.secret_key()).unwrap();
        let inputs = match preimage {
            Some(p) => htlc::claim_witness(&proofs, p, &sk).unwrap(),
            None => htlc::refund_witness(&proofs, &sk, false).unwrap(),
        };
        let swap = durable::prepare_redeem(&w, &[9; 64], inputs).await?;
        let out = durable::execute(&w, &swap).await?;
        let n = out.iter().map(|p| p.amount.to_u64()).sum();
        durable::finish(&w, &swap, out).await?;
        Ok(n)
    }
}

/// A buyer's agent whose 8-ehash bid at 10 was matched by a rogue seller's offer.
struct RogueSale {
    m: Market,
    /// Before the sat mint: every party reaches it through this.
    front: Front,
    ex: Exchange,
    buyer: Party,
    rogue: Rogue,
    unit: String,
    market: String,
    trade: Trade,
}

impl RogueSale {
    async fn start(dir: &Path) -> Self {
        Self::start_with(dir, exchange_config).await
    }

    /// [`RogueSale::start`] with the exchange's settings from `config`.
    async fn start_with(dir: &Path, config: impl FnOnce(&Market) -> Config) -> Self {
        let mut m = Market::start(dir, SAT_FEE_PPK).await;
        let front = Front::start(&m.sat_url).await;
        m.sat_url = front.url();
        let ex = Exchange::start(config(&m)).await.unwrap();
        let buyer = Party::new(&dir.join("buyer"), &m, &ex, 2).await;
        let mut rogue = Rogue::new(&dir.join("rogue"), &m).await;
        let unit = m.earn(&rogue.wallet, 2).await;
        m.fund(&buyer.wallet, 100).await;
        let market = market_id(&ex, &unit).await;
        buyer.offer(Side::Buy, &unit, 8, 10).await;
        wait_book(&ex, &market, |b| b.bids.len() == 1).await;
        rogue.offer(&m, &ex, &market, &unit, 8, 10, now()).await;
        let views = wait_exchange(&ex, &market, 30, |t| t.len() == 1).await;
        let trade = parse_trade(&views[0]);
        Self { m, front, ex, buyer, rogue, unit, market, trade }
    }
}

/// What is wrong with a rogue seller's lock.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Amount,
    Locktime,
    Receiver,
    Dleq,
    Mint,
}

async fn rogue_lock(r: &Rogue, m: &Market, t: &Trade, fault: Fault) -> String {
    let buyer = lock_key(&t.buyer().pubkey).unwrap();
    let me = lock_key(&r.keys.public_key()).unwrap();
    let hash = htlc::hash_of(&htlc::new_preimage()).unwrap();
    let (mut net, mut locktime, mut receiver) = (t.amount, t.times.ehash_locktime, buyer);
    let (mint, unit) = match fault {
        Fault::Mint => (m.sat_url.clone(), "sat".to_owned()),
        _ => (t.mint_url.clone(), t.unit.clone()),
    };
    match fault {
        Fault::Amount => net -= LOT,
        Fault::Locktime => locktime -= 1,
        Fault::Receiver => receiver = lock_key(&Keys::generate().public_key()).unwrap(),
        _ => {}
    }
    if let Fault::Mint = fault {
        net = t.sats;
    }
    let w = r.wallet.wallet_at(&mint, &unit).await.unwrap();
    let cond = htlc::conditions(&hash, locktime, receiver, me).unwrap();
    let swap = durable::prepare_lock(&w, &[9; 64], net, &cond).await.unwrap();
    let proofs = durable::execute(&w, &swap).await.unwrap();
    let mut locked = durable::finish(&w, &swap, proofs).await.unwrap();
    if let Fault::Dleq = fault {
        for p in &mut locked {
            p.dleq = None;
        }
    }
    Token::new(w.mint_url.clone(), locked, None, w.unit.clone()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_lock_is_refused_by_the_buyer_and_blamed_by_the_exchange_and_the_buyer_loses_nothing() {
    let _ = tracing_subscriber::fmt().with_env_filter("ehash_exchange=info,ehash_wallet=info").with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let ex = Exchange::start(exchange_config(&m)).await.unwrap();
    let buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let mut rogue = Rogue::new(&dir.path().join("rogue"), &m).await;
    let unit = m.earn(&rogue.wallet, 10).await;
    m.fund(&rogue.wallet, 100).await;
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;
    let bid = buyer.offer(Side::Buy, &unit, 8, 10).await;
    wait_book(&ex, &market, |b| b.bids.len() == 1).await;

    for (i, (fault, field)) in
        [(Fault::Amount, "amount"), (Fault::Locktime, "locktime"), (Fault::Receiver, "pubkeys"), (Fault::Dleq, "dleq"), (Fault::Mint, "mint")].into_iter().enumerate()
    {
        rogue.keys = Keys::generate();
        rogue.offer(&m, &ex, &market, &unit, 8, 10, now()).await;
        let views = wait_exchange(&ex, &market, 30, |t| t.len() == i + 1).await;
        let view = views.iter().find(|v| v.state == TradeState::Matched).unwrap_or_else(|| panic!("{views:#?}"));
        let trade = parse_trade(view);
        assert_eq!(trade.seller().pubkey, rogue.keys.public_key());
        let token = rogue_lock(&rogue, &m, &trade, fault).await;
        rogue.send(&ex, &trade, trade.buyer().pubkey, Body::Lock { token }).await;

        let id = trade.id.clone();
        let views = wait_exchange(&ex, &market, 30, |t| t.iter().any(|v| v.id == id && v.state == TradeState::Failed)).await;
        let v = views.iter().find(|v| v.id == id).unwrap();
        assert_eq!(v.blame.as_deref(), Some("seller"), "{fault:?}");
        assert!(v.reason.as_deref().unwrap_or("").contains(&format!("{field}:")), "{fault:?}: {:?}", v.reason);
        for _ in 0..40 {
            if buyer.agent.trade(&id).await.unwrap().is_some_and(|t| t.step == Step::Failed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mine = buyer.agent.trade(&id).await.unwrap().unwrap();
        assert_eq!(mine.step, Step::Failed, "{fault:?}: {:?}", mine.note);
        assert!(mine.note.as_deref().unwrap_or("").contains(&format!("{field}:")), "{fault:?}: {:?}", mine.note);
        assert!(mine.my_lock.is_none(), "{fault:?}: the buyer locked nothing");
        assert_eq!(buyer.sats(&m).await, 100, "{fault:?}: the buyer's sats are untouched");
        // the bid is back in full; the rogue's offer is gone
        let b = wait_book(&ex, &market, |b| b.bids.len() == 1 && b.asks.is_empty()).await;
        assert_eq!((b.bids[0].address.clone(), b.bids[0].remaining), (bid.clone(), 8), "{fault:?}");
    }
    // the replay agrees: five trades, each failure journaled against the blamed seller's offer
    let report = ehash_exchange::verify::verify(&ex.url(), &[]).await.unwrap();
    assert!(report.ok(), "{report:#?}");
    assert_eq!((report.expected, report.published), (5, 5));
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_conflicting_offer_versions_are_refused_and_the_first_booked_stands() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let ex = Exchange::start(exchange_config(&m)).await.unwrap();
    let mut rogue = Rogue::new(&dir.path().join("rogue"), &m).await;
    let unit = m.earn(&rogue.wallet, 2).await;
    let market = market_id(&ex, &unit).await;
    let t = now();
    let v2 = rogue.offer(&m, &ex, &market, &unit, 8, 10, t).await;
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;
    // An older version of the same offer (same d, earlier created_at): the relay keeps the newer
    // one, but an exchange that reads it anyway must refuse it; we hand it straight over.
    let d = Offer::parse(&v2).unwrap().id;
    let mut older = Offer::parse(&v2).unwrap();
    older.price = Price::new(1, LOT).unwrap();
    let old_ev = older.to_builder().custom_created_at(Timestamp::from_secs(t - 5)).finalize(&rogue.keys).unwrap();
    let mut same_time = Offer::parse(&v2).unwrap();
    same_time.price = Price::new(2, LOT).unwrap();
    let conflict = same_time.to_builder().custom_created_at(Timestamp::from_secs(t)).finalize(&rogue.keys).unwrap();
    let far = rogue.offer(&m, &ex, &market, &unit, 4, 10, t - 3_600).await; // dated an hour ago
    ex_handle(&ex, &old_ev).await;
    ex_handle(&ex, &conflict).await;
    let refusals: Vec<serde_json::Value> = {
        let mut r = vec![];
        for _ in 0..40 {
            r = get(format!("{}/api/refusals", ex.url())).await;
            if r.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        r
    };
    let reason = |id: &nostr_sdk::prelude::EventId| {
        refusals.iter().find(|r| r["event_id"] == id.to_hex()).and_then(|r| r["reason"].as_str()).unwrap_or_default().to_owned()
    };
    assert!(reason(&old_ev.id).starts_with("stale"), "{refusals:#?}");
    assert!(reason(&conflict.id).starts_with("conflict"), "{refusals:#?}");
    assert!(reason(&far.id).contains("from the exchange's clock"), "{refusals:#?}");
    let b = book(&ex, &market).await;
    assert_eq!(b.asks.len(), 1);
    assert_eq!((b.asks[0].event_id.clone(), b.asks[0].price), (v2.id.to_hex(), 10), "the first booked version stands");
    // a NIP-09 deletion by another key changes nothing; the author's removes the offer
    let address = format!("38190:{}:{d}", rogue.keys.public_key().to_hex());
    let del = |k: &Keys| {
        EventBuilder::new(nostr_sdk::prelude::Kind::EventDeletion, "")
            .tag(nostr_sdk::prelude::Tag::parse(["a", address.as_str()]).unwrap())
            .tag(nostr_sdk::prelude::Tag::parse(["k", "38190"]).unwrap())
            .finalize(k)
            .unwrap()
    };
    ex_handle(&ex, &del(&Keys::generate())).await;
    assert_eq!(book(&ex, &market).await.asks.len(), 1);
    rogue.client.send_event(&del(&rogue.keys)).await.unwrap();
    wait_book(&ex, &market, |b| b.asks.is_empty()).await;
    let report = ehash_exchange::verify::verify(&ex.url(), &[]).await.unwrap();
    assert!(report.ok(), "{report:#?}");
    assert!(report.unbooked.iter().any(|a| a.contains(&far.pubkey.to_hex())), "{report:#?}");
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_naming_mints_the_exchange_does_not_contact_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    // an exchange that trades only at the market's sat mint
    let ex = Exchange::start(Config { sat_mints: vec![m.sat_url.clone()], ..exchange_config(&m) }).await.unwrap();
    let rogue = Rogue::new(&dir.path().join("rogue"), &m).await;
    let unit = m.earn(&rogue.wallet, 2).await;
    let market = market_id(&ex, &unit).await;
    let exchange = PublicKey::parse(&ex.info().pubkey).unwrap();
    let offer_at = |id: &str, sat_mint: &str| {
        let mut o = m.offer(id.into(), Side::Buy, &market, &unit, 8, 10, LOT, exchange);
        o.sat_mints = vec![sat_mint.into()];
        o.to_builder().finalize(&rogue.keys).unwrap()
    };
    // a bid naming the cloud metadata address as its sat mint: the exchange would fetch it
    let ssrf = offer_at("ssrf", "http://169.254.169.254/latest/");
    ex_handle(&ex, &ssrf).await;
    let ok = offer_at("ok", &m.sat_url);
    ex_handle(&ex, &ok).await;
    let refusals: Vec<serde_json::Value> = get(format!("{}/api/refusals", ex.url())).await;
    let reason = |id: &nostr_sdk::prelude::EventId| {
        refusals.iter().find(|r| r["event_id"] == id.to_hex()).and_then(|r| r["reason"].as_str()).unwrap_or_default().to_owned()
    };
    assert!(reason(&ssrf.id).starts_with("sat_mints:") && reason(&ssrf.id).contains("not a sat mint this exchange trades at"), "{refusals:#?}");
    assert_eq!(reason(&ok.id), "", "{refusals:#?}");
    assert_eq!(book(&ex, &market).await.bids.len(), 1);
    ex.shutdown().await;
    // by default no mint at a private address is contacted (here the pool's, on loopback)
    let ex = Exchange::start(Config { private_mints: false, ..exchange_config(&m) }).await.unwrap();
    let market = market_id(&ex, &unit).await;
    let local = offer_at("local", &m.sat_url);
    ex_handle(&ex, &local).await;
    let refusals: Vec<serde_json::Value> = get(format!("{}/api/refusals", ex.url())).await;
    let why = refusals.iter().find(|r| r["event_id"] == local.id.to_hex()).and_then(|r| r["reason"].as_str()).unwrap_or_default();
    assert!(why.starts_with("mint:") && why.contains("private_mints"), "{refusals:#?}");
    assert!(book(&ex, &market).await.bids.iter().all(|b| b.event_id != local.id.to_hex()));
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_epoch_announcement_does_not_take_the_pools_market() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    // the pool's announcement, as anyone can read it from the relay
    let real = pool_announcement(&m).await;
    // a copier re-signs it, dated later so it would win a tie
    let copier = Keys::generate();
    let copy = EventBuilder::new(real.kind, real.content.clone())
        .tags(real.tags.clone().to_vec())
        .custom_created_at(Timestamp::from_secs(real.created_at.as_secs() + 1))
        .finalize(&copier)
        .unwrap();
    // an exchange with no pools configured hears the copy first (handed over directly)
    let ex = Exchange::start(Config { relays: vec!["ws://127.0.0.1:9".into()], ..exchange_config(&m) }).await.unwrap();
    ex_handle(&ex, &copy).await;
    ex_handle(&ex, &real).await;
    let ms: Vec<ehash_protocol::api::MarketSummary> = get(format!("{}/api/markets", ex.url())).await;
    assert_eq!(ms.iter().map(|s| s.pool.as_str()).collect::<Vec<_>>(), [m.pool_keys.public_key().to_hex().as_str()], "the market belongs to the pool its mint names");
    ex.shutdown().await;
    m.shutdown().await;
}

/// A squatter copies the pool's keyset into an announcement of its own, naming a mint URL whose
/// `/v1/ehash/epochs` names the squatter's key (a proxy of the real mint would serve the same
/// keyset, so nothing on the network tells the two apart), and hands it to the exchange first.
/// Only the keyset's owner proof does: the market stays the pool's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_naming_a_mint_of_its_own_does_not_take_the_pools_market() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let real = pool_announcement(&m).await;
    let squatter = Keys::generate();
    let mint = squatter_mint(squatter.public_key()).await;
    let tags = |keep_owner: bool| -> Vec<nostr_sdk::prelude::Tag> {
        real.tags
            .iter()
            .filter(|t| keep_owner || t.as_slice()[0] != "owner")
            .map(|t| if t.as_slice()[0] == "u" { nostr_sdk::prelude::Tag::parse(["u", mint.as_str()]).unwrap() } else { t.clone() })
            .collect()
    };
    let copy = |keep_owner: bool| EventBuilder::new(real.kind, real.content.clone()).tags(tags(keep_owner)).custom_created_at(Timestamp::from_secs(real.created_at.as_secs() + 1)).finalize(&squatter).unwrap();
    let ex = Exchange::start(Config { relays: vec!["ws://127.0.0.1:9".into()], ..exchange_config(&m) }).await.unwrap();
    ex_handle(&ex, &copy(true)).await; // the pool's proof, which names the pool's key
    ex_handle(&ex, &copy(false)).await; // no proof at all
    ex_handle(&ex, &real).await;
    let ms: Vec<ehash_protocol::api::MarketSummary> = get(format!("{}/api/markets", ex.url())).await;
    assert_eq!(ms.iter().map(|s| s.pool.as_str()).collect::<Vec<_>>(), [m.pool_keys.public_key().to_hex().as_str()], "the market belongs to the key its keyset names");
    let pools_mint = ehash_protocol::events::EpochAnnouncement::parse(&real).unwrap().mint_url;
    assert_eq!(ms[0].mint_url, pools_mint, "at the pool's own mint");
    ex.shutdown().await;
    m.shutdown().await;
}

/// The pool's epoch announcement, as anyone can read it from the market's relay.
async fn pool_announcement(m: &Market) -> nostr_sdk::prelude::Event {
    let client = Client::default();
    client.add_relay(m.relay.url()).await.unwrap();
    client.connect().await;
    let filter = nostr_sdk::prelude::Filter::new().kind(nostr_sdk::prelude::Kind::Custom(ehash_protocol::events::KIND_EPOCH_ANNOUNCEMENT)).author(m.pool_keys.public_key());
    let real = client.fetch_events(filter).timeout(Duration::from_secs(10)).await.unwrap().into_iter().next().expect("the pool's announcement");
    client.shutdown().await;
    real
}

/// A mint URL (loopback, as the test market's mints are) whose `GET /v1/ehash/epochs` names
/// `pool` as its pool key, as a squatter's proxy of a real mint would.
async fn squatter_mint(pool: PublicKey) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = serde_json::json!({"pool_pubkey": pool.to_hex(), "epochs": []}).to_string();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    url
}

/// Give an event to the exchange directly, as a relay that kept it would.
async fn ex_handle(ex: &Exchange, ev: &nostr_sdk::prelude::Event) {
    ex.handle(ev.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_who_vanishes_after_the_match_is_blamed_and_the_buyer_keeps_its_sats_and_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let ex = Exchange::start(exchange_config(&m)).await.unwrap();
    let mut seller = Party::new(&dir.path().join("seller"), &m, &ex, 1).await;
    let buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let unit = m.earn(&seller.wallet, 2).await;
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;
    let ask = seller.offer(Side::Sell, &unit, 8, 10).await;
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;
    seller.stop().await; // gone before anything matches
    let bid = buyer.offer(Side::Buy, &unit, 8, 10).await;
    let t = wait_exchange(&ex, &market, 60, |t| t.len() == 1 && t[0].state == TradeState::Failed).await;
    assert_eq!(t[0].blame.as_deref(), Some("seller"));
    assert!(t[0].reason.as_deref().unwrap_or("").contains("did not lock"), "{:?}", t[0].reason);
    let b = wait_book(&ex, &market, |b| b.bids.len() == 1).await;
    assert_eq!((b.bids[0].address.clone(), b.bids[0].remaining), (bid, 8), "the buyer's bid is back in full");
    assert!(b.asks.iter().all(|a| a.address != ask), "the seller's offer left the book");
    let bt = buyer.wait_trades(1, 30).await;
    assert_eq!(bt[0].step, Step::Failed);
    assert_eq!(buyer.sats(&m).await, 100, "the buyer locked nothing and paid no fee");
    // the seller comes back: its agent sees the trade failed and locks nothing
    seller.start();
    let st = seller.wait_trades(1, 30).await;
    assert_eq!(st[0].step, Step::Failed, "{:?}", st[0].note);
    assert_eq!(seller.ehash(&m, &unit).await, 8);
    // blamed, its ask is off the exchange's book: the agent withdraws it, and its ehash is free
    let mut freed = false;
    for _ in 0..40 {
        if seller.wallet.reserved_at(m.pool.mint_url(), &unit).await.unwrap().0 == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(freed, "the blamed seller's offer still holds its ehash: {:?}", seller.agent.offers().await.unwrap());
    assert!(seller.agent.offers().await.unwrap().iter().all(|o| o.offer.canceled));
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_who_vanishes_after_the_seller_locks_is_blamed_and_the_seller_is_refunded_after_the_locktime() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let ex = Exchange::start(exchange_config(&m)).await.unwrap();
    let seller = Party::new(&dir.path().join("seller"), &m, &ex, 1).await;
    let mut buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let unit = m.earn(&seller.wallet, 2).await;
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;
    buyer.offer(Side::Buy, &unit, 8, 10).await;
    wait_book(&ex, &market, |b| b.bids.len() == 1).await;
    buyer.stop().await;
    seller.offer(Side::Sell, &unit, 8, 9).await;
    let t = wait_exchange(&ex, &market, 30, |t| t.len() == 1 && t[0].state == TradeState::EhashLocked).await;
    assert_eq!(t[0].price, 10, "at the resting bid's price");
    assert_eq!(seller.ehash(&m, &unit).await, 0, "the seller's 8 ehash are locked");
    let t = wait_exchange(&ex, &market, 60, |t| t[0].state == TradeState::Failed).await;
    assert_eq!(t[0].blame.as_deref(), Some("buyer"));
    // T1 = t0 + 2·15 + 15 + 10: the seller's agent refunds itself after it; the exchange sees
    // the refund at the mint
    let st = seller.wait_trades(1, 120).await;
    assert_eq!(st[0].step, Step::Refunded, "{:?}", st[0].note);
    assert_eq!(seller.ehash(&m, &unit).await, 8, "every ehash is back");
    let t = wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::Refunded).await;
    assert!(parse_trade(&t[0]).preimage.is_none(), "the preimage was never revealed");
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_settles_through_an_exchange_restart_an_agent_restart_and_a_sat_mint_outage() {
    let _ = tracing_subscriber::fmt().with_env_filter("ehash_exchange=info,ehash_wallet=info").with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let config = exchange_config(&m);
    let ex = Exchange::start(config.clone()).await.unwrap();
    let mut seller = Party::new(&dir.path().join("seller"), &m, &ex, 1).await;
    let buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let unit = m.earn(&seller.wallet, 2).await;
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;
    seller.offer(Side::Sell, &unit, 8, 10).await;
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;
    // the sat mint goes down: the buyer cannot lock until it is back
    m.stop_sat_mint().await;
    buyer.offer(Side::Buy, &unit, 8, 10).await;
    let t = wait_exchange(&ex, &market, 30, |t| t.len() == 1 && t[0].state == TradeState::EhashLocked).await;
    let id = t[0].id.clone();
    // the exchange stops mid-trade, the seller's agent too
    ex.shutdown().await;
    seller.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    m.restart_sat_mint().await;
    let ex = Exchange::start(config).await.unwrap();
    seller.start();
    let st = seller.wait_trades(1, 90).await;
    let bt = buyer.wait_trades(1, 90).await;
    assert_eq!((st[0].step.clone(), bt[0].step.clone()), (Step::Settled, Step::Settled), "{:?} / {:?}", st[0].note, bt[0].note);
    let t = wait_exchange(&ex, &market, 30, |t| t.len() == 1 && t[0].state == TradeState::Settled).await;
    assert_eq!(t[0].id, id);
    assert_eq!(seller.sats(&m).await, 20);
    assert_eq!(buyer.ehash(&m, &unit).await, 8);
    let report = ehash_exchange::verify::verify(&ex.url(), &[]).await.unwrap();
    assert!(report.ok(), "{report:#?}");
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sat_mint_that_rate_limits_and_fails_for_a_while_delays_a_trade_and_is_not_hammered() {
    let _ = tracing_subscriber::fmt().with_env_filter("ehash_wallet=info").with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Market::start(dir.path(), SAT_FEE_PPK).await;
    // everyone reaches the sat mint through a front that can make it say "later"
    let front = Front::start(&m.sat_url).await;
    m.sat_url = front.url();
    let config = exchange_config(&m);
    let ex = Exchange::start(config.clone()).await.unwrap();
    let seller = Party::new(&dir.path().join("seller"), &m, &ex, 1).await;
    let buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let unit = m.earn(&seller.wallet, 2).await;
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;
    // the buyer's lock swap is rate-limited twice (429, as nutshell answers), then the seller's
    // claim fails with 503 until the mint heals: neither is a refusal
    front.fail("/v1/swap", Some("preimage"), 0, MintFault::server_error());
    front.fail("/v1/swap", None, 2, MintFault::rate_limited());
    seller.offer(Side::Sell, &unit, 8, 10).await;
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;
    buyer.offer(Side::Buy, &unit, 8, 10).await;
    wait_exchange(&ex, &market, 30, |t| t.len() == 1 && t[0].state == TradeState::SatsLocked).await;
    assert_eq!(front.seen("/v1/swap").iter().filter(|s| s.faulted && !s.body.contains("preimage")).count(), 2, "the lock was rate-limited");
    // while the claim keeps failing, the agents ask the sat mint about the locks at most every
    // 2 s (the buyer waiting) and back off (the seller retrying): with the exchange (which polls
    // too) stopped, count what reaches the mint in 10 s
    ex.shutdown().await;
    let (checks, claims) = (front.seen("/v1/checkstate").len(), front.seen("/v1/swap").len());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let checks = front.seen("/v1/checkstate").len() - checks;
    let claims = front.seen("/v1/swap").len() - claims;
    // the buyer's polls (5 in 10 s, 6 at most) plus one check after each failed claim; the
    // claims back off 1, 2, 4, 8 s (at most 5 in 10 s)
    assert!(claims <= 5, "the seller sent {claims} claims in 10 s");
    assert!(checks <= 6 + claims, "{checks} checkstate calls in 10 s ({claims} failed claims)");
    let bt = buyer.agent.trades().await.unwrap();
    assert_eq!(bt[0].step, Step::Locked, "the buyer waits: {:?}", bt[0].note);
    let st = seller.agent.trades().await.unwrap();
    assert_eq!(st[0].step, Step::Claiming, "the seller keeps its claim: {:?}", st[0].note);
    // the mint heals: the trade settles
    front.heal();
    let ex = Exchange::start(config).await.unwrap();
    let st = seller.wait_trades(1, 60).await;
    let bt = buyer.wait_trades(1, 60).await;
    assert_eq!((st[0].step.clone(), bt[0].step.clone()), (Step::Settled, Step::Settled), "{:?} / {:?}", st[0].note, bt[0].note);
    assert_eq!(seller.sats(&m).await, 20);
    assert_eq!(buyer.ehash(&m, &unit).await, 8);
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sat_mint_that_never_answers_stalls_only_its_own_trade() {
    let _ = tracing_subscriber::fmt().with_env_filter("ehash_exchange=info,ehash_wallet=info").with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let ex = Exchange::start(exchange_config(&m)).await.unwrap();
    // a second sat mint (the same mint behind another URL) that will accept connections and
    // never answer; the second pair of traders trusts only it
    let real = m.sat_url.clone();
    let tarpit = Front::start(&real).await;
    m.sat_url = tarpit.url();
    let stuck_seller = Party::new(&dir.path().join("stuck-seller"), &m, &ex, 3).await;
    let stuck_buyer = Party::new(&dir.path().join("stuck-buyer"), &m, &ex, 4).await;
    m.fund(&stuck_buyer.wallet, 100).await;
    m.sat_url = real;
    let seller = Party::new(&dir.path().join("seller"), &m, &ex, 1).await;
    let buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let unit = m.earn(&seller.wallet, 2).await;
    assert_eq!(m.earn(&stuck_seller.wallet, 2).await, unit);
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;
    // the tarpit trade: its locks are made, then nobody can ask the mint about them
    tarpit.fail("/v1/checkstate", None, 0, MintFault::Hang);
    stuck_seller.offer(Side::Sell, &unit, 8, 10).await;
    stuck_buyer.offer(Side::Buy, &unit, 8, 10).await;
    for _ in 0..120 {
        if tarpit.seen("/v1/checkstate").iter().any(|s| s.faulted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(tarpit.seen("/v1/checkstate").iter().any(|s| s.faulted), "nobody asked the tarpit");
    // the rest of the market matches and settles meanwhile
    seller.offer(Side::Sell, &unit, 8, 10).await;
    buyer.offer(Side::Buy, &unit, 8, 10).await;
    let st = seller.wait_trades(1, 60).await;
    let bt = buyer.wait_trades(1, 60).await;
    assert_eq!((st[0].step.clone(), bt[0].step.clone()), (Step::Settled, Step::Settled), "{:?} / {:?}", st[0].note, bt[0].note);
    assert_eq!(seller.sats(&m).await, 20);
    // the tarpit trade ends by its deadline, blaming nobody (the lock could not be verified)
    let t = wait_exchange(&ex, &market, 90, |t| t.iter().any(|t| t.state == TradeState::Failed)).await;
    let failed = t.iter().find(|t| t.state == TradeState::Failed).unwrap();
    assert_eq!(parse_trade(failed).sat_mint, tarpit.url(), "{failed:?}");
    assert_eq!(failed.blame.as_deref(), Some("none"), "{:?}", failed.reason);
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_arrives_late_is_late_whatever_date_its_sender_gives_it() {
    let dir = tempfile::tempdir().unwrap();
    // a short lock window, and deadlines enforced only once a minute: the lock below is judged
    // when it arrives, not by the deadline round
    let RogueSale { m, ex, rogue, market, trade, buyer: _buyer, front: _front, .. } =
        RogueSale::start_with(dir.path(), |m| Config { poll_secs: 60, ..m.exchange_config(LOT, 4, 15, 10) }).await;
    // the rogue seller locks after its deadline (and the grace) and dates its message before it
    while now() <= trade.times.seller_lock_by + 2 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, token) = rogue.make_lock(&trade).await;
    let ev = Message::new(trade.id.clone(), Body::Lock { token }).to_event(&rogue.keys, &PublicKey::parse(&ex.info().pubkey).unwrap(), now() + 86_400).unwrap();
    let backdated = EventBuilder::new(ev.kind, ev.content.clone())
        .tags(ev.tags.clone().to_vec())
        .custom_created_at(Timestamp::from_secs(trade.times.seller_lock_by - 1))
        .finalize(&rogue.keys)
        .unwrap();
    ex_handle(&ex, &backdated).await;
    assert_eq!(trades(&ex, &market).await[0].state, TradeState::Matched, "the late lock does not count");
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_who_shows_the_buyer_another_lock_than_the_exchange_cannot_make_the_buyer_miss_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let RogueSale { m, ex, buyer, rogue, unit, market, trade, front: _front } = RogueSale::start(dir.path()).await;
    // the rogue seller equivocates: a valid lock to the exchange, garbage to the buyer
    let (preimage, token) = rogue.make_lock(&trade).await;
    rogue.send_to(&trade, trade.buyer().pubkey, Body::Lock { token: "cashuBnot-a-lock".into() }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rogue.send_to(&trade, PublicKey::parse(&ex.info().pubkey).unwrap(), Body::Lock { token }).await;
    // the buyer locks against the lock the exchange verified, which the exchange passed on
    let t = wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::SatsLocked).await;
    assert_eq!(t[0].blame, None);
    let theirs = rogue.their_lock().await;
    assert_eq!(rogue.spend(&m.sat_url, "sat", &theirs, Some(&preimage)).await.unwrap(), 20);
    let bt = buyer.wait_trades(1, 60).await;
    assert_eq!(bt[0].step, Step::Settled, "{:?}", bt[0].note);
    assert_eq!(buyer.ehash(&m, &unit).await, 8);
    wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::Settled).await;
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_who_claims_without_sending_the_preimage_still_pays_the_buyer() {
    let dir = tempfile::tempdir().unwrap();
    let RogueSale { m, ex, buyer, rogue, unit, market, trade, front: _front } = RogueSale::start(dir.path()).await;
    let preimage = rogue.lock(&ex, &trade).await;
    // the buyer locks; the rogue reads the buyer's lock from its message and claims it quietly
    wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::SatsLocked).await;
    let theirs = rogue.their_lock().await;
    rogue.spend(&m.sat_url, "sat", &theirs, Some(&preimage)).await.unwrap();
    // no preimage message: the buyer reads it from the sat mint (NUT-07 witness) and claims
    let bt = buyer.wait_trades(1, 60).await;
    assert_eq!(bt[0].step, Step::Settled, "{:?}", bt[0].note);
    assert_eq!(buyer.ehash(&m, &unit).await, 8);
    let t = wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::Settled).await;
    assert_eq!(parse_trade(&t[0]).preimage.as_deref(), Some(preimage.as_str()));
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_lock_with_the_wrong_hash_is_refused_and_the_seller_reveals_nothing_and_is_refunded() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let ex = Exchange::start(exchange_config(&m)).await.unwrap();
    let seller = Party::new(&dir.path().join("seller"), &m, &ex, 1).await;
    let mut rogue = Rogue::new(&dir.path().join("rogue"), &m).await;
    let unit = m.earn(&seller.wallet, 2).await;
    m.fund(&rogue.wallet, 100).await;
    let market = market_id(&ex, &unit).await;
    seller.offer(Side::Sell, &unit, 8, 10).await;
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;
    // the rogue bids (a buy offer signed by its own key)
    rogue.offer_side(Side::Buy, &m, &ex, &market, &unit, 8, 10, now()).await;
    let views = wait_exchange(&ex, &market, 30, |t| t.len() == 1 && t[0].state == TradeState::EhashLocked).await;
    let trade = parse_trade(&views[0]);
    assert_eq!(trade.buyer().pubkey, rogue.keys.public_key());
    // a sats lock against another hash
    let hash = htlc::hash_of(&htlc::new_preimage()).unwrap();
    let w = rogue.wallet.wallet_at(&m.sat_url, "sat").await.unwrap();
    let cond = htlc::conditions(&hash, trade.times.sats_locktime, lock_key(&trade.seller().pubkey).unwrap(), lock_key(&rogue.keys.public_key()).unwrap()).unwrap();
    let swap = durable::prepare_lock(&w, &[9; 64], trade.sats + 1, &cond).await.unwrap();
    let locked = durable::finish(&w, &swap, durable::execute(&w, &swap).await.unwrap()).await.unwrap();
    let token = Token::new(w.mint_url.clone(), locked, None, w.unit.clone()).to_string();
    rogue.send(&ex, &trade, trade.seller().pubkey, Body::Lock { token }).await;
    let t = wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::Failed).await;
    assert_eq!(t[0].blame.as_deref(), Some("buyer"));
    assert!(t[0].reason.as_deref().unwrap_or("").contains("hash:"), "{:?}", t[0].reason);
    // the seller never claims (the preimage stays secret) and takes its ehash back after T1
    let st = seller.wait_trades(1, 120).await;
    assert_eq!(st[0].step, Step::Refunded, "{:?}", st[0].note);
    assert_eq!(seller.ehash(&m, &unit).await, 8);
    let t = wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::Refunded).await;
    assert!(parse_trade(&t[0]).preimage.is_none());
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_who_vanishes_after_both_locks_leaves_both_refunded_after_their_locktimes() {
    let dir = tempfile::tempdir().unwrap();
    let RogueSale { m, front, ex, buyer, rogue, market, trade, .. } = RogueSale::start(dir.path()).await;
    // the sat mint refuses refunds whose witness has an empty preimage (as nutshell before 0.19)
    let empty = r#"\"preimage\":\"\""#;
    let refusal = r#"{"code":10001,"detail":"HTLC preimage does not match."}"#;
    front.fail("/v1/swap", Some(empty), 0, MintFault::Status { code: 400, body: refusal.into(), retry_after: None });
    // the seller locks, then is gone: the buyer's lock is never claimed
    let _preimage = rogue.lock(&ex, &trade).await;
    let t = wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::SatsLocked).await;
    assert_eq!(t[0].sats, 20);
    // after T2 the buyer takes its sats back (less the mint's fees) and the exchange blames the
    // seller; the refused refund is shown with the mint's reason, then retried with a dummy
    // preimage
    let bt = buyer.wait_trades(1, 90).await;
    assert_eq!(bt[0].step, Step::Refunded, "{:?}", bt[0].note);
    assert_eq!(front.seen("/v1/swap").iter().filter(|s| s.faulted).count(), 1);
    let note = bt[0].note.clone().unwrap_or_default();
    assert!(note.contains("refused the refund") && note.contains("dummy preimage"), "{note}");
    let left = buyer.sats(&m).await;
    assert!((95..100).contains(&left), "the buyer got its sats back less fees: {left}");
    let t = wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::Failed).await;
    assert_eq!(t[0].blame.as_deref(), Some("seller"));
    assert!(t[0].reason.as_deref().unwrap_or("").contains("did not claim"), "{:?}", t[0].reason);
    // the seller's ehash lock cannot be taken back before T1, and can after it
    let token = rogue.my_lock.lock().unwrap().clone().unwrap();
    let t1 = trade.times.ehash_locktime;
    assert!(now() < t1 && rogue.spend(&trade.mint_url, &trade.unit, &token, None).await.is_err(), "refund refused before T1");
    while now() <= t1 + 1 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(rogue.spend(&trade.mint_url, &trade.unit, &token, None).await.unwrap(), 8);
    let t = wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::Refunded).await;
    assert!(parse_trade(&t[0]).preimage.is_none());
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_while_the_exchange_is_down_claims_its_ehash() {
    let dir = tempfile::tempdir().unwrap();
    let RogueSale { m, ex, mut buyer, rogue, unit, market, trade, front: _front } = RogueSale::start(dir.path()).await;
    let preimage = rogue.lock(&ex, &trade).await;
    wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::SatsLocked).await;
    // the buyer's agent stops; the seller claims the sats and sends the preimage; the exchange
    // goes down
    buyer.stop().await;
    let wallet = buyer.wallet.clone();
    drop(buyer);
    let theirs = rogue.their_lock().await;
    assert_eq!(rogue.spend(&m.sat_url, "sat", &theirs, Some(&preimage)).await.unwrap(), 20);
    rogue.send(&ex, &trade, trade.buyer().pubkey, Body::Preimage { preimage: preimage.clone() }).await;
    let config = ehash_wallet::agent::TradeConfig { exchange_url: ex.url(), ..m.trade_config() };
    ex.shutdown().await;
    // the agent starts without the exchange and claims its ehash
    let agent = Agent::open(wallet.clone(), &dir.path().join("buyer"), config).await.expect("the agent starts while the exchange is down");
    let cancel = CancellationToken::new();
    let task = agent.run(cancel.clone());
    for _ in 0..120 {
        if agent.trades().await.unwrap()[0].step.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let t = agent.trades().await.unwrap();
    assert_eq!(t[0].step, Step::Settled, "{:?}", t[0].note);
    assert_eq!(wallet.balance_at(m.pool.mint_url(), &unit).await.unwrap(), 8);
    cancel.cancel();
    task.await.unwrap();
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_restarted_after_the_buyers_deadline_reads_the_buyers_lock_before_judging() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Market::start(dir.path(), SAT_FEE_PPK).await;
    // the sat mint behind a front (to hold the buyer's lock back), and a long claim window, so
    // the seller can still claim well after the buyer's lock deadline
    let front = Front::start(&m.sat_url).await;
    m.sat_url = front.url();
    let ex = Exchange::start(m.exchange_config(LOT, 15, 60, 10)).await.unwrap();
    // the seller reaches the relay through a gate that can cut it off
    let gate = Gate::start(m.relay.local_addr()).await;
    let mut seller = Party::with_relay(&dir.path().join("seller"), &m, &ex, 1, &format!("ws://{}", gate.addr())).await;
    let buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let unit = m.earn(&seller.wallet, 2).await;
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;
    front.fail("/v1/swap", None, 0, MintFault::server_error());
    seller.offer(Side::Sell, &unit, 8, 10).await;
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;
    buyer.offer(Side::Buy, &unit, 8, 10).await;
    // the seller locks; then it loses its relay and stops before the buyer's lock goes through
    wait_exchange(&ex, &market, 30, |t| t.len() == 1 && t[0].state == TradeState::EhashLocked).await;
    gate.close();
    seller.stop().await;
    front.heal();
    let t = wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::SatsLocked).await;
    let trade = parse_trade(&t[0]);
    // it comes back after the buyer's deadline (plus the agent's grace), still without its relay:
    // the buyer's lock is there, so the seller must not judge the buyer before it has read it
    while now() <= trade.times.buyer_lock_by + m.trade_config().grace_secs + 1 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seller.start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = seller.agent.trades().await.unwrap();
    assert_eq!((st[0].step.clone(), st[0].their_token.is_some()), (Step::Locked, false), "the seller waits for its relay: {:?}", st[0].note);
    gate.open();
    let st = seller.wait_trades(1, 60).await;
    let bt = buyer.wait_trades(1, 60).await;
    assert_eq!((st[0].step.clone(), bt[0].step.clone()), (Step::Settled, Step::Settled), "{:?} / {:?}", st[0].note, bt[0].note);
    assert_eq!(seller.sats(&m).await, 20);
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_away_while_the_seller_claims_claims_its_ehash_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let RogueSale { m, ex, mut buyer, rogue, unit, market, trade, front: _front } = RogueSale::start(dir.path()).await;
    let preimage = rogue.lock(&ex, &trade).await;
    wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::SatsLocked).await;
    // the buyer's agent is gone while the seller claims (and sends the preimage)
    buyer.stop().await;
    let theirs = rogue.their_lock().await;
    assert_eq!(rogue.spend(&m.sat_url, "sat", &theirs, Some(&preimage)).await.unwrap(), 20);
    rogue.send(&ex, &trade, trade.buyer().pubkey, Body::Preimage { preimage: preimage.clone() }).await;
    wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::SatsClaimed).await;
    assert_eq!(buyer.agent.trades().await.unwrap()[0].step, Step::Locked, "the buyer has not claimed yet");
    buyer.start();
    let bt = buyer.wait_trades(1, 30).await;
    assert_eq!(bt[0].step, Step::Settled, "{:?}", bt[0].note);
    assert_eq!(buyer.ehash(&m, &unit).await, 8);
    wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::Settled).await;
    ex.shutdown().await;
    m.shutdown().await;
}

/// A key to lock ehash to (so that sending it swaps the proofs at the mint).
fn elsewhere() -> cdk::nuts::PublicKey {
    cdk::nuts::SecretKey::generate().public_key()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ehash_behind_an_open_ask_is_reserved_and_an_ask_whose_ehash_vanishes_is_withdrawn_without_blaming_the_buyer() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let ex = Exchange::start(exchange_config(&m)).await.unwrap();
    let mut seller = Party::new(&dir.path().join("seller"), &m, &ex, 1).await;
    let buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let unit = m.earn(&seller.wallet, 2).await;
    assert_eq!(seller.ehash(&m, &unit).await, 8);
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;

    // an ask of one lot holds 4 of the 8: the other 4 may be sent, not more
    let ask = seller.offer(Side::Sell, &unit, LOT, 10).await;
    let d = ask.rsplit(':').next().unwrap().to_owned();
    let e = seller.wallet.send(&unit, 8, None).await.unwrap_err();
    assert!(matches!(e, ehash_wallet::Error::Reserved { reserved: 4, have: 8, .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("offer {d}")) && msg.contains("cancel"), "the refusal names the offer and the way out: {msg}");
    let req = OfferRequest { side: Side::Sell, unit: unit.clone(), amount: 8, min: None, sats_per_lot: 10, sat_mints: vec![], ttl_secs: Some(600) };
    let e = seller.agent.place_offer(req).await.unwrap_err();
    assert!(matches!(e, ehash_wallet::Error::Reserved { .. }), "the same ehash is not offered twice: {e}");
    seller.wallet.send(&unit, 4, None).await.expect("what no offer holds can be sent");
    assert_eq!(seller.ehash(&m, &unit).await, 4);
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;

    // another device with the same seed spends the 4 behind the ask while this agent is away;
    // a bid matches the stale ask, the seller cannot lock: the ask is withdrawn, the seller is
    // blamed and the buyer's bid goes back in full
    seller.stop().await;
    let other = MinerWallet::open(&dir.path().join("other.sqlite"), m.pool.mint_url(), [1; 64]).await.unwrap();
    // (it also finds the 4 sent as a token, not yet received by anyone, and spends all 8)
    let found = other.restore_from_seed().await.unwrap()[&unit];
    assert_eq!(found, 8);
    other.send(&unit, found, Some(elsewhere())).await.expect("the other device spends the ehash");
    let bid = buyer.offer(Side::Buy, &unit, LOT, 10).await;
    wait_exchange(&ex, &market, 30, |t| t.len() == 1).await;
    seller.start();
    let t = wait_exchange(&ex, &market, 60, |t| t[0].state == TradeState::Failed).await;
    assert_eq!(t[0].blame.as_deref(), Some("seller"), "{:?}", t[0].reason);
    let b = wait_book(&ex, &market, |b| b.bids.len() == 1 && b.asks.is_empty()).await;
    assert_eq!((b.bids[0].address.clone(), b.bids[0].remaining), (bid, LOT), "the buyer's bid is back in full");
    let offers = seller.agent.offers().await.unwrap();
    let o = offers.iter().find(|o| o.offer.d == d).unwrap();
    assert!(o.offer.canceled && !o.open, "the seller's ask was withdrawn: {o:?}");
    assert_eq!(buyer.sats(&m).await, 100, "the buyer locked nothing");

    // new ehash, a new ask at a price no bid crosses, and the other device spends it again: the
    // agent's check with the mint withdraws the ask before anything can match it
    m.earn(&seller.wallet, 1).await;
    let ask = seller.offer(Side::Sell, &unit, LOT, 50).await;
    let d = ask.rsplit(':').next().unwrap().to_owned();
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;
    assert_eq!(seller.agent.check_backing().await.unwrap(), Vec::<String>::new(), "a backed ask stays");
    let found = other.restore_from_seed().await.unwrap()[&unit];
    other.send(&unit, found, Some(elsewhere())).await.expect("the other device spends the ehash");
    assert_eq!(seller.agent.check_backing().await.unwrap(), vec![d], "the unbacked ask is withdrawn");
    wait_book(&ex, &market, |b| b.asks.is_empty()).await;
    assert_eq!(seller.ehash(&m, &unit).await, 0, "the spent proofs left the wallet");
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_cut_off_from_its_relay_judges_no_deadline_until_it_has_read_the_locks_sent_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Market::start(dir.path(), SAT_FEE_PPK).await;
    // the sat mint behind a front (to hold the buyer's lock back until the exchange is away)
    let front = Front::start(&m.sat_url).await;
    m.sat_url = front.url();
    // the exchange reaches the relay through a gate that can cut it off
    let gate = Gate::start(m.relay.local_addr()).await;
    let ex = Exchange::start(Config { relays: vec![format!("ws://{}", gate.addr())], ..exchange_config(&m) }).await.unwrap();
    let seller = Party::new(&dir.path().join("seller"), &m, &ex, 1).await;
    let buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let unit = m.earn(&seller.wallet, 2).await;
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;
    front.fail("/v1/swap", None, 0, MintFault::server_error());
    seller.offer(Side::Sell, &unit, 8, 10).await;
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;
    buyer.offer(Side::Buy, &unit, 8, 10).await;
    let t = wait_exchange(&ex, &market, 30, |t| t.len() == 1 && t[0].state == TradeState::EhashLocked).await;
    let trade = parse_trade(&t[0]);
    // the buyer has seen the judged lock; the exchange loses its relay, then the buyer locks
    for _ in 0..40 {
        if buyer.agent.trades().await.unwrap().first().is_some_and(|t| t.judged_hash.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    gate.close();
    tokio::time::sleep(Duration::from_secs(2)).await;
    front.heal();
    // past the buyer's deadline (and the exchange's grace), the exchange has not read the lock
    while now() <= trade.times.buyer_lock_by + 2 + 3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let t = trades(&ex, &market).await;
    assert_eq!((t[0].state, t[0].blame.clone()), (TradeState::EhashLocked, None), "nobody is judged while the exchange cannot read: {:?}", t[0].reason);
    gate.open();
    let t = wait_exchange(&ex, &market, 60, |t| t[0].state == TradeState::Settled || t[0].state == TradeState::Failed).await;
    assert_eq!((t[0].state, t[0].blame.clone()), (TradeState::Settled, None), "{:?}", t[0].reason);
    let st = seller.wait_trades(1, 60).await;
    let bt = buyer.wait_trades(1, 60).await;
    assert_eq!((st[0].step.clone(), bt[0].step.clone()), (Step::Settled, Step::Settled), "{:?} / {:?}", st[0].note, bt[0].note);
    ex.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_whose_claim_the_exchange_cannot_read_is_not_blamed_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let RogueSale { m, ex, buyer, rogue, market, trade, front, .. } = RogueSale::start(dir.path()).await;
    let preimage = rogue.lock(&ex, &trade).await;
    wait_exchange(&ex, &market, 30, |t| t[0].state == TradeState::SatsLocked).await;
    // from now on nobody can read the sat mint's proof states (NUT-07 hangs); the seller claims
    // the sats and tells the buyer, who claims the ehash at the pool mint
    front.fail("/v1/checkstate", None, 0, MintFault::Hang);
    let theirs = rogue.their_lock().await;
    assert_eq!(rogue.spend(&m.sat_url, "sat", &theirs, Some(&preimage)).await.unwrap(), 20);
    rogue.send(&ex, &trade, trade.buyer().pubkey, Body::Preimage { preimage: preimage.clone() }).await;
    let bt = buyer.wait_trades(1, 30).await;
    assert_eq!(bt[0].step, Step::Settled, "{:?}", bt[0].note);
    // past the sats locktime and its grace: the exchange could not read the claim, so it blames
    // nobody for it
    while now() <= trade.times.sats_locktime + 2 + 3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let t = trades(&ex, &market).await;
    assert_eq!((t[0].state, t[0].blame.clone()), (TradeState::SatsLocked, None), "{:?}", t[0].reason);
    // the sat mint answers again: the claim is read and the trade settles
    front.heal();
    let t = wait_exchange(&ex, &market, 60, |t| t[0].state == TradeState::Settled || t[0].state == TradeState::Failed).await;
    assert_eq!((t[0].state, t[0].blame.clone()), (TradeState::Settled, None), "{:?}", t[0].reason);
    ex.shutdown().await;
    m.shutdown().await;
}
