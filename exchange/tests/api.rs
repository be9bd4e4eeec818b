//! The exchange's HTTP API as a client sees it (protocol §9, "API"): every route of a listed
//! market answers, an unknown market is 404 on all of them, a query number outside its documented
//! range is refused (never silently changed), every error is JSON `{"error": …}` with its status,
//! and the OpenAPI description is served.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use ehash_exchange::Exchange;
use ehash_protocol::api::{ApiError, MarketSummary};
use ehash_testkit::market::Market;

async fn get(url: &str) -> bitreq::Response {
    bitreq::get(url).with_timeout(10).send_async().await.unwrap()
}

/// An error answer: its status, and its JSON `error` sentence.
async fn error_of(url: &str) -> (i32, String) {
    let r = get(url).await;
    let ct = r.headers.get("content-type").cloned().unwrap_or_default();
    assert!(ct.starts_with("application/json"), "{url}: content-type {ct:?}, body {:?}", r.as_str());
    let e: ApiError = r.json().unwrap_or_else(|e| panic!("{url}: not an ApiError ({e}): {:?}", r.as_str()));
    (r.status_code, e.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_every_error_in_json_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let ex = Exchange::start(m.exchange_config(4, 15, 15, 10)).await.unwrap();
    let base = ex.url();
    let mut market = None;
    for _ in 0..80 {
        let ms: Vec<MarketSummary> = get(&format!("{base}/api/markets")).await.json().unwrap();
        if let Some(first) = ms.into_iter().next() {
            market = Some(first.market);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let market = market.expect("the pool's active epoch is listed");

    // a listed market answers on all four routes, at the edges of every range too
    for q in ["book?depth=1000", "trades?limit=1", "candles?interval=31536000", "journal?after=9223372036854775807&limit=10000"] {
        let r = get(&format!("{base}/api/markets/{market}/{q}")).await;
        assert_eq!(r.status_code, 200, "{q}: {}", r.as_str().unwrap_or(""));
    }
    // an unknown market is 404 on all four
    for route in ["book", "trades", "candles", "journal"] {
        let (status, error) = error_of(&format!("{base}/api/markets/nosuchmarket/{route}")).await;
        assert_eq!(status, 404, "{route}");
        assert!(error.contains("nosuchmarket") && error.contains("/api/markets"), "{route}: {error}");
    }
    // a bad or out-of-range number is a 400 naming the parameter and its range
    for (q, name, range) in [
        ("book?depth=abc", "depth", "1 to 1000"),
        ("book?depth=0", "depth", "1 to 1000"),
        ("trades?limit=-1", "limit", "1 to 1000"),
        ("trades?limit=1001", "limit", "1 to 1000"),
        ("candles?interval=0", "interval", "1 to 31536000"),
        ("journal?limit=0", "limit", "1 to 10000"),
        ("journal?after=18446744073709551615", "after", "0 to 9223372036854775807"),
        ("journal?after=1.5", "after", "0 to 9223372036854775807"),
    ] {
        let (status, error) = error_of(&format!("{base}/api/markets/{market}/{q}")).await;
        assert_eq!(status, 400, "{q}: {error}");
        assert!(error.starts_with(name) && error.contains(range), "{q}: {error}");
    }
    // unknown trades, paths and methods
    assert_eq!(error_of(&format!("{base}/api/trades/nosuchtrade")).await.0, 404);
    let (status, error) = error_of(&format!("{base}/api/nosuchroute")).await;
    assert!(status == 404 && error.contains("/api/openapi.json"), "{status} {error}");
    let r = bitreq::post(format!("{base}/api/markets")).with_timeout(10).send_async().await.unwrap();
    assert_eq!(r.status_code, 405);
    assert!(r.json::<ApiError>().is_ok(), "{:?}", r.as_str());

    // the OpenAPI description is served, and every path it describes is routed
    let r = get(&format!("{base}/api/openapi.json")).await;
    assert_eq!(r.status_code, 200);
    assert!(r.headers.get("content-type").is_some_and(|c| c.starts_with("application/json")));
    let doc: serde_json::Value = r.json().unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in doc["paths"].as_object().unwrap().keys() {
        if path == "/api/ws" {
            continue; // an upgrade, not a plain GET
        }
        let url = format!("{base}{}", path.replace("{market}", &market).replace("{id}", "nosuchtrade"));
        let r = get(&url).await;
        let text = r.as_str().unwrap_or("");
        assert!(!text.contains("no such route"), "{path} is described but not routed");
    }
    ex.shutdown().await;
}
