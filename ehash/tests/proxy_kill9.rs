//! kill -9 of `ehash proxy` while miners submit and the proxy mints: after a restart every
//! credit the pool gave is minted into the wallet exactly once; no minted proof is lost.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ehash_mint_bridge::MintBridge;
use serde_json::Value;

fn free() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn spawn_proxy(dir: &std::path::Path, bridge: &MintBridge, listen: SocketAddr, status: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["--log", "warn", "proxy", "--data-dir"])
        .arg(dir.join("proxy"))
        .arg("--wallet-dir")
        .arg(dir.join("wallet"))
        .args(["--pool", &bridge.stratum_addr().to_string(), "--mint-url", bridge.mint_url()])
        .args(["--listen", &listen.to_string(), "--status-listen", &status.to_string(), "--mint-secs", "1"])
        .args(["--initial-difficulty-exp", "-18", "--min-difficulty-exp", "-18"])
        .env_remove("EHASH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn status(addr: SocketAddr) -> Option<Value> {
    let r = bitreq::get(format!("http://{addr}/status")).with_timeout(2).send_async().await.ok()?;
    serde_json::from_str(r.as_str().ok()?).ok()
}

fn sum(v: &Value) -> u64 {
    v.as_object().map(|o| o.values().filter_map(Value::as_u64).sum()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_of_the_proxy_loses_no_credit_and_no_proof() {
    let dir = tempfile::tempdir().unwrap();
    let c = ehash_mint_bridge::Config { pool_id: Some("k".into()), ..ehash_testkit::market::pool_config(&dir.path().join("pool")) };
    let bridge = MintBridge::start(c).await.unwrap();
    let (listen, status_addr) = (free(), free());
    let mut child = spawn_proxy(dir.path(), &bridge, listen, status_addr);

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let miners: Vec<_> = (0..3u64)
        .map(|m| {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            tokio::spawn(async move {
                let mut seed = m << 32;
                while !stop.load(Ordering::Relaxed) {
                    match ehash_sim_miner::client::submit_shares(listen, &format!("rig{m}"), 5, seed).await {
                        Ok(n) => {
                            accepted.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                    seed += 5;
                }
            })
        })
        .collect();

    for round in 0..2 {
        // let the proxy mint at least once, then kill it in the middle of things
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = status(status_addr).await
                && sum(&s["earnings"]["wallet"]) > 0 && accepted.load(Ordering::Relaxed) >= 20 * (round + 1) {
                    break;
                }
            assert!(tokio::time::Instant::now() < deadline, "the proxy never minted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        child = spawn_proxy(dir.path(), &bridge, listen, status_addr);
    }
    stop.store(true, Ordering::Relaxed);
    for m in miners {
        m.await.unwrap();
    }

    // everything the pool credited to the proxy's quotes ends up in the wallet
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = status(status_addr).await {
            let credited = sum(&s["earnings"]["credited"]);
            let wallet = sum(&s["earnings"]["wallet"]);
            if credited > 0 && credited == wallet && s["earnings"]["shortfall"] == 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "credited {credited} but the wallet holds {wallet}: {s}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    bridge.shutdown().await;
}
