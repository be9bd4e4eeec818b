//! Interop with the Stratum Reference Implementation's translator proxy (`translator_sv2` from
//! crates.io, software we did not write): an SV1 miner mines through it to the pool's SV2
//! endpoint over an encrypted connection; every share the pool accepts is credited exactly once
//! at its assigned work, and an epoch change reaches the miner.
//!
//! The translator is `$EHASH_TRANSLATOR_SV2`, else `translator_sv2` on `PATH` (`.ci/run` installs
//! version 0.6.0 with `cargo install --locked` into a cache); without it the test is skipped,
//! unless `EHASH_REQUIRE_EXTERNAL=1`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use ehash_mint_bridge::MintBridge;
use ehash_sim_miner::{Miner, MinerConfig, Sv1Client};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The translator binary, or `None` (the test skips or fails saying why).
fn translator() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EHASH_TRANSLATOR_SV2").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join("translator_sv2")).find(|p| p.is_file()));
    on_path.or_else(|| {
        ehash_testkit::skip_or_fail(
            "no translator_sv2: set EHASH_TRANSLATOR_SV2 or put it on PATH (cargo install --locked translator_sv2 --version 0.6.0)",
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running translator, killed when dropped; its log is kept for a failure's message.
struct Translator {
    child: Child,
    log: PathBuf,
    sv1: SocketAddr,
    monitoring: SocketAddr,
}

impl Translator {
    /// Start `binary` between SV1 miners and the bridge's SV2 endpoint, with `user_identity`.
    fn start(binary: &Path, dir: &Path, bridge: &MintBridge, user_identity: &str) -> Self {
        let (sv1, monitoring) = (free_port(), free_port());
        let upstream = bridge.sv2_addr().unwrap();
        // vardiff off: the miners work at the target the pool sets for the channel, so every
        // share the translator accepts from the miner is one it sends to the pool
        let config = format!(
            r#"downstream_address = "127.0.0.1"
downstream_port = {sv1}
max_supported_version = 2
min_supported_version = 2
downstream_extranonce2_size = 4
aggregate_channels = true
supported_extensions = []
monitoring_address = "127.0.0.1:{monitoring}"
monitoring_cache_refresh_secs = 1

[downstream_difficulty_config]
min_individual_miner_hashrate = 100_000.0
shares_per_minute = 60.0
enable_vardiff = false
job_keepalive_interval_secs = 60

[[upstreams]]
address = "{}"
port = {}
authority_pubkey = "{}"
user_identity = "{user_identity}"
"#,
            upstream.ip(),
            upstream.port(),
            bridge.sv2_authority_key().unwrap(),
        );
        let path = dir.join(format!("tproxy-{sv1}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("tproxy-{sv1}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Self { child, log, sv1: ([127, 0, 0, 1], sv1).into(), monitoring: ([127, 0, 0, 1], monitoring).into() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The translator's own account of its upstream channel (its monitoring API), once it has one.
    async fn upstream_channel(&self) -> Option<Value> {
        let url = format!("http://{}/api/v1/server/channels", self.monitoring);
        let resp = bitreq::get(url.as_str()).with_timeout(5).send_async().await.ok()?;
        let v: Value = serde_json::from_str(resp.as_str().ok()?).ok()?;
        v["extended_channels"].as_array()?.first().cloned()
    }

    /// Wait until the translator listens for miners.
    async fn ready(&self) {
        let t0 = std::time::Instant::now();
        while tokio::net::TcpStream::connect(self.sv1).await.is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "the translator did not listen within 30 s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Translator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sv1_miner_through_sris_translator_is_credited_exactly_and_sees_the_epoch_end() {
    let Some(binary) = translator() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |c| c.sv2_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit = current_unit(&bridge).await;
    let quote = w.create_quote(&unit).await.unwrap();
    let tproxy = Translator::start(&binary, dir.path(), &bridge, &format!("{quote}.farm"));
    tproxy.ready().await;

    // an SV1 miner (ours, independent of the pool's validator) mines through the translator
    let cancel = CancellationToken::new();
    let miner = Miner::start(
        MinerConfig { pool: tproxy.sv1, username: "rig1".into(), agent: "ehash-test".into(), version_rolling: true, max_hashrate: None },
        cancel.clone(),
    );
    wait_until("10 shares accepted through the translator", Duration::from_secs(90), || {
        let n = miner.stats().accepted.load(std::sync::atomic::Ordering::Relaxed);
        async move { n >= 10 }
    })
    .await;
    cancel.cancel();
    let stats = miner.stats().clone();
    miner.join().await;

    // once the last answers are in, the translator, the pool and the ledger agree share for share
    let mut channel = Value::Null;
    let settled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(c) = tproxy.upstream_channel().await
                && c["shares_submitted"].as_u64().is_some_and(|s| s > 0 && Some(s) == c["shares_acknowledged"].as_u64())
                && c["shares_acknowledged"].as_u64() == Some(stats.accepted.load(std::sync::atomic::Ordering::Relaxed))
            {
                channel = c;
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "the translator's upstream channel {:?} never agreed with the miner's {stats:?}:\n{}", tproxy.upstream_channel().await, tproxy.log());
    let shares = channel["shares_acknowledged"].as_u64().unwrap();

    assert_eq!(channel["user_identity"], format!("{quote}.translator-proxy"));
    assert_eq!(channel["shares_rejected"], 0, "{channel}");
    assert_eq!(stats.rejected.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(channel["acknowledged_work_sum"].as_u64(), Some(shares * CREDIT), "the pool's SubmitSharesSuccess sums: {channel}");
    let pool = bridge.sv2_stats().unwrap();
    assert_eq!((pool.accepted, pool.credited), (shares, shares * CREDIT));
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (shares * CREDIT, shares), "each share credited once");
    assert_eq!(w.mint_credited(&unit, &quote).await.unwrap(), shares * CREDIT, "the wallet mints exactly the credit");

    // the epoch ends: the pool closes the channel, and the translator drops its SV1 miners (SV1
    // has no channel close); nothing more is credited to the closed epoch's quote
    let mut sv1 = Sv1Client::connect(tproxy.sv1).await.unwrap();
    sv1.subscribe("ehash-test").await.unwrap();
    sv1.authorize("rig2").await.unwrap();
    sv1.wait_job(Duration::from_secs(20)).await.unwrap();
    let token = ehash_keyfile::read_admin_token(dir.path()).unwrap();
    let url = format!("{}/admin/epoch/close", bridge.mint_url());
    let resp = bitreq::post(url.as_str()).with_header("Authorization", format!("Bearer {token}")).send_async().await.unwrap();
    assert_eq!(resp.status_code, 200);
    let dropped = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if sv1.read(Duration::from_secs(30)).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(dropped.is_ok(), "the miner was not dropped when the pool closed the channel:\n{}", tproxy.log());
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (shares * CREDIT, shares));
    // the pool's reason, which names what to do, is in the translator's log for its operator
    // (translator_sv2 0.6 then falls back, finds no other upstream, and stops)
    let log = tproxy.log();
    assert!(log.contains("ehash-epoch-ended: ehash epoch 2 started"), "the translator's log does not show why its channel closed:\n{log}");
    drop(tproxy);

    // a quote of the new epoch as the translator's identity: mining goes on, credited to it
    let unit2 = current_unit(&bridge).await;
    assert_ne!(unit2, unit);
    let q2 = w.create_quote(&unit2).await.unwrap();
    let tproxy = Translator::start(&binary, dir.path(), &bridge, &format!("{q2}.farm"));
    tproxy.ready().await;
    let (mut c, job) = {
        let mut c = Sv1Client::connect(tproxy.sv1).await.unwrap();
        c.subscribe("ehash-test").await.unwrap();
        c.authorize("rig1").await.unwrap();
        let job = c.wait_job(Duration::from_secs(20)).await.unwrap();
        (c, job)
    };
    submit_valid(&mut c, "rig1", &job, 1).await;
    wait_until("the new quote's share credited", Duration::from_secs(20), || {
        let ledger = bridge.epochs().ledger().clone();
        let q2 = q2.clone();
        async move { ledger.quote_totals(&q2).await.unwrap() == (CREDIT, 1) }
    })
    .await;
    drop(tproxy);
    bridge.shutdown().await;
}
