//! Figures, not a timed test: shares the proxy validates per second over real TCP (parse,
//! rebuild coinbase, merkle root and header, sha256d, compare, forward upstream, log for the
//! audit, answer), beside the single-core ceiling of the same validation hashing measured in the
//! same run; and how many miner connections it holds (idle and active at once). The proxy runs
//! on one core (a one-thread runtime, plus SQLite's own threads for the audit log), the load
//! generator on its own thread beside a pool that takes every share at once, so the figure is
//! the proxy's own path (the real pool still serves the mint the proxy takes its quote from).
//! Goal: 50 connections at >= 0.8 of the ceiling.
//!
//! Run: `ulimit -n 65536; cargo bench -p ehash-proxy --bench validate`
//! (`EHASH_BENCH_SECS` per figure, default 5; `EHASH_BENCH_IDLE`/`EHASH_BENCH_ACTIVE` connections,
//! default 5000/500, lowered to fit the open-file limit).
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ehash_mint_bridge::MintBridge;
use ehash_protocol::stratum::share::{Submission, share_header};
use ehash_proxy::{Config, Proxy};
use ehash_sim_miner::Sv1Client;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, LinesCodec};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn open_file_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(3)?.parse().ok()))
        .unwrap_or(1024)
}

/// Single-core ceiling: the validation hashing of one share (coinbase, merkle branch, header).
fn ceiling(job: &ehash_protocol::stratum::share::JobTemplate, secs: Duration) -> f64 {
    // the proxy's validation: the job's tag and the miner id before the miner's extranonce2
    let en1 = [0u8, 0, 1];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < secs {
        for i in 0..1000u32 {
            let en2 = (n as u32 + i).to_le_bytes();
            let en2 = [en2[0], en2[1], en2[2], en2[3], 0];
            let sub = Submission { extranonce1: &en1, extranonce2: &en2, ntime: job.ntime, nonce: i, version_bits: None };
            std::hint::black_box(share_header(job, &sub, 5, None).unwrap());
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// One connection that pipelines submits as fast as the proxy answers; counts `true` answers.
async fn active(addr: SocketAddr, lane: u64, counter: Arc<AtomicU64>, stop: Arc<std::sync::atomic::AtomicBool>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = tcp.into_split();
    let mut lines = FramedRead::new(r, LinesCodec::new());
    w.write_all(b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"bench\"]}\n{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"bench\",\"x\"]}\n")
        .await
        .unwrap();
    let (mut job_id, mut ntime) = (String::new(), String::new());
    let mut en2_size = 0usize;
    while job_id.is_empty() {
        let l = lines.next().await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        if v["id"] == 1 {
            en2_size = v["result"][2].as_u64().unwrap() as usize;
        }
        if v["method"] == "mining.notify" {
            job_id = v["params"][0].as_str().unwrap().to_owned();
            ntime = v["params"][7].as_str().unwrap().to_owned();
        }
    }
    let reader_counter = counter.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(l)) = lines.next().await {
            if l.contains("\"result\":true") {
                reader_counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut n: u64 = lane << 32;
    let mut batch = String::new();
    while !stop.load(Ordering::Relaxed) {
        batch.clear();
        for _ in 0..32 {
            n += 1;
            let en2 = hex::encode(&n.to_le_bytes()[..en2_size.min(8)]);
            // difficulty 2^-32: almost every header is a share, so the miner needs no hashing
            batch.push_str(&format!(
                "{{\"id\":7,\"method\":\"mining.submit\",\"params\":[\"bench\",\"{job_id}\",\"{en2}\",\"{ntime}\",\"{:08x}\"]}}\n",
                n as u32
            ));
        }
        if w.write_all(batch.as_bytes()).await.is_err() {
            break;
        }
    }
    reader.abort();
}

/// A pool that takes every share at once and serves one job (the real pool's, relayed), at
/// difficulty 2^-32.
async fn open_pool(job: ehash_sim_miner::work::Job) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let notify = serde_json::json!({"id": null, "method": "mining.notify", "params": [
        "1",
        hex::encode(job.prevhash),
        hex::encode(&job.coinb1),
        hex::encode(&job.coinb2),
        job.branch.iter().map(hex::encode).collect::<Vec<_>>(),
        format!("{:08x}", job.version),
        format!("{:08x}", job.nbits),
        format!("{:08x}", job.ntime),
        true
    ]})
    .to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let notify = notify.clone();
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut lines = FramedRead::new(r, LinesCodec::new());
                while let Some(Ok(line)) = lines.next().await {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let id = v["id"].clone();
                    let out = match v["method"].as_str().unwrap_or("") {
                        "mining.configure" => serde_json::json!({"id": id, "error": null, "result":
                            {"version-rolling": true, "version-rolling.mask": "1fffe000", "ehash-share-difficulty": true}})
                        .to_string(),
                        "mining.subscribe" => serde_json::json!({"id": id, "error": null, "result":
                            [[["mining.notify", "1"]], "00000001", 8]})
                        .to_string(),
                        "mining.authorize" => format!(
                            "{}\n{{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[{}]}}\n{notify}",
                            serde_json::json!({"id": id, "error": null, "result": true}),
                            2f64.powi(-32)
                        ),
                        _ => serde_json::json!({"id": id, "error": null, "result": true}).to_string(),
                    };
                    if w.write_all(format!("{out}\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// `run_active` on a runtime of its own, on its own thread: the load has its own core.
fn run_active_apart(addr: SocketAddr, conns: u64, secs: Duration) -> f64 {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_active(addr, conns, secs))
    })
    .join()
    .unwrap()
}

async fn run_active(addr: SocketAddr, conns: u64, secs: Duration) -> f64 {
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..conns).map(|i| tokio::spawn(active(addr, i, counter.clone(), stop.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = counter.load(Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(secs).await;
    let rate = (counter.load(Ordering::Relaxed) - before) as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    rate
}

fn main() {
    let secs = Duration::from_secs(env("EHASH_BENCH_SECS", 5));
    // the proxy (and the pools) on one core
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut bc = ehash_mint_bridge::Config {
            data_dir: dir.path().join("pool"),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            stratum_listen: "127.0.0.1:0".parse().unwrap(),
            pool_id: Some("bench".into()),
            unit_log2_hashes: 0,
            ..Default::default()
        };
        bc.stratum.initial_difficulty_exp = -32;
        bc.stratum.min_difficulty_exp = -32;
        bc.stratum.max_difficulty_exp = -32;
        bc.devnet.network_difficulty_exp = 60;
        bc.devnet.job_refresh_secs = 3600;
        let bridge = MintBridge::start(bc).await.unwrap();
        // the real pool's job, served by a pool that takes every share
        let w = ehash_wallet::MinerWallet::open(&dir.path().join("probe.sqlite"), bridge.mint_url(), [2; 64]).await.unwrap();
        let q = w.create_quote(&bridge.epochs().current().await.unwrap().unit).await.unwrap();
        let mut probe = Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
        probe.subscribe("probe").await.unwrap();
        probe.authorize(&format!("{q}.probe")).await.unwrap();
        let pool_job = probe.wait_job(Duration::from_secs(30)).await.unwrap();
        // the open pool lives with the load generator, off the proxy's core
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                tx.send(open_pool(pool_job).await).unwrap();
                std::future::pending::<()>().await;
            });
        });
        let pool = rx.recv().unwrap();
        let mut pc = Config {
            data_dir: dir.path().join("proxy"),
            wallet_dir: dir.path().join("wallet"),
            listen: "127.0.0.1:0".parse().unwrap(),
            status_listen: "127.0.0.1:0".parse().unwrap(),
            pool: pool.to_string(),
            mint_url: bridge.mint_url().to_owned(),
            mint_secs: 3600,
            ..Default::default()
        };
        pc.stratum.initial_difficulty_exp = -32;
        pc.stratum.min_difficulty_exp = -32;
        pc.stratum.max_difficulty_exp = -32;
        pc.stratum.max_connections = 100_000;
        pc.stratum.max_connections_per_ip = 100_000;
        let proxy = Proxy::start(pc).await.unwrap();
        let addr = proxy.local_addr();

        // the same job the miners get, for the ceiling
        let mut c = Sv1Client::connect(addr).await.unwrap();
        c.subscribe("probe").await.unwrap();
        c.authorize("probe").await.unwrap();
        let j = c.wait_job(Duration::from_secs(30)).await.unwrap();
        let mut prev = [0u8; 32];
        for i in 0..8 {
            let w = &j.prevhash[i * 4..i * 4 + 4];
            prev[i * 4..i * 4 + 4].copy_from_slice(&[w[3], w[2], w[1], w[0]]);
        }
        let job = ehash_protocol::stratum::share::JobTemplate {
            prev_hash: prev,
            coinb1: j.coinb1.clone(),
            coinb2: j.coinb2.clone(),
            merkle_branch: j.branch.clone(),
            version: j.version,
            nbits: j.nbits,
            ntime: j.ntime,
        };
        drop(c);
        let ceil = ceiling(&job, secs);
        println!("single-core validation-hashing ceiling: {ceil:>10.0} shares/s (coinbase {} bytes, {}-level branch)", job.coinb1.len() + 14 + job.coinb2.len(), job.merkle_branch.len());
        for conns in [1u64, 50] {
            let rate = tokio::task::spawn_blocking(move || run_active_apart(addr, conns, secs)).await.unwrap();
            println!("proxy validated over TCP, {conns:>3} connections: {rate:>10.0} shares/s ({:.2} of the ceiling; goal 0.8)", rate / ceil);
        }

        let limit = open_file_limit();
        let want_idle = env("EHASH_BENCH_IDLE", 5000);
        let want_active = env("EHASH_BENCH_ACTIVE", 500);
        // each connection costs two descriptors in this process (client and server side)
        let fit = (limit.saturating_sub(200)) / 2;
        let scale = if want_idle + want_active > fit { fit as f64 / (want_idle + want_active) as f64 } else { 1.0 };
        let (idle_n, active_n) = ((want_idle as f64 * scale) as u64, (want_active as f64 * scale) as u64);
        if scale < 1.0 {
            println!("open-file limit {limit}: holding {idle_n} idle + {active_n} active (raise with `ulimit -n 65536`)");
        }
        let mut idle = vec![];
        for _ in 0..idle_n {
            let mut c = Sv1Client::connect(addr).await.unwrap();
            c.subscribe("idle").await.unwrap();
            c.authorize("idle").await.unwrap();
            idle.push(c);
        }
        let active_run = tokio::task::spawn_blocking(move || run_active_apart(addr, active_n, secs));
        tokio::time::sleep(secs / 2 + Duration::from_secs(1)).await;
        let held = proxy.status().await.miners;
        let rate = active_run.await.unwrap();
        println!("held {held} connections ({idle_n} idle + {active_n} active); the active ones validated {rate:.0} shares/s");
        let mut alive = 0;
        for c in idle.iter_mut().take(100) {
            if c.call("mining.extranonce.subscribe", serde_json::json!([])).await.is_ok() {
                alive += 1;
            }
        }
        println!("idle connections still answered afterwards: {alive} of the 100 sampled");
        proxy.shutdown();
        bridge.shutdown().await;
    });
}
