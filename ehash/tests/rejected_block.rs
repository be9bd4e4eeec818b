//! A block the node refuses (here its coinbase is corrupted by a test fault, as nothing else
//! makes Bitcoin Core refuse a block the pool built) closes nothing: the share that found it is
//! credited, the refusal is kept with the block, and the epoch goes on. Skipped without
//! `bitcoind` unless `EHASH_REQUIRE_EXTERNAL=1`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bitcoin::{Address, CompressedPublicKey, Network};
use ehash_mint_bridge::config::DatabaseConfig;
use ehash_mint_bridge::ledger::{BlockStatus, Ledger};
use ehash_mint_bridge::pool::bitcoind::local::{LocalNode, find_bitcoind};
use ehash_sim_miner::Sv1Client;
use ehash_sim_miner::work::{grind, target_for};
use ehash_wallet::MinerWallet;
use serde_json::{Value, json};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_the_node_refuses_keeps_the_epoch_open() {
    let Some(bin) = find_bitcoind() else {
        return ehash_testkit::skip_or_fail("no bitcoind: set EHASH_BITCOIND or put bitcoind on PATH").unwrap_or(());
    };
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::start(&bin, &dir.path().join("node"), "regtest").await.unwrap();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let pk = CompressedPublicKey(bitcoin::secp256k1::SecretKey::from_slice(&[9; 32]).unwrap().public_key(&secp));
    let payout = Address::p2wpkh(&pk, Network::Regtest);
    let source = node.job_source(&payout.to_string());
    let (http, stratum) = (free_addr(), free_addr());
    let bridge_dir = dir.path().join("bridge");
    let child = Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["--log", "warn", "mint-bridge", "--data-dir"])
        .arg(&bridge_dir)
        .args(["--http-listen", &http.to_string(), "--stratum-listen", &stratum.to_string()])
        .args(["--pool-id", "rej", "--unit-log2-hashes", "12", "--initial-difficulty-exp", "-18", "--min-difficulty-exp", "-18"])
        .env_remove("EHASH_CONFIG")
        .env("EHASH_MINT_BRIDGE__BITCOIND__RPC_URL", &source.rpc_url)
        .env("EHASH_MINT_BRIDGE__BITCOIND__COOKIE_FILE", source.cookie_file.as_ref().unwrap())
        .env("EHASH_MINT_BRIDGE__BITCOIND__CHAIN", "regtest")
        .env("EHASH_MINT_BRIDGE__BITCOIND__PAYOUT_ADDRESS", payout.to_string())
        .env("EHASH_TEST_FAULT", "corrupt-found-block")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Killed(child);
    let mint_url = format!("http://{http}");
    for _ in 0..600 {
        if bitreq::get(format!("{mint_url}/health")).with_timeout(1).send_async().await.is_ok_and(|r| r.status_code == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wallet = MinerWallet::open(&dir.path().join("wallet.sqlite"), &mint_url, [9; 64]).await.unwrap();
    let unit = ehash_wallet::pool_epochs(&mint_url).await.unwrap().current.unit;
    let quote = wallet.create_quote(&unit).await.unwrap();
    let user = format!("{quote}.rig");
    let mut c = Sv1Client::connect(stratum).await.unwrap();
    c.subscribe("rejected-block").await.unwrap();
    assert_eq!(c.authorize(&user).await.unwrap()["result"], json!(true));
    let job = c.wait_job(Duration::from_secs(10)).await.unwrap();
    let target = target_for(job.difficulty);
    // two shares, each a block on regtest, each refused by the node: both credited, one epoch
    for n in 0..2u8 {
        let mut en2 = vec![0u8; c.extranonce2_size];
        en2[0] = n;
        let (nonce, _) = (0u32..).step_by(1 << 16).find_map(|s| grind(&job, &c.extranonce1, &en2, job.ntime, job.version, &target, s, 1 << 16)).unwrap();
        let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
        assert_eq!(r["result"], json!(true), "{r}");
        // the refusal comes back before the next share (it is stale while the block waits)
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ledger = Ledger::open(&DatabaseConfig::Sqlite, &bridge_dir).await.unwrap();
            let blocks = ledger.blocks().await.unwrap();
            ledger.close().await;
            if blocks.len() == usize::from(n) + 1 && blocks.iter().all(|b| b.status == BlockStatus::Rejected) {
                assert!(blocks.iter().all(|b| b.detail.as_deref().is_some_and(|d| d.contains("bad-txnmrklroot"))), "{blocks:?}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the node's refusal was not recorded: {blocks:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let listed: Value = bitreq::get(format!("{mint_url}/v1/ehash/epochs")).send_async().await.unwrap().json().unwrap();
    assert_eq!(listed["current"]["epoch"], json!(1), "a refused block closes nothing: {listed}");
    assert_eq!(listed["current"]["state"], json!("active"));
    assert_eq!(node.rpc().call::<u64>("getblockcount", json!([])).await.unwrap(), 0, "no block reached the chain");
    assert_eq!(wallet.mint_credited(&unit, &quote).await.unwrap(), 8, "both shares earn their credit (2 × 4 ehash)");
}
