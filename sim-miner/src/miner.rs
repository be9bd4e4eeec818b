//! A CPU miner: connects, subscribes, authorizes, grinds nonces for the newest job at the
//! difficulty that job was sent with, submits what it finds, and reconnects when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, Sv1Client, response_error};
use crate::work::{Job, display_hash, grind, target_for};

/// Nonces hashed between checks for new messages.
const CHUNK: u32 = 1 << 14;

/// Miner settings.
#[derive(Debug, Clone)]
pub struct MinerConfig {
    /// The pool's Stratum address.
    pub pool: SocketAddr,
    /// The initial username (`<quote-id>.<worker>`).
    pub username: String,
    /// User agent sent in `mining.subscribe`.
    pub agent: String,
    /// Ask for BIP310 version rolling and roll version bits.
    pub version_rolling: bool,
    /// Hash at most this many hashes per second (`None`: as fast as one core goes), e.g. so a
    /// chain whose blocks take a few million hashes does not find one every second.
    pub max_hashrate: Option<u64>,
}

/// What the miner has seen.
#[derive(Debug, Default)]
pub struct MinerStats {
    /// Shares the pool accepted.
    pub accepted: AtomicU64,
    /// Shares the pool rejected.
    pub rejected: AtomicU64,
    /// Hashes computed.
    pub hashes: AtomicU64,
    /// Sum over accepted shares of their difficulty, in units of 2^-32 (exact for powers of two ≥ 2^-32).
    pub accepted_work: AtomicU64,
    /// Last error code the pool answered with.
    pub last_error_code: AtomicU64,
}

/// A running miner.
pub struct Miner {
    stats: Arc<MinerStats>,
    username: watch::Sender<String>,
    accepted_log: Arc<std::sync::Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Miner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Miner").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Miner {
    /// Start mining until `cancel` fires.
    pub fn start(config: MinerConfig, cancel: CancellationToken) -> Self {
        let stats = Arc::new(MinerStats::default());
        let (username, rx) = watch::channel(config.username.clone());
        let accepted_log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn(run(config, rx, stats.clone(), accepted_log.clone(), cancel));
        Self { stats, username, accepted_log, task }
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<MinerStats> {
        &self.stats
    }

    /// Switch to a new username (a new quote, e.g. after an epoch change).
    pub fn set_username(&self, username: String) {
        self.username.send_replace(username);
    }

    /// Display hashes of every share the pool acknowledged.
    pub fn accepted_shares(&self) -> Vec<String> {
        self.accepted_log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Wait for the mining task to end (after cancellation).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

async fn run(
    config: MinerConfig,
    mut username: watch::Receiver<String>,
    stats: Arc<MinerStats>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        match session(&config, &mut username, &stats, &log, &cancel).await {
            Ok(()) => break,
            Err(e) => {
                tracing::debug!(error = %e, "miner connection ended; reconnecting");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn difficulty_work(d: f64) -> u64 {
    (d * 4_294_967_296.0).max(0.0) as u64
}

async fn session(
    config: &MinerConfig,
    username: &mut watch::Receiver<String>,
    stats: &Arc<MinerStats>,
    log: &Arc<std::sync::Mutex<Vec<String>>>,
    cancel: &CancellationToken,
) -> Result<(), ClientError> {
    let mut c = Sv1Client::connect(config.pool).await?;
    if config.version_rolling {
        c.configure(0x1fff_e000).await?;
    }
    c.subscribe(&config.agent).await?;
    let mut user = username.borrow_and_update().clone();
    let r = c.authorize(&user).await?;
    if let Some((code, msg)) = response_error(&r) {
        stats.last_error_code.store(code as u64, Ordering::Relaxed);
        tracing::warn!(code, %msg, "authorize refused");
    }
    let mut en2_counter: u64 = 0;
    let (started, hashed_before) = (tokio::time::Instant::now(), stats.hashes.load(Ordering::Relaxed));
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        if let Some(max) = config.max_hashrate.filter(|m| *m > 0) {
            // sleep until the hashes done so far fit the limit
            let done = stats.hashes.load(Ordering::Relaxed).saturating_sub(hashed_before);
            let due = started + Duration::from_secs_f64(done as f64 / max as f64);
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(due) => {}
            }
        }
        if username.has_changed().unwrap_or(false) {
            user = username.borrow_and_update().clone();
            let r = c.authorize(&user).await?;
            if let Some((code, msg)) = response_error(&r) {
                stats.last_error_code.store(code as u64, Ordering::Relaxed);
                tracing::warn!(code, %msg, "authorize refused");
            }
        }
        // drain what arrived
        while let Ok(v) = c.read(Duration::from_millis(1)).await {
            if v.get("method").is_none() {
                c.backlog.push_back(v);
            }
        }
        c.backlog.clear();
        let Some(job) = c.jobs.last().cloned() else {
            let v = c.read(Duration::from_secs(30)).await?;
            let _ = v;
            continue;
        };
        en2_counter += 1;
        let en2: Vec<u8> = en2_counter.to_le_bytes().iter().copied().chain(std::iter::repeat(0)).take(c.extranonce2_size).collect();
        let en1 = c.extranonce1.clone();
        let version = match (config.version_rolling, c.version_mask) {
            (true, Some(mask)) => job.version | ((en2_counter as u32) << 13 & mask),
            _ => job.version,
        };
        if let Some((nonce, hash)) = grind_job(&job, &en1, &en2, version, stats).await {
            let vb = (version != job.version).then_some(version & c.version_mask.unwrap_or(0));
            let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, vb).await?;
            record(&r, &job, &hash, stats, log);
        }
    }
}

async fn grind_job(job: &Job, en1: &[u8], en2: &[u8], version: u32, stats: &Arc<MinerStats>) -> Option<(u32, [u8; 32])> {
    let target = target_for(job.difficulty);
    let (job, en1, en2) = (job.clone(), en1.to_vec(), en2.to_vec());
    let stats = stats.clone();
    tokio::task::spawn_blocking(move || {
        let mut start = 0u32;
        // one extranonce2 covers the whole nonce space; check in chunks so new jobs are picked up
        for _ in 0..4 {
            let found = grind(&job, &en1, &en2, job.ntime, version, &target, start, CHUNK);
            stats.hashes.fetch_add(u64::from(CHUNK), Ordering::Relaxed);
            if found.is_some() {
                return found;
            }
            start = start.wrapping_add(CHUNK);
        }
        None
    })
    .await
    .ok()
    .flatten()
}

fn record(r: &Value, job: &Job, hash: &[u8; 32], stats: &MinerStats, log: &std::sync::Mutex<Vec<String>>) {
    if r["result"] == Value::Bool(true) {
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.accepted_work.fetch_add(difficulty_work(job.difficulty), Ordering::Relaxed);
        if let Ok(mut l) = log.lock() {
            l.push(display_hash(hash));
        }
    } else {
        stats.rejected.fetch_add(1, Ordering::Relaxed);
        if let Some((code, msg)) = response_error(r) {
            stats.last_error_code.store(code as u64, Ordering::Relaxed);
            tracing::debug!(code, %msg, "share rejected");
        }
    }
}
