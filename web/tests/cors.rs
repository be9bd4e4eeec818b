//! What a browser page served by `ehash web` (another origin) needs from the services it calls
//! with `fetch()`, checked over real HTTP against a started pool mint-bridge, sat mint and
//! exchange: every preflight (`OPTIONS` with `Origin` and `Access-Control-Request-*`) is answered
//! 2xx with `Access-Control-Allow-Origin: *` and the method and headers allowed, and every actual
//! answer, errors included, carries `Access-Control-Allow-Origin: *` exactly once. The
//! mint-bridge's admin route allows no other origin.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{ORIGIN, Reply, addr_of, request};
use ehash_testkit::market::Market;

/// Preflight `method path` as a browser does before a non-simple request; check the answer.
async fn preflight_ok(addr: SocketAddr, method: &str, path: &str) {
    let mut headers = vec![("Origin", ORIGIN), ("Access-Control-Request-Method", method)];
    if method == "POST" {
        headers.push(("Access-Control-Request-Headers", "content-type"));
    }
    let r = request(addr, "OPTIONS", path, &headers, b"").await;
    let what = format!("preflight {method} {path} on {addr}");
    assert!((200..300).contains(&r.status), "{what}: {r:?}");
    assert_eq!(r.one("access-control-allow-origin"), "*", "{what}");
    let methods = r.one("access-control-allow-methods");
    assert!(methods.split(',').any(|m| m.trim() == method), "{what}: {methods}");
    if method == "POST" {
        let allowed = r.one("access-control-allow-headers").to_ascii_lowercase();
        assert!(allowed == "*" || allowed.split(',').any(|h| h.trim() == "content-type"), "{what}: {allowed}");
    }
    // Chromium's Private Network Access preflight
    let mut pna = headers.clone();
    pna.push(("Access-Control-Request-Private-Network", "true"));
    let r = request(addr, "OPTIONS", path, &pna, b"").await;
    assert_eq!(r.one("access-control-allow-private-network"), "true", "{what} (private network)");
}

/// The actual request, as a browser sends it after the preflight; its answer must be readable.
async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> Reply {
    if method != "GET" {
        preflight_ok(addr, method, path).await;
    }
    let mut headers = vec![("Origin", ORIGIN)];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = request(addr, method, path, &headers, body.as_bytes()).await;
    assert_eq!(r.one("access-control-allow-origin"), "*", "{method} {path} on {addr}: {r:?}");
    r
}

async fn get_ok(addr: SocketAddr, path: &str) -> Reply {
    preflight_ok(addr, "GET", path).await; // a GET with a non-simple header is preflighted too
    let r = call(addr, "GET", path, "").await;
    assert_eq!(r.status, 200, "GET {path} on {addr}: {}", r.text());
    r
}

/// The Cashu routes the page uses on any mint; returns an epoch keyset id (else the first).
async fn cashu_routes(addr: SocketAddr) -> String {
    get_ok(addr, "/v1/info").await;
    get_ok(addr, "/v1/keys").await;
    let keysets = get_ok(addr, "/v1/keysets").await.json();
    // an epoch's keyset when the mint has one (the pool mint also has a sat keyset for redemptions)
    let all = keysets["keysets"].as_array().unwrap();
    let pick = all.iter().find(|k| k["unit"].as_str().is_some_and(|u| u.starts_with("hash_"))).unwrap_or(&all[0]);
    let id = pick["id"].as_str().unwrap().to_owned();
    get_ok(addr, &format!("/v1/keys/{id}")).await;
    // Y = the secp256k1 generator: a point no proof of this mint has, so UNSPENT
    let y = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    let r = call(addr, "POST", "/v1/checkstate", &format!(r#"{{"Ys":["{y}"]}}"#)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // refused (nothing to restore or swap), but the page can read why
    for (path, body) in [("/v1/restore", r#"{"outputs":[]}"#), ("/v1/swap", r#"{"inputs":[],"outputs":[]}"#)] {
        let r = call(addr, "POST", path, body).await;
        assert!((400..500).contains(&r.status), "{path}: {} {}", r.status, r.text());
    }
    let r = call(addr, "GET", "/v1/no-such-route", "").await;
    assert_eq!(r.status, 404);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_and_both_mints_allow_the_page_to_call_them() {
    let dir = tempfile::tempdir().unwrap();
    let market = Market::start(dir.path(), 0).await;
    let exchange = ehash_exchange::Exchange::start(market.exchange_config(8, 30, 30, 30)).await.unwrap();

    // the pool's mint-bridge: cdk-axum's routes (forwarded) and its own
    let pool = market.pool.http_addr();
    let keyset = cashu_routes(pool).await;
    get_ok(pool, "/v1/ehash/epochs").await;
    get_ok(pool, "/health").await;
    let r = call(pool, "POST", "/v1/mint/quote/ehash", r#"{"unit":"sat","amount":1}"#).await;
    assert_eq!(r.status, 400, "an unlocked quote is refused: {}", r.text());
    // the admin route is not for browsers: its preflight gets no CORS headers
    let r = request(pool, "OPTIONS", "/admin/epoch/close", &[("Origin", ORIGIN), ("Access-Control-Request-Method", "POST")], b"").await;
    assert!(r.all("access-control-allow-origin").is_empty(), "{r:?}");
    let r = request(pool, "POST", "/admin/epoch/close", &[("Origin", ORIGIN)], b"").await;
    assert_eq!(r.status, 401);
    assert!(r.all("access-control-allow-origin").is_empty(), "{r:?}");

    // the sat mint: the Cashu routes and a deposit (bolt11 quote, its state, minting)
    let sats = addr_of(&market.sat_url);
    cashu_routes(sats).await;
    let r = call(sats, "POST", "/v1/mint/quote/bolt11", r#"{"amount":100,"unit":"sat"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let quote = r.json()["quote"].as_str().unwrap().to_owned();
    get_ok(sats, &format!("/v1/mint/quote/bolt11/{quote}")).await;
    let r = call(sats, "POST", "/v1/mint/bolt11", &format!(r#"{{"quote":"{quote}","outputs":[]}}"#)).await;
    assert!((200..500).contains(&r.status), "{r:?}");

    // the exchange's API
    let ex = exchange.local_addr();
    for path in ["/health", "/api/info", "/api/markets", "/api/epochs", "/api/refusals"] {
        get_ok(ex, path).await;
    }
    // the market exists once the exchange has read the pool's epoch announcement
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !get_ok(ex, "/api/markets").await.json().as_array().unwrap().iter().any(|m| m["market"] == keyset.as_str()) {
        assert!(std::time::Instant::now() < deadline, "the exchange never listed market {keyset}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for path in ["book", "trades", "candles", "journal"] {
        get_ok(ex, &format!("/api/markets/{keyset}/{path}")).await;
    }
    assert_eq!(call(ex, "GET", "/api/trades/nope", "").await.status, 404);
    assert_eq!(call(ex, "GET", "/api/markets/nope/book", "").await.status, 404);

    exchange.shutdown().await;
    market.shutdown().await;
}
