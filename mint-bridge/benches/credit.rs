//! Figures, not a timed test: durable shares credited per second through real SV1 connections
//! (each share validated, written to the SQLite ledger with fsync, credited to its mint quote,
//! then acknowledged), beside the raw blind-signature ceiling of this machine (what the mint's
//! signatory does per output: `C_ = k·B_` plus its NUT-12 DLEQ proof), and the ratio.
//!
//! Run: `cargo bench -p ehash-mint-bridge --bench credit` (`EHASH_BENCH_SECS` per figure, default 5).
#![allow(missing_docs, clippy::unwrap_used)]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cdk::nuts::{BlindSignature, Id, SecretKey};
use ehash_mint_bridge::{Config, MintBridge};
use ehash_sim_miner::Sv1Client;
use ehash_sim_miner::work::{grind, target_for};

fn secs() -> Duration {
    Duration::from_secs(std::env::var("EHASH_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5))
}

fn blind_signature_ceiling(d: Duration) -> f64 {
    let k = SecretKey::generate();
    let id = Id::from_str("00456a94ab4e1c46").unwrap();
    let msgs: Vec<_> = (0..256u32).map(|i| cdk::dhke::blind_message(&i.to_le_bytes(), None).unwrap().0).collect();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for b in &msgs {
            let c = cdk::dhke::sign_message(&k, b).unwrap();
            std::hint::black_box(BlindSignature::new(cdk::Amount::from(1), c, id, b, &k).unwrap());
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn credit_rate(connections: usize, d: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    // one ehash per hash and difficulty 2^-32: nearly every header is a share, so the client's
    // hashing costs nothing and the pool's path is what is measured
    let mut c = Config {
        data_dir: dir.path().to_path_buf(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        stratum_listen: "127.0.0.1:0".parse().unwrap(),
        pool_id: Some("bench".into()),
        unit_log2_hashes: 0,
        ..Config::default()
    };
    c.stratum.initial_difficulty_exp = -32;
    c.stratum.min_difficulty_exp = -32;
    c.stratum.max_difficulty_exp = -32;
    c.devnet.network_difficulty_exp = 60;
    c.devnet.job_refresh_secs = 3600;
    let bridge = MintBridge::start(c).await.unwrap();
    let wallet = ehash_wallet::MinerWallet::open(&dir.path().join("w.sqlite"), bridge.mint_url(), [1; 64]).await.unwrap();
    let quote = wallet.create_quote("hash_bench_1").await.unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = vec![];
    for lane in 0..connections {
        let (addr, user, accepted, stop) = (bridge.stratum_addr(), format!("{quote}.b{lane}"), accepted.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut cl = Sv1Client::connect(addr).await.unwrap();
            cl.subscribe("bench").await.unwrap();
            cl.authorize(&user).await.unwrap();
            let job = cl.wait_job(Duration::from_secs(10)).await.unwrap();
            let target = target_for(job.difficulty);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let en2: Vec<u8> = n.to_le_bytes().to_vec();
                let Some((nonce, _)) = grind(&job, &cl.extranonce1, &en2, job.ntime, job.version, &target, 0, 1 << 20) else { continue };
                let r = cl.submit(&user, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
                if r["result"] == serde_json::Value::Bool(true) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // warm up
    let before = accepted.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(d).await;
    let done = accepted.load(Ordering::Relaxed) - before;
    let rate = done as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    bridge.shutdown().await;
    rate
}

fn main() {
    let d = secs();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let ceiling = blind_signature_ceiling(d);
    println!("blind-signature ceiling (1 core): {ceiling:>10.0} signatures/s");
    for n in [1usize, 4, 16, 64] {
        let rate = rt.block_on(credit_rate(n, d));
        println!(
            "durable shares credited, {n:>2} SV1 connections: {rate:>8.0} shares/s  ({:.3} of the signing ceiling)",
            rate / ceiling
        );
    }
}
