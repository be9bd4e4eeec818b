//! `ehash up` as a user runs it: the simulated miner earns ehash into its wallet, a nostr client
//! on the relay sees the mint, the epoch and its state change when a block is found, Ctrl-C stops
//! it cleanly, and a restart keeps the data.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ehash_protocol::epoch::EpochState;
use ehash_protocol::events::{EpochAnnouncement, KIND_EPOCH_ANNOUNCEMENT, KIND_MINT_ANNOUNCEMENT};
use nostr_sdk::prelude::*;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn spawn_up(dir: &std::path::Path, relay: SocketAddr, http: SocketAddr, stratum: SocketAddr, proxy: (SocketAddr, SocketAddr)) -> Up {
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
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Up { child, lines }
}

/// The wallet balance and epoch number in a status line.
fn parse_status(line: &str) -> Option<(u32, u64)> {
    let epoch = line.strip_prefix("epoch ")?.split_whitespace().next()?.parse().ok()?;
    let wallet = line.split("| wallet ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    Some((epoch, wallet))
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

fn interrupt(mut up: Up) {
    let pid = up.child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            assert!(status.success(), "ehash up exits cleanly on Ctrl-C: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "ehash up did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_a_miner_earning_ehash_visible_on_nostr() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, http, stratum) = (free_addr(), free_addr(), free_addr());
    let proxy = (free_addr(), free_addr());
    let up = spawn_up(dir.path(), relay, http, stratum, proxy);
    let (_, earned) = wait_status(&up, Duration::from_secs(120), |_, w| w > 0);
    assert!(earned > 0);

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
    let (epoch, wallet) = wait_status(&up, Duration::from_secs(30), |e, _| e >= 2);
    interrupt(up);

    // the data directory survives: same epochs, the wallet keeps its ehash
    let up = spawn_up(dir.path(), relay, http, stratum, proxy);
    let (epoch2, wallet2) = wait_status(&up, Duration::from_secs(60), |_, _| true);
    assert!(epoch2 >= epoch, "epoch {epoch2} after restart, {epoch} before");
    assert!(wallet2 >= wallet, "wallet {wallet2} after restart, {wallet} before");
    interrupt(up);
}
