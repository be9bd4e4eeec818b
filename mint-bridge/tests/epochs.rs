//! Epochs: a found block or the operator closes the epoch and opens the next unit and keyset;
//! old epochs stay spendable and checkable but never fungible with the new one; everything
//! survives a restart.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cdk::amount::{FeeAndAmounts, SplitTarget};
use cdk::nuts::{CurrencyUnit, PreMintSecrets, ProofsMethods, State, SwapRequest};
use cdk::wallet::{HttpClient, MintConnector, ReceiveOptions, SendOptions};
use common::*;
use ehash_protocol::epoch::{CloseReason, EpochState};
use ehash_sim_miner::response_error;
use serde_json::{Value, json};

fn amounts() -> FeeAndAmounts {
    (0u64, (0..63).map(|i| 1u64 << i).collect::<Vec<u64>>()).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_found_block_closes_the_epoch_and_old_ehash_stays_in_its_own_unit() {
    let dir = tempfile::tempdir().unwrap();
    // every share meets the network target: each accepted share is a block
    let bridge = start(dir.path(), |c| c.devnet.network_difficulty_exp = DIFF_EXP).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit1 = current_unit(&bridge).await;
    let q1 = w.create_quote(&unit1).await.unwrap();
    let user1 = format!("{q1}.rig");
    let (mut c, job) = miner(&bridge, &user1).await;
    submit_valid(&mut c, &user1, &job, 1).await;

    // epoch 1 closes on that block (right after the share is acknowledged); epoch 2 is active
    // with its own unit and keyset
    wait_until("epoch 2", Duration::from_secs(10), || async { bridge.epochs().all().await.len() == 2 }).await;
    let epochs = bridge.epochs().all().await;
    assert_eq!(epochs.len(), 2);
    let (e1, e2) = (&epochs[0], &epochs[1]);
    assert_eq!((e1.state, e1.close_reason, e1.issued, e1.shares), (EpochState::Closed, Some(CloseReason::Block), Some(CREDIT), Some(1)));
    assert!(e1.block_hash.is_some());
    assert_eq!((e2.epoch, e2.unit.as_str(), e2.state), (2, "hash_test_2", EpochState::Active));
    let active = bridge.mint().mint().get_active_keysets();
    let (ks1, ks2) = (active[&CurrencyUnit::custom(&unit1)], active[&CurrencyUnit::custom(&e2.unit)]);
    assert_ne!(ks1, ks2);

    // the miner gets clean work on the new tip and a message; the old quote no longer earns
    let job2 = c.wait_new_job(&job.id, Duration::from_secs(10)).await.unwrap();
    assert!(job2.clean);
    assert_ne!(job2.prevhash, job.prevhash);
    let (en2, nonce) = solve(&c, &job2, 2);
    let r = c.submit(&user1, &job2.id, &en2, job2.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 26, "{r}");
    assert!(c.messages.iter().any(|m| m.contains("hash_test_2")), "{:?}", c.messages);
    // ... but that share was a block on the new tip, which the network took: a block is never
    // thrown away, and it closes the open epoch (whose miners mine the same tip), epoch 2
    wait_until("epoch 3", Duration::from_secs(10), || async { bridge.epochs().current().await.unwrap().epoch == 3 }).await;
    let e2 = bridge.epochs().all().await.remove(1);
    assert_eq!((e2.close_reason, e2.issued, e2.block_height), (Some(CloseReason::Block), Some(0), Some(2)));
    let unit3 = current_unit(&bridge).await;
    // work on the old tip is stale
    let (en2, nonce) = solve(&c, &job, 3);
    let r = c.submit(&user1, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 21, "{r}");
    // authorizing with the old quote says which unit to use now
    let r = c.authorize(&user1).await.unwrap();
    assert_eq!(code(&r), 26);
    assert!(r["error"][1].as_str().unwrap().contains(&unit3), "{r}");
    // no new quotes in the closed epoch's unit
    let pk = cdk::nuts::SecretKey::generate().public_key();
    let resp = bitreq::post(format!("{}/v1/mint/quote/ehash", bridge.mint_url()))
        .with_header("content-type", "application/json")
        .with_body(format!("{{\"unit\":\"{unit1}\",\"amount\":1,\"pubkey\":\"{pk}\"}}"))
        .send_async()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(resp.as_str().unwrap()).unwrap();
    assert!(body["detail"].as_str().unwrap().contains("which is closed"), "{body}");

    // but the closed epoch's credit still mints, in its own unit
    assert_eq!(w.mint_credited(&unit1, &q1).await.unwrap(), CREDIT);
    // earn in epoch 3 too (this share is a block again, closing epoch 3)
    let q3 = w.create_quote(&unit3).await.unwrap();
    let user3 = format!("{q3}.rig");
    let r = c.authorize(&user3).await.unwrap();
    assert_eq!(r["result"], Value::Bool(true));
    let job3 = c.jobs.last().cloned().unwrap();
    submit_valid(&mut c, &user3, &job3, 4).await;
    assert_eq!(w.mint_credited(&unit3, &q3).await.unwrap(), CREDIT);
    wait_until("epoch 4", Duration::from_secs(10), || async { bridge.epochs().current().await.unwrap().epoch == 4 }).await;

    // old ehash is spendable within its unit after two rebuilds: send to a second wallet
    let w_old = w.wallet(&unit1).await.unwrap();
    let token = w_old.prepare_send(cdk::Amount::from(2), SendOptions::default()).await.unwrap().confirm(None).await.unwrap();
    let other = wallet(dir.path(), &bridge, 2).await;
    let got = other.wallet(&unit1).await.unwrap().receive(&token.to_string(), ReceiveOptions::default()).await.unwrap();
    assert_eq!(got.to_u64(), 2);
    // and checkable (NUT-07): the sent proofs are spent
    let keysets = w_old.mint_connector().get_mint_keysets().await.unwrap().keysets;
    let sent = token.proofs(&keysets).unwrap();
    let states = w_old.check_proofs_spent(sent).await.unwrap();
    assert!(states.iter().all(|s| s.state == State::Spent));

    // never fungible: epoch-1 proofs cannot be swapped into epoch-2 outputs
    let proofs = w_old.get_unspent_proofs().await.unwrap();
    let total = proofs.total_amount().unwrap();
    let pre = PreMintSecrets::random(ks2, total, &SplitTarget::default(), &amounts()).unwrap();
    let client = HttpClient::new(bridge.mint_url().parse().unwrap(), None);
    let err = client.post_swap(SwapRequest::new(proofs.clone(), pre.blinded_messages())).await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("unit"), "{err}");
    // and the refused swap spent nothing
    let states = w_old.check_proofs_spent(proofs).await.unwrap();
    assert!(states.iter().all(|s| s.state == State::Unspent));

    // restart: epochs, keysets and balances are all still there
    let url = bridge.mint_url().to_owned();
    bridge.shutdown().await;
    let bridge = start(dir.path(), |c| {
        c.devnet.network_difficulty_exp = DIFF_EXP;
    })
    .await;
    assert_ne!(bridge.mint_url(), url, "new port, same data");
    let epochs_after = bridge.epochs().all().await;
    assert_eq!(epochs_after.len(), 4);
    let active = bridge.mint().mint().get_active_keysets();
    assert_eq!((active[&CurrencyUnit::custom(&unit1)], active[&CurrencyUnit::custom(&e2.unit)]), (ks1, ks2));
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_closes_an_epoch_with_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit1 = current_unit(&bridge).await;
    let q1 = w.create_quote(&unit1).await.unwrap();
    let user = format!("{q1}.w");
    let (mut c, job) = miner(&bridge, &user).await;
    submit_valid(&mut c, &user, &job, 1).await;
    submit_valid(&mut c, &user, &job, 2).await;
    let url = format!("{}/admin/epoch/close", bridge.mint_url());
    let resp = bitreq::post(url.as_str()).send_async().await.unwrap();
    assert_eq!(resp.status_code, 401);
    let resp = bitreq::post(url.as_str()).with_header("Authorization", "Bearer wrong").send_async().await.unwrap();
    assert_eq!(resp.status_code, 401);
    assert_eq!(bridge.epochs().current().await.unwrap().epoch, 1);
    let token = ehash_keyfile::read_admin_token(dir.path()).unwrap();
    let resp = bitreq::post(url.as_str()).with_header("Authorization", format!("Bearer {token}")).send_async().await.unwrap();
    assert_eq!(resp.status_code, 200, "{}", resp.as_str().unwrap());
    let body: Value = serde_json::from_str(resp.as_str().unwrap()).unwrap();
    assert_eq!(body["closed"]["issued"], 2 * CREDIT);
    assert_eq!(body["current"]["unit"], "hash_test_2");
    let e1 = &bridge.epochs().all().await[0];
    assert_eq!((e1.close_reason, e1.shares), (Some(CloseReason::Operator), Some(2)));
    // same tip, so the connection's job is still valid work, but it now needs a new quote
    let (en2, nonce) = solve(&c, &job, 3);
    let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 26);
    // the public epoch list shows both
    let resp = bitreq::get(format!("{}/v1/ehash/epochs", bridge.mint_url())).send_async().await.unwrap();
    let list: Value = serde_json::from_str(resp.as_str().unwrap()).unwrap();
    assert_eq!(list["current"]["unit"], "hash_test_2");
    assert_eq!(list["epochs"][0]["state"], "closed");
    assert_eq!(list["epochs"].as_array().unwrap().len(), 2);
    bridge.shutdown().await;
}

/// The payout lifecycle (protocol §2): an epoch closed on a found block fixes its payout (the
/// coinbase less the pool's fee), becomes redeemable once the block has `maturity_blocks` on top
/// of it, and expires after the redemption window; each step is announced. An epoch the operator
/// closed has no block and never becomes redeemable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_closed_on_a_block_matures_then_expires() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |c| {
        c.devnet.network_difficulty_exp = DIFF_EXP; // every share is a block
        c.devnet.block_reward_sat = 1_000_000;
        c.payout.pool_fee_ppm = 25_000;
        c.payout.maturity_blocks = 2;
        c.payout.redeem_window_secs = 3;
    })
    .await;
    let w = wallet(dir.path(), &bridge, 1).await;
    // epoch 1 closes on the first block; epochs 2 and 3 on the next two, which mature it
    let mut job: Option<(ehash_sim_miner::Sv1Client, ehash_sim_miner::work::Job)> = None;
    for n in 1..=3u32 {
        let unit = current_unit(&bridge).await;
        let user = format!("{}.rig", w.create_quote(&unit).await.unwrap());
        let (mut c, j) = match job.take() {
            None => miner(&bridge, &user).await,
            Some((mut c, old)) => {
                assert_eq!(c.authorize(&user).await.unwrap()["result"], Value::Bool(true));
                let j = c.wait_new_job(&old.id, Duration::from_secs(10)).await.unwrap_or(old);
                let j = c.jobs.last().cloned().unwrap_or(j);
                (c, j)
            }
        };
        submit_valid(&mut c, &user, &j, u64::from(n)).await;
        wait_until("the epoch closes on the block", Duration::from_secs(10), || async { bridge.epochs().current().await.unwrap().epoch == n + 1 }).await;
        job = Some((c, j));
    }
    let e1 = bridge.epochs().all().await.remove(0);
    assert_eq!((e1.close_reason, e1.reward, e1.payout), (Some(CloseReason::Block), Some(1_000_000), Some(975_000)));
    // the block at height h has two on top once epoch 3 closed: epoch 1 is redeemable
    wait_until("epoch 1 redeemable", Duration::from_secs(10), || async { bridge.epochs().all().await[0].state == EpochState::Redeemable }).await;
    let epochs: Value = bitreq::get(format!("{}/v1/ehash/epochs", bridge.mint_url())).send_async().await.unwrap().json().unwrap();
    let e = &epochs["epochs"][0];
    assert_eq!((e["state"].as_str(), e["payout"].as_u64(), e["reward"].as_u64()), (Some("redeemable"), Some(975_000), Some(1_000_000)));
    let expires = e["expires_at"].as_u64().unwrap();
    assert_eq!(expires, e["redeemable_at"].as_u64().unwrap() + 3);
    // epoch 2 has one block on top of it: still closed
    assert_eq!(bridge.epochs().all().await[1].state, EpochState::Closed);
    // and the window ends
    wait_until("epoch 1 expired", Duration::from_secs(10), || async { bridge.epochs().all().await[0].state == EpochState::Expired }).await;
    // an operator-closed epoch never matures
    bridge.epochs().close_active(CloseReason::Operator, None).await.unwrap();
    let last = bridge.epochs().all().await.len();
    for _ in 0..3 {
        bridge.epochs().advance(u32::MAX, cdk::util::unix_time() + 1_000_000).await.unwrap();
    }
    let op = &bridge.epochs().all().await[last - 2];
    assert_eq!((op.close_reason, op.state, op.payout), (Some(CloseReason::Operator), EpochState::Closed, None));
}

/// NUT-17 across an epoch change: the mint restarts for the new epoch, and a WebSocket opened
/// before is closed with 1012 (service restart) instead of staying attached to the stopped
/// instance; a cdk wallet subscribed to its proofs before the change reconnects by itself and
/// hears that they were spent after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_subscribers_follow_an_epoch_change() {
    use cdk::nuts::NotificationPayload;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit1 = current_unit(&bridge).await;
    let q1 = w.create_quote(&unit1).await.unwrap();
    let user1 = format!("{q1}.rig");
    let (mut c, job) = miner(&bridge, &user1).await;
    submit_valid(&mut c, &user1, &job, 1).await;
    let ew = w.wallet(&unit1).await.unwrap();
    wait_until("the share is credited", Duration::from_secs(10), || async { ew.check_mint_quote_status(&q1).await.unwrap().amount_paid.to_u64() == CREDIT }).await;
    assert_eq!(w.mint_credited(&unit1, &q1).await.unwrap(), CREDIT);
    let ys: Vec<String> = ew.get_unspent_proofs().await.unwrap().ys().unwrap().iter().map(|y| y.to_hex()).collect();

    // a plain client subscribes to one proof's state (a proof the mint has not seen spent has
    // no state to send yet), and a cdk wallet to all of them
    let addr = bridge.mint_url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tokio_tungstenite::client_async(format!("ws://{addr}/v1/ws"), tcp).await.unwrap().0
    };
    let subscribe = |id: u64, filters: Vec<String>| {
        let req = serde_json::json!({"jsonrpc":"2.0","id":id,"method":"subscribe","params":{"kind":"proof_state","subId":format!("raw{id}"),"filters":filters}});
        Message::text(req.to_string())
    };
    let mut raw = connect().await;
    raw.send(subscribe(1, vec![ys[0].clone()])).await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), raw.next()).await.unwrap().unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("\"status\":\"OK\""), "{ack}");
    let mut sub = ew.subscribe(cdk::WalletSubscription::ProofState(ys.clone())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // its socket connects in the background

    bridge.epochs().close_active(CloseReason::Operator, None).await.unwrap();

    // the plain client is told to reconnect
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match raw.next().await {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(_)) => continue,
                other => panic!("the socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("a socket of the previous mint instance is closed");
    assert_eq!(code, 1012);
    // it reconnects and subscribes again, now to the restarted mint
    let mut raw = connect().await;
    raw.send(subscribe(2, ys.clone())).await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), raw.next()).await.unwrap().unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("\"status\":\"OK\""), "{ack}");

    // the epoch-1 ehash is spent after the restart; the wallet subscribed before it hears so
    let token = w.send(&unit1, CREDIT, None).await.unwrap();
    let w2 = wallet(dir.path(), &bridge, 2).await;
    assert_eq!(w2.receive(&token, vec![], None).await.unwrap(), (unit1.clone(), CREDIT));
    let spent = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match sub.recv().await {
                Some(e) => {
                    if let NotificationPayload::ProofState(s) = e.into_inner()
                        && s.state == State::Spent
                    {
                        return s.y.to_hex();
                    }
                }
                None => panic!("the subscription ended"),
            }
        }
    })
    .await
    .expect("a subscriber from before the epoch change hears of the spend");
    assert!(ys.contains(&spent), "{spent} is one of the subscribed proofs");
    // (PENDING while the swap runs, then SPENT)
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let note = raw.next().await.expect("the socket stays open").unwrap();
            let v: Value = serde_json::from_str(note.to_text().unwrap()).unwrap();
            if v["params"]["payload"]["state"] == "SPENT" {
                assert!(ys.iter().any(|y| v["params"]["payload"]["Y"] == y.as_str()), "{v}");
                return;
            }
        }
    })
    .await
    .expect("the plain client hears of the spend");
}

/// The operator closes an epoch while a miner is still mining its quote on the same tip, and
/// that miner's next share is a block: the block goes to the network, and the epoch it was
/// found in closes on it (it pays that epoch's holders), though the share itself comes too
/// late to be credited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_found_right_after_an_operator_close_pays_its_epoch() {
    use ehash_sim_miner::work::{grind, meets, target_for};
    let dir = tempfile::tempdir().unwrap();
    // one share in 16 is a block
    let bridge = start(dir.path(), |c| {
        c.devnet.network_difficulty_exp = DIFF_EXP + 4;
        c.devnet.block_reward_sat = 1_000_000;
    })
    .await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit1 = current_unit(&bridge).await;
    let q1 = w.create_quote(&unit1).await.unwrap();
    let user = format!("{q1}.rig");
    let (mut c, job) = miner(&bridge, &user).await;
    let (share_target, block_target) = (target_for(job.difficulty), target_for(2f64.powi(DIFF_EXP + 4)));
    let find = |block: bool, start: &mut u32| -> (Vec<u8>, u32) {
        let en2 = vec![3u8; c.extranonce2_size];
        loop {
            let (nonce, hash) = grind(&job, &c.extranonce1, &en2, job.ntime, job.version, &share_target, *start, u32::MAX - *start).unwrap();
            *start = nonce + 1;
            if meets(&hash, &block_target) == block {
                return (en2, nonce);
            }
        }
    };
    let mut start = 0u32;
    let (en2, plain) = find(false, &mut start);
    let (_, lucky) = find(true, &mut start);
    let r = c.submit(&user, &job.id, &en2, job.ntime, plain, None).await.unwrap();
    assert_eq!(r["result"], Value::Bool(true), "{r}");
    bridge.epochs().close_active(CloseReason::Operator, None).await.unwrap();
    // same tip: the old job is still work; its next share is a block, too late for epoch 1
    let r = c.submit(&user, &job.id, &en2, job.ntime, lucky, None).await.unwrap();
    assert_eq!(code(&r), 26, "{r}");
    wait_until("epoch 1 closes on the block", Duration::from_secs(10), || async {
        bridge.epochs().all().await[0].close_reason == Some(CloseReason::Block)
    })
    .await;
    let e1 = bridge.epochs().all().await.remove(0);
    assert_eq!((e1.issued, e1.shares, e1.reward, e1.payout), (Some(CREDIT), Some(1), Some(1_000_000), Some(980_000)));
    assert!(e1.block_hash.is_some() && e1.block_height.is_some());
    // epoch 2 goes on, on the new tip
    assert_eq!(bridge.epochs().current().await.unwrap().epoch, 2);
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |c| c.max_ws_connections = 1).await;
    let addr = bridge.mint_url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tokio_tungstenite::client_async(format!("ws://{addr}/v1/ws"), tcp).await
    };
    let first = connect().await.unwrap();
    match connect().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a second socket over the cap was not refused: {:?}", other.map(|_| ())),
    }
    // a closed socket gives its place back
    drop(first);
    let mut ok = false;
    for _ in 0..50 {
        if connect().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the place of a closed socket is given back");
    bridge.shutdown().await;
}

/// A hash that meets the network's target but not the share's (a network easier than the share
/// difficulty, as on regtest) earns nothing, but it is a block: it goes to the network and
/// closes the epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_below_its_share_target_is_not_thrown_away() {
    use ehash_sim_miner::work::{header, meets, sha256d, target_for};
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |c| c.devnet.network_difficulty_exp = DIFF_EXP - 4).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let q = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{q}.rig");
    let (mut c, job) = miner(&bridge, &user).await;
    let (share_target, block_target) = (target_for(job.difficulty), target_for(2f64.powi(DIFF_EXP - 4)));
    let en2 = vec![5u8; c.extranonce2_size];
    let nonce = (0u32..)
        .find(|n| {
            let h = sha256d(&header(&job, &c.extranonce1, &en2, job.ntime, *n, job.version));
            meets(&h, &block_target) && !meets(&h, &share_target)
        })
        .unwrap();
    let r = c.submit(&user, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
    assert_eq!(code(&r), 23, "{r}");
    assert!(response_error(&r).unwrap().1.contains("block"), "{r}");
    wait_until("the epoch closes on the block", Duration::from_secs(10), || async { bridge.epochs().current().await.unwrap().epoch == 2 }).await;
    let e1 = bridge.epochs().all().await.remove(0);
    assert_eq!((e1.close_reason, e1.issued, e1.block_height), (Some(CloseReason::Block), Some(0), Some(1)));
    bridge.shutdown().await;
}

/// A miner that hangs up right after handing in a block: the block is recorded and its epoch
/// closes on it at once (the work does not die with the connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_from_a_miner_that_hangs_up_closes_its_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |c| c.devnet.network_difficulty_exp = DIFF_EXP).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let q = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{q}.rig");
    let (mut c, job) = miner(&bridge, &user).await;
    let (en2, nonce) = solve(&c, &job, 1);
    let line = json!({"id": 9, "method": "mining.submit", "params": [user, job.id, hex::encode(&en2), format!("{:08x}", job.ntime), format!("{nonce:08x}")]});
    c.send_raw(&line.to_string()).await.unwrap();
    drop(c);
    wait_until("the epoch closes on the block", Duration::from_secs(3), || async { bridge.epochs().current().await.unwrap().epoch == 2 }).await;
    assert_eq!(bridge.epochs().all().await[0].issued, Some(CREDIT));
    bridge.shutdown().await;
}

/// The devnet keeps its chain across restarts: the block after a restart is one higher, and
/// maturity counts the blocks on top across the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_chain_and_maturity_go_on_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tweak = |c: &mut ehash_mint_bridge::Config| {
        c.devnet.network_difficulty_exp = DIFF_EXP; // every share is a block
        c.payout.maturity_blocks = 1;
    };
    let mut heights = vec![];
    for n in 1..=2u32 {
        let bridge = start(dir.path(), tweak).await;
        let w = wallet(dir.path(), &bridge, 1).await;
        let user = format!("{}.rig", w.create_quote(&current_unit(&bridge).await).await.unwrap());
        let (mut c, job) = miner(&bridge, &user).await;
        submit_valid(&mut c, &user, &job, u64::from(n)).await;
        wait_until("the epoch closes on the block", Duration::from_secs(10), || async { bridge.epochs().current().await.unwrap().epoch == n + 1 }).await;
        heights.push(bridge.epochs().all().await[n as usize - 1].block_height.unwrap());
        if n == 2 {
            // one block on top of epoch 1's, found after the restart: it matured
            wait_until("epoch 1 redeemable", Duration::from_secs(10), || async { bridge.epochs().all().await[0].state == EpochState::Redeemable }).await;
            assert_eq!(bridge.epochs().all().await[1].state, EpochState::Closed);
        }
        bridge.shutdown().await;
    }
    assert_eq!(heights[1], heights[0] + 1, "the devnet goes on from its last block: {heights:?}");
}

/// An epoch change races the periodic catch-up (which brings the book up to the ledger): every
/// close still succeeds, the book holds each epoch once, in the ledger's order, and the mint
/// serves every epoch's unit (the catch-up rebuilt the mint from a ledger read between the
/// ledger's close and the book's, and the close then pushed the new epoch a second time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_changes_racing_the_catch_up_leave_one_book_and_a_mint_serving_it() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let epochs = bridge.epochs().clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let racer = {
        let (epochs, stop) = (epochs.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                epochs.refresh().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    for _ in 0..12 {
        epochs.close_active(CloseReason::Operator, None).await.unwrap();
    }
    stop.cancel();
    racer.await.unwrap();
    let book = epochs.all().await;
    assert_eq!(book.iter().map(|e| e.epoch).collect::<Vec<_>>(), (1..=13).collect::<Vec<_>>());
    let active = bridge.mint().mint().get_active_keysets();
    for e in &book {
        assert!(active.contains_key(&CurrencyUnit::custom(&e.unit)), "the mint serves {}", e.unit);
    }
    bridge.shutdown().await;
}
