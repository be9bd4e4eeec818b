//! One conformance suite for the share ledger, run on SQLite and on a real PostgreSQL cluster.
#![allow(missing_docs, clippy::unwrap_used)]

use ehash_mint_bridge::config::DatabaseConfig;
use ehash_mint_bridge::ledger::{BlockRecord, BlockStatus, ClosingBlock, Ledger, ShareRecord};
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

fn block(share_id: &str, epoch: u32, height: u32) -> BlockRecord {
    BlockRecord {
        share_id: share_id.into(),
        epoch,
        height,
        hash: share_id.into(),
        reward: 312_500_000,
        header: "00".repeat(80),
        coinbase: "01".into(),
        block: None,
        status: BlockStatus::Pending,
        detail: None,
        created_at: 1_700_000_000,
    }
}

async fn conformance(ledger: Ledger) {
    assert!(ledger.epochs().await.unwrap().is_empty());
    let e1 = ledger.open_first_epoch("hash_x_1", 100).await.unwrap();
    assert_eq!((e1.epoch, e1.state), (1, EpochState::Active));

    // one group: a repeat inside it and a block; then a repeat of a recorded share
    let group = [share("a", 1, "q1", 4, false), share("b", 1, "q1", 8, true), share("a", 1, "q1", 4, false), share("c", 1, "q2", 4, false)];
    let recorded = ledger.record(&group, &[block("b", 1, 840)]).await.unwrap();
    assert_eq!(recorded, vec![true, true, false, true]);
    assert_eq!(ledger.record(&[share("a", 1, "q2", 1000, false)], &[]).await.unwrap(), vec![false], "same share id, same share");
    assert_eq!(ledger.quote_totals("q1").await.unwrap(), (12, 2));
    assert_eq!(ledger.quote_totals("q2").await.unwrap(), (4, 1));
    assert_eq!(ledger.quote_totals("q3").await.unwrap(), (0, 0));
    assert_eq!(ledger.epoch_totals(1).await.unwrap(), (16, 3));
    assert_eq!(ledger.quote_share_ids("q1").await.unwrap(), vec!["a".to_owned(), "b".to_owned()]);
    // the mint's payments are tracked per quote, not per share
    assert_eq!(ledger.unsynced_quotes("", 10).await.unwrap(), vec![("q1".to_owned(), 12), ("q2".to_owned(), 4)]);
    assert_eq!(ledger.unsynced_quotes("q1", 10).await.unwrap(), vec![("q2".to_owned(), 4)]);
    ledger.mark_synced("q1", 12).await.unwrap();
    ledger.mark_synced("q1", 4).await.unwrap(); // never backwards
    assert_eq!(ledger.unsynced_quotes("", 10).await.unwrap(), vec![("q2".to_owned(), 4)]);
    ledger.record(&[share("d", 1, "q1", 4, false)], &[]).await.unwrap();
    assert_eq!(ledger.unsynced_quotes("", 10).await.unwrap(), vec![("q1".to_owned(), 16), ("q2".to_owned(), 4)]);

    // the block, recorded with its share, then the network's answer
    let b = ledger.block("b").await.unwrap().unwrap();
    assert_eq!((b.status, b.height, b.epoch), (BlockStatus::Pending, 840, 1));
    assert_eq!(ledger.last_accepted_block().await.unwrap(), None);
    ledger.set_block_status("b", BlockStatus::Accepted, Some("accepted")).await.unwrap();
    assert_eq!(ledger.last_accepted_block().await.unwrap().map(|b| b.height), Some(840));

    let closing = ClosingBlock { hash: "b".into(), height: 840, reward: 312_500_000, payout: 306_250_000 };
    let (closed, next) = ledger.close_epoch(1, CloseReason::Block, Some(&closing), 200, "hash_x_2").await.unwrap();
    assert_eq!((closed.state, closed.issued, closed.shares, closed.ended_at), (EpochState::Closed, Some(20), Some(4), Some(200)));
    assert_eq!((closed.block_height, closed.reward, closed.payout), (Some(840), Some(312_500_000), Some(306_250_000)));
    assert_eq!(closed.log_root, None, "the log is committed after the close");
    // pages of the log, in id order
    let ids = |p: Vec<(String, ehash_protocol::audit::LogShare)>| p.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(ids(ledger.epoch_log_page(1, None, 2).await.unwrap()), vec!["a", "b"]);
    assert_eq!(ids(ledger.epoch_log_page(1, Some("b"), 2).await.unwrap()), vec!["c", "d"]);
    assert!(ledger.epoch_log_page(1, Some("d"), 2).await.unwrap().is_empty());
    let log: Vec<_> = ledger.epoch_log_page(1, None, 10).await.unwrap().into_iter().map(|(_, s)| s).collect();
    // committed once: the root of the log, kept with the block-level nodes
    assert!(ledger.committed_log(1).await.unwrap().is_none());
    let committed = ledger.commit_log(1).await.unwrap();
    assert_eq!(committed.root, ehash_protocol::audit::root(&log).unwrap());
    assert_eq!(ledger.commit_log(1).await.unwrap(), committed, "a second commit changes nothing");
    assert_eq!(ledger.committed_log(1).await.unwrap(), Some(committed.clone()));
    assert_eq!(ledger.epoch(1).await.unwrap().log_root, Some(hex::encode(committed.root.hash)));
    let (index, block_shares) = ledger.log_block(1, "c", committed.block_level).await.unwrap().unwrap();
    assert_eq!((index, block_shares.len()), (2, 4));
    assert!(ledger.log_block(1, "zz", committed.block_level).await.unwrap().is_none());
    assert!(ledger.commit_log(2).await.is_err(), "an open epoch's log is not committed");
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
    // an operator close, then a block found in that epoch: the epoch closes on the block
    let (op, _) = ledger.close_epoch(2, CloseReason::Operator, None, 500, "hash_x_3").await.unwrap();
    assert_eq!((op.close_reason, op.payout), (Some(CloseReason::Operator), None));
    let late = ClosingBlock { hash: "e".into(), height: 841, reward: 1000, payout: 980 };
    let amended = ledger.amend_close_with_block(2, &late).await.unwrap().unwrap();
    assert_eq!((amended.close_reason, amended.block_height, amended.payout), (Some(CloseReason::Block), Some(841), Some(980)));
    assert!(ledger.amend_close_with_block(2, &late).await.unwrap().is_none(), "only an operator's close is amended");
    assert!(ledger.amend_close_with_block(1, &late).await.unwrap().is_none());
}

#[tokio::test]
async fn ledger_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Ledger::open(&DatabaseConfig::Sqlite, dir.path()).await.unwrap()).await;
    // reopening migrates nothing twice and keeps the data
    let again = Ledger::open(&DatabaseConfig::Sqlite, dir.path()).await.unwrap();
    assert_eq!(again.epochs().await.unwrap().len(), 3);
}

#[tokio::test]
async fn ledger_on_postgres() {
    let Some(pg) = ehash_testkit::postgres::PgCluster::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = DatabaseConfig::Postgres(pg.url());
    conformance(Ledger::open(&db, dir.path()).await.unwrap()).await;
    let again = Ledger::open(&db, dir.path()).await.unwrap();
    assert_eq!(again.epochs().await.unwrap().len(), 3);
}
