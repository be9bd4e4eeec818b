//! The TCP accept loop and the counters of a Stratum V1 server.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};

use ehash_protocol::stratum::messages::{ErrorCode, error_response};
use ehash_protocol::work::DifficultyExp;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::config::Config;
use crate::job::Template;
use crate::{Error, session};

/// Counters of a server.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open connections.
    pub connections: AtomicU64,
    /// Accepted shares.
    pub accepted: AtomicU64,
    /// Sum of what the backend said accepted shares earned.
    pub credited: AtomicU64,
    /// Shares that met the network target.
    pub blocks: AtomicU64,
    /// Sum over accepted shares of 2^(difficulty exponent + 32), saturating: the expected hashes.
    pub hashes: AtomicU64,
    /// Rejected shares by reason code (20..=27).
    pub rejected: [AtomicU64; 8],
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Open connections.
    pub connections: u64,
    /// Accepted shares.
    pub accepted: u64,
    /// Credited since start.
    pub credited: u64,
    /// Blocks since start.
    pub blocks: u64,
    /// Expected hashes behind the accepted shares.
    pub hashes: u64,
    /// Rejected shares by SV1 error code.
    pub rejected: Vec<(i64, u64)>,
}

impl Stats {
    /// A snapshot.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            credited: self.credited.load(Ordering::Relaxed),
            blocks: self.blocks.load(Ordering::Relaxed),
            hashes: self.hashes.load(Ordering::Relaxed),
            rejected: self
                .rejected
                .iter()
                .enumerate()
                .map(|(i, c)| (20 + i as i64, c.load(Ordering::Relaxed)))
                .filter(|(_, c)| *c > 0)
                .collect(),
        }
    }

    pub(crate) fn reject(&self, code: i64) {
        if let Some(c) = usize::try_from(code - 20).ok().and_then(|i| self.rejected.get(i)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn accept(&self, credit: u64, difficulty: DifficultyExp) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.credited.fetch_add(credit, Ordering::Relaxed);
        let log2 = difficulty.exp() + 32;
        let hashes = if log2 < 0 { 0 } else if log2 >= 63 { u64::MAX / 2 } else { 1u64 << log2 };
        let _ = self.hashes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h.saturating_add(hashes)));
    }
}

/// The share difficulties a server may assign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difficulty {
    /// For new connections.
    pub initial: DifficultyExp,
    /// Vardiff floor.
    pub min: DifficultyExp,
    /// Vardiff ceiling.
    pub max: DifficultyExp,
}

impl Difficulty {
    /// From a config, never below `floor` (e.g. one ehash unit).
    pub fn from_config(c: &Config, floor: DifficultyExp) -> Result<Self, Error> {
        let min = DifficultyExp::new(c.min_difficulty_exp)?.max(floor);
        let max = DifficultyExp::new(c.max_difficulty_exp)?.max(min);
        let initial = DifficultyExp::new(c.initial_difficulty_exp)?.clamp(min, max);
        Ok(Self { initial, min, max })
    }
}

/// State every connection shares.
pub(crate) struct Shared<B: Backend> {
    pub config: Config,
    pub difficulty: Difficulty,
    pub backend: Arc<B>,
    pub templates: watch::Receiver<Arc<Template>>,
    pub stats: Arc<Stats>,
}

/// Connections per IP address; a slot is given back when its [`IpSlot`] drops.
#[derive(Debug, Default)]
pub(crate) struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`PerIp`].
pub(crate) struct IpSlot {
    counts: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { counts: self.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Tell a refused peer why, without waiting on it for long.
async fn refuse(mut stream: tokio::net::TcpStream, message: String) {
    let line = error_response(&serde_json::Value::Null, ErrorCode::Other, &message);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tokio::io::AsyncWriteExt::write_all(&mut stream, format!("{line}\n").as_bytes())).await;
}

/// A running server.
#[derive(Debug, Clone)]
pub struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl Server {
    /// Bind `listen` and serve miners with jobs from `templates` until `cancel` fires.
    pub async fn start<B: Backend>(
        listen: SocketAddr,
        config: Config,
        difficulty: Difficulty,
        backend: Arc<B>,
        templates: watch::Receiver<Arc<Template>>,
        cancel: CancellationToken,
    ) -> Result<Self, Error> {
        let listener = TcpListener::bind(listen).await.map_err(|source| Error::Listen { addr: listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen { addr: listen, source })?;
        let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let per_ip = Arc::new(PerIp::default());
        let max_per_ip = config.max_connections_per_ip.max(1);
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared { config, difficulty, backend, templates, stats: stats.clone() });
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "stratum accept");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let Some(slot) = per_ip.take(peer.ip(), max_per_ip) else {
                    tracing::warn!(%peer, "per-address connection limit reached; refusing miner");
                    let msg = format!("too many connections from {} (at most {max_per_ip}); close one and try again", peer.ip());
                    tokio::spawn(refuse(stream, msg));
                    continue;
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection limit reached; refusing miner");
                    tokio::spawn(refuse(stream, "connection limit reached; try again later".to_owned()));
                    continue;
                };
                let shared = shared.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    let (_permit, _slot) = (permit, slot);
                    let _ = stream.set_nodelay(true);
                    session::run(shared, stream, peer, cancel).await;
                });
            }
        });
        Ok(Self { addr, stats })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}
