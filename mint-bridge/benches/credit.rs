//! Figures, not a timed test: how fast the pool records and credits shares, beside what its
//! storage can do, on SQLite and on PostgreSQL (a throwaway cluster that syncs every commit,
//! when `initdb`/`postgres` are installed). Printed side by side for each database:
//!
//! 1. the **ledger ceiling**: the recorder's own write (`Ledger::record`: the share rows, the
//!    quotes' running credit, one commit with the same durability) called directly, with groups
//!    of the mean size the recorder formed in (2), of shares with random ids as real ones are;
//! 2. **durable shares credited per second through real SV1 connections** (each share validated,
//!    recorded in a group, and answered `true` only once its group committed) with 1, 16 and 256
//!    connections, each sending submits without waiting for the answers, as a proxy does;
//! 3. the same with 256 connections, mining to a quote that was already credited 100,000 shares
//!    (and whose credit the mint was paid), beside a fresh quote on the same (as full) ledger.
//!
//! Goals: (2) ≥ 20,000 shares/s and ≥ 50% of (1); (3) within 10% of (2).
//!
//! Run: `cargo bench -p ehash-mint-bridge --bench credit` (`EHASH_BENCH_SECS` per figure,
//! default 5; `EHASH_BENCH_DB=sqlite` or `postgres` for one of them). The load generator runs in
//! this process, on the same two cores.
#![allow(missing_docs, clippy::unwrap_used)]

mod load;

use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use ehash_mint_bridge::MintBridge;
use ehash_mint_bridge::config::DatabaseConfig;
use ehash_mint_bridge::ledger::{Ledger, ShareRecord};
use load::{Proto, config, load, secs};

const GOAL_RATE: f64 = 20_000.0;
/// The ledger's own write, called directly: groups of `group` new shares on one quote.
async fn ceiling(ledger: &Ledger, group: usize, d: Duration) -> f64 {
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < d {
        let shares: Vec<ShareRecord> = (0..group)
            .map(|_| {
                n += 1;
                ShareRecord {
                    // share ids are block hashes: spread over the whole index, as real ones are
                    share_id: bitcoin::hashes::sha256::Hash::hash(&n.to_le_bytes()).to_string(),
                    epoch: 1,
                    quote_id: "ceiling".into(),
                    worker: Some("b0".into()),
                    header: "00".repeat(80),
                    difficulty_exp: -32,
                    amount: 1,
                    is_block: false,
                    created_at: 1_700_000_000,
                }
            })
            .collect();
        ledger.record(&shares, &[]).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn quote(bridge: &MintBridge, wallet: &ehash_wallet::MinerWallet) -> String {
    wallet.create_quote(&bridge.epochs().current().await.unwrap().unit).await.unwrap()
}

async fn figures(name: &str, db: DatabaseConfig) {
    let d = secs();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(config(dir.path(), &db)).await.unwrap();
    let wallet = ehash_wallet::MinerWallet::open(&dir.path().join("w.sqlite"), bridge.mint_url(), [1; 64]).await.unwrap();
    let mut rates = vec![];
    let mut group_sizes = vec![];
    for conns in [1u64, 16, 256] {
        let q = quote(&bridge, &wallet).await;
        let before = bridge.epochs().recorder_stats();
        let (rate, _) = load(&bridge, &q, conns, d, Proto::V1).await;
        let after = bridge.epochs().recorder_stats();
        let mean = (after.shares - before.shares) as f64 / (after.groups - before.groups).max(1) as f64;
        eprintln!("  {name}: {conns} connections: {rate:.0} shares/s, mean group {mean:.0}");
        rates.push((conns, rate, mean));
        group_sizes.push(mean);
    }
    // a quote with history: 100,000 shares credited, and the mint paid for them
    let old = quote(&bridge, &wallet).await;
    let mut credited = 0;
    while credited < 100_000 {
        let (_, n) = load(&bridge, &old, 256, Duration::from_secs(2), Proto::V1).await;
        credited += n;
        eprintln!("  {name}: quote with history: {credited} shares credited");
    }
    let status = wallet.wallet(&bridge.epochs().current().await.unwrap().unit).await.unwrap().check_mint_quote_status(&old).await.unwrap();
    // against a fresh quote on the same ledger (as full), so only the quote's history differs
    let fresh = quote(&bridge, &wallet).await;
    let (fresh_rate, _) = load(&bridge, &fresh, 256, d, Proto::V1).await;
    let (old_rate, _) = load(&bridge, &old, 256, d, Proto::V1).await;
    bridge.shutdown().await;

    // the ceiling, on the same ledger (as full as the pool left it), the pool stopped
    let ledger = Ledger::open(&db, dir.path()).await.unwrap();
    println!("== {name}");
    for (conns, rate, mean) in &rates {
        let group = mean.round().max(1.0) as usize;
        let ceil = ceiling(&ledger, group, d).await;
        eprintln!("  {name}: ceiling, groups of {group}: {ceil:.0} shares/s");
        println!(
            "(1) ledger ceiling, groups of {group:>4}: {ceil:>8.0} shares/s | (2) {conns:>3} SV1 connections: {rate:>8.0} shares/s = {:>4.0}% of (1) (goal >= 50%), {} the 20,000 goal",
            100.0 * rate / ceil,
            if *rate >= GOAL_RATE { "meets" } else { "BELOW" }
        );
    }
    println!(
        "(3) 256 connections, quote already credited {} ehash: {old_rate:>8.0} shares/s = {:>+5.1}% against a fresh quote on the same ledger, {fresh_rate:.0} shares/s (goal within 10%)",
        status.amount_paid.to_u64(),
        100.0 * (old_rate - fresh_rate) / fresh_rate.max(1.0)
    );
    ledger.close().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // EHASH_BENCH_DB=sqlite or postgres runs one of them
    let only = std::env::var("EHASH_BENCH_DB").unwrap_or_default();
    if only != "postgres" {
        rt.block_on(figures("SQLite (WAL, synchronous = FULL)", DatabaseConfig::Sqlite));
    }
    if only == "sqlite" {
        return;
    }
    match ehash_testkit::postgres::PgCluster::start_durable() {
        Some(pg) => rt.block_on(figures("PostgreSQL (fsync = on)", DatabaseConfig::Postgres(pg.url()))),
        None => println!("== PostgreSQL: not installed, skipped"),
    }
}
