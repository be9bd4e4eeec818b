//! The pool on a real Bitcoin Core node (regtest): templates from `getblocktemplate`, blocks the
//! node accepts (paying the payout address, committing to segwit spends from the mempool),
//! maturity counted in confirmations, a reorg that orphans an epoch, a new tip from elsewhere,
//! and a node that goes away and comes back. Skipped without `bitcoind` (`EHASH_BITCOIND` or
//! PATH) unless `EHASH_REQUIRE_EXTERNAL=1`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::str::FromStr;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Address, Amount, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use common::*;
use ehash_mint_bridge::MintBridge;
use ehash_mint_bridge::pool::bitcoind::local::{LocalNode, find_bitcoind};
use ehash_protocol::epoch::EpochState;
use serde_json::{Value, json};

async fn node(dir: &std::path::Path) -> Option<LocalNode> {
    node_on(dir, "regtest").await
}

async fn node_on(dir: &std::path::Path, chain: &str) -> Option<LocalNode> {
    let Some(bin) = find_bitcoind() else {
        return ehash_testkit::skip_or_fail("no bitcoind: set EHASH_BITCOIND or put bitcoind on PATH");
    };
    Some(LocalNode::start(&bin, &dir.join("node"), chain).await.unwrap())
}

async fn rpc(node: &LocalNode, method: &str, params: Value) -> Value {
    node.rpc().call::<Value>(method, params).await.unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// A key of the test and its regtest P2WPKH address.
fn key(byte: u8) -> (SecretKey, CompressedPublicKey, Address) {
    let secp = Secp256k1::new();
    let sk = SecretKey::from_slice(&[byte; 32]).unwrap();
    let pk = CompressedPublicKey(sk.public_key(&secp));
    (sk, pk, Address::p2wpkh(&pk, Network::Regtest))
}

async fn bridge_on(dir: &std::path::Path, node: &LocalNode, payout: &Address) -> MintBridge {
    let job_source = node.job_source(&payout.to_string());
    start(dir, move |c| c.bitcoind = Some(job_source)).await
}

async fn epoch_state(bridge: &MintBridge, epoch: u32) -> ehash_mint_bridge::ledger::EpochRecord {
    bridge.epochs().all().await.into_iter().find(|e| e.epoch == epoch).unwrap()
}

/// The next job with `clean_jobs` set after `after`.
async fn wait_clean_job(c: &mut ehash_sim_miner::Sv1Client, after: &str, timeout: Duration) -> ehash_sim_miner::work::Job {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = after.to_owned();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let j = c.wait_new_job(&last, left).await.expect("a clean job");
        if j.clean {
            return j;
        }
        last = j.id;
    }
}

/// Mine one share (on regtest every share is also a block) for a new quote of the open epoch.
async fn mine_block(bridge: &MintBridge, w: &ehash_wallet::MinerWallet, seed: u64) -> (String, String) {
    let unit = current_unit(bridge).await;
    let quote = w.create_quote(&unit).await.unwrap();
    let user = format!("{quote}.rig");
    let (mut c, job) = miner(bridge, &user).await;
    submit_valid(&mut c, &user, &job, seed).await;
    (unit, quote)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_found_on_regtest_pays_the_payout_address_carries_segwit_spends_and_matures() {
    let dir = tempfile::tempdir().unwrap();
    let Some(node) = node(dir.path()).await else { return };
    // fund a key of the test and spend its coinbase with a signed segwit transaction
    let (sk, pk, funding) = key(7);
    rpc(&node, "generatetoaddress", json!([101, funding.to_string()])).await;
    let h1 = rpc(&node, "getblockhash", json!([1])).await;
    let b1 = rpc(&node, "getblock", json!([h1, 2])).await;
    let cb = &b1["tx"][0];
    let outpoint = OutPoint { txid: cb["txid"].as_str().unwrap().parse().unwrap(), vout: 0 };
    let value = Amount::from_btc(cb["vout"][0]["value"].as_f64().unwrap()).unwrap();
    let fee = Amount::from_sat(12_345);
    let mut spend = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn { previous_output: outpoint, script_sig: ScriptBuf::new(), sequence: Sequence::MAX, witness: Witness::new() }],
        output: vec![TxOut { value: value - fee, script_pubkey: key(8).2.script_pubkey() }],
    };
    let sighash = SighashCache::new(&spend).p2wpkh_signature_hash(0, &funding.script_pubkey(), value, EcdsaSighashType::All).unwrap();
    let sig = Secp256k1::new().sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), &sk);
    spend.input[0].witness = Witness::p2wpkh(&bitcoin::ecdsa::Signature::sighash_all(sig), &pk.0);
    let txid = rpc(&node, "sendrawtransaction", json!([bitcoin::consensus::encode::serialize_hex(&spend)])).await;
    assert_eq!(txid.as_str().unwrap(), spend.compute_txid().to_string());

    let (_, _, payout) = key(9);
    let bridge = bridge_on(dir.path(), &node, &payout).await;
    // the open epoch's hashprice: regtest's target (7fffff × 2^232) takes about 2 hashes per
    // block, so a block's payout (subsidy plus fee, less 2 %) is shared by 2 / 2^12 ehash
    let listed: Value = bitreq::get(format!("{}/v1/ehash/epochs", bridge.mint_url())).send_async().await.unwrap().json().unwrap();
    assert_eq!(listed["network"], json!("regtest"));
    let payout_sats = (5_000_000_000u64 + fee.to_sat()) - (5_000_000_000u64 + fee.to_sat()) * 20_000 / 1_000_000;
    let expected = payout_sats as f64 * 4096.0 * (8_388_607.0 * 2f64.powi(232) + 1.0) / 2f64.powi(256);
    let hashprice = listed["hashprice"].as_f64().unwrap();
    assert!((hashprice - expected).abs() / expected < 1e-5, "hashprice {hashprice}, expected {expected}");
    let w = wallet(dir.path(), &bridge, 1).await;
    mine_block(&bridge, &w, 1).await;
    wait_until("the node to take the pool's block", Duration::from_secs(20), || async {
        rpc(&node, "getblockcount", json!([])).await == json!(102)
    })
    .await;
    let best = rpc(&node, "getbestblockhash", json!([])).await;
    let block = rpc(&node, "getblock", json!([best, 2])).await;
    // the coinbase pays the payout address the subsidy plus the spend's fee, exactly
    let coinbase = &block["tx"][0];
    let paid = Amount::from_btc(coinbase["vout"][0]["value"].as_f64().unwrap()).unwrap();
    assert_eq!(paid, Amount::from_sat(50 * 100_000_000) + fee);
    assert_eq!(coinbase["vout"][0]["scriptPubKey"]["address"], json!(payout.to_string()));
    assert!(coinbase["vin"][0]["coinbase"].as_str().unwrap().contains(&hex::encode(b"/ehash/")));
    // the segwit spend is in the block: its witness commitment is valid
    let txids: Vec<&str> = block["tx"].as_array().unwrap().iter().map(|t| t["txid"].as_str().unwrap()).collect();
    assert!(txids.contains(&txid.as_str().unwrap()), "the mempool's segwit spend is in the block: {txids:?}");

    // the epoch closed on it, with the height, hash and value paid
    wait_until("epoch 1 to close on the block", Duration::from_secs(10), || async {
        epoch_state(&bridge, 1).await.state == EpochState::Closed
    })
    .await;
    let e = epoch_state(&bridge, 1).await;
    assert_eq!((e.block_height, e.block_hash.as_deref(), e.reward), (Some(102), best.as_str(), Some(paid.to_sat())));
    // 100 blocks on top (101 confirmations) make it redeemable, 99 do not
    rpc(&node, "generatetoaddress", json!([99, funding.to_string()])).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(epoch_state(&bridge, 1).await.state, EpochState::Closed, "100 confirmations are not yet 100 blocks on top");
    rpc(&node, "generatetoaddress", json!([1, funding.to_string()])).await;
    wait_until("epoch 1 to become redeemable", Duration::from_secs(10), || async {
        epoch_state(&bridge, 1).await.state == EpochState::Redeemable
    })
    .await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_leaves_the_chain_orphans_its_epoch_and_work_at_its_height_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let Some(node) = node(dir.path()).await else { return };
    let (_, _, payout) = key(9);
    let bridge = bridge_on(dir.path(), &node, &payout).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let (unit, quote) = mine_block(&bridge, &w, 1).await;
    wait_until("epoch 1 to close on its block", Duration::from_secs(20), || async {
        epoch_state(&bridge, 1).await.state == EpochState::Closed
    })
    .await;
    assert_eq!(w.mint_credited(&unit, &quote).await.unwrap(), CREDIT);
    let hash = epoch_state(&bridge, 1).await.block_hash.unwrap();
    assert_eq!(rpc(&node, "getbestblockhash", json!([])).await, json!(hash));

    // a reorg takes the block off the active chain before it matures
    rpc(&node, "invalidateblock", json!([hash])).await;
    wait_until("epoch 1 to be orphaned", Duration::from_secs(10), || async {
        epoch_state(&bridge, 1).await.state == EpochState::Orphaned
    })
    .await;
    let e = epoch_state(&bridge, 1).await;
    assert_eq!(e.payout, Some(0));
    // it is announced so, and its ehash never redeems
    let listed: Value = bitreq::get(format!("{}/v1/ehash/epochs", bridge.mint_url())).send_async().await.unwrap().json().unwrap();
    let listed = listed["epochs"].as_array().unwrap().iter().find(|x| x["epoch"] == json!(1)).unwrap().clone();
    assert_eq!(listed["state"], json!("orphaned"), "{listed}");
    let refused = w.redeem(&unit, None).await.unwrap_err().to_string();
    assert!(refused.contains("orphaned"), "{refused}");

    // the chain goes on below the orphaned block: work at its height is credited again (once
    // the pool has the node's new template: it asks every second)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, quote2) = mine_block(&bridge, &w, 2).await;
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote2).await.unwrap(), (CREDIT, 1));
    wait_until("the new block at the same height", Duration::from_secs(20), || async {
        let best = rpc(&node, "getbestblockhash", json!([])).await;
        best != json!(hash) && rpc(&node, "getblockcount", json!([])).await == json!(1)
    })
    .await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tip_from_elsewhere_replaces_the_work_and_old_shares_are_stale() {
    let dir = tempfile::tempdir().unwrap();
    let Some(node) = node(dir.path()).await else { return };
    let (_, _, payout) = key(9);
    let bridge = bridge_on(dir.path(), &node, &payout).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{quote}.rig");
    let (mut c, old) = miner(&bridge, &user).await;
    let (en2, nonce) = solve(&c, &old, 1);
    // another miner finds a block
    rpc(&node, "generatetoaddress", json!([1, key(10).2.to_string()])).await;
    let fresh = wait_clean_job(&mut c, &old.id, Duration::from_secs(5)).await;
    assert_ne!(fresh.prevhash, old.prevhash);
    let r = c.submit(&user, &old.id, &en2, old.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 21, "a share of the replaced tip is stale: {r}");
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (0, 0));
    // the same connection mines on the new tip
    submit_valid(&mut c, &user, &fresh, 2).await;
    wait_until("the pool's block on the new tip", Duration::from_secs(20), || async {
        rpc(&node, "getblockcount", json!([])).await == json!(2)
    })
    .await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_goes_away_and_comes_back_keeps_miners_and_replaces_their_work() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut node) = node(dir.path()).await else { return };
    let (_, _, payout) = key(9);
    let bridge = bridge_on(dir.path(), &node, &payout).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{quote}.rig");
    let (mut c, old) = miner(&bridge, &user).await;
    let (en2, nonce) = solve(&c, &old, 1);

    node.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    node.restart().await.unwrap();
    // while it was away the chain moved on (a block from elsewhere)
    rpc(&node, "generatetoaddress", json!([1, key(10).2.to_string()])).await;
    let fresh = wait_clean_job(&mut c, &old.id, Duration::from_secs(10)).await;
    let r = c.submit(&user, &old.id, &en2, old.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 21, "no credit for work on a tip the node no longer builds on: {r}");
    submit_valid(&mut c, &user, &fresh, 2).await;
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (CREDIT, 1));
    wait_until("the pool's block after the node came back", Duration::from_secs(20), || async {
        rpc(&node, "getblockcount", json!([])).await == json!(2)
    })
    .await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_refuses_a_node_of_another_chain_and_a_payout_address_of_another_network() {
    let dir = tempfile::tempdir().unwrap();
    let Some(node) = node(dir.path()).await else { return };
    let (_, _, payout) = key(9);
    let mut c = config(dir.path());
    let signet = Address::p2wpkh(&key(9).1, Network::Signet);
    c.bitcoind = Some(ehash_mint_bridge::config::BitcoindConfig { chain: "signet".into(), ..node.job_source(&signet.to_string()) });
    let e = MintBridge::start(c).await.unwrap_err().to_string();
    assert!(e.contains("runs chain regtest") && e.contains("signet"), "{e}");
    let mut c = config(dir.path());
    let mainnet = Address::from_str("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4").unwrap().assume_checked();
    c.bitcoind = Some(node.job_source(&mainnet.to_string()));
    let e = MintBridge::start(c).await.unwrap_err().to_string();
    assert!(e.contains("payout_address") && e.contains("regtest"), "{e}");
    let mut c = config(dir.path());
    c.bitcoind = Some(node.job_source(&payout.to_string()));
    c.network = Some("mainnet".into());
    let e = MintBridge::start(c).await.unwrap_err().to_string();
    assert!(e.contains("mainnet") && e.contains("regtest"), "{e}");
    let mut c = config(dir.path());
    c.bitcoind = Some(ehash_mint_bridge::config::BitcoindConfig { rpc_url: "http://127.0.0.1:1".into(), ..node.job_source(&payout.to_string()) });
    let e = MintBridge::start(c).await.unwrap_err().to_string();
    assert!(e.contains("unreachable") && e.contains("rpc_url"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_found_on_a_custom_signet_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let Some(node) = node_on(dir.path(), "signet").await else { return };
    let payout = Address::p2wpkh(&key(9).1, Network::Signet);
    let job_source = node.job_source(&payout.to_string());
    // the OP_TRUE signet's target takes about 4.8 M hashes per block: shares of 2^-9 (8.4 M
    // hashes) are blocks
    let bridge = start(dir.path(), move |c| {
        c.bitcoind = Some(job_source);
        (c.stratum.initial_difficulty_exp, c.stratum.min_difficulty_exp, c.stratum.max_difficulty_exp) = (-9, -9, -9);
    })
    .await;
    let listed: Value = bitreq::get(format!("{}/v1/ehash/epochs", bridge.mint_url())).send_async().await.unwrap().json().unwrap();
    assert_eq!(listed["network"], json!("signet"));
    let w = wallet(dir.path(), &bridge, 1).await;
    mine_block(&bridge, &w, 1).await;
    wait_until("the signet node to take the pool's block", Duration::from_secs(30), || async {
        rpc(&node, "getblockcount", json!([])).await == json!(1)
    })
    .await;
    let best = rpc(&node, "getbestblockhash", json!([])).await;
    let block = rpc(&node, "getblock", json!([best, 2])).await;
    assert_eq!(block["tx"][0]["vout"][0]["scriptPubKey"]["address"], json!(payout.to_string()));
    wait_until("epoch 1 to close on the block", Duration::from_secs(10), || async {
        epoch_state(&bridge, 1).await.block_hash.as_deref() == best.as_str()
    })
    .await;
    bridge.shutdown().await;
}
