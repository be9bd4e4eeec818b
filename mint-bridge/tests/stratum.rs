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

/// Read until the server closes the connection (or `within` passes: then `false`).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // vardiff looks at every connection each second: that must not keep a silent one alive
    let bridge = start(dir.path(), |c| {
        c.stratum.idle_timeout_secs = 2;
        c.stratum.retarget_secs = 1;
    })
    .await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    // one that never says a word, and one that mines a share and then falls silent
    let mut mute = tokio::net::TcpStream::connect(bridge.stratum_addr()).await.unwrap();
    let user = format!("{quote}.w");
    let (mut c, job) = miner(&bridge, &user).await;
    submit_valid(&mut c, &user, &job, 1).await;
    assert!(closed_within(&mut mute, Duration::from_secs(8)).await, "a connection that never spoke stays open");
    let mut gone = false;
    for _ in 0..80 {
        match c.read(Duration::from_millis(100)).await {
            Err(ehash_sim_miner::ClientError::Closed) | Err(ehash_sim_miner::ClientError::Io(_)) => {
                gone = true;
                break;
            }
            _ => {}
        }
    }
    assert!(gone, "a miner silent for longer than idle_timeout_secs stays connected");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_utf8_is_answered_and_the_connection_stays() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let mut c = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    c.send_bytes(b"{\"id\":5,\"method\":\"mining.subscribe\",\"params\":[\"\xff\xfe\"]}\n").await.unwrap();
    let r = c.read(Duration::from_secs(5)).await.unwrap();
    assert_eq!(code(&r), 20, "{r}");
    assert!(response_error(&r).unwrap().1.contains("UTF-8"), "{r}");
    // still usable
    let r = c.subscribe("after-garbage").await.unwrap();
    assert!(r["error"].is_null(), "{r}");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_submit_params_are_explained_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{quote}.w");
    let (mut c, job) = miner(&bridge, &user).await;
    let ntime = format!("{:08x}", job.ntime);
    let cases = [
        (json!([user, job.id, "00000000000000zz", ntime, "00000000"]), "extranonce2"),
        (json!([user, job.id, "0000000000000000", "nothex!!", "00000000"]), "ntime"),
        (json!([user, job.id, "0000000000000000", ntime, "zzzzzzzz"]), "nonce"),
        (json!([user, job.id, "0000000000000000", ntime, "0000000000"]), "nonce"),
        (json!([user, job.id, "0000000000000000", ntime, "00000000", "xyz"]), "version"),
        (json!([user, 7, "0000000000000000", ntime, "00000000"]), "job"),
    ];
    for (params, field) in cases {
        let r = c.call("mining.submit", params.clone()).await.unwrap();
        let (code, msg) = response_error(&r).unwrap_or_else(|| panic!("{params} accepted: {r}"));
        assert_eq!(code, 20, "{r}");
        assert!(msg.contains(field), "{params}: the message {msg:?} does not name {field}");
        for debug_text in ["Error(", "InvalidChar", "{ ", "Some("] {
            assert!(!msg.contains(debug_text), "{params}: the message {msg:?} shows Rust debug text");
        }
    }
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_per_connection_and_worker_names_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let mut c = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    c.subscribe("farm").await.unwrap();
    // worker names are stored with every share: a long one is refused
    let r = c.authorize(&format!("{quote}.{}", "w".repeat(65))).await.unwrap();
    assert_eq!(code(&r), 24, "{r}");
    assert!(response_error(&r).unwrap().1.contains("64"), "{r}");
    let max = ehash_stratum::Config::default().max_workers;
    for i in 0..max {
        let r = c.authorize(&format!("{quote}.rig{i}")).await.unwrap();
        assert_eq!(r["result"], Value::Bool(true), "worker {i}: {r}");
    }
    // the same worker again is fine; one more is not
    let r = c.authorize(&format!("{quote}.rig0")).await.unwrap();
    assert_eq!(r["result"], Value::Bool(true), "{r}");
    let r = c.authorize(&format!("{quote}.rig{max}")).await.unwrap();
    assert_eq!(code(&r), 24, "{r}");
    assert!(response_error(&r).unwrap().1.contains(&max.to_string()), "{r}");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_one_address_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |c| c.stratum.max_connections_per_ip = 2).await;
    let mut a = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    let b = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    a.subscribe("a").await.unwrap();
    let mut third = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    let r = third.read(Duration::from_secs(5)).await.unwrap();
    assert!(response_error(&r).unwrap().1.contains("127.0.0.1"), "{r}");
    assert!(matches!(third.read(Duration::from_secs(5)).await, Err(ehash_sim_miner::ClientError::Closed)));
    // the others are unaffected, and a freed slot can be used again
    a.subscribe("a again").await.unwrap();
    drop(b);
    let mut again = None;
    for _ in 0..50 {
        let mut c = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
        if c.subscribe("c").await.is_ok() {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the slot of a closed connection is given back");
    bridge.shutdown().await;
}

/// Read notifications until the last job has difficulty `d` (or fail after 10 s).
async fn job_at(c: &mut ehash_sim_miner::Sv1Client, d: f64) -> ehash_sim_miner::work::Job {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(j) = c.jobs.last()
            && j.difficulty == d {
                return j.clone();
            }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let v = c.read(left).await.unwrap_or_else(|e| panic!("no job at difficulty {d}: {e}; jobs {:?}", c.jobs.iter().map(|j| j.difficulty).collect::<Vec<_>>()));
        if v.get("method").is_none() {
            c.backlog.push_back(v);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_is_credited_only_at_the_difficulty_of_the_job_it_was_mined_for() {
    let dir = tempfile::tempdir().unwrap();
    // one ehash per hash: difficulty 2^-32 earns 1, 2^-28 earns 16
    let bridge = start(dir.path(), |c| {
        c.unit_log2_hashes = 0;
        c.stratum.min_difficulty_exp = -32;
        c.stratum.max_difficulty_exp = 0;
        c.stratum.initial_difficulty_exp = -20;
    })
    .await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{quote}.w");
    let (mut c, _) = miner(&bridge, &user).await;
    // two difficulties on the same template: an easy job and a hard one
    assert_eq!(c.call("mining.suggest_difficulty", json!([2f64.powi(-32)])).await.unwrap()["result"], true);
    let easy = job_at(&mut c, 2f64.powi(-32)).await;
    assert_eq!(c.call("mining.suggest_difficulty", json!([2f64.powi(-28)])).await.unwrap()["result"], true);
    let hard = job_at(&mut c, 2f64.powi(-28)).await;
    assert_eq!((easy.prevhash, easy.ntime), (hard.prevhash, hard.ntime), "same template");
    // grind the easy job; hand in every hash that meets the hard target as a hard share
    let hard_target = ehash_sim_miner::work::target_for(hard.difficulty);
    let en2 = vec![0u8; c.extranonce2_size];
    let mut submitted = 0u64;
    let (mut accepted, mut predicted) = (0u64, 0u64);
    let mut nonce = 0u32;
    while submitted < 64 {
        let Some((n, _)) = ehash_sim_miner::work::grind(&easy, &c.extranonce1, &en2, easy.ntime, easy.version, &hard_target, nonce, 1 << 20) else { panic!("no hash") };
        nonce = n + 1;
        submitted += 1;
        // what the hard job's header with these fields hashes to decides, nothing else
        let h = ehash_sim_miner::work::sha256d(&ehash_sim_miner::work::header(&hard, &c.extranonce1, &en2, hard.ntime, n, hard.version));
        let fair = ehash_sim_miner::work::meets(&h, &hard_target);
        predicted += u64::from(fair);
        let r = c.submit(&user, &hard.id, &en2, hard.ntime, n, None).await.unwrap();
        if r["result"] == Value::Bool(true) {
            accepted += 1;
            assert!(fair, "a hash mined for the easy job was credited as a hard share: {r}");
        } else {
            assert!(!fair, "a real hard share was refused: {r}");
            assert_eq!(code(&r), 23, "{r}");
        }
    }
    assert_eq!(accepted, predicted);
    assert!(accepted < 16, "{accepted} of 64 easy hashes were credited 16 ehash each");
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (16 * accepted, accepted));
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggest_difficulty_cannot_undo_vardiff_or_go_below_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |c| {
        c.stratum.min_difficulty_exp = -20;
        c.stratum.max_difficulty_exp = -12;
        c.stratum.initial_difficulty_exp = -20;
        c.stratum.target_share_secs = 60;
    })
    .await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{quote}.w");
    let (mut c, job) = miner(&bridge, &user).await;
    // below the pool's minimum: the minimum
    assert_eq!(c.call("mining.suggest_difficulty", json!([2f64.powi(-40)])).await.unwrap()["result"], true);
    assert!(c.jobs.iter().all(|j| j.difficulty >= 2f64.powi(-20)), "{:?}", c.jobs.iter().map(|j| j.difficulty).collect::<Vec<_>>());
    // a burst of shares: vardiff raises the difficulty
    for i in 0..20 {
        let job = c.jobs.last().cloned().unwrap_or(job.clone());
        submit_valid(&mut c, &user, &job, 1000 + i).await;
    }
    let raised = c.jobs.last().unwrap().difficulty;
    assert!(raised > 2f64.powi(-20), "vardiff did not raise the difficulty after a burst");
    // asking for easy work again must not undo it
    assert_eq!(c.call("mining.suggest_difficulty", json!([2f64.powi(-20)])).await.unwrap()["result"], true);
    let _ = c.call("mining.extranonce.subscribe", json!([])).await.unwrap();
    let now = c.jobs.last().unwrap().difficulty;
    assert!(now >= raised, "suggest_difficulty lowered the difficulty from {raised} to {now} after shares");
    bridge.shutdown().await;
}

/// `mining.subscribe` with a session id to resume; returns the extranonce1 given.
async fn subscribe_resuming(c: &mut ehash_sim_miner::Sv1Client, session: &[u8]) -> Vec<u8> {
    let r = c.call("mining.subscribe", json!(["resume/1", hex::encode(session)])).await.unwrap();
    let en1 = hex::decode(r["result"][1].as_str().unwrap()).unwrap();
    c.extranonce1 = en1.clone();
    c.extranonce2_size = r["result"][2].as_u64().unwrap() as usize;
    en1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_difficulty_is_credited_checked_and_agreed_only_before_subscribing() {
    use ehash_sim_miner::work::{grind, target_for};
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{quote}.proxy");
    let tag = |e: i32| u8::try_from(e + 32).unwrap();

    // a proxy-like connection agrees first, then declares each share's difficulty in extranonce2
    let mut c = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    let r = c.call("mining.configure", json!([["ehash-share-difficulty"], {}])).await.unwrap();
    assert_eq!(r["result"]["ehash-share-difficulty"], true, "{r}");
    c.subscribe("proxy/1").await.unwrap();
    c.authorize(&user).await.unwrap();
    let job = c.wait_job(Duration::from_secs(10)).await.unwrap();
    let share_at = |c: &ehash_sim_miner::Sv1Client, exp: i32, seed: u8| {
        let mut en2 = vec![seed; c.extranonce2_size];
        en2[0] = tag(exp);
        let t = target_for(2f64.powi(exp));
        let nonce = (0u32..).step_by(1 << 16).find_map(|s| grind(&job, &c.extranonce1, &en2, job.ntime, job.version, &t, s, 1 << 16)).unwrap().0;
        (en2, nonce)
    };
    // harder than the job: credited at the declared difficulty (2^-16 earns 4 × 2^-18's credit)
    let (en2, nonce) = share_at(&c, DIFF_EXP + 2, 1);
    let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
    assert_eq!(r["result"], Value::Bool(true), "{r}");
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (4 * CREDIT, 1));
    // easier than the job: refused
    let (en2, nonce) = share_at(&c, DIFF_EXP - 1, 2);
    assert_eq!(code(&c.submit(&user, &job.id, &en2, job.ntime, nonce, None).await.unwrap()), 23);
    // a byte that names no difficulty: refused
    let mut en2 = vec![3u8; c.extranonce2_size];
    en2[0] = 250;
    let r = c.submit(&user, &job.id, &en2, job.ntime, 0, None).await.unwrap();
    assert_eq!(code(&r), 20, "{r}");
    assert!(response_error(&r).unwrap().1.contains("declares"), "{r}");

    // a plain connection that has mined cannot switch to declared difficulties afterwards: its
    // held-back hashes would be paid again at the difficulty their first byte happens to name
    let (mut plain, _) = miner(&bridge, &format!("{quote}.plain")).await;
    let r = plain.call("mining.configure", json!([["ehash-share-difficulty"], {}])).await.unwrap();
    assert_eq!(r["result"]["ehash-share-difficulty"], false, "{r}");
    // nor can a declaring connection take over a plain one's extranonce1 once it is gone
    let en1 = plain.extranonce1.clone();
    drop(plain);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut d = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    d.call("mining.configure", json!([["ehash-share-difficulty"], {}])).await.unwrap();
    assert_ne!(subscribe_resuming(&mut d, &en1).await, en1, "a declaring connection resumed a plain extranonce1");
    // (a plain connection may resume it)
    let mut p = ehash_sim_miner::Sv1Client::connect(bridge.stratum_addr()).await.unwrap();
    assert_eq!(subscribe_resuming(&mut p, &en1).await, en1);
    bridge.shutdown().await;
}
