//! The HTTP server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::{Config, Error, Result, assets};

/// A running web UI server.
pub struct Web {
    addr: SocketAddr,
    url: String,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Web {
    /// Check the settings, bind the listen address and serve; returns once the port is bound.
    pub async fn start(config: Config) -> Result<Self> {
        let page = config.page()?;
        let config_json = serde_json::to_vec(&page).map_err(|e| Error::Config(format!("config.json: {e}")))?;
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|source| Error::Listen { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen { addr: config.listen, source })?;
        let url = browser_url(addr);
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let app = router(Arc::new(config_json));
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "web UI server stopped");
            }
        });
        tracing::info!(%url, exchange = %page.exchange, "web UI served");
        Ok(Self { addr, url, cancel, server })
    }

    /// The URL to open in a browser (`http://<listen>`, with `127.0.0.1` or `[::1]` for an
    /// unspecified listen address).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.server.abort();
        let _ = self.server.await;
    }
}

/// `http://addr`, with a loopback address in place of an unspecified one (0.0.0.0 is where the
/// server listens, not an address to open).
fn browser_url(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("http://{}", SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("http://{}", SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())),
        _ => format!("http://{addr}"),
    }
}

fn router(config_json: Arc<Vec<u8>>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/config.json", get(config))
        .fallback(asset)
        .with_state(config_json)
}

/// A response with the headers every answer carries.
fn answer(status: StatusCode, content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut r = (status, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // the page holds a wallet: no other site may frame it
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

async fn config(State(json): State<Arc<Vec<u8>>>) -> Response {
    answer(StatusCode::OK, "application/json", json.as_ref().clone())
}

async fn asset(req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "only GET\n");
    }
    match assets::get(req.uri().path()) {
        Some(a) => answer(StatusCode::OK, a.content_type, a.bytes),
        None => answer(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", format!("{} not found\n", req.uri().path())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_urls() {
        assert_eq!(browser_url("0.0.0.0:8080".parse().unwrap()), "http://127.0.0.1:8080");
        assert_eq!(browser_url("[::]:8080".parse().unwrap()), "http://[::1]:8080");
        assert_eq!(browser_url("192.168.1.2:80".parse().unwrap()), "http://192.168.1.2:80");
    }
}
