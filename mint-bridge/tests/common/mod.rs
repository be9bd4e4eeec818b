//! Test helpers: a real mint-bridge on loopback ports, a wallet over its HTTP API, and an
//! independent SV1 client that grinds real shares.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use ehash_mint_bridge::{Config, MintBridge};
use ehash_sim_miner::work::{Job, grind, target_for};
use ehash_sim_miner::{Sv1Client, response_error};
use ehash_wallet::MinerWallet;
use serde_json::Value;

/// Unit size in tests: 2^12 hashes per ehash.
pub const UNIT_LOG2: u32 = 12;
/// Share difficulty in tests: 2^-18 (4 ehash per share, ~16k hashes).
pub const DIFF_EXP: i32 = -18;
/// Ehash per share at [`DIFF_EXP`].
pub const CREDIT: u64 = 4;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// A config on free loopback ports in `dir`, with fixed difficulty and no blocks.
pub fn config(dir: &Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        stratum_listen: "127.0.0.1:0".parse().unwrap(),
        pool_id: Some("test".into()),
        unit_log2_hashes: UNIT_LOG2,
        ..Config::default()
    };
    c.stratum.initial_difficulty_exp = DIFF_EXP;
    c.stratum.min_difficulty_exp = DIFF_EXP;
    c.stratum.max_difficulty_exp = DIFF_EXP;
    c.stratum.retarget_secs = 3600;
    c.devnet.network_difficulty_exp = 60; // no blocks unless a test lowers it
    c.devnet.job_refresh_secs = 3600;
    c
}

pub async fn start(dir: &Path, tweak: impl FnOnce(&mut Config)) -> MintBridge {
    init_tracing();
    let mut c = config(dir);
    tweak(&mut c);
    MintBridge::start(c).await.unwrap()
}

/// A wallet in `dir` talking to the bridge's mint over HTTP.
pub async fn wallet(dir: &Path, bridge: &MintBridge, seed_byte: u8) -> MinerWallet {
    MinerWallet::open(&dir.join(format!("wallet-{seed_byte}.sqlite")), bridge.mint_url(), [seed_byte; 64]).await.unwrap()
}

pub async fn current_unit(bridge: &MintBridge) -> String {
    bridge.epochs().current().await.unwrap().unit
}

/// A subscribed and authorized SV1 client with its first job.
pub async fn miner(bridge: &MintBridge, user: &str) -> (Sv1Client, Job) {
    let mut c = Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    c.subscribe("test-miner/1.0").await.unwrap();
    let r = c.authorize(user).await.unwrap();
    assert_eq!(r["result"], Value::Bool(true), "authorize: {r}");
    let job = c.wait_job(Duration::from_secs(10)).await.unwrap();
    (c, job)
}

/// Find a valid share for `job` with extranonce2 = `en2_seed` (little-endian, padded).
pub fn solve(c: &Sv1Client, job: &Job, en2_seed: u64) -> (Vec<u8>, u32) {
    let en2: Vec<u8> = en2_seed.to_le_bytes().iter().copied().chain(std::iter::repeat(0)).take(c.extranonce2_size).collect();
    let target = target_for(job.difficulty);
    let mut start = 0u32;
    loop {
        if let Some((nonce, _)) = grind(job, &c.extranonce1, &en2, job.ntime, job.version, &target, start, 1 << 16) {
            return (en2, nonce);
        }
        start = start.wrapping_add(1 << 16);
    }
}

/// Find a header that does NOT meet the job's share target.
pub fn solve_bad(c: &Sv1Client, job: &Job, en2_seed: u64) -> (Vec<u8>, u32) {
    let en2: Vec<u8> = en2_seed.to_le_bytes().iter().copied().chain(std::iter::repeat(0)).take(c.extranonce2_size).collect();
    let target = target_for(job.difficulty);
    for nonce in 0.. {
        let h = ehash_sim_miner::work::sha256d(&ehash_sim_miner::work::header(job, &c.extranonce1, &en2, job.ntime, nonce, job.version));
        if !ehash_sim_miner::work::meets(&h, &target) {
            return (en2, nonce);
        }
    }
    unreachable!()
}

/// Submit a fresh valid share and assert it was accepted.
pub async fn submit_valid(c: &mut Sv1Client, user: &str, job: &Job, en2_seed: u64) {
    let (en2, nonce) = solve(c, job, en2_seed);
    let r = c.submit(user, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
    assert_eq!(r["result"], Value::Bool(true), "share rejected: {r}");
}

/// The error code of a response (panics if it has none).
pub fn code(r: &Value) -> i64 {
    response_error(r).unwrap_or_else(|| panic!("expected an error response, got {r}")).0
}

/// Poll until `f` returns true.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        if f().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}
