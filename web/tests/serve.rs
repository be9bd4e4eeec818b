//! The web UI server over real HTTP: the embedded bundle, /config.json, /health, 404s, and the
//! errors of a taken port and an unusable URL.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::request;
use ehash_web::{Config, Web};

fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        exchange_url: "http://127.0.0.1:8090/".into(),
        sat_mints: vec!["http://127.0.0.1:3340".into()],
        relays: vec!["ws://127.0.0.1:7777".into()],
    }
}

fn dist(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/ui/dist/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn serves_the_bundle_and_the_config() {
    let web = Web::start(config()).await.unwrap();
    let addr = web.local_addr();
    assert_eq!(web.url(), format!("http://{addr}"));

    for (path, file, ty) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/index.html", "index.html", "text/html; charset=utf-8"),
        ("/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "app.css", "text/css; charset=utf-8"),
    ] {
        let r = request(addr, "GET", path, &[], b"").await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.one("content-type"), ty, "{path}");
        assert_eq!(r.one("cache-control"), "no-cache", "{path}");
        assert_eq!(r.one("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(r.body, dist(file), "{path} serves web/ui/dist/{file}");
    }
    // every file of the bundle, whatever it holds
    for a in ehash_web::assets::all() {
        let r = request(addr, "GET", &format!("/{}", a.path), &[], b"").await;
        assert_eq!((r.status, r.body.as_slice()), (200, dist(a.path).as_slice()), "{}", a.path);
        assert_eq!(r.one("content-type"), a.content_type);
    }

    let r = request(addr, "GET", "/config.json", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.one("content-type"), "application/json");
    assert_eq!(r.one("cache-control"), "no-cache");
    assert_eq!(
        r.json(),
        serde_json::json!({
            "exchange": "http://127.0.0.1:8090",
            "sat_mints": ["http://127.0.0.1:3340"],
            "relays": ["ws://127.0.0.1:7777"],
        })
    );

    let r = request(addr, "GET", "/health", &[], b"").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));

    // no single-page fallback: unknown paths are 404
    for path in ["/nope", "/trade", "/nope/index.html", "/app.js/x", "/../Cargo.toml"] {
        let r = request(addr, "GET", path, &[], b"").await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    assert_eq!(request(addr, "POST", "/", &[], b"").await.status, 405);

    web.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the port is closed after shutdown");
}

#[tokio::test]
async fn empty_lists_are_served_as_empty_lists() {
    let web = Web::start(Config { sat_mints: vec![], relays: vec![], ..config() }).await.unwrap();
    let r = request(web.local_addr(), "GET", "/config.json", &[], b"").await;
    assert_eq!(r.json(), serde_json::json!({"exchange": "http://127.0.0.1:8090", "sat_mints": [], "relays": []}));
    web.shutdown().await;
}

#[tokio::test]
async fn a_taken_port_and_a_bad_url_are_refused_with_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = Web::start(Config { listen: addr, ..config() }).await.unwrap_err().to_string();
    assert!(e.contains(&addr.to_string()) && e.contains("--listen"), "{e}");

    let e = Web::start(Config { exchange_url: "localhost:8090".into(), ..config() }).await.unwrap_err().to_string();
    assert!(e.contains("exchange_url") && e.contains("\"localhost:8090\""), "{e}");
}
