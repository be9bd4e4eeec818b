//! The pool's Stratum V1 endpoint: accepts miners over TCP, hands out jobs from a
//! [`JobSource`], validates shares and credits them through [`Epochs`].

pub mod devnet;
pub mod job;
mod session;
pub mod vardiff;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bitcoin::block::Header;
use ehash_protocol::epoch::CloseReason;
use ehash_protocol::work::DifficultyExp;
use rand::RngCore;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::StratumConfig;
use crate::epochs::Epochs;
use crate::error::{Error, Result};
use job::{JobSource, Template};

/// Extranonce1 size handed to every connection, in bytes.
pub const EXTRANONCE1_SIZE: usize = 4;

/// Counters of the pool endpoint.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Open connections.
    pub connections: AtomicU64,
    /// Accepted (credited) shares.
    pub accepted: AtomicU64,
    /// Total ehash credited since start.
    pub credited: AtomicU64,
    /// Blocks found.
    pub blocks: AtomicU64,
    /// Rejected shares by reason code (20..=27).
    pub rejected: [AtomicU64; 8],
}

/// A snapshot of [`PoolStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolStatsSnapshot {
    /// Open connections.
    pub connections: u64,
    /// Accepted shares.
    pub accepted: u64,
    /// Ehash credited since start.
    pub credited: u64,
    /// Blocks found since start.
    pub blocks: u64,
    /// Rejected shares by SV1 error code.
    pub rejected: Vec<(i64, u64)>,
}

impl PoolStats {
    /// A snapshot.
    pub fn snapshot(&self) -> PoolStatsSnapshot {
        PoolStatsSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            credited: self.credited.load(Ordering::Relaxed),
            blocks: self.blocks.load(Ordering::Relaxed),
            rejected: self
                .rejected
                .iter()
                .enumerate()
                .map(|(i, c)| (20 + i as i64, c.load(Ordering::Relaxed)))
                .filter(|(_, c)| *c > 0)
                .collect(),
        }
    }

    fn reject(&self, code: i64) {
        if let Some(c) = usize::try_from(code - 20).ok().and_then(|i| self.rejected.get(i)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Hands out unique extranonce1 values; a reconnecting miner may resume its old one if free.
#[derive(Debug)]
struct Extranonces {
    next: AtomicU32,
    live: Mutex<HashSet<u32>>,
}

impl Extranonces {
    fn new() -> Self {
        Self { next: AtomicU32::new(rand::rngs::OsRng.next_u32()), live: Mutex::new(HashSet::new()) }
    }

    fn allocate(&self, resume: Option<u32>) -> u32 {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = resume
            && live.insert(r) {
                return r;
            }
        loop {
            let v = self.next.fetch_add(1, Ordering::Relaxed);
            if live.insert(v) {
                return v;
            }
        }
    }

    fn release(&self, v: u32) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&v);
    }
}

/// State shared by every connection.
pub(crate) struct PoolShared {
    pub config: StratumConfig,
    pub epochs: Arc<Epochs>,
    pub source: Arc<dyn JobSource>,
    pub stats: Arc<PoolStats>,
    pub min_difficulty: DifficultyExp,
    pub max_difficulty: DifficultyExp,
    pub initial_difficulty: DifficultyExp,
    extranonces: Extranonces,
}

impl PoolShared {
    /// A share met the network target: close the epoch, then hand the block to the network.
    pub async fn block_found(&self, template: &Template, header: &Header, coinbase: &[u8]) {
        self.stats.blocks.fetch_add(1, Ordering::Relaxed);
        match self.epochs.close(CloseReason::Block, Some((template.height, header))).await {
            Ok(Some(_)) | Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "closing the epoch on a found block failed"),
        }
        if let Err(e) = self.source.submit_block(template, header, coinbase).await {
            tracing::warn!(error = %e, "block submission");
        }
    }
}

/// The running Stratum endpoint.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<PoolShared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Pool {
    /// Bind `listen` and serve miners until `cancel` fires.
    pub async fn start(
        listen: SocketAddr,
        config: StratumConfig,
        epochs: Arc<Epochs>,
        source: Arc<dyn JobSource>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let unit_min = epochs.unit_size().min_difficulty();
        let min_difficulty = DifficultyExp::new(config.min_difficulty_exp)?.max(unit_min);
        let max_difficulty = DifficultyExp::new(config.max_difficulty_exp)?.max(min_difficulty);
        let initial_difficulty = DifficultyExp::new(config.initial_difficulty_exp)?.clamp(min_difficulty, max_difficulty);
        let listener = TcpListener::bind(listen).await.map_err(|source| Error::Listen { what: "stratum", addr: listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen { what: "stratum", addr: listen, source })?;
        let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let shared = Arc::new(PoolShared {
            config,
            epochs,
            source,
            stats: Arc::new(PoolStats::default()),
            min_difficulty,
            max_difficulty,
            initial_difficulty,
            extranonces: Extranonces::new(),
        });
        let accept = shared.clone();
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
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection limit reached; refusing miner");
                    let line = ehash_protocol::stratum::messages::error_response(
                        &serde_json::Value::Null,
                        ehash_protocol::stratum::messages::ErrorCode::Other,
                        "connection limit reached; try again later",
                    );
                    let mut stream = stream;
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, format!("{line}\n").as_bytes()).await;
                    continue;
                };
                let shared = accept.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = stream.set_nodelay(true);
                    session::run(shared, stream, peer, cancel).await;
                });
            }
        });
        Ok(Self { shared, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters.
    pub fn stats(&self) -> PoolStatsSnapshot {
        self.shared.stats.snapshot()
    }
}
