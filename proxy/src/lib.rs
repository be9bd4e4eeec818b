//! # ehash-proxy
//!
//! The miner's side of mining: `ehash proxy` sits between the miner's hardware and the pool.
//!
//! - Downstream, the shared Stratum V1 server ([`ehash_stratum`]) serves many miners at once with
//!   real validation before anything goes upstream.
//! - Upstream, one connection ([`upstream`]) carries every miner's shares; each miner's
//!   extranonce1 is a 2-byte id inside the pool's extranonce2. It reconnects with backoff while the
//!   miners stay connected, and never submits work from a dead session.
//! - Earnings ([`earn`]): the proxy mines to a NUT-20-locked quote of the active epoch in the
//!   miner's own wallet, mints what the pool credits, follows epoch changes, and audits the pool
//!   against its own log of accepted shares ([`audit`]).
//!
//! Start it with [`Proxy::start`].
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod audit;
pub mod backend;
pub mod config;
pub mod earn;
pub mod upstream;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
pub use config::Config;
use ehash_protocol::stratum::share::TAG_BYTES;
use ehash_protocol::work::DifficultyExp;
use ehash_stratum::{Difficulty, Server, StatsSnapshot};
use ehash_wallet::{MinerWallet, seed};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::backend::{Forwarding, ProxyBackend};
use crate::earn::{Backup, Earner, Earnings};
use crate::upstream::{MINER_ID_BYTES, PoolEndpoint, Upstream};

/// Proxy errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wallet problems.
    #[error(transparent)]
    Wallet(#[from] ehash_wallet::Error),
    /// The audit log could not be opened.
    #[error("audit log: {0}")]
    Audit(#[from] sqlx::Error),
    /// The miners' Stratum server could not start.
    #[error(transparent)]
    Stratum(#[from] ehash_stratum::Error),
    /// Startup failed.
    #[error("{0}")]
    Start(String),
}

/// `ehash proxy status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Connected to the pool.
    pub upstream_connected: bool,
    /// Miners connected now.
    pub miners: u64,
    /// Estimated hashrate of the miners (hashes per second), from the shares accepted in about
    /// the last five minutes (since the look before, if that was longer ago); 0 when no miner is
    /// connected.
    pub hashrate: f64,
    /// Shares the miners submitted that were valid.
    pub shares_accepted: u64,
    /// Shares forwarded to and accepted by the pool.
    pub shares_forwarded: u64,
    /// The share difficulty the pool assigns the proxy now (its miners never get easier work).
    pub upstream_difficulty: f64,
    /// Rejected shares by SV1 error code.
    pub shares_rejected: Vec<(i64, u64)>,
    /// Earnings: quote, credited, minted, audit.
    pub earnings: Earnings,
    /// Seconds since start.
    pub uptime_secs: u64,
}

/// How far back the hashrate looks.
const HASHRATE_WINDOW: Duration = Duration::from_secs(300);

struct Inner {
    server: Server,
    upstream: Upstream,
    earner: Arc<Earner>,
    forwarding: Arc<Forwarding>,
    started: Instant,
    /// The expected hashes of the accepted shares at each look at the status (at most one a
    /// second), oldest first, back to the newest one at least [`HASHRATE_WINDOW`] old.
    hash_samples: std::sync::Mutex<VecDeque<(Instant, u64)>>,
}

impl Inner {
    /// Hashes per second since the oldest sample, after recording `hashes` now.
    fn hashrate(&self, hashes: u64) -> f64 {
        let now = Instant::now();
        let mut samples = match self.hash_samples.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if samples.back().is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1)) {
            samples.push_back((now, hashes));
        }
        while samples.get(1).is_some_and(|(t, _)| now.duration_since(*t) >= HASHRATE_WINDOW) {
            samples.pop_front();
        }
        let (since, before) = samples.front().copied().unwrap_or((self.started, 0));
        hashes.saturating_sub(before) as f64 / now.duration_since(since).as_secs_f64().max(1.0)
    }

    async fn status(&self) -> Status {
        let st: StatsSnapshot = self.server.stats();
        let uptime = self.started.elapsed().as_secs_f64().max(1.0);
        let hashrate = self.hashrate(st.hashes);
        let (upstream_connected, upstream_difficulty) = {
            let s = self.upstream.state();
            let s = s.borrow();
            (s.connected, s.difficulty)
        };
        let earnings = self.earner.earnings().await;
        Status {
            upstream_connected,
            miners: st.connections,
            hashrate: if st.connections == 0 { 0.0 } else { hashrate },
            shares_accepted: st.accepted,
            shares_forwarded: self.forwarding.forwarded.load(Ordering::Relaxed),
            upstream_difficulty,
            shares_rejected: st.rejected,
            earnings,
            uptime_secs: uptime as u64,
        }
    }
}

/// A running proxy.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
    status_addr: SocketAddr,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("listen", &self.inner.server.local_addr()).finish_non_exhaustive()
    }
}

impl Proxy {
    /// Start: open the wallet, get a quote (waiting for the pool's mint if needed), connect
    /// upstream, then serve miners.
    pub async fn start(config: Config) -> Result<Self, Error> {
        let pool = PoolEndpoint::parse(&config.pool, config.pool_authority_key.as_deref()).map_err(Error::Start)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::Start(format!("{}: {e}", config.data_dir.display())))?;
        let (mnemonic, _) = seed::load_or_create(&config.wallet_dir)?;
        let wallet = Arc::new(MinerWallet::open(&config.wallet_dir.join("wallet.sqlite"), &config.mint_url, seed::seed_of(&mnemonic)).await?);
        wallet.recover().await?;
        let audit = AuditLog::open(&config.data_dir).await?;
        let backup = if config.backup_relays.is_empty() {
            None
        } else {
            let keys = ehash_keyfile::load_or_create_nostr_keys(&config.wallet_dir, config.nostr_secret_key.as_deref())
                .map_err(|e| Error::Start(e.to_string()))?;
            Some(Backup { keys, relays: config.backup_relays.clone(), dir: config.wallet_dir.clone() })
        };
        let earner = Arc::new(Earner::new(wallet.clone(), audit, config.worker.clone(), backup).redeeming(config.auto_redeem));
        let cancel = CancellationToken::new();
        if config.auto_sell.sats_per_lot > 0 {
            spawn_auto_sell(wallet, &config, cancel.clone());
        }

        let username = loop {
            match earner.ensure_quote().await {
                Ok(u) => break u,
                Err(e) => {
                    tracing::warn!(mint = %config.mint_url, error = %e, "waiting for the pool's mint");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        let upstream = Upstream::start(pool, username, config.version_rolling, cancel.clone());
        // the miners' extranonce2 size and version mask follow from the pool's
        let mut state = upstream.state();
        let up = loop {
            let s = state.borrow_and_update().clone();
            if s.connected {
                break s;
            }
            tracing::info!(pool = %config.pool, "waiting for the pool");
            if state.changed().await.is_err() {
                return Err(Error::Start("upstream task ended".into()));
            }
        };
        let mut stratum = config.stratum.clone();
        stratum.extranonce2_size = up.extranonce2_size - MINER_ID_BYTES - TAG_BYTES;
        stratum.version_mask = if config.version_rolling { up.version_mask.unwrap_or(0) } else { 0 };
        // shares go upstream with this proxy's own difficulty declaration; a miner's is not passed on
        stratum.share_difficulty_extension = false;
        let floor = DifficultyExp::new(ehash_protocol::work::MIN_DIFFICULTY_EXP).map_err(|e| Error::Start(e.to_string()))?;
        let difficulty = Difficulty::from_config(&stratum, floor)?;
        let forwarding = Arc::new(Forwarding::default());
        let backend = Arc::new(ProxyBackend::new(upstream.clone(), earner.clone(), forwarding.clone()));
        let server = Server::start(config.listen, stratum, difficulty, backend, upstream.templates(), cancel.clone()).await?;
        // mint what was credited while the proxy was away, and know the balances from the start
        if let Err(e) = earner.mint_and_audit().await {
            tracing::warn!(error = %e, "first mint; will retry");
        }
        earner.clone().spawn(upstream.clone(), Duration::from_secs(config.mint_secs.max(1)), cancel.clone());

        let started = Instant::now();
        let hash_samples = std::sync::Mutex::new(VecDeque::from([(started, 0)]));
        let inner = Arc::new(Inner { server, upstream, earner, forwarding, started, hash_samples });
        let listener = tokio::net::TcpListener::bind(config.status_listen)
            .await
            .map_err(|e| Error::Start(format!("status listen {}: {e}", config.status_listen)))?;
        let status_addr = listener.local_addr().map_err(|e| Error::Start(e.to_string()))?;
        let app = Router::new()
            .route("/status", get(|State(i): State<Arc<Inner>>| async move { axum::Json(i.status().await) }))
            .with_state(inner.clone());
        let stop = cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
        });
        tracing::info!(listen = %inner.server.local_addr(), status = %status_addr, "proxy running");
        Ok(Self { inner, status_addr, cancel })
    }

    /// The miners' Stratum address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.server.local_addr()
    }

    /// The status endpoint address.
    pub fn status_addr(&self) -> SocketAddr {
        self.status_addr
    }

    /// The current status.
    pub async fn status(&self) -> Status {
        self.inner.status().await
    }

    /// Mint credited ehash and audit now (instead of waiting for the schedule).
    pub async fn mint_now(&self) -> Result<(), String> {
        self.inner.earner.mint_and_audit().await
    }

    /// Stop serving (miners are disconnected; a last mint is attempted).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

/// Run a trade agent on the miner's wallet that sells minted ehash by `config.auto_sell`,
/// waiting for the exchange if it cannot be reached yet.
fn spawn_auto_sell(wallet: Arc<MinerWallet>, config: &Config, cancel: CancellationToken) {
    let (dir, trade, policy) = (config.wallet_dir.clone(), config.trade.clone(), config.auto_sell.clone());
    tokio::spawn(async move {
        let agent = loop {
            match ehash_wallet::agent::Agent::open(wallet.clone(), &dir, trade.clone()).await {
                Ok(a) => break a,
                Err(e) => {
                    tracing::warn!(exchange = %trade.exchange_url, error = %e, "auto-sell waits for the exchange");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    }
                }
            }
        };
        tracing::info!(price = policy.sats_per_lot, keep = policy.keep, "auto-sell running");
        let run = agent.run(cancel.clone());
        let sell = agent.auto_sell(policy, cancel);
        let _ = tokio::join!(run, sell);
    });
}
