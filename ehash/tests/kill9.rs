//! kill -9 of the mint-bridge process while miners submit: after a restart, the mint has
//! credited exactly the shares the ledger holds, every acknowledged share is among them, and
//! nothing was credited twice.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ehash_mint_bridge::config::DatabaseConfig;
use ehash_mint_bridge::ledger::{BlockStatus, Ledger};
use ehash_sim_miner::work::{display_hash, grind, header, sha256d, target_for};
use ehash_sim_miner::{Sv1Client, response_error};
use ehash_wallet::MinerWallet;
use serde_json::Value;

const CREDIT: u64 = 4; // unit 2^12 hashes, share difficulty 2^-18

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn spawn_bridge(dir: &std::path::Path, http: SocketAddr, stratum: SocketAddr) -> Child {
    spawn_bridge_with(dir, http, stratum, 60, None)
}

/// A mint-bridge whose network difficulty is 2^`network_exp`, aborting at `fault` if given.
fn spawn_bridge_with(dir: &std::path::Path, http: SocketAddr, stratum: SocketAddr, network_exp: i32, fault: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ehash"));
    cmd.args(["--log", "warn", "mint-bridge", "--data-dir"])
        .arg(dir)
        .args(["--http-listen", &http.to_string(), "--stratum-listen", &stratum.to_string()])
        .args(["--pool-id", "crash", "--unit-log2-hashes", "12"])
        .args(["--initial-difficulty-exp", "-18", "--min-difficulty-exp", "-18", "--network-difficulty-exp", &network_exp.to_string()])
        .env_remove("EHASH_CONFIG")
        .env_remove("EHASH_TEST_FAULT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(f) = fault {
        cmd.env("EHASH_TEST_FAULT", f);
    }
    cmd.spawn().unwrap()
}

async fn wait_healthy(http: SocketAddr) {
    for _ in 0..600 {
        if let Ok(r) = bitreq::get(format!("http://{http}/health")).with_timeout(1).send_async().await
            && r.status_code == 200 {
                return;
            }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mint-bridge did not become healthy");
}

#[derive(Default)]
struct Record {
    sent: HashSet<String>,
    acked: HashSet<String>,
}

/// Mine and submit until the connection dies; every share is recorded as sent before it is
/// submitted and as acknowledged when the pool says `true`.
async fn mine(stratum: SocketAddr, user: String, lane: u8, rec: Arc<Mutex<Record>>) {
    let Ok(mut c) = Sv1Client::connect(stratum).await else { return };
    if c.subscribe("kill9").await.is_err() || c.authorize(&user).await.is_err() {
        return;
    }
    let Ok(job) = c.wait_job(Duration::from_secs(10)).await else { return };
    let target = target_for(job.difficulty);
    for n in 0u32.. {
        let mut en2 = vec![0u8; c.extranonce2_size];
        en2[0] = lane;
        en2[1..5].copy_from_slice(&n.to_le_bytes());
        let Some((nonce, _)) = (0u32..).step_by(1 << 16).find_map(|s| grind(&job, &c.extranonce1, &en2, job.ntime, job.version, &target, s, 1 << 16)) else {
            return;
        };
        let id = display_hash(&sha256d(&header(&job, &c.extranonce1, &en2, job.ntime, nonce, job.version)));
        rec.lock().unwrap().sent.insert(id.clone());
        match c.submit(&user, &job.id, &en2, job.ntime, nonce, None).await {
            Ok(r) if r["result"] == Value::Bool(true) => {
                rec.lock().unwrap().acked.insert(id);
            }
            Ok(r) => panic!("share refused: {:?}", response_error(&r)),
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_loses_no_credit_and_doubles_none() {
    let dir = tempfile::tempdir().unwrap();
    let (http, stratum) = (free_addr(), free_addr());
    let mut child = spawn_bridge(dir.path(), http, stratum);
    wait_healthy(http).await;
    let mint_url = format!("http://{http}");
    let wallet = MinerWallet::open(&dir.path().join("wallet.sqlite"), &mint_url, [9; 64]).await.unwrap();
    let unit = ehash_wallet::pool_epochs(&mint_url).await.unwrap().current.unit;
    let quote = wallet.create_quote(&unit).await.unwrap();
    let rec = Arc::new(Mutex::new(Record::default()));

    for round in 0..2u8 {
        let target_acks = rec.lock().unwrap().acked.len() + 30;
        let miners: Vec<_> = (0..4u8)
            .map(|lane| tokio::spawn(mine(stratum, format!("{quote}.m{lane}"), round * 16 + lane, rec.clone())))
            .collect();
        while rec.lock().unwrap().acked.len() < target_acks {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap(); // SIGKILL, mid-stream
        child.wait().unwrap();
        for m in miners {
            m.await.unwrap();
        }
        child = spawn_bridge(dir.path(), http, stratum);
        wait_healthy(http).await;
    }

    let ledger = Ledger::open(&DatabaseConfig::Sqlite, dir.path()).await.unwrap();
    let recorded: HashSet<String> = ledger.quote_share_ids(&quote).await.unwrap().into_iter().collect();
    let (sent, acked) = {
        let rec = rec.lock().unwrap();
        (rec.sent.clone(), rec.acked.clone())
    };
    assert!(acked.is_subset(&recorded), "an acknowledged share was lost");
    assert!(recorded.is_subset(&sent), "the ledger holds a share nobody sent");
    assert!(recorded.len() - acked.len() <= 8, "at most the in-flight shares are recorded unacknowledged");
    let q = wallet.wallet(&unit).await.unwrap().check_mint_quote_status(&quote).await.unwrap();
    assert_eq!(q.amount_paid.to_u64(), CREDIT * recorded.len() as u64, "the mint credited each recorded share exactly once");
    assert_eq!(wallet.mint_credited(&unit, &quote).await.unwrap(), CREDIT * recorded.len() as u64);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_between_recording_a_block_and_closing_its_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (http, stratum) = (free_addr(), free_addr());
    // every share is a block, and the pool dies right after a block's share is on record, before
    // the network's answer closes the epoch
    let mut child = spawn_bridge_with(dir.path(), http, stratum, -18, Some("abort-after-block-record"));
    wait_healthy(http).await;
    let mint_url = format!("http://{http}");
    let wallet = MinerWallet::open(&dir.path().join("wallet.sqlite"), &mint_url, [9; 64]).await.unwrap();
    let unit = ehash_wallet::pool_epochs(&mint_url).await.unwrap().current.unit;
    let quote = wallet.create_quote(&unit).await.unwrap();
    let user = format!("{quote}.rig");
    let mut c = Sv1Client::connect(stratum).await.unwrap();
    c.subscribe("kill9").await.unwrap();
    c.authorize(&user).await.unwrap();
    let job = c.wait_job(Duration::from_secs(10)).await.unwrap();
    let en2 = vec![7u8; c.extranonce2_size];
    let target = target_for(job.difficulty);
    let (nonce, hash) = (0u32..).step_by(1 << 16).find_map(|s| grind(&job, &c.extranonce1, &en2, job.ntime, job.version, &target, s, 1 << 16)).unwrap();
    let block_hash = display_hash(&hash);
    assert!(c.submit(&user, &job.id, &en2, job.ntime, nonce, None).await.is_err(), "the pool died before answering");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the fault point stopped the pool: {status}");
    {
        let ledger = Ledger::open(&DatabaseConfig::Sqlite, dir.path()).await.unwrap();
        let blocks = ledger.blocks().await.unwrap();
        assert_eq!(blocks.iter().map(|b| (b.hash.as_str(), b.status)).collect::<Vec<_>>(), vec![(block_hash.as_str(), BlockStatus::Pending)]);
        assert_eq!(ledger.epochs().await.unwrap().len(), 1, "the epoch did not close before the crash");
        ledger.close().await;
    }

    // restarted: the block is handed to the network again and its epoch closes on it
    let mut child = spawn_bridge_with(dir.path(), http, stratum, -18, None);
    wait_healthy(http).await;
    let epochs: Value = bitreq::get(format!("{mint_url}/v1/ehash/epochs")).send_async().await.unwrap().json().unwrap();
    let e1 = &epochs["epochs"][0];
    assert_eq!(e1["state"], "closed", "{e1}");
    assert_eq!(e1["close_reason"], "block");
    assert_eq!(e1["block_hash"].as_str(), Some(block_hash.as_str()));
    assert_eq!((e1["block_height"].as_u64(), e1["issued"].as_u64(), e1["shares"].as_u64()), (Some(1), Some(CREDIT), Some(1)));
    // the devnet reward, less the default pool fee of 2%
    assert_eq!((e1["reward"].as_u64(), e1["payout"].as_u64()), (Some(312_500_000), Some(306_250_000)));
    assert_eq!(epochs["current"]["epoch"], 2);
    let ledger = Ledger::open(&DatabaseConfig::Sqlite, dir.path()).await.unwrap();
    assert_eq!(ledger.block(&block_hash).await.unwrap().map(|b| b.status), Some(BlockStatus::Accepted));
    // the share that found it was credited once, in its epoch
    assert_eq!(wallet.mint_credited(&unit, &quote).await.unwrap(), CREDIT);
    child.kill().unwrap();
    child.wait().unwrap();
}
