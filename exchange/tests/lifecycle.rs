//! Markets follow their epoch's payout lifecycle (protocol §2, §9): once the pool announces an
//! epoch redeemable the market shows its payout and fair price per lot; once the pool announces
//! it expired, the exchange takes its offers off the book (journaled) and refuses new ones.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};
use ehash_exchange::Exchange;
use ehash_protocol::api::{Book, JournalEntry, JournalKind, MarketSummary};
use ehash_protocol::epoch::{CloseReason, EpochState, ValueBasis, epoch_payout, redeem_sats};
use ehash_protocol::market::Side;
use ehash_testkit::market::{CREDIT, Market};
use ehash_wallet::MinerWallet;
use nostr_sdk::prelude::{Client, FinalizeEvent, Keys, PublicKey};

const LOT: u64 = 4;

async fn get<T: serde::de::DeserializeOwned>(url: String) -> T {
    let r = bitreq::get(url.as_str()).with_timeout(10).send_async().await.unwrap();
    assert_eq!(r.status_code, 200, "{url}");
    r.json().unwrap()
}

async fn summary(ex: &Exchange, unit: &str) -> Option<MarketSummary> {
    let ms: Vec<MarketSummary> = get(format!("{}/api/markets", ex.url())).await;
    ms.into_iter().find(|m| m.unit.eq_ignore_ascii_case(unit))
}

async fn wait_summary(ex: &Exchange, unit: &str, what: &str, ok: impl Fn(&MarketSummary) -> bool) -> MarketSummary {
    for _ in 0..80 {
        if let Some(m) = summary(ex, unit).await.filter(|m| ok(m)) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: {:#?}", summary(ex, unit).await);
}

async fn wait_book(ex: &Exchange, market: &str, ok: impl Fn(&Book) -> bool) -> Book {
    for _ in 0..80 {
        let b: Book = get(format!("{}/api/markets/{market}/book", ex.url())).await;
        if ok(&b) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("book not as expected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_shows_its_payout_once_redeemable_and_closes_when_its_epoch_expires() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let ex = Exchange::start(m.exchange_config(LOT, 15, 15, 10)).await.unwrap();
    let w = MinerWallet::open(&dir.path().join("w.sqlite"), m.pool.mint_url(), [5; 64]).await.unwrap();
    let unit = m.earn(&w, 3).await;
    let open = wait_summary(&ex, &unit, "the market appears", |_| true).await;
    // while open, a lot is worth what the pool's hashprice says it should earn
    assert_eq!(open.value_basis, Some(ValueBasis::Estimate), "{open:?}");
    assert!(open.value.is_some(), "{open:?}");
    let market = open.market;
    let client = Client::default();
    client.add_relay(m.relay.url()).await.unwrap();
    client.connect().await;
    let exchange = PublicKey::parse(&ex.info().pubkey).unwrap();
    let publish = |id: &str, price: u64| {
        let offer = m.offer(id.into(), Side::Sell, &market, &unit, 2 * LOT, price, LOT, exchange);
        offer.to_builder().finalize(&Keys::generate()).unwrap()
    };
    client.send_event(&publish("ask1", 10)).await.unwrap();
    wait_book(&ex, &market, |b| b.asks.len() == 1).await;

    // the epoch closes on a found block (reward 1 000 000 sats) ...
    let header = Header {
        version: Version::from_consensus(0x2000_0000),
        prev_blockhash: BlockHash::all_zeros(),
        merkle_root: TxMerkleNode::all_zeros(),
        time: 1_700_000_000,
        bits: CompactTarget::from_consensus(0x207f_ffff),
        nonce: 0,
    };
    m.pool.epochs().close_active(CloseReason::Block, Some((500, &header, 1_000_000))).await.unwrap();
    let closed = wait_summary(&ex, &unit, "closed", |s| s.state == EpochState::Closed).await;
    assert_eq!((closed.payout, closed.fair_price), (Some(epoch_payout(1_000_000, 20_000)), None), "no fair price before maturity");
    let per_lot = redeem_sats(LOT, epoch_payout(1_000_000, 20_000), 3 * CREDIT);
    assert_eq!((closed.value, closed.value_basis), (Some(per_lot), Some(ValueBasis::Payout)), "worth its payout once the block matures");
    // ... and matures: the market shows what a lot redeems for
    let maturity = m.pool.epochs().payout_config().maturity_blocks;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    m.pool.epochs().advance(500 + maturity, now).await.unwrap();
    let r = wait_summary(&ex, &unit, "redeemable", |s| s.state == EpochState::Redeemable).await;
    let payout = epoch_payout(1_000_000, 20_000);
    assert_eq!(r.payout, Some(payout));
    assert_eq!(r.fair_price, Some(redeem_sats(LOT, payout, 3 * CREDIT)));
    assert_eq!((r.value, r.value_basis), (r.fair_price, Some(ValueBasis::Redeemable)));
    assert_eq!(r.expires, Some(now + m.pool.epochs().payout_config().redeem_window_secs));
    assert_eq!(r.ask, Some(10), "a redeemable epoch still trades");

    // the window ends: the ask leaves the book (journaled as an expiry) and new offers are refused
    m.pool.epochs().advance(500 + maturity, r.expires.unwrap()).await.unwrap();
    wait_summary(&ex, &unit, "expired", |s| s.state == EpochState::Expired).await;
    wait_book(&ex, &market, |b| b.asks.is_empty() && b.bids.is_empty()).await;
    let journal: Vec<JournalEntry> = get(format!("{}/api/markets/{market}/journal", ex.url())).await;
    assert!(journal.iter().any(|j| j.kind == JournalKind::Expire), "{journal:#?}");
    let late = publish("ask2", 9);
    client.send_event(&late).await.unwrap();
    let mut refused = String::new();
    for _ in 0..40 {
        let refusals: Vec<serde_json::Value> = get(format!("{}/api/refusals", ex.url())).await;
        if let Some(r) = refusals.iter().find(|r| r["event_id"] == late.id.to_hex()) {
            refused = r["reason"].as_str().unwrap_or_default().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(refused.contains("expired"), "{refused:?}");
    let report = ehash_exchange::verify::verify(&ex.url(), &[]).await.unwrap();
    assert!(report.ok(), "{report:#?}");
    ex.shutdown().await;
    m.shutdown().await;
}
