//! The whole money path on PostgreSQL (cdk-postgres for the mint, the ledger through sqlx),
//! against a real cluster this test starts itself.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::*;
use ehash_mint_bridge::config::DatabaseConfig;
use ehash_protocol::epoch::EpochState;
use ehash_testkit::postgres::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_credits_epochs_and_restarts_on_postgres() {
    let Some(pg) = PgCluster::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = DatabaseConfig::Postgres(pg.url());
    let bridge = start(dir.path(), |c| c.database = db.clone()).await;
    assert!(!dir.path().join("mint.sqlite").exists() && !dir.path().join("ledger.sqlite").exists(), "no SQLite when PostgreSQL is configured");
    let w = wallet(dir.path(), &bridge, 1).await;
    let q = w.create_quote("hash_test_1").await.unwrap();
    let user = format!("{q}.pg");
    let (mut c, job) = miner(&bridge, &user).await;
    for i in 0..3 {
        submit_valid(&mut c, &user, &job, i).await;
    }
    // a duplicate is caught by the PostgreSQL ledger too
    let (en2, nonce) = solve(&c, &job, 0);
    let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 22);
    assert_eq!(w.mint_credited("hash_test_1", &q).await.unwrap(), 3 * CREDIT);
    bridge.epochs().close_active(ehash_protocol::epoch::CloseReason::Operator, None).await.unwrap();
    bridge.shutdown().await;

    // restart on the same database: epochs, totals and the keyset survive
    let bridge = start(dir.path(), |c| c.database = db.clone()).await;
    let epochs = bridge.epochs().all().await;
    assert_eq!(epochs.len(), 2);
    assert_eq!((epochs[0].state, epochs[0].issued, epochs[0].shares), (EpochState::Closed, Some(3 * CREDIT), Some(3)));
    assert_eq!(bridge.epochs().ledger().quote_totals(&q).await.unwrap(), (3 * CREDIT, 3));
    assert_eq!(w.balances().await.unwrap().get("hash_test_1"), Some(&(3 * CREDIT)));
    bridge.shutdown().await;
}
