//! kill -9 of `ehash relay` while clients publish: after a restart, every event the relay
//! acknowledged with OK true is still served.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nostr_sdk::prelude::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn spawn(dir: &std::path::Path, addr: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["--log", "warn", "relay", "--data-dir"])
        .arg(dir)
        .args(["--listen", &addr.to_string(), "--map-size", "67108864", "--events-per-minute", "100000", "--messages-per-minute", "100000"])
        .env_remove("EHASH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn connect(addr: SocketAddr) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    for _ in 0..400 {
        if let Ok(tcp) = tokio::net::TcpStream::connect(addr).await
            && let Ok((ws, _)) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await {
                return ws;
            }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("relay did not come up");
}

async fn publisher(addr: SocketAddr, acked: Arc<Mutex<HashSet<String>>>) {
    let mut ws = connect(addr).await;
    loop {
        let ev = EventBuilder::new(Kind::Metadata, "{}").finalize(&Keys::generate()).unwrap();
        if ws.send(Message::Text(json!(["EVENT", ev]).to_string().into())).await.is_err() {
            return;
        }
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v[0] == "OK" && v[1] == ev.id.to_hex() {
                        assert_eq!(v[2], true, "{v}");
                        acked.lock().unwrap().insert(ev.id.to_hex());
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_to_kill_dash_nine() {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut child = spawn(dir.path(), addr);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let tasks: Vec<_> = (0..4).map(|_| tokio::spawn(publisher(addr, acked.clone()))).collect();
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().iter().cloned().collect();
    let mut child = spawn(dir.path(), addr);
    let mut ws = connect(addr).await;
    let mut found = HashSet::new();
    for (i, chunk) in acked.chunks(100).enumerate() {
        let sub = format!("c{i}");
        ws.send(Message::Text(json!(["REQ", sub, {"ids": chunk, "limit": 100}]).to_string().into())).await.unwrap();
        loop {
            let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("relay closed") };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v[0] == "EVENT" {
                found.insert(v[2]["id"].as_str().unwrap().to_owned());
            } else if v[0] == "EOSE" && v[1] == sub {
                break;
            }
        }
    }
    let missing: Vec<_> = acked.iter().filter(|id| !found.contains(*id)).collect();
    assert!(missing.is_empty(), "{} of {} acknowledged events lost", missing.len(), acked.len());
    child.kill().unwrap();
    child.wait().unwrap();
}
