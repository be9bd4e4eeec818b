//! The relay's one port: WebSocket upgrades (handed to [`crate::proxy`]), the NIP-11 document
//! for `Accept: application/nostr+json`, `/health` and `/metrics`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nostr_sdk::prelude::LocalRelay;
use serde_json::json;

use crate::config::Config;
use crate::limit::Budgets;
use crate::metrics::Metrics;
use crate::policy::MarketWritePolicy;

/// State shared by all connections.
pub(crate) struct Shared {
    pub relay: LocalRelay,
    pub config: Config,
    /// The URL the relay advertises.
    pub public_url: String,
    /// Every URL a NIP-42 AUTH event may name.
    pub auth_urls: Vec<String>,
    /// The kinds this relay stores.
    pub kinds: HashSet<u16>,
    /// The write policy (the bridge runs it itself for NIP-70 protected events).
    pub write: MarketWritePolicy,
    pub metrics: Arc<Metrics>,
    pub per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Event and query budgets per client address.
    pub budgets: Budgets,
}

/// Counts a connection against the total and per-IP caps for as long as it lives.
struct ConnectionSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.shared.per_ip.lock()
            && let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        self.shared.metrics.connection_closed();
    }
}

fn take_slot(shared: &Arc<Shared>, ip: IpAddr) -> Result<ConnectionSlot, (StatusCode, &'static str, String)> {
    let limits = &shared.config.limits;
    let mut m = shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
    if shared.metrics.open_connections() >= limits.max_connections as i64 {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "total", format!("relay is full ({} connections); try later", limits.max_connections)));
    }
    let n = m.entry(ip).or_default();
    if *n >= limits.max_connections_per_ip {
        return Err((StatusCode::TOO_MANY_REQUESTS, "per_ip", format!("too many connections from {ip} (limit {})", limits.max_connections_per_ip)));
    }
    *n += 1;
    shared.metrics.connection_opened();
    shared.budgets.prune_at(std::time::Instant::now());
    Ok(ConnectionSlot { shared: shared.clone(), ip })
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render()).into_response()
}

async fn root(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Ok(ws) = ws {
        let slot = match take_slot(&shared, addr.ip()) {
            Ok(s) => s,
            Err((status, reason, text)) => {
                shared.metrics.connection_refused(reason);
                return (status, text).into_response();
            }
        };
        let max = shared.config.limits.max_message_bytes * 4;
        return ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
            crate::proxy::serve(socket, addr, slot.shared.clone()).await;
            drop(slot);
        });
    }
    let wants_nip11 = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/nostr+json"));
    if wants_nip11 {
        let mut r = axum::Json(nip11(&shared)).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/nostr+json"));
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET"));
        return r;
    }
    format!("{}: connect a nostr client to {}\n", shared.config.info.name, shared.public_url).into_response()
}

fn nip11(shared: &Shared) -> serde_json::Value {
    let c = &shared.config;
    json!({
        "name": c.info.name,
        "description": c.info.description,
        "pubkey": c.info.pubkey,
        "contact": c.info.contact,
        "supported_nips": [1, 9, 11, 17, 40, 42, 59, 60, 61, 70, 77, 87],
        "version": env!("CARGO_PKG_VERSION"),
        "limitation": {
            "max_message_length": c.limits.max_message_bytes,
            "max_subscriptions": c.limits.max_subscriptions,
            "max_filters": c.limits.max_filters,
            "max_limit": c.limits.max_limit,
            "max_subid_length": c.limits.max_subid_length,
            "created_at_upper_limit": c.limits.max_future_secs,
            "auth_required": false,
            "payment_required": false,
            "restricted_writes": true,
        },
    })
}
