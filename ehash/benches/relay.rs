//! Figures, not a timed test: ingest rate and REQ latency of `ehash relay`, side by side with
//! nostr-rs-relay 0.8.12 in the same run, with 1 and 50 concurrent clients, printed as ratios;
//! and the relay's memory with many stored events.
//!
//! nostr-rs-relay is not part of the project; install it beside it with
//! `PROTOC=$PWD/tools/protoc cargo install nostr-rs-relay --version 0.8.12 --locked --root /tmp/nrr`
//! and point `NOSTR_RS_RELAY` at the binary (default `/tmp/nrr/bin/nostr-rs-relay`); without it
//! only our figures are printed. `EHASH_BENCH_EVENTS` (default 20000) sets the ingest size;
//! `EHASH_BENCH_MEMORY_EVENTS` (default 0; try 1000000) also measures memory with that many events.
//!
//! Run: `cargo bench -p ehash --bench relay`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use nostr_sdk::prelude::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_ours(dir: &Path) -> Server {
    let addr = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["--log", "error", "relay", "--data-dir"])
        .arg(dir)
        .args(["--listen", &addr.to_string(), "--map-size", &(8u64 << 30).to_string()])
        .args(["--events-per-minute", "100000000", "--messages-per-minute", "100000000", "--reqs-per-minute", "100000000"])
        .args(["--max-connections-per-ip", "1000", "--slow-consumer-secs", "60"])
        .env_remove("EHASH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server { child, addr }
}

fn start_theirs(bin: &Path, dir: &Path) -> Server {
    let addr = free_addr();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[info]\nrelay_url = \"ws://{addr}/\"\nname = \"bench\"\n[database]\ndata_directory = \"{}\"\n[network]\naddress = \"127.0.0.1\"\nport = {}\n[limits]\nmax_event_bytes = 131072\nmax_ws_message_bytes = 131072\n",
            dir.display(),
            addr.port()
        ),
    )
    .unwrap();
    let child = Command::new(bin).arg("--config").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    Server { child, addr }
}

async fn connect(addr: SocketAddr) -> Ws {
    for _ in 0..600 {
        if let Ok(tcp) = tokio::net::TcpStream::connect(addr).await
            && let Ok((ws, _)) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await {
                return ws;
            }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("relay at {addr} did not come up");
}

/// Publish `events` over one connection with up to `window` unacknowledged; returns accepted.
async fn ingest_one(addr: SocketAddr, events: Vec<String>, window: usize) -> usize {
    let ws = connect(addr).await;
    let (mut tx, mut rx) = ws.split();
    let total = events.len();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let reader = tokio::spawn(async move {
        let mut acked = 0;
        let mut accepted = 0;
        while acked < total {
            // a relay that stops answering (drops events) must not hang the bench
            let Ok(next) = tokio::time::timeout(Duration::from_secs(30), rx.next()).await else {
                eprintln!("no answer for 30 s after {acked} of {total} OKs; counting what was acknowledged");
                let _ = done_tx.send(false);
                break;
            };
            match next {
                Some(Ok(Message::Text(t))) => {
                    if t.starts_with("[\"OK\"") {
                        acked += 1;
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if v[2] == true {
                            accepted += 1;
                        }
                        let _ = done_tx.send(true);
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        accepted
    });
    let mut in_flight = 0;
    for e in events {
        while in_flight >= window {
            match done_rx.recv().await {
                Some(true) => in_flight -= 1,
                _ => return reader.await.unwrap_or(0),
            }
        }
        tx.send(Message::Text(e.into())).await.unwrap();
        in_flight += 1;
    }
    reader.await.unwrap()
}

async fn ingest(addr: SocketAddr, events: &[String], clients: usize) -> (f64, usize) {
    let per = events.len().div_ceil(clients);
    let start = Instant::now();
    let tasks: Vec<_> = events.chunks(per).map(|c| tokio::spawn(ingest_one(addr, c.to_vec(), 64))).collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    (accepted as f64 / start.elapsed().as_secs_f64(), accepted)
}

/// REQ→EOSE latencies for `queries` REQs per client, each for one author's events.
async fn latency(addr: SocketAddr, authors: Arc<Vec<String>>, clients: usize, queries: usize) -> (Duration, Duration) {
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let authors = authors.clone();
            tokio::spawn(async move {
                let mut ws = connect(addr).await;
                let mut out = Vec::with_capacity(queries);
                for q in 0..queries {
                    let author = &authors[(c * 7919 + q * 104729) % authors.len()];
                    let sub = format!("q{q}");
                    let t = Instant::now();
                    ws.send(Message::Text(json!(["REQ", sub, {"authors": [author], "kinds": [0]}]).to_string().into())).await.unwrap();
                    let eose = tokio::time::timeout(Duration::from_secs(10), async {
                        loop {
                            let Some(Ok(Message::Text(m))) = ws.next().await else { return false };
                            if m.starts_with("[\"EOSE\"") {
                                return true;
                            }
                        }
                    })
                    .await;
                    if !matches!(eose, Ok(true)) {
                        eprintln!("a REQ got no EOSE within 10 s");
                    }
                    out.push(t.elapsed());
                    ws.send(Message::Text(json!(["CLOSE", sub]).to_string().into())).await.unwrap();
                }
                out
            })
        })
        .collect();
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (pct(0.50), pct(0.99))
}

fn make_events(n: usize) -> (Vec<String>, Vec<String>) {
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(2);
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut evs = vec![];
                let mut authors = vec![];
                for i in 0..per {
                    let k = Keys::generate();
                    let ev = EventBuilder::new(Kind::Metadata, format!("{{\"name\":\"bench-{t}-{i}\"}}")).finalize(&k).unwrap();
                    authors.push(k.public_key().to_hex());
                    evs.push(json!(["EVENT", ev]).to_string());
                }
                (evs, authors)
            })
        })
        .collect();
    let mut evs = vec![];
    let mut authors = vec![];
    for h in handles {
        let (e, a) = h.join().unwrap();
        evs.extend(e);
        authors.extend(a);
    }
    evs.truncate(n);
    authors.truncate(n);
    (evs, authors)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let n = env_usize("EHASH_BENCH_EVENTS", 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let theirs_bin = PathBuf::from(std::env::var("NOSTR_RS_RELAY").unwrap_or_else(|_| "/tmp/nrr/bin/nostr-rs-relay".into()));
    let have_theirs = theirs_bin.is_file();
    if !have_theirs {
        println!("nostr-rs-relay not found at {} (set NOSTR_RS_RELAY); printing ehash relay figures only", theirs_bin.display());
    }
    println!("pre-signing {} events", 2 * n);
    let (events_a, authors_a) = make_events(n);
    let (events_b, _) = make_events(n);

    rt.block_on(async {
        for clients in [1usize, 50] {
            let batch = if clients == 1 { &events_a } else { &events_b };
            let d1 = tempfile::tempdir().unwrap();
            let ours = start_ours(d1.path());
            // fill both with the first batch before the 50-client run so queries see the same data
            if clients == 50 {
                ingest(ours.addr, &events_a, 8).await;
            }
            let (our_rate, our_ok) = ingest(ours.addr, batch, clients).await;
            let authors = Arc::new(authors_a.clone());
            let (our_p50, our_p99) = latency(ours.addr, authors.clone(), clients, 2000 / clients.max(1) + 20).await;
            drop(ours);
            println!("ehash relay,     {clients:>2} clients: ingest {our_rate:>8.0} events/s ({our_ok} accepted); REQ p50 {our_p50:?} p99 {our_p99:?}");
            if have_theirs {
                let d2 = tempfile::tempdir().unwrap();
                let theirs = start_theirs(&theirs_bin, d2.path());
                if clients == 50 {
                    ingest(theirs.addr, &events_a, 8).await;
                }
                let (their_rate, their_ok) = ingest(theirs.addr, batch, clients).await;
                let (their_p50, their_p99) = latency(theirs.addr, authors, clients, 2000 / clients.max(1) + 20).await;
                drop(theirs);
                println!("nostr-rs-relay,  {clients:>2} clients: ingest {their_rate:>8.0} events/s ({their_ok} accepted); REQ p50 {their_p50:?} p99 {their_p99:?}");
                println!(
                    "ratio (ours/theirs), {clients:>2} clients: ingest {:.2}x; p99 latency {:.2}x (lower is better)",
                    our_rate / their_rate.max(1e-9),
                    our_p99.as_secs_f64() / their_p99.as_secs_f64().max(1e-9)
                );
            }
        }
        let m = env_usize("EHASH_BENCH_MEMORY_EVENTS", 0);
        if m > 0 {
            let d = tempfile::tempdir().unwrap();
            let ours = start_ours(d.path());
            let mut stored = 0;
            let chunk = 100_000;
            while stored < m {
                let (evs, _) = make_events(chunk.min(m - stored));
                stored += ingest(ours.addr, &evs, 8).await.1;
            }
            let pid = ours.child.id();
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!("ehash relay memory with {stored} stored events: {} MiB RSS", rss_kib(pid) / 1024);
        }
    });
}
