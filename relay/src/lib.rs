//! # ehash-relay
//!
//! The market's nostr relay. nostr-sdk's local relay (feature `local-relay`) stores events in
//! LMDB and runs the NIP-01/09/40/77 machinery; our axum server owns the port and puts the
//! market's rules around it:
//!
//! - [`policy`]: kind allow-list, pool and exchange keys, ehash schema validation, clock skew,
//!   stale replaceable events, filter caps;
//! - `proxy`: NIP-42 against the public URLs, NIP-70 protected events, owner-only NIP-60 and
//!   recipient-only gift wraps (REQ, COUNT and NEG-OPEN alike), oversize and malformed messages,
//!   slow consumers, metrics;
//! - `limit`: event and query budgets per client address (continuously refilled token buckets);
//! - [`expiry`]: NIP-40 expired events deleted from disk on a schedule;
//! - the server: NIP-11 on the relay URL, `/health`, Prometheus `/metrics`, connection caps in
//!   total and per IP.
//!
//! Start it with [`Relay::start`].
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod expiry;
mod limit;
pub mod metrics;
pub mod policy;
mod proxy;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use config::{Config, Limits};
use nostr_lmdb::NostrLmdb;
use nostr_sdk::prelude::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::expiry::ExpiryIndex;
use crate::metrics::Metrics;
use crate::policy::{MarketQueryPolicy, MarketWritePolicy};
use crate::server::Shared;

/// Relay errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage could not be opened.
    #[error("relay storage {path}: {reason}")]
    Storage {
        /// The data directory.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// The listener could not be started.
    #[error("relay listen {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        reason: String,
    },
    /// A configuration value is invalid.
    #[error("relay configuration: {0}")]
    Config(String),
}

/// A running relay.
#[derive(Debug, Clone)]
pub struct Relay {
    url: String,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    inner: LocalRelay,
    db: Arc<dyn NostrDatabase>,
}

impl Relay {
    /// Open storage, bind the port and start serving.
    pub async fn start(config: &Config) -> Result<Self, Error> {
        let storage = |reason: String| Error::Storage { path: config.data_dir.clone(), reason };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| storage(e.to_string()))?;
        let lmdb = NostrLmdb::builder(&config.data_dir)
            .map_size(config.map_size)
            .build()
            .await
            .map_err(|e| storage(e.to_string()))?;
        let db: Arc<dyn NostrDatabase> = Arc::new(lmdb);
        let expiry = Arc::new(ExpiryIndex::open(&config.data_dir).await.map_err(|e| storage(format!("expiry index: {e}")))?);

        let mut kinds = policy::default_kinds();
        kinds.extend(config.extra_kinds.iter().copied());
        let write = MarketWritePolicy {
            kinds: kinds.clone(),
            pool_keys: policy::parse_keys(&config.pool_keys, "pool_keys").map_err(Error::Config)?,
            exchange_keys: policy::parse_keys(&config.exchange_keys, "exchange_keys").map_err(Error::Config)?,
            max_future_secs: config.limits.max_future_secs,
            expiry: expiry.clone(),
            db: db.clone(),
        };
        let l = &config.limits;
        let query = MarketQueryPolicy { max_filter_values: l.max_filter_values, max_limit: l.max_limit };
        let inner = LocalRelay::builder()
            .database(db.clone())
            .write_policy(write.clone())
            .query_policy(query)
            // each client may use several sessions (see proxy::EVENT_SESSIONS); the bridge enforces
            // the event, query and message rates itself (per address, refilled continuously)
            .max_connections(l.max_connections.saturating_mul(proxy::EVENT_SESSIONS))
            .rate_limit(RateLimit { max_reqs: l.max_subscriptions, notes_per_minute: u32::MAX / 2 })
            .queries_per_minute(u32::MAX / 2)
            .messages_per_minute(u32::MAX / 2)
            .max_websocket_message_size(l.max_message_bytes)
            .max_event_size(l.max_event_bytes)
            .max_subid_length(l.max_subid_length)
            .max_filters_per_req(l.max_filters)
            .max_filter_limit(l.max_limit)
            .max_query_results(l.max_limit)
            .default_filter_limit(l.max_limit)
            .build();

        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Listen { addr: config.listen, reason: e.to_string() })?;
        let addr = listener.local_addr().map_err(|e| Error::Listen { addr: config.listen, reason: e.to_string() })?;
        let public_url = config.public_url(addr);
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(Shared {
            relay: inner.clone(),
            config: config.clone(),
            public_url: public_url.clone(),
            auth_urls: config.auth_urls(addr),
            kinds,
            write,
            metrics: metrics.clone(),
            per_ip: Default::default(),
            budgets: limit::Budgets::new(l.events_per_minute, l.reqs_per_minute),
        });
        let cancel = CancellationToken::new();
        expiry.spawn_sweeper(db.clone(), Duration::from_secs(config.expiry_sweep_secs.max(1)), cancel.clone());
        let app = server::router(shared);
        let stop = cancel.clone();
        // small nostr frames must not wait for Nagle's algorithm
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "relay server");
            }
        });
        tracing::info!(url = %public_url, %addr, "relay running");
        Ok(Self { url: public_url, addr, metrics, cancel, inner, db })
    }

    /// The public WebSocket URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The event store (for operators and tests; clients use the WebSocket).
    pub fn database(&self) -> Arc<dyn NostrDatabase> {
        self.db.clone()
    }

    /// Stop serving.
    pub fn shutdown(&self) {
        self.cancel.cancel();
        self.inner.shutdown();
    }
}
