//! # ehash-cors
//!
//! Cross-origin access to a public, read-mostly HTTP API: the web UI (served by `ehash web`
//! from its own origin, e.g. `http://127.0.0.1:8080`) calls the exchange's API, the pool mint and
//! the sat mint with `fetch()`. Nothing these APIs serve depends on cookies or the caller's
//! origin, so every origin is allowed and no credentials are.
//!
//! [`middleware`], added to a router with `.layer(axum::middleware::from_fn(ehash_cors::middleware))`:
//!
//! - answers a **preflight** (`OPTIONS` with `Access-Control-Request-Method`) itself with
//!   `204 No Content` and `Access-Control-Allow-Origin: *`, `Access-Control-Allow-Methods:
//!   GET, POST, OPTIONS`, `Access-Control-Allow-Headers:` the headers the browser asked for
//!   (`content-type` when it named none), `Access-Control-Max-Age: 3600`, and, when asked
//!   (`Access-Control-Request-Private-Network: true`, Chromium's Private Network Access),
//!   `Access-Control-Allow-Private-Network: true`;
//! - adds `Access-Control-Allow-Origin: *` to every other response, replacing any value an
//!   inner router (cdk-axum's own CORS layer) set, so the header is never sent twice.
//!
//! Routes a browser must not reach (the mint-bridge's admin route) are added to the router
//! after the layer, so they get no CORS headers and their preflight fails.

use axum::extract::Request;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD,
};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The methods a preflight allows.
pub const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
/// How long (seconds) a browser may cache a preflight's answer (Chromium caps it at 7200).
pub const MAX_AGE_SECS: u32 = 3600;

const REQUEST_PRIVATE_NETWORK: HeaderName = HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName = HeaderName::from_static("access-control-allow-private-network");

/// Answer preflights and allow every origin on every response (see the crate docs).
pub async fn middleware(req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
        return preflight(&req);
    }
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

fn preflight(req: &Request) -> Response {
    let asked = req.headers().get(ACCESS_CONTROL_REQUEST_HEADERS).filter(|v| !v.is_empty()).cloned();
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.unwrap_or(HeaderValue::from_static("content-type")));
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECS));
    if req.headers().get(REQUEST_PRIVATE_NETWORK).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true")) {
        h.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
    }
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/api/x", get(|| async { ([(ACCESS_CONTROL_ALLOW_ORIGIN, "https://inner.example")], "x") }))
            .route("/v1/swap", post(|| async { "swapped" }))
            .layer(axum::middleware::from_fn(middleware))
            .route("/admin", post(|| async { "admin" }))
    }

    async fn send(method: Method, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        app().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn preflights_are_answered_and_every_response_allows_any_origin_once() {
        let origin = ("origin", "http://127.0.0.1:8080");
        let r = send(
            Method::OPTIONS,
            "/v1/swap",
            &[origin, ("access-control-request-method", "POST"), ("access-control-request-headers", "content-type")],
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_METHODS], ALLOW_METHODS);
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_HEADERS], "content-type");
        assert!(r.headers().get(ALLOW_PRIVATE_NETWORK).is_none());

        let r = send(
            Method::OPTIONS,
            "/api/x",
            &[origin, ("access-control-request-method", "GET"), ("access-control-request-private-network", "true")],
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()[ALLOW_PRIVATE_NETWORK], "true");

        // the inner router's own value is replaced, not repeated
        let r = send(Method::GET, "/api/x", &[origin]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers().get_all(ACCESS_CONTROL_ALLOW_ORIGIN).iter().collect::<Vec<_>>(), ["*"]);

        // unknown paths too (a browser can read the 404)
        let r = send(Method::GET, "/nope", &[origin]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");

        // routes added after the layer get nothing: their preflight fails in a browser
        let r = send(Method::OPTIONS, "/admin", &[origin, ("access-control-request-method", "POST")]).await;
        assert!(r.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "{:?}", r.headers());
        assert!(!r.status().is_success());
    }
}
