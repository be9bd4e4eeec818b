//! One conformance suite for the share ledger, run on SQLite and on a real PostgreSQL cluster.
#![allow(missing_docs, clippy::unwrap_used)]

use ehash_mint_bridge::config::DatabaseConfig;
use ehash_mint_bridge::ledger::{ClosingBlock, Ledger, ShareRecord};
use ehash_protocol::epoch::{CloseReason, EpochState};

fn share(id: &str, epoch: u32, quote: &str, amount: u64, is_block: bool) -> ShareRecord {
    ShareRecord {
        share_id: id.into(),
        epoch,
        quote_id: quote.into(),
        worker: Some("w".into()),
        header: "00".repeat(80),
        difficulty_exp: -18,
        amount,
        is_block,
        created_at: 1_700_000_000,
    }
}

async fn conformance(ledger: Ledger) {
    assert!(ledger.epochs().await.unwrap().is_empty());
    let e1 = ledger.open_first_epoch("hash_x_1", 100).await.unwrap();
    assert_eq!((e1.epoch, e1.state), (1, EpochState::Active));

    assert!(ledger.insert_share(&share("a", 1, "q1", 4, false)).await.unwrap());
    assert!(ledger.insert_share(&share("b", 1, "q1", 8, true)).await.unwrap());
    assert!(ledger.insert_share(&share("c", 1, "q2", 4, false)).await.unwrap());
    // same share again: refused, nothing changes
    assert!(!ledger.insert_share(&share("a", 1, "q2", 1000, false)).await.unwrap());
    assert_eq!(ledger.quote_totals("q1").await.unwrap(), (12, 2));
    assert_eq!(ledger.quote_totals("q2").await.unwrap(), (4, 1));
    assert_eq!(ledger.quote_share_ids("q1").await.unwrap(), vec!["a".to_owned(), "b".to_owned()]);

    let pending = ledger.uncredited_shares(10).await.unwrap();
    assert_eq!(pending.len(), 3);
    assert!(pending.iter().any(|s| s.share_id == "b" && s.is_block && s.amount == 8));
    ledger.mark_credited("a").await.unwrap();
    ledger.mark_credited("b").await.unwrap();
    let pending = ledger.uncredited_shares(10).await.unwrap();
    assert_eq!(pending.iter().map(|s| s.share_id.as_str()).collect::<Vec<_>>(), vec!["c"]);

    let block = ClosingBlock { hash: "ab".repeat(32), height: 840, reward: 312_500_000, payout: 306_250_000 };
    let (closed, next) = ledger.close_epoch(1, CloseReason::Block, Some(&block), 200, "hash_x_2").await.unwrap();
    assert_eq!((closed.state, closed.issued, closed.shares, closed.ended_at), (EpochState::Closed, Some(16), Some(3), Some(200)));
    assert_eq!((closed.block_height, closed.reward, closed.payout), (Some(840), Some(312_500_000), Some(306_250_000)));
    let log = ledger.epoch_log(1).await.unwrap();
    // pages of the log, in id order
    let ids = |p: Vec<(String, ehash_protocol::audit::LogShare)>| p.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(ids(ledger.epoch_log_page(1, None, 2).await.unwrap()), vec!["a", "b"]);
    assert_eq!(ids(ledger.epoch_log_page(1, Some("b"), 2).await.unwrap()), vec!["c"]);
    assert!(ledger.epoch_log_page(1, Some("c"), 2).await.unwrap().is_empty());
    assert_eq!(closed.log_root, Some(hex::encode(ehash_protocol::audit::root(&log).unwrap().hash)), "the commitment is the root of the log");
    // the payout lifecycle: closed → redeemable → expired, each step once
    assert!(ledger.mark_redeemable(1, 300, 400).await.unwrap());
    assert!(!ledger.mark_redeemable(1, 301, 401).await.unwrap());
    assert!(!ledger.mark_expired(2).await.unwrap(), "an active epoch does not expire");
    assert!(ledger.mark_expired(1).await.unwrap());
    let e = ledger.epochs().await.unwrap().remove(0);
    assert_eq!((e.state, e.redeemable_at, e.expires_at), (EpochState::Expired, Some(300), Some(400)));
    assert_eq!((next.epoch, next.unit.as_str(), next.state), (2, "hash_x_2", EpochState::Active));
    // closing an epoch that is not active fails and changes nothing
    assert!(ledger.close_epoch(1, CloseReason::Operator, None, 300, "hash_x_3").await.is_err());
    assert_eq!(ledger.epochs().await.unwrap().len(), 2);
    assert_eq!(ledger.epoch_totals(2).await.unwrap(), (0, 0));
}

#[tokio::test]
async fn ledger_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Ledger::open(&DatabaseConfig::Sqlite, dir.path()).await.unwrap()).await;
    // reopening migrates nothing twice and keeps the data
    let again = Ledger::open(&DatabaseConfig::Sqlite, dir.path()).await.unwrap();
    assert_eq!(again.epochs().await.unwrap().len(), 2);
}

#[tokio::test]
async fn ledger_on_postgres() {
    let Some(pg) = ehash_testkit::postgres::PgCluster::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = DatabaseConfig::Postgres(pg.url());
    conformance(Ledger::open(&db, dir.path()).await.unwrap()).await;
    let again = Ledger::open(&db, dir.path()).await.unwrap();
    assert_eq!(again.epochs().await.unwrap().len(), 2);
}
