//! Figures, not a timed test, for the exchange (issue: matching and swap benchmarks):
//!
//! 1. matching in memory: signed offers applied to one book per second (signature and schema
//!    checks included, as the exchange does them), and the same with every book event written
//!    to the SQLite journal first (fsync per event, as the service does);
//! 2. offer-to-match latency over real parts: a taker's offer published to the relay until the
//!    exchange's kind-38191 trade event arrives on a subscription (p50/p99);
//! 3. a whole swap on loopback (two agents, the pool mint and a sat mint over HTTP): from the
//!    agents seeing the match to both settled, beside the sum of the mint round trips a swap
//!    makes (two swaps and one NUT-07 check at each mint), measured in the same run.
//!
//! Run: `cargo bench -p ehash-exchange --bench market` (`EHASH_BENCH_N` offers, default 20000).
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cdk::nuts::Token;
use ehash_exchange::book::Book;
use ehash_exchange::store::Store;
use ehash_exchange::Exchange;
use ehash_protocol::api::{JournalEntry, JournalKind};
use ehash_protocol::events::{Offer, OfferStatus};
use ehash_protocol::market::{Price, Side};
use ehash_testkit::market::Market;
use ehash_wallet::MinerWallet;
use ehash_wallet::agent::record::Step;
use ehash_wallet::agent::{Agent, OfferRequest};
use ehash_wallet::{durable, htlc};
use nostr_sdk::prelude::*;
use tokio_util::sync::CancellationToken;

const LOT: u64 = 4;

fn n() -> usize {
    std::env::var("EHASH_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000)
}

/// A deterministic stream of offers around a price of 1000 sats per lot.
fn offers(n: usize, market: &str, exchange: PublicKey, pool: PublicKey) -> Vec<Event> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let now = Timestamp::now().as_secs();
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let side = if x.is_multiple_of(2) { Side::Buy } else { Side::Sell };
            let price = 990 + (x >> 8) % 21;
            let lots = 1 + (x >> 16) % 8;
            let o = Offer {
                id: format!("o{i}"),
                side,
                status: OfferStatus::Pending,
                market: market.into(),
                unit: "hash_b_1".into(),
                mint_url: "http://127.0.0.1:1".into(),
                pool,
                sat_mints: vec!["http://127.0.0.1:2".into()],
                amount: lots * LOT,
                min: LOT,
                price: Price::new(price, LOT).unwrap(),
                exchange,
                expiration: now + 86_400,
                note: String::new(),
            };
            o.to_builder().custom_created_at(Timestamp::from_secs(now)).finalize(&Keys::generate()).unwrap()
        })
        .collect()
}

fn entry(seq: u64, ev: &Event) -> JournalEntry {
    JournalEntry {
        seq,
        kind: JournalKind::Offer,
        at: ev.created_at.as_secs(),
        event: Some(serde_json::to_value(ev).unwrap()),
        address: None,
        trade: None,
        remove: None,
        restore: None,
    }
}

async fn matching() {
    let market = "00b4cd27d8861a44";
    let evs = offers(n(), market, Keys::generate().public_key(), Keys::generate().public_key());
    let entries: Vec<JournalEntry> = evs.iter().enumerate().map(|(i, e)| entry(i as u64 + 1, e)).collect();
    let mut book = Book::new(market, LOT);
    let start = Instant::now();
    let mut fills = 0;
    for e in &entries {
        fills += book.apply(e).unwrap().len();
    }
    let mem = entries.len() as f64 / start.elapsed().as_secs_f64();
    println!("matching in memory:        {mem:>10.0} offers/s ({} offers, {fills} fills, signatures checked)", entries.len());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    let k = entries.len().min(3_000);
    let mut book = Book::new(market, LOT);
    let start = Instant::now();
    for e in &entries[..k] {
        store.append(market, e).await.unwrap();
        book.apply(e).unwrap();
    }
    let stored = k as f64 / start.elapsed().as_secs_f64();
    println!("matching with the journal: {stored:>10.0} offers/s ({k} offers, SQLite, fsync per event)");
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency(m: &Market, ex: &Exchange, market: &str, unit: &str) {
    let client = Client::default();
    client.add_relay(m.relay.url()).await.unwrap();
    client.connect().await;
    let exchange = PublicKey::parse(&ex.info().pubkey).unwrap();
    client.subscribe(Filter::new().kind(Kind::Custom(38191)).author(exchange).since(Timestamp::now())).await.unwrap();
    let mut notes = client.notifications();
    let mut lat = vec![];
    let rounds = 200;
    for i in 0..rounds {
        // far below the swap rounds' price: the bid of each pair returns to the book when its
        // trade fails (nobody settles these), and must not cross them
        let mk = |side: Side, keys: &Keys| m.offer(format!("l{i}{}", side.as_str()), side, market, unit, LOT, 1, LOT, exchange).to_builder().finalize(keys).unwrap();
        let maker = mk(Side::Sell, &Keys::generate());
        client.send_event(&maker).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let taker = mk(Side::Buy, &Keys::generate());
        let start = Instant::now();
        client.send_event(&taker).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), notes.next()).await {
                Ok(Some(ClientNotification::Event { event, .. })) if event.tags.event_ids().any(|id| id == taker.id) => break,
                Ok(Some(_)) => {}
                other => panic!("no trade event: {other:?}"),
            }
        }
        lat.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    println!("offer to match event:      p50 {p50:.1} ms, p99 {p99:.1} ms ({rounds} takers through the relay)");
    client.shutdown().await;
}

async fn party(dir: &std::path::Path, m: &Market, ex: &Exchange, seed: u8) -> (Arc<MinerWallet>, Agent, CancellationToken) {
    std::fs::create_dir_all(dir).unwrap();
    let wallet = Arc::new(MinerWallet::open(&dir.join("wallet.sqlite"), m.pool.mint_url(), [seed; 64]).await.unwrap());
    let config = m.trade_config();
    let agent = Agent::open_with(wallet.clone(), dir, config, ex.info().clone()).await.unwrap();
    let cancel = CancellationToken::new();
    agent.run(cancel.clone());
    (wallet, agent, cancel)
}

/// The mint round trips one swap makes, measured directly: a lock swap and a redeem swap at
/// each mint, and a NUT-07 check at each.
async fn round_trips(m: &Market, w: &MinerWallet, unit: &str) -> f64 {
    let keys = Keys::generate();
    let me = ehash_protocol::market::lock_key(&keys.public_key()).unwrap();
    let sk = ehash_protocol::market::signing_key(keys.secret_key()).unwrap();
    let mut total = Duration::ZERO;
    for (mint, unit, amount) in [(m.pool.mint_url().to_owned(), unit.to_owned(), LOT), (m.sat_url.clone(), "sat".to_owned(), 10)] {
        let wl = w.wallet_at(&mint, &unit).await.unwrap();
        let preimage = htlc::new_preimage();
        let cond = htlc::conditions(&htlc::hash_of(&preimage).unwrap(), Timestamp::now().as_secs() + 600, me, me).unwrap();
        let swap = durable::prepare_lock(&wl, &[7; 64], amount, &cond).await.unwrap();
        let t = Instant::now();
        let out = durable::execute(&wl, &swap).await.unwrap();
        total += t.elapsed();
        let locked = durable::finish(&wl, &swap, out).await.unwrap();
        let t = Instant::now();
        htlc::check_states(wl.mint_connector().as_ref(), &locked).await.unwrap();
        total += t.elapsed();
        let inputs = htlc::claim_witness(&locked, &preimage, &sk).unwrap();
        let redeem = durable::prepare_redeem(&wl, &[7; 64], inputs).await.unwrap();
        let t = Instant::now();
        let out = durable::execute(&wl, &redeem).await.unwrap();
        total += t.elapsed();
        durable::finish(&wl, &redeem, out).await.unwrap();
        let _ = Token::new(wl.mint_url.clone(), locked, None, wl.unit.clone());
    }
    total.as_secs_f64() * 1e3
}

async fn swaps(m: &Market, ex: &Exchange, dir: &std::path::Path) {
    let (sw, seller, c1) = party(&dir.join("seller"), m, ex, 1).await;
    let (bw, buyer, c2) = party(&dir.join("buyer"), m, ex, 2).await;
    let rounds = 5;
    let unit = m.earn(&sw, rounds as u64 + 2).await;
    m.fund(&bw, 1_000).await;
    let mut e2e = vec![];
    let mut trips = vec![];
    for i in 0..rounds {
        seller.place_offer(OfferRequest { side: Side::Sell, unit: unit.clone(), amount: LOT, min: None, sats_per_lot: 10, sat_mints: vec![], ttl_secs: Some(600) }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        buyer.place_offer(OfferRequest { side: Side::Buy, unit: unit.clone(), amount: LOT, min: None, sats_per_lot: 10, sat_mints: vec![], ttl_secs: Some(600) }).await.unwrap();
        let start = loop {
            if seller.trades().await.unwrap().len() > i || buyer.trades().await.unwrap().len() > i {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        loop {
            let s = seller.trades().await.unwrap();
            let b = buyer.trades().await.unwrap();
            if s.len() > i && b.len() > i && s.iter().chain(b.iter()).all(|t| t.step == Step::Settled) {
                break;
            }
            if let Some(t) = s.iter().chain(b.iter()).find(|t| matches!(t.step, Step::Failed | Step::Refunded)) {
                panic!("a bench swap failed: {:?} {:?} {:?}", t.role, t.step, t.note);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        e2e.push(start.elapsed().as_secs_f64() * 1e3);
        trips.push(round_trips(m, &bw, &unit).await);
    }
    println!("  swaps (ms): {}", e2e.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" "));
    let (e, t) = (pct(&mut e2e, 0.5), pct(&mut trips, 0.5));
    println!("swap end to end:           median {e:.0} ms; sum of its mint round trips {t:.0} ms; ratio {:.2} (goal ≤ 1.5)", e / t);
    c1.cancel();
    c2.cancel();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    matching().await;
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 100).await;
    let ex = Exchange::start(m.exchange_config(LOT, 15, 15, 10)).await.unwrap();
    let w = MinerWallet::open(&dir.path().join("probe.sqlite"), m.pool.mint_url(), [3; 64]).await.unwrap();
    let unit = m.earn(&w, 1).await;
    let market = loop {
        let r = bitreq::get(format!("{}/api/markets", ex.url())).send_async().await.unwrap();
        let ms: Vec<ehash_protocol::api::MarketSummary> = r.json().unwrap();
        if let Some(x) = ms.into_iter().find(|x| x.unit == unit) {
            break x.market;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    latency(&m, &ex, &market, &unit).await;
    swaps(&m, &ex, dir.path()).await;
    ex.shutdown().await;
    m.shutdown().await;
}
