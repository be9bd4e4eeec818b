//! The load generator the benches share: connections that mine to a pool as fast as it answers,
//! over Stratum V1 or V2, and the pool's configuration for it.
#![allow(dead_code)] // each bench uses the part it measures

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ehash_mint_bridge::config::DatabaseConfig;
use ehash_mint_bridge::{Config, MintBridge};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, LinesCodec};

/// Submits a connection keeps unanswered (the pool takes 1024 at once from one connection).
pub const WINDOW: usize = 2048;

pub fn secs() -> Duration {
    Duration::from_secs(std::env::var("EHASH_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5))
}

pub fn config(dir: &Path, db: &DatabaseConfig) -> Config {
    // one ehash per hash and difficulty 2^-32: nearly every header is a share, so the load
    // generator hashes next to nothing and the pool's path is what is measured
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        stratum_listen: "127.0.0.1:0".parse().unwrap(),
        sv2_listen: Some("127.0.0.1:0".parse().unwrap()),
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

/// One SV1 connection that submits as fast as the pool takes them; counts `true` answers.
async fn sv1_connection(addr: SocketAddr, user: String, lane: u64, accepted: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
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

/// The protocol a load runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Stratum V1 connections.
    V1,
    /// Stratum V2 (Noise-encrypted) connections, one standard channel each.
    V2,
}

/// Shares per second accepted over `conns` connections mining to `quote` for `d`, and how many.
pub async fn load(bridge: &MintBridge, quote: &str, conns: u64, d: Duration, proto: Proto) -> (f64, u64) {
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            let user = format!("{quote}.b{i}");
            match proto {
                Proto::V1 => tokio::spawn(sv1_connection(bridge.stratum_addr(), user, i, accepted.clone(), stop.clone())),
                Proto::V2 => {
                    let (addr, key) = (bridge.sv2_addr().unwrap(), bridge.sv2_authority_key().unwrap());
                    tokio::spawn(sv2_connection(addr, key, user, accepted.clone(), stop.clone()))
                }
            }
        })
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

/// An SV2 string field.
fn s(v: &str) -> binary_sv2::Str0255<'_> {
    binary_sv2::Str0255::try_from(v).unwrap()
}

/// One SV2 connection with one standard channel that submits as fast as the pool takes them,
/// [`WINDOW`] unanswered at most; counts the shares the pool's `SubmitSharesSuccess` accept.
async fn sv2_connection(addr: SocketAddr, authority: String, user: String, accepted: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    use binary_sv2::U256;
    use common_messages_sv2::{MESSAGE_TYPE_SETUP_CONNECTION, Protocol, SetupConnection};
    use ehash_stratum::sv2::noise;
    use mining_sv2::*;

    let key: key_utils::Secp256k1PublicKey = authority.parse().unwrap();
    let initiator = noise_sv2::Initiator::from_raw_k(key.into_bytes()).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut r, mut w) = noise::connect(tcp, initiator, Duration::from_secs(10), 1 << 20).await.unwrap();
    let setup = SetupConnection {
        protocol: Protocol::MiningProtocol,
        min_version: 2,
        max_version: 2,
        flags: 0,
        endpoint_host: s("127.0.0.1"),
        endpoint_port: 0,
        vendor: s("ehash-bench"),
        hardware_version: s(""),
        firmware: s(""),
        device_id: s(""),
    };
    w.write(setup, MESSAGE_TYPE_SETUP_CONNECTION, false).await.unwrap();
    let open = OpenStandardMiningChannel { request_id: 1, user_identity: s(&user), nominal_hash_rate: 1e12, max_target: U256::from(&[0xff; 32]) };
    w.write(open, MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL, false).await.unwrap();
    // the channel, then its job and the tip it builds on
    let (mut channel, mut job, mut ntime, mut version) = (None, None, 0, 0);
    while channel.is_none() || ntime == 0 {
        let mut f = r.read().await.unwrap();
        match f.msg_type {
            MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL_SUCCESS => {
                let ok: OpenStandardMiningChannelSuccess = binary_sv2::from_bytes(&mut f.payload).unwrap();
                channel = Some(ok.channel_id);
            }
            MESSAGE_TYPE_OPEN_MINING_CHANNEL_ERROR => panic!("the pool refused the SV2 channel for {user}"),
            MESSAGE_TYPE_NEW_MINING_JOB => {
                let j: NewMiningJob = binary_sv2::from_bytes(&mut f.payload).unwrap();
                job = Some(j.job_id);
                version = j.version;
                if let Some(t) = j.min_ntime.into_inner() {
                    ntime = t;
                }
            }
            MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH => {
                let p: SetNewPrevHash = binary_sv2::from_bytes(&mut f.payload).unwrap();
                job = Some(p.job_id);
                ntime = p.min_ntime;
            }
            _ => {}
        }
    }
    let (channel_id, job_id) = (channel.unwrap(), job.unwrap());
    let window = Arc::new(tokio::sync::Semaphore::new(WINDOW));
    let (counter, answered) = (accepted.clone(), window.clone());
    let reader = tokio::spawn(async move {
        while let Ok(mut f) = r.read().await {
            match f.msg_type {
                MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS => {
                    let ok: SubmitSharesSuccess = binary_sv2::from_bytes(&mut f.payload).unwrap();
                    counter.fetch_add(u64::from(ok.new_submits_accepted_count), Ordering::Relaxed);
                    answered.add_permits(ok.new_submits_accepted_count as usize);
                }
                MESSAGE_TYPE_SUBMIT_SHARES_ERROR => answered.add_permits(1),
                _ => {}
            }
        }
    });
    let mut nonce: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(100), window.acquire_many(64)).await {
            Ok(Ok(p)) => p.forget(),
            _ => continue,
        }
        // 64 submits in one write, as the V1 load sends them
        for _ in 0..64 {
            nonce += 1;
            let m = SubmitSharesStandard { channel_id, sequence_number: nonce, job_id, nonce, ntime, version };
            w.queue(m, MESSAGE_TYPE_SUBMIT_SHARES_STANDARD, true).unwrap();
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    // every share sent is answered before the next figure starts
    let _ = tokio::time::timeout(Duration::from_secs(60), window.acquire_many(WINDOW as u32)).await;
    reader.abort();
}

