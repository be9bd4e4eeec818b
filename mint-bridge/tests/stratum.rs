//! Stratum V1 over real TCP against a real mint-bridge: shares earn ehash that a wallet mints over
//! HTTP, and every bad input gets its specific error, credits nothing, and leaves the connection
//! usable.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use ehash_sim_miner::response_error;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_shares_become_ehash_in_the_miners_wallet() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit = current_unit(&bridge).await;
    assert_eq!(unit, "hash_test_1");
    let quote = w.create_quote(&unit).await.unwrap();
    let user = format!("{quote}.rig1");
    let (mut c, job) = miner(&bridge, &user).await;
    assert_eq!(job.difficulty, 2f64.powi(DIFF_EXP), "set_difficulty arrives before the first notify");
    for i in 0..5 {
        submit_valid(&mut c, &user, &job, i).await;
    }
    let (credited, shares) = bridge.epochs().ledger().quote_totals(&quote).await.unwrap();
    assert_eq!((credited, shares), (5 * CREDIT, 5));
    // the wallet mints exactly what was credited, over the Cashu HTTP API
    assert_eq!(w.mint_credited(&unit, &quote).await.unwrap(), 5 * CREDIT);
    assert_eq!(w.balances().await.unwrap().get(&unit), Some(&(5 * CREDIT)));
    // nothing more to mint until more shares arrive
    assert_eq!(w.mint_credited(&unit, &quote).await.unwrap(), 0);
    submit_valid(&mut c, &user, &job, 100).await;
    assert_eq!(w.mint_credited(&unit, &quote).await.unwrap(), CREDIT);
    let stats = bridge.stats();
    assert_eq!((stats.accepted, stats.credited), (6, 6 * CREDIT));
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_submission_has_its_own_error_and_credits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit = current_unit(&bridge).await;
    let quote = w.create_quote(&unit).await.unwrap();
    let user = format!("{quote}.w");

    // submit before subscribe: 25; before authorize: 24
    let mut fresh = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    let r = fresh.submit(&user, "1", &[0; 8], 0, 0, None).await.unwrap();
    assert_eq!(code(&r), 25);
    fresh.subscribe("x").await.unwrap();
    let r = fresh.submit(&user, "1", &[0; 8], 0, 0, None).await.unwrap();
    assert_eq!(code(&r), 24);

    let (mut c, job) = miner(&bridge, &user).await;
    let (en2, nonce) = solve(&c, &job, 1);

    // malformed JSON, unknown method, bad params: 20, and the connection keeps working
    c.send_raw("{this is not json").await.unwrap();
    let r = c.read(Duration::from_secs(5)).await.unwrap();
    assert_eq!((code(&r), r["id"].clone()), (20, Value::Null));
    assert!(response_error(&r).unwrap().1.contains("malformed JSON"));
    let r = c.call("mining.frobnicate", json!([])).await.unwrap();
    assert_eq!(code(&r), 20);
    assert!(response_error(&r).unwrap().1.contains("unknown method"));
    let r = c.call("mining.submit", json!(["only", "two"])).await.unwrap();
    assert_eq!(code(&r), 20);
    // string ids are echoed
    c.send_raw(r#"{"id":"abc","method":"mining.nope","params":[]}"#).await.unwrap();
    let r = c.wait_response(&json!("abc")).await.unwrap();
    assert_eq!(code(&r), 20);

    // over-long line: refused, then the connection still answers
    let long = format!("{{\"id\":9,\"method\":\"mining.submit\",\"params\":[\"{}\"]}}", "a".repeat(40_000));
    c.send_raw(&long).await.unwrap();
    let r = c.read(Duration::from_secs(5)).await.unwrap();
    assert_eq!(code(&r), 20);
    assert!(response_error(&r).unwrap().1.contains("longer than"));

    // unknown job: 21
    let r = c.submit(&user, "zzzz", &en2, job.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 21);
    // wrong extranonce2 size: 20
    let r = c.submit(&user, &job.id, &en2[..4], job.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 20);
    assert!(response_error(&r).unwrap().1.contains("extranonce2 must be 8 bytes"));
    // ntime out of range: 20
    let r = c.submit(&user, &job.id, &en2, job.ntime - 1, nonce, None).await.unwrap();
    assert_eq!(code(&r), 20);
    assert!(response_error(&r).unwrap().1.contains("ntime"));
    let r = c.submit(&user, &job.id, &en2, job.ntime + 3 * 3600, nonce, None).await.unwrap();
    assert_eq!(code(&r), 20);
    // version bits without negotiated rolling: 20
    let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, Some(0x2000)).await.unwrap();
    assert_eq!(code(&r), 20);
    // share above target: 23
    let (bad_en2, bad_nonce) = solve_bad(&c, &job, 2);
    let r = c.submit(&user, &job.id, &bad_en2, job.ntime, bad_nonce, None).await.unwrap();
    assert_eq!(code(&r), 23);
    // a worker that was never authorized on this connection: 24
    let r = c.submit("someone-else.w", &job.id, &en2, job.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 24);

    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (0, 0), "nothing credited");

    // the good share is still good; submitting it twice is a duplicate: 22
    let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
    assert_eq!(r["result"], Value::Bool(true), "{r}");
    let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 22);
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (CREDIT, 1));
    let rejected: Vec<i64> = bridge.stats().rejected.iter().map(|(c, _)| *c).collect();
    for expected in [20, 21, 22, 23, 24, 25] {
        assert!(rejected.contains(&expected), "rejection {expected} counted: {rejected:?}");
    }
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_quotes_are_not_authorized() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let mut c = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    c.subscribe("x").await.unwrap();
    for user in ["0190f6a1-7c1e-7cc3-9d1a-2b5e7f000001.w", "not-a-quote", ".w", ""] {
        let r = c.authorize(user).await.unwrap();
        assert_eq!(code(&r), 24, "{user}: {r}");
    }
    // no job is sent to an unauthorized connection
    assert!(c.jobs.is_empty());
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_rolling_shares_validate_with_the_negotiated_mask() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{quote}.asic");
    let mut c = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    let r = c.configure(0x00ff_ff00).await.unwrap();
    assert_eq!(r["result"]["version-rolling.mask"], json!("00ffe000"));
    c.subscribe("asic/1").await.unwrap();
    c.authorize(&user).await.unwrap();
    let job = c.wait_job(Duration::from_secs(10)).await.unwrap();
    let bits = 0x0012_2000u32;
    let version = (job.version & !0x00ff_e000) | bits;
    let en2 = vec![7u8; 8];
    let target = ehash_sim_miner::work::target_for(job.difficulty);
    let (nonce, _) = (0u32..)
        .step_by(1 << 16)
        .find_map(|s| ehash_sim_miner::work::grind(&job, &c.extranonce1, &en2, job.ntime, version, &target, s, 1 << 16))
        .unwrap();
    // bits outside the negotiated mask are refused
    let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, Some(0x0100_0000)).await.unwrap();
    assert_eq!(code(&r), 20);
    let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, Some(bits)).await.unwrap();
    assert_eq!(r["result"], Value::Bool(true), "{r}");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_do_not_affect_other_miners() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{quote}.good");
    // a client that floods garbage and never reads
    let mut flood = tokio::net::TcpStream::connect(bridge.stratum_addr()).await.unwrap();
    let garbage = vec![b'x'; 1 << 20];
    let flooder = tokio::spawn(async move {
        for _ in 0..8 {
            if flood.write_all(&garbage).await.is_err() {
                break;
            }
        }
        let mut buf = [0u8; 16];
        let _ = tokio::time::timeout(Duration::from_secs(1), flood.read(&mut buf)).await;
    });
    // a client that sends a partial line and disconnects abruptly
    let mut abrupt = tokio::net::TcpStream::connect(bridge.stratum_addr()).await.unwrap();
    abrupt.write_all(b"{\"id\":1,\"method\":\"mining.sub").await.unwrap();
    drop(abrupt);
    let (mut c, job) = miner(&bridge, &user).await;
    for i in 0..3 {
        submit_valid(&mut c, &user, &job, i).await;
    }
    flooder.await.unwrap();
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (3 * CREDIT, 3));
    bridge.shutdown().await;
}
