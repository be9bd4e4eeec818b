//! The whole market over real parts: a relay, the pool's mint-bridge, a separate sat mint (with
//! input fees), the exchange, and two trade agents on their own wallets, all over HTTP and
//! WebSocket. Offers match with price-time priority, each trade settles as a cross-mint HTLC
//! swap, and every failure ends with nothing lost and a trade state saying what happened.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ehash_exchange::{Config, Exchange};
use ehash_protocol::api::{Book, TradeView};
use ehash_protocol::events::TradeState;
use ehash_protocol::market::Side;
use ehash_testkit::market::Market;
use ehash_wallet::MinerWallet;
use ehash_wallet::agent::record::Step;
use ehash_wallet::agent::{Agent, OfferRequest, TradeConfig};
use tokio_util::sync::CancellationToken;

const SAT_FEE_PPK: u64 = 100;
const LOT: u64 = 4;

fn exchange_config(dir: &Path, m: &Market) -> Config {
    Config {
        data_dir: dir.join("exchange"),
        listen: "127.0.0.1:0".parse().unwrap(),
        relays: vec![m.relay.url().to_owned()],
        nostr_secret_key: Some(m.exchange_keys.secret_key().to_secret_hex()),
        lot: LOT,
        lock_secs: 15,
        claim_secs: 15,
        margin_secs: 10,
        grace_secs: 2,
        poll_secs: 1,
        ..Default::default()
    }
}

struct Party {
    wallet: Arc<MinerWallet>,
    agent: Agent,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Party {
    async fn new(dir: &Path, m: &Market, ex: &Exchange, seed: u8) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let wallet = Arc::new(MinerWallet::open(&dir.join("wallet.sqlite"), m.pool.mint_url(), [seed; 64]).await.unwrap());
        let config = TradeConfig {
            exchange_url: ex.url(),
            relays: vec![m.relay.url().to_owned()],
            sat_mints: vec![m.sat_url.clone()],
            min_margin_secs: 5,
            ..Default::default()
        };
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
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let ex = Exchange::start(exchange_config(dir.path(), &m)).await.unwrap();
    let seller = Party::new(&dir.path().join("seller"), &m, &ex, 1).await;
    let buyer = Party::new(&dir.path().join("buyer"), &m, &ex, 2).await;
    let unit = m.earn(&seller.wallet, 3).await; // 12 ehash
    m.fund(&buyer.wallet, 100).await;
    let market = market_id(&ex, &unit).await;

    // 12 ehash offered at 10 sat per lot of 4; the buyer bids 12 for 8: it trades at the resting
    // offer's price, 2 lots, 20 sats, and 4 ehash keep resting.
    let ask = seller.offer(Side::Sell, &unit, 12, 10).await;
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;
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
    ex.shutdown().await;
    m.shutdown().await;
}
