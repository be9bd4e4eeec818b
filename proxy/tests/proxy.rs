//! The proxy between real SV1 miners (over TCP) and a real mint-bridge: shares are validated,
//! forwarded over one upstream connection, credited to the miner's own quote and minted into the
//! miner's wallet; the pool going away, an epoch change, the mint going away and a short-crediting
//! pool are all handled.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ehash_mint_bridge::MintBridge;
use ehash_proxy::{Config, Proxy};
use ehash_sim_miner::work::{Job, grind, target_for};
use ehash_sim_miner::{Sv1Client, response_error};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use ehash_testkit::market::CREDIT;

fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// The test pool (fixed share difficulty 2^-18, [`CREDIT`] ehash a share) on given ports.
fn bridge_config(dir: &Path, http: SocketAddr, stratum: SocketAddr) -> ehash_mint_bridge::Config {
    ehash_mint_bridge::Config { http_listen: http, stratum_listen: stratum, pool_id: Some("pool".into()), ..ehash_testkit::market::pool_config(dir) }
}

fn free() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn proxy_config(dir: &Path, pool: SocketAddr, mint_url: &str) -> Config {
    let mut c = Config {
        data_dir: dir.join("proxy"),
        wallet_dir: dir.join("wallet"),
        listen: "127.0.0.1:0".parse().unwrap(),
        status_listen: "127.0.0.1:0".parse().unwrap(),
        pool: pool.to_string(),
        mint_url: mint_url.to_owned(),
        mint_secs: 1,
        ..Default::default()
    };
    c.stratum.initial_difficulty_exp = -18;
    c.stratum.min_difficulty_exp = -18;
    c.stratum.max_difficulty_exp = -18;
    c
}

async fn miner(proxy: &Proxy, worker: &str) -> (Sv1Client, Job) {
    let mut c = Sv1Client::connect(proxy.local_addr()).await.unwrap();
    c.subscribe("rig/1").await.unwrap();
    let r = c.authorize(worker).await.unwrap();
    assert_eq!(r["result"], Value::Bool(true), "{r}");
    let job = c.wait_job(Duration::from_secs(10)).await.unwrap();
    (c, job)
}

fn solve(c: &Sv1Client, job: &Job, seed: u64) -> (Vec<u8>, u32) {
    let en2: Vec<u8> = seed.to_le_bytes().iter().copied().chain(std::iter::repeat(0)).take(c.extranonce2_size).collect();
    let target = target_for(job.difficulty);
    let nonce = (0u32..).step_by(1 << 16).find_map(|s| grind(job, &c.extranonce1, &en2, job.ntime, job.version, &target, s, 1 << 16)).unwrap().0;
    (en2, nonce)
}

async fn submit(c: &mut Sv1Client, worker: &str, job: &Job, seed: u64) -> Value {
    let (en2, nonce) = solve(c, job, seed);
    c.submit(worker, &job.id, &en2, job.ntime, nonce, None).await.unwrap()
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP forwarder that can be switched off, to take the mint away from the proxy while the
/// pool keeps running.
async fn switchable_forwarder(to: SocketAddr) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = l.accept().await {
            if !*rx.borrow() {
                drop(inbound);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (addr, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_earn_through_the_proxy_into_their_own_wallet() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), free(), free())).await.unwrap();
    let proxy = Proxy::start(proxy_config(dir.path(), bridge.stratum_addr(), bridge.mint_url())).await.unwrap();
    let (mut a, job_a) = miner(&proxy, "rig1").await;
    let (mut b, job_b) = miner(&proxy, "rig2").await;
    assert_ne!(a.extranonce1, b.extranonce1, "each miner has its own extranonce space");
    assert_eq!(a.extranonce2_size, 5, "the pool's 8 bytes minus the job tag and the 2-byte miner id");
    for i in 0..3 {
        assert_eq!(submit(&mut a, "rig1", &job_a, i).await["result"], true);
        assert_eq!(submit(&mut b, "rig2", &job_b, i).await["result"], true);
    }
    // invalid work is refused by the proxy itself
    let (en2, nonce) = solve(&a, &job_a, 0);
    let r = a.submit("rig1", &job_a.id, &en2, job_a.ntime, nonce, None).await.unwrap();
    assert_eq!(response_error(&r).unwrap().0, 22, "a duplicate is refused (by the pool, passed through)");
    let r = a.submit("rig1", &job_a.id, &en2[..3], job_a.ntime, nonce, None).await.unwrap();
    assert_eq!(response_error(&r).unwrap().0, 20);
    // six shares over one upstream connection, credited to the proxy's own quote
    let st = proxy.status().await;
    assert_eq!((st.shares_forwarded, st.miners), (6, 2));
    let quote = st.earnings.quote_id.clone();
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (6 * CREDIT, 6));
    // minted into the miner's wallet, audited clean
    proxy.mint_now().await.unwrap();
    let st = proxy.status().await;
    assert_eq!(st.earnings.wallet.get("hash_pool_1"), Some(&(6 * CREDIT)));
    assert_eq!(st.earnings.credited.get("hash_pool_1"), Some(&(6 * CREDIT)));
    assert_eq!((st.earnings.shortfall, st.earnings.logged_shares), (0, 6));
    assert_eq!((st.earnings.included_shares, st.earnings.excluded_shares), (0, 0), "nothing to look up while the epoch is open");
    // once the epoch closes, every accepted share is in the pool's committed share log
    bridge.epochs().close_active(ehash_protocol::epoch::CloseReason::Operator, None).await.unwrap();
    proxy.mint_now().await.unwrap();
    let st = proxy.status().await;
    assert_eq!((st.earnings.included_shares, st.earnings.excluded_shares), (6, 0));
    // status over HTTP
    let body = bitreq::get(format!("http://{}/status", proxy.status_addr())).send_async().await.unwrap();
    let v: Value = serde_json::from_str(body.as_str().unwrap()).unwrap();
    assert_eq!(v["shares_forwarded"], 6);
    assert!(v["hashrate"].as_f64().unwrap() > 0.0);
    // with no miner connected there is no hashrate
    drop((a, b));
    wait_until("the miners gone", Duration::from_secs(10), || async { proxy.status().await.miners == 0 }).await;
    let body = bitreq::get(format!("http://{}/status", proxy.status_addr())).send_async().await.unwrap();
    let v: Value = serde_json::from_str(body.as_str().unwrap()).unwrap();
    assert_eq!((v["miners"].as_u64(), v["hashrate"].as_f64()), (Some(0), Some(0.0)), "{v}");
    proxy.shutdown();
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_goes_away_and_comes_back_while_miners_stay_connected() {
    pool_goes_away_and_comes_back(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sv2_pool_goes_away_and_comes_back_while_miners_stay_connected() {
    pool_goes_away_and_comes_back(true).await;
}

/// The pool stops and starts again on the same ports and data (so the same SV2 authority key).
async fn pool_goes_away_and_comes_back(sv2: bool) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (http, stratum, sv2_listen) = (free(), free(), free());
    let bridge_config = |dir: &Path, http, stratum| ehash_mint_bridge::Config { sv2_listen: sv2.then_some(sv2_listen), ..bridge_config(dir, http, stratum) };
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), http, stratum)).await.unwrap();
    let proxy = if sv2 { sv2_proxy(dir.path(), &bridge).await } else { Proxy::start(proxy_config(dir.path(), bridge.stratum_addr(), bridge.mint_url())).await.unwrap() };
    let (mut a, job) = miner(&proxy, "rig1").await;
    assert_eq!(submit(&mut a, "rig1", &job, 1).await["result"], true);
    bridge.shutdown().await;
    // the pool is gone: the miner stays connected; work cannot be forwarded and is not counted as accepted
    wait_until("the proxy noticing", Duration::from_secs(10), || async { !proxy.status().await.upstream_connected }).await;
    let r = submit(&mut a, "rig1", &job, 2).await;
    assert!(response_error(&r).is_some(), "{r}");
    // the pool returns (same data): the miner gets fresh, clean work and earns again
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), http, stratum)).await.unwrap();
    let fresh = a.wait_new_job(&job.id, Duration::from_secs(60)).await.unwrap();
    assert!(fresh.clean);
    let r = submit(&mut a, "rig1", &job, 3).await;
    assert_eq!(response_error(&r).map(|e| e.0), Some(21), "old work is stale: {r}");
    assert_eq!(submit(&mut a, "rig1", &fresh, 4).await["result"], true);
    let quote = proxy.status().await.earnings.quote_id;
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap().1, 2);
    if sv2 {
        assert_eq!(bridge.sv2_stats().unwrap().accepted, 1, "the share after the restart came over SV2");
    }
    proxy.shutdown();
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_change_moves_to_a_new_quote_without_losing_the_old_credit() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), free(), free())).await.unwrap();
    let proxy = Proxy::start(proxy_config(dir.path(), bridge.stratum_addr(), bridge.mint_url())).await.unwrap();
    let (mut a, job) = miner(&proxy, "rig1").await;
    for i in 0..2 {
        assert_eq!(submit(&mut a, "rig1", &job, i).await["result"], true);
    }
    let old_quote = proxy.status().await.earnings.quote_id;
    bridge.epochs().close_active(ehash_protocol::epoch::CloseReason::Operator, None).await.unwrap();
    // the proxy follows on its own: new unit, new quote, re-authorized upstream
    wait_until("the proxy following the epoch", Duration::from_secs(20), || async {
        proxy.status().await.earnings.unit == "hash_pool_2"
    })
    .await;
    let mut earned = false;
    for i in 10..40 {
        let r = submit(&mut a, "rig1", &job, i).await;
        if r["result"] == true {
            earned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(earned, "shares are credited in the new epoch");
    let new_quote = proxy.status().await.earnings.quote_id;
    assert_ne!(new_quote, old_quote);
    assert!(bridge.epochs().ledger().quote_totals(&new_quote).await.unwrap().1 >= 1);
    proxy.mint_now().await.unwrap();
    let st = proxy.status().await;
    assert_eq!(st.earnings.wallet.get("hash_pool_1"), Some(&(2 * CREDIT)), "the old epoch's credit was minted");
    assert!(st.earnings.wallet.get("hash_pool_2").copied().unwrap_or(0) >= CREDIT);
    proxy.shutdown();
    bridge.shutdown().await;
}

/// The pool tells miners of a new epoch before it has committed the closed one's share log (the
/// commitment follows the close). A proxy that looks the log up in between finds no root yet:
/// that is not a broken commitment, and the epoch is looked at again (CI's `ehash up` runs warned
/// "the pool's share log is not the one it committed to" and counted a share excluded for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_log_not_committed_yet_is_looked_at_again_not_reported() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), free(), free())).await.unwrap();
    let front = ehash_testkit::front::Front::start(bridge.mint_url()).await;
    let proxy = Proxy::start(proxy_config(dir.path(), bridge.stratum_addr(), &front.url())).await.unwrap();
    let (mut a, job) = miner(&proxy, "rig1").await;
    for i in 0..3 {
        assert_eq!(submit(&mut a, "rig1", &job, i).await["result"], true);
    }
    proxy.mint_now().await.unwrap();
    bridge.epochs().close_active(ehash_protocol::epoch::CloseReason::Operator, None).await.unwrap();
    // the log as the pool serves it between the close and the commitment: every share, no root
    let path = "/v1/ehash/epochs/1/log";
    let log = bitreq::get(format!("{}{path}?limit={}", bridge.mint_url(), ehash_protocol::audit::LOG_PAGE_MAX)).send_async().await.unwrap();
    let mut log: Value = serde_json::from_str(log.as_str().unwrap()).unwrap();
    assert!(log["root"].is_string(), "the pool committed the log when the close returned: {log}");
    log["root"] = Value::Null;
    front.fail(path, None, 1, ehash_testkit::front::Fault::Status { code: 200, body: log.to_string(), retry_after: None });
    proxy.mint_now().await.unwrap();
    assert_eq!(front.seen(path).len(), 1, "the proxy looked the log up once");
    let st = proxy.status().await;
    assert_eq!((st.earnings.included_shares, st.earnings.excluded_shares), (0, 0), "a log without its root yet is neither clean nor broken");
    // the next round finds it committed
    proxy.mint_now().await.unwrap();
    let st = proxy.status().await;
    assert_eq!((st.earnings.included_shares, st.earnings.excluded_shares), (3, 0));
    proxy.shutdown();
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_accrue_while_the_mint_is_down_and_are_all_minted_later() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), free(), free())).await.unwrap();
    let mint_addr: SocketAddr = bridge.mint_url().trim_start_matches("http://").parse().unwrap();
    let (fwd, switch) = switchable_forwarder(mint_addr).await;
    let proxy = Proxy::start(proxy_config(dir.path(), bridge.stratum_addr(), &format!("http://{fwd}"))).await.unwrap();
    let (mut a, job) = miner(&proxy, "rig1").await;
    switch.send_replace(false); // the mint is unreachable for the proxy
    for i in 0..4 {
        assert_eq!(submit(&mut a, "rig1", &job, i).await["result"], true, "mining goes on without the mint");
    }
    assert!(proxy.mint_now().await.is_err(), "minting fails while the mint is down");
    switch.send_replace(true);
    proxy.mint_now().await.unwrap();
    let st = proxy.status().await;
    assert_eq!(st.earnings.wallet.get("hash_pool_1"), Some(&(4 * CREDIT)), "nothing credited was lost");
    proxy.shutdown();
    bridge.shutdown().await;
    let _ = CancellationToken::new();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_credits_less_than_it_accepted_is_reported() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), free(), free())).await.unwrap();
    let proxy = Proxy::start(proxy_config(dir.path(), bridge.stratum_addr(), bridge.mint_url())).await.unwrap();
    let (mut a, job) = miner(&proxy, "rig1").await;
    assert_eq!(submit(&mut a, "rig1", &job, 1).await["result"], true);
    // A pool that acknowledges a share and does not credit it cannot be made from our honest
    // pool; the proxy's log gets an acknowledged share the pool never credited instead.
    let st = proxy.status().await;
    let audit = ehash_proxy::audit::AuditLog::open(&dir.path().join("proxy")).await.unwrap();
    audit
        .record(&ehash_proxy::audit::LoggedShare {
            share_id: "00".repeat(32),
            quote_id: st.earnings.quote_id.clone(),
            unit: st.earnings.unit.clone(),
            expected: CREDIT,
            worker: "rig1".into(),
        })
        .await
        .unwrap();
    proxy.mint_now().await.unwrap();
    let st = proxy.status().await;
    assert_eq!((st.earnings.shortfall, st.earnings.logged_shares), (CREDIT, 2));
    // and once the epoch closes, the share it never credited is missing from its share log
    bridge.epochs().close_active(ehash_protocol::epoch::CloseReason::Operator, None).await.unwrap();
    proxy.mint_now().await.unwrap();
    let st = proxy.status().await;
    assert_eq!((st.earnings.included_shares, st.earnings.excluded_shares), (1, 1));
    proxy.shutdown();
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallet_backup_waits_out_a_relay_that_is_down() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), free(), free())).await.unwrap();
    let relay_addr = free();
    let mut pc = proxy_config(dir.path(), bridge.stratum_addr(), bridge.mint_url());
    pc.backup_relays = vec![format!("ws://{relay_addr}")];
    let proxy = Proxy::start(pc).await.unwrap();
    let (mut a, job) = miner(&proxy, "rig1").await;
    for i in 0..3 {
        assert_eq!(submit(&mut a, "rig1", &job, i).await["result"], true);
    }
    // the relay is down: minting works, the backup fails and says so
    let err = proxy.mint_now().await.unwrap_err();
    assert!(err.starts_with("backup:"), "{err}");
    assert_eq!(proxy.status().await.earnings.wallet.get("hash_pool_1"), Some(&(3 * CREDIT)));
    // the relay comes up: the next round backs up
    let relay = ehash_relay::Relay::start(&ehash_relay::Config {
        data_dir: dir.path().join("relay"),
        listen: relay_addr,
        map_size: 64 << 20,
        ..Default::default()
    })
    .await
    .unwrap();
    wait_until("the backup", Duration::from_secs(60), || async { proxy.status().await.earnings.backed_up == Some(3 * CREDIT) }).await;
    // and the nostr key alone restores it on a fresh machine
    let keys = ehash_keyfile::load_or_create_nostr_keys(&dir.path().join("wallet"), None).unwrap();
    let fresh = ehash_wallet::MinerWallet::open(&dir.path().join("fresh.sqlite"), bridge.mint_url(), [42; 64]).await.unwrap();
    let got = fresh.restore_nip60(&keys, &[relay.url().to_owned()]).await.unwrap();
    assert_eq!(got.get("hash_pool_1"), Some(&(3 * CREDIT)));
    proxy.shutdown();
    relay.shutdown();
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_miners_are_cut_off_and_others_keep_mining() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), free(), free())).await.unwrap();
    let proxy = Proxy::start(proxy_config(dir.path(), bridge.stratum_addr(), bridge.mint_url())).await.unwrap();
    // a flood of bad shares: cut off after a long run of invalid submissions
    let (mut bad, job) = miner(&proxy, "flood").await;
    let mut cut = false;
    // only nonces that miss the target: a share that happened to be valid would end the run
    let target = target_for(job.difficulty);
    let en1 = bad.extranonce1.clone();
    let en2 = vec![0; bad.extranonce2_size];
    let misses: Vec<u32> = (0u32..).filter(|&n| grind(&job, &en1, &en2, job.ntime, job.version, &target, n, 1).is_none()).take(1500).collect();
    for n in misses {
        match bad.submit("flood", &job.id, &en2, job.ntime, n, None).await {
            Ok(r) if r["result"] == true => {}
            Ok(_) => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "a connection flooding invalid shares is closed");
    // malformed lines and a socket that never reads, at the same time as a good miner
    let mut junk = tokio::net::TcpStream::connect(proxy.local_addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut junk, b"\xff\xfe not json\n{\"id\":\n").await.unwrap();
    let (mut good, job) = miner(&proxy, "good").await;
    for i in 0..3 {
        assert_eq!(submit(&mut good, "good", &job, 100 + i).await["result"], true);
    }
    assert!(proxy.status().await.shares_rejected.iter().any(|(c, n)| *c == 23 && *n > 900));
    proxy.shutdown();
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_rolling_miners_that_send_bits_xor_the_job_version_are_served() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), free(), free())).await.unwrap();
    let proxy = Proxy::start(proxy_config(dir.path(), bridge.stratum_addr(), bridge.mint_url())).await.unwrap();
    let mut c = Sv1Client::connect(proxy.local_addr()).await.unwrap();
    let r = c.configure(0x1fff_e000).await.unwrap();
    assert_eq!(r["result"]["version-rolling"], true, "the pool's mask is offered: {r}");
    c.subscribe("bitaxe/2").await.unwrap();
    c.authorize("axe").await.unwrap();
    let job = c.wait_job(Duration::from_secs(10)).await.unwrap();
    assert_eq!(job.version & 0x1fff_e000, 0, "jobs carry no rolling bits, so both readings agree");
    let rolled = job.version | 0x0000_6000;
    let en2 = vec![3u8; c.extranonce2_size];
    let target = target_for(job.difficulty);
    let nonce = (0u32..).step_by(1 << 16).find_map(|s| grind(&job, &c.extranonce1, &en2, job.ntime, rolled, &target, s, 1 << 16)).unwrap().0;
    // ESP-Miner sends rolled ^ job_version
    let r = c.submit("axe", &job.id, &en2, job.ntime, nonce, Some(rolled ^ job.version)).await.unwrap();
    assert_eq!(r["result"], true, "{r}");
    // forwarded upstream with the bits: the pool credited it
    let quote = proxy.status().await.earnings.quote_id;
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap().1, 1);
    proxy.shutdown();
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_redeem_a_matured_epochs_ehash_becomes_sats() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(bridge_config(&dir.path().join("pool"), free(), free())).await.unwrap();
    let proxy = Proxy::start(Config { auto_redeem: true, ..proxy_config(dir.path(), bridge.stratum_addr(), bridge.mint_url()) }).await.unwrap();
    let (mut a, job) = miner(&proxy, "rig1").await;
    for i in 0..2 {
        assert_eq!(submit(&mut a, "rig1", &job, i).await["result"], true);
    }
    proxy.mint_now().await.unwrap();
    assert_eq!(proxy.status().await.earnings.redeemed_sats, 0, "nothing redeems while the epoch is open");
    // the epoch closes on a block of 10 000 sats, which matures
    ehash_testkit::market::close_on_matured_block(&bridge, 7, 10_000).await;
    proxy.mint_now().await.unwrap();
    let payout = ehash_protocol::epoch::epoch_payout(10_000, bridge.epochs().payout_config().pool_fee_ppm);
    let want = ehash_protocol::epoch::redeem_sats(2 * CREDIT, payout, 2 * CREDIT);
    let st = proxy.status().await;
    assert_eq!(st.earnings.redeemed_sats, want);
    assert_eq!(st.earnings.wallet.get("hash_pool_1").copied().unwrap_or(0), 0, "all of the epoch's ehash was redeemed");
    proxy.shutdown();
    bridge.shutdown().await;
}

/// Mine through `proxy` as `worker` at the difficulty `suggest` asks for (the proxy may raise it)
/// while `busy` is true, until `stop`; returns the credit, by the pool's unit of 2^12 hashes, of
/// the difficulty of every share the proxy accepted, and the difficulties seen.
async fn mine_at(
    proxy: SocketAddr,
    worker: String,
    suggest: f64,
    busy: tokio::sync::watch::Receiver<bool>,
    stop: CancellationToken,
) -> (u64, std::collections::BTreeSet<i32>) {
    let mut c = Sv1Client::connect(proxy).await.unwrap();
    c.subscribe("rig/2").await.unwrap();
    assert_eq!(c.call("mining.suggest_difficulty", serde_json::json!([suggest])).await.unwrap()["result"], true);
    assert_eq!(c.authorize(&worker).await.unwrap()["result"], true);
    c.wait_job(Duration::from_secs(10)).await.unwrap();
    let (mut credit, mut seen) = (0u64, std::collections::BTreeSet::new());
    let mut seed = 0u64;
    while !stop.is_cancelled() {
        if !*busy.borrow() {
            // idle, but reading: the proxy's new work keeps arriving
            let _ = c.read(Duration::from_millis(50)).await;
            continue;
        }
        let job = c.jobs.last().cloned().unwrap();
        seed += 1;
        let (en2, nonce) = solve(&c, &job, seed);
        let r = c.submit(&worker, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
        let exp = job.difficulty.log2().round() as i32;
        seen.insert(exp);
        if r["result"] == true {
            credit += 1u64 << (20 + exp);
        } else {
            // only work the pool replaced may be refused
            assert_eq!(response_error(&r).map(|e| e.0), Some(21), "{r}");
        }
    }
    (credit, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_miner_is_credited_at_its_own_difficulty_while_the_pool_moves_the_proxys() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut pool = bridge_config(&dir.path().join("pool"), free(), free());
    // the pool's vardiff aims at one share a second from the proxy and looks every second
    pool.stratum.min_difficulty_exp = -20;
    pool.stratum.max_difficulty_exp = -14;
    pool.stratum.initial_difficulty_exp = -17;
    pool.stratum.target_share_secs = 1;
    pool.stratum.retarget_secs = 1;
    let bridge = MintBridge::start(pool).await.unwrap();
    let mut c = proxy_config(dir.path(), bridge.stratum_addr(), bridge.mint_url());
    c.stratum.min_difficulty_exp = -20;
    c.stratum.max_difficulty_exp = -14;
    c.stratum.initial_difficulty_exp = -20;
    c.stratum.target_share_secs = 1;
    c.stratum.retarget_secs = 2;
    let proxy = Proxy::start(c).await.unwrap();
    let (busy_tx, busy) = tokio::sync::watch::channel(true);
    let stop = CancellationToken::new();
    let miners: Vec<_> = [-19, -17, -15]
        .into_iter()
        .enumerate()
        .map(|(i, e)| tokio::spawn(mine_at(proxy.local_addr(), format!("rig{i}"), 2f64.powi(e), busy.clone(), stop.clone())))
        .collect();
    // busy (the pool raises the proxy's difficulty), idle (it lowers it), busy again
    let mut pool_difficulties = std::collections::BTreeSet::new();
    for phase in [true, false, true] {
        busy_tx.send_replace(phase);
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            pool_difficulties.insert((proxy.status().await.upstream_difficulty.log2().round()) as i32);
        }
    }
    stop.cancel();
    let (mut assigned, mut miner_difficulties) = (0u64, std::collections::BTreeSet::new());
    for m in miners {
        let (credit, seen) = m.await.unwrap();
        assert!(credit > 0);
        assigned += credit;
        miner_difficulties.extend(seen);
    }
    assert!(pool_difficulties.len() >= 2, "the pool's vardiff moved the proxy's difficulty: {pool_difficulties:?}");
    assert!(miner_difficulties.len() >= 2, "the miners mined at different difficulties: {miner_difficulties:?}");
    let quote = proxy.status().await.earnings.quote_id;
    let (credited, _) = bridge.epochs().ledger().quote_totals(&quote).await.unwrap();
    assert_eq!(credited, assigned, "the pool credited exactly the work of the difficulties the proxy assigned");
    proxy.shutdown();
    bridge.shutdown().await;
}

/// The proxy mining to the pool over Stratum V2 (encrypted, one extended channel).
async fn sv2_proxy(dir: &Path, bridge: &MintBridge) -> Proxy {
    let mut c = proxy_config(dir, bridge.sv2_addr().unwrap(), bridge.mint_url());
    c.pool = format!("sv2://{}", bridge.sv2_addr().unwrap());
    c.pool_authority_key = bridge.sv2_authority_key();
    Proxy::start(c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_earn_through_the_proxy_mining_upstream_over_stratum_v2() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut pool = bridge_config(&dir.path().join("pool"), free(), free());
    pool.sv2_listen = Some(free());
    let bridge = MintBridge::start(pool).await.unwrap();
    let proxy = sv2_proxy(dir.path(), &bridge).await;
    let (mut a, job_a) = miner(&proxy, "rig1").await;
    let (mut b, job_b) = miner(&proxy, "rig2").await;
    assert_ne!(a.extranonce1, b.extranonce1, "each miner has its own extranonce space");
    assert_eq!(a.extranonce2_size, 5, "the channel's 8 extranonce bytes minus the job tag and the 2-byte miner id");
    for i in 0..3 {
        assert_eq!(submit(&mut a, "rig1", &job_a, i).await["result"], true);
        assert_eq!(submit(&mut b, "rig2", &job_b, i).await["result"], true);
    }
    // the pool's SV2 refusal reaches the miner as the V1 error it stands for
    let (en2, nonce) = solve(&a, &job_a, 0);
    let r = a.submit("rig1", &job_a.id, &en2, job_a.ntime, nonce, None).await.unwrap();
    assert_eq!(response_error(&r).unwrap().0, 22, "a duplicate is refused by the pool over SV2: {r}");
    // six shares over one encrypted channel, each credited once to the proxy's quote
    let st = proxy.status().await;
    assert!(st.upstream_connected);
    assert_eq!((st.shares_forwarded, st.miners), (6, 2));
    let quote = st.earnings.quote_id.clone();
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (6 * CREDIT, 6));
    let sv2 = bridge.sv2_stats().unwrap();
    assert_eq!((sv2.accepted, sv2.credited), (6, 6 * CREDIT), "every share came over SV2");
    assert_eq!(bridge.stats().accepted, 0, "nothing came over V1");
    proxy.mint_now().await.unwrap();
    let st = proxy.status().await;
    assert_eq!(st.earnings.wallet.get("hash_pool_1"), Some(&(6 * CREDIT)));
    assert_eq!((st.earnings.shortfall, st.earnings.logged_shares), (0, 6), "audited clean");

    // a new epoch: the pool closes the channel; the proxy makes a new quote and opens a channel
    // with it on the same connection; the miners stay connected and get fresh work
    bridge.epochs().close_active(ehash_protocol::epoch::CloseReason::Operator, None).await.unwrap();
    wait_until("the proxy following the epoch", Duration::from_secs(20), || async {
        let st = proxy.status().await;
        st.earnings.unit == "hash_pool_2" && st.upstream_connected
    })
    .await;
    let fresh = a.wait_new_job(&job_a.id, Duration::from_secs(20)).await.unwrap();
    assert!(fresh.clean, "the old channel's work is replaced");
    let r = submit(&mut a, "rig1", &job_a, 10).await;
    assert_eq!(response_error(&r).map(|e| e.0), Some(21), "the old channel's work is stale: {r}");
    assert_eq!(submit(&mut a, "rig1", &fresh, 11).await["result"], true);
    let new_quote = proxy.status().await.earnings.quote_id;
    assert_ne!(new_quote, quote);
    assert_eq!(bridge.epochs().ledger().quote_totals(&new_quote).await.unwrap(), (CREDIT, 1));
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (6 * CREDIT, 6), "the old quote earns nothing more");
    assert_eq!(bridge.sv2_stats().unwrap().connections, 1, "one connection all along");
    proxy.shutdown();
    bridge.shutdown().await;
}

#[test]
fn an_sv2_pool_needs_its_authority_key() {
    use ehash_proxy::upstream::PoolEndpoint;
    let key = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
    assert_eq!(PoolEndpoint::parse("127.0.0.1:3333", None), Ok(PoolEndpoint::V1("127.0.0.1:3333".into())));
    assert_eq!(PoolEndpoint::parse("stratum+tcp://pool.example:3333", None), Ok(PoolEndpoint::V1("pool.example:3333".into())));
    assert_eq!(
        PoolEndpoint::parse("sv2://pool.example:3336", Some(key)),
        Ok(PoolEndpoint::V2 { addr: "pool.example:3336".into(), authority_key: key.into() })
    );
    let e = PoolEndpoint::parse("sv2://pool.example:3336", None).unwrap_err();
    assert!(e.contains("pool_authority_key") && e.contains("authority key"), "{e}");
    let e = PoolEndpoint::parse("sv2://pool.example:3336", Some("not-a-key")).unwrap_err();
    assert!(e.contains("pool_authority_key") && e.contains("not an SV2 authority public key"), "{e}");
    let e = PoolEndpoint::parse("http://pool.example", None).unwrap_err();
    assert!(e.contains("sv2://host:port"), "{e}");
}
