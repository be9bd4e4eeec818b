//! `ehash up` as a user runs it: it prints the web UI's URL, whose /config.json points the page
//! at the local exchange, sat mint and relay; the simulated miner earns ehash into its wallet, the
//! simulated seller (the miner's wallet) and buyer trade on the exchange until a swap is settled
//! (and `ehash exchange verify` agrees with the exchange), a nostr client on the relay sees the
//! mint, the epoch and its state change when a block is found, SIGTERM and Ctrl-C stop it cleanly,
//! and a restart keeps the data. With `[up].simulate_buyer = false` the seller's asks rest in the
//! book for people trading in the browser.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ehash_protocol::api::{MarketSummary, TradeView};
use ehash_protocol::epoch::EpochState;
use ehash_protocol::events::{EpochAnnouncement, KIND_EPOCH_ANNOUNCEMENT, KIND_MINT_ANNOUNCEMENT, TradeState};
use nostr_sdk::prelude::*;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// The ports of one `ehash up`.
#[derive(Clone, Copy)]
struct Ports {
    relay: SocketAddr,
    http: SocketAddr,
    stratum: SocketAddr,
    proxy: (SocketAddr, SocketAddr),
    exchange: SocketAddr,
    sat_mint: SocketAddr,
    web: SocketAddr,
}

impl Ports {
    fn free() -> Self {
        Self {
            relay: free_addr(),
            http: free_addr(),
            stratum: free_addr(),
            proxy: (free_addr(), free_addr()),
            exchange: free_addr(),
            sat_mint: free_addr(),
            web: free_addr(),
        }
    }
}

/// The two tests each run a CPU miner: one at a time, so neither starves the other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn spawn_up(dir: &std::path::Path, p: Ports) -> Up {
    spawn_up_with(dir, p, &[])
}

fn spawn_up_with(dir: &std::path::Path, p: Ports, env: &[(&str, &str)]) -> Up {
    let Ports { relay, http, stratum, proxy, exchange, sat_mint, web } = p;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["--log", "warn", "up", "--data-dir"])
        .arg(dir)
        .env_remove("EHASH_CONFIG")
        .env("EHASH_RELAY__LISTEN", relay.to_string())
        .env("EHASH_MINT_BRIDGE__HTTP_LISTEN", http.to_string())
        .env("EHASH_MINT_BRIDGE__STRATUM_LISTEN", stratum.to_string())
        .env("EHASH_PROXY__LISTEN", proxy.0.to_string())
        .env("EHASH_PROXY__STATUS_LISTEN", proxy.1.to_string())
        .env("EHASH_UP__NETWORK_DIFFICULTY_EXP", "-9")
        .env("EHASH_UP__STATUS_SECS", "1")
        .env("EHASH_UP__MINT_SECS", "1")
        .env("EHASH_EXCHANGE__LISTEN", exchange.to_string())
        .env("EHASH_SAT_MINT__LISTEN", sat_mint.to_string())
        .env("EHASH_UP__LOT", "8")
        .env("EHASH_UP__TRADE_SECS", "2")
        .env("EHASH_WEB__LISTEN", web.to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = ehash_testkit::stdout_lines(&mut child);
    Up { child, lines }
}

/// Read the lines `ehash up` prints until one starts with `prefix`; returns the rest of it.
fn wait_line(up: &Up, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = up.lines.recv_timeout(left).unwrap_or_else(|_| panic!("a line starting {prefix:?}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
}

/// The web UI line names the page's URL, and the page's /config.json the local market.
async fn check_web(up: &Up, p: Ports) {
    let line = wait_line(up, "  web      ");
    let url = format!("http://{}", p.web);
    assert!(line.starts_with(&format!("{url}   (open this in a browser")), "{line}");
    let config: serde_json::Value = get(format!("{url}/config.json")).await.expect("the web UI serves /config.json");
    assert_eq!(
        config,
        serde_json::json!({
            "exchange": format!("http://{}", p.exchange),
            "sat_mints": [format!("http://{}", p.sat_mint)],
            "relays": [format!("ws://{}", p.relay)],
        })
    );
    let page = bitreq::get(url.as_str()).with_timeout(10).send_async().await.unwrap();
    assert_eq!(page.status_code, 200);
    assert!(page.headers.get("content-type").is_some_and(|t| t.starts_with("text/html")), "{:?}", page.headers);
}

/// The epoch number and the ehash credited so far (it only grows; the wallet's balance falls as
/// the simulated seller sells) in a status line.
fn parse_status(line: &str) -> Option<(u32, u64)> {
    let epoch = line.strip_prefix("epoch ")?.split_whitespace().next()?.parse().ok()?;
    let credited = line.split("| credited ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    Some((epoch, credited))
}

fn wait_status(up: &Up, timeout: Duration, mut ok: impl FnMut(u32, u64) -> bool) -> (u32, u64) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = up.lines.recv_timeout(left).expect("a status line in time");
        if let Some((e, w)) = parse_status(&line)
            && ok(e, w) {
                return (e, w);
            }
    }
}

/// Stop `ehash up` with `signal` (`INT`: Ctrl-C, `TERM`) and check that it exits cleanly.
fn stop(mut up: Up, signal: &str) {
    let pid = up.child.id().to_string();
    assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            assert!(status.success(), "ehash up exits cleanly on SIG{signal}: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "ehash up did not stop on SIG{signal}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn get<T: serde::de::DeserializeOwned>(url: String) -> Option<T> {
    let r = bitreq::get(url.as_str()).with_timeout(10).send_async().await.ok()?;
    if r.status_code != 200 {
        return None;
    }
    r.json().ok()
}

/// Wait until the exchange shows a settled trade in some market; returns it.
async fn wait_settled(exchange: SocketAddr, timeout: Duration) -> TradeView {
    let deadline = Instant::now() + timeout;
    let mut seen = vec![];
    loop {
        let markets: Vec<MarketSummary> = get(format!("http://{exchange}/api/markets")).await.unwrap_or_default();
        for m in &markets {
            let trades: Vec<TradeView> = get(format!("http://{exchange}/api/markets/{}/trades", m.market)).await.unwrap_or_default();
            if let Some(t) = trades.iter().find(|t| t.state == TradeState::Settled) {
                return t.clone();
            }
            seen = trades.iter().map(|t| (t.id.clone(), t.state, t.reason.clone())).collect();
        }
        assert!(Instant::now() < deadline, "no settled trade on the exchange within {timeout:?}; markets {markets:#?}, trades {seen:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `ehash exchange verify` against the running exchange: it agrees with every published trade.
/// A trade matched during the check may not be on the relay yet, so a failure is retried.
fn verify_ok(exchange: SocketAddr) {
    let mut last = String::new();
    for _ in 0..3 {
        let out = Command::new(env!("CARGO_BIN_EXE_ehash"))
            .args(["--log", "warn", "exchange", "verify", "--exchange", &format!("http://{exchange}")])
            .env_remove("EHASH_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            assert!(stdout.contains("OK: the published trades are exactly"), "{stdout}");
            assert!(stdout.contains("mismatches  none"), "{stdout}");
            return;
        }
        last = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("ehash exchange verify failed three times:\n{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_a_miner_earning_ehash_visible_on_nostr_and_a_market_where_swaps_settle() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let relay = ports.relay;
    let up = spawn_up(dir.path(), ports);
    check_web(&up, ports).await;
    let (_, earned) = wait_status(&up, Duration::from_secs(120), |_, c| c > 0);
    assert!(earned > 0);

    // the simulated seller offers the miner's ehash, the simulated buyer takes it, and the swap
    // settles across the pool mint and the sat mint
    let t = wait_settled(ports.exchange, Duration::from_secs(240)).await;
    assert_eq!(t.amount, 8, "the simulated buyer bids for one lot of 8 a round: {t:?}");
    assert_eq!(t.sats, t.amount / 8 * t.price, "{t:?}");
    verify_ok(ports.exchange);

    let client = Client::default();
    client.add_relay(format!("ws://{relay}")).await.unwrap();
    client.connect().and_wait(Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let (mut mint_seen, mut closed_seen) = (false, false);
    while !(mint_seen && closed_seen) {
        assert!(Instant::now() < deadline, "announcements on the relay: mint {mint_seen}, closed epoch {closed_seen}");
        let events = client
            .fetch_events(Filter::new().kinds([Kind::Custom(KIND_MINT_ANNOUNCEMENT), Kind::Custom(KIND_EPOCH_ANNOUNCEMENT)]))
            .timeout(Duration::from_secs(5))
            .await
            .unwrap();
        mint_seen |= events.iter().any(|e| e.kind == Kind::Custom(KIND_MINT_ANNOUNCEMENT));
        closed_seen |= events
            .iter()
            .filter(|e| e.kind == Kind::Custom(KIND_EPOCH_ANNOUNCEMENT))
            .any(|e| EpochAnnouncement::parse(e).unwrap().state == EpochState::Closed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    client.shutdown().await;
    let (epoch, credited) = wait_status(&up, Duration::from_secs(30), |e, _| e >= 2);
    stop(up, "TERM");

    // the data directory survives: same epochs, the pool's credits to the miner's quotes, the
    // exchange's trades
    let up = spawn_up(dir.path(), ports);
    let (epoch2, _) = wait_status(&up, Duration::from_secs(60), |_, _| true);
    assert!(epoch2 >= epoch, "epoch {epoch2} after restart, {epoch} before");
    let (_, credited2) = wait_status(&up, Duration::from_secs(60), |_, c| c >= credited);
    assert!(credited2 >= credited);
    let again = wait_settled(ports.exchange, Duration::from_secs(30)).await;
    assert!(again.state == TradeState::Settled);
    stop(up, "INT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_simulated_buyer_the_sellers_asks_rest_in_the_book() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let up = spawn_up_with(dir.path(), ports, &[("EHASH_UP__SIMULATE_BUYER", "false")]);
    check_web(&up, ports).await;
    let line = wait_line(&up, "           simulated buyer");
    assert!(line.contains("is off"), "{line}");

    // the simulated seller asks ...
    let deadline = Instant::now() + Duration::from_secs(180);
    let market = loop {
        let markets: Vec<MarketSummary> = get(format!("http://{}/api/markets", ports.exchange)).await.unwrap_or_default();
        if let Some(m) = markets.iter().find(|m| m.ask.is_some()) {
            break m.market.clone();
        }
        assert!(Instant::now() < deadline, "no ask within 3 minutes: {markets:#?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // ... and nobody buys: after a few rounds (2 s each) the ask still rests, no trade was made
    tokio::time::sleep(Duration::from_secs(8)).await;
    let m: Vec<MarketSummary> = get(format!("http://{}/api/markets", ports.exchange)).await.unwrap();
    assert!(m.iter().any(|m| m.market == market && m.ask.is_some()), "{m:#?}");
    let trades: Vec<TradeView> = get(format!("http://{}/api/markets/{market}/trades", ports.exchange)).await.unwrap();
    assert!(trades.is_empty(), "{trades:#?}");
    assert!(!dir.path().join("buyer").exists(), "no simulated buyer's wallet");
    stop(up, "INT");
}
