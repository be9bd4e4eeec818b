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

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ehash_mint_bridge::config::DatabaseConfig;
use ehash_mint_bridge::ledger::{Ledger, ShareRecord};
use ehash_mint_bridge::{Config, MintBridge};
use bitcoin::hashes::Hash;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, LinesCodec};

const GOAL_RATE: f64 = 20_000.0;
/// Submits a connection keeps unanswered (the pool takes 1024 at once from one connection).
const WINDOW: usize = 2048;

fn secs() -> Duration {
    Duration::from_secs(std::env::var("EHASH_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5))
}

fn config(dir: &Path, db: &DatabaseConfig) -> Config {
    // one ehash per hash and difficulty 2^-32: nearly every header is a share, so the load
    // generator hashes next to nothing and the pool's path is what is measured
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        stratum_listen: "127.0.0.1:0".parse().unwrap(),
        pool_id: Some("bench".into()),
        unit_log2_hashes: 0,
        database: db.clone(),
        ..Config::default()
    };
    c.stratum.initial_difficulty_exp = -32;
    c.stratum.min_difficulty_exp = -32;
    c.stratum.max_difficulty_exp = -32;
    c.stratum.max_connections_per_ip = 100_000;
    c.devnet.network_difficulty_exp = 60;
    c.devnet.job_refresh_secs = 3600;
    c
}

/// One connection that submits as fast as the pool takes them; counts `true` answers.
async fn connection(addr: SocketAddr, user: String, lane: u64, accepted: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (r, mut w) = tcp.into_split();
    let mut lines = FramedRead::new(r, LinesCodec::new());
    let hello = format!(
        "{{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"bench\"]}}\n{{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"{user}\",\"x\"]}}\n"
    );
    w.write_all(hello.as_bytes()).await.unwrap();
    let (mut job_id, mut ntime, mut en2_size) = (String::new(), String::new(), 0usize);
    while job_id.is_empty() {
        let l = lines.next().await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        if v["id"] == 1 {
            en2_size = v["result"][2].as_u64().unwrap() as usize;
        }
        if v["id"] == 2 {
            assert_eq!(v["result"], true, "authorize: {v}");
        }
        if v["method"] == "mining.notify" {
            job_id = v["params"][0].as_str().unwrap().to_owned();
            ntime = v["params"][7].as_str().unwrap().to_owned();
        }
    }
    // at most WINDOW submits unanswered, as a miner or proxy with a send window
    let window = Arc::new(tokio::sync::Semaphore::new(WINDOW));
    let (counter, answered) = (accepted.clone(), window.clone());
    let reader = tokio::spawn(async move {
        while let Some(Ok(l)) = lines.next().await {
            if l.contains("\"result\":true") {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            if l.contains("\"result\"") {
                answered.add_permits(1);
            }
        }
    });
    let mut n: u64 = lane << 40;
    let mut batch = String::new();
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(100), window.acquire_many(64)).await {
            Ok(Ok(p)) => p.forget(),
            _ => continue,
        }
        batch.clear();
        for _ in 0..64 {
            n += 1;
            let mut en2 = n.to_le_bytes().to_vec();
            en2.resize(en2_size, 0);
            batch.push_str(&format!(
                "{{\"id\":4,\"method\":\"mining.submit\",\"params\":[\"{user}\",\"{job_id}\",\"{}\",\"{ntime}\",\"00000000\"]}}\n",
                hex::encode(&en2)
            ));
        }
        if w.write_all(batch.as_bytes()).await.is_err() {
            break;
        }
    }
    // every share sent is answered before the next figure starts
    let _ = tokio::time::timeout(Duration::from_secs(60), window.acquire_many(WINDOW as u32)).await;
    reader.abort();
}

/// Shares per second accepted over `conns` connections mining to `quote` for `d`, and how many.
async fn load(bridge: &MintBridge, quote: &str, conns: u64, d: Duration) -> (f64, u64) {
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..conns)
        .map(|i| tokio::spawn(connection(bridge.stratum_addr(), format!("{quote}.b{i}"), i, accepted.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await; // connect and warm up
    let before = accepted.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(d).await;
    let done = accepted.load(Ordering::Relaxed) - before;
    let rate = done as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    (rate, accepted.load(Ordering::Relaxed))
}

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
        let (rate, _) = load(&bridge, &q, conns, d).await;
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
        let (_, n) = load(&bridge, &old, 256, Duration::from_secs(2)).await;
        credited += n;
        eprintln!("  {name}: quote with history: {credited} shares credited");
    }
    let status = wallet.wallet(&bridge.epochs().current().await.unwrap().unit).await.unwrap().check_mint_quote_status(&old).await.unwrap();
    // against a fresh quote on the same ledger (as full), so only the quote's history differs
    let fresh = quote(&bridge, &wallet).await;
    let (fresh_rate, _) = load(&bridge, &fresh, 256, d).await;
    let (old_rate, _) = load(&bridge, &old, 256, d).await;
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
