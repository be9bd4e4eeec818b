//! Crediting at pool scale: shares recorded in groups and acknowledged once durable, the mint
//! paid in aggregated payments (not one per share), a credit the mint cannot take kept without
//! holding back anyone else's, and a miner that does not wait for each answer served in order.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::str::FromStr;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// How many payments the mint holds for a quote.
async fn payments(bridge: &ehash_mint_bridge::MintBridge, quote: &str) -> usize {
    let id = cdk_common::QuoteId::from_str(quote).unwrap();
    bridge.mint().mint().localstore().get_mint_quote(&id).await.unwrap().unwrap().payments.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mint_is_paid_in_aggregated_payments_and_a_wallet_sees_every_acknowledged_share() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit = current_unit(&bridge).await;
    let quote = w.create_quote(&unit).await.unwrap();
    let user = format!("{quote}.rig");
    let (mut c, job) = miner(&bridge, &user).await;
    for i in 0..40 {
        submit_valid(&mut c, &user, &job, i).await;
    }
    // asking about the quote pays the mint everything acknowledged before, in one payment
    let status = w.wallet(&unit).await.unwrap().check_mint_quote_status(&quote).await.unwrap();
    assert_eq!(status.amount_paid.to_u64(), 40 * CREDIT);
    assert_eq!(payments(&bridge, &quote).await, 1, "40 shares, one payment");
    assert_eq!(w.mint_credited(&unit, &quote).await.unwrap(), 40 * CREDIT);
    for i in 40..50 {
        submit_valid(&mut c, &user, &job, i).await;
    }
    // minting alone (no status check first) pays up too
    let mint_request_pays = w.mint_credited(&unit, &quote).await.unwrap();
    assert_eq!(mint_request_pays, 10 * CREDIT);
    assert_eq!(payments(&bridge, &quote).await, 2);
    // asking again with nothing new pays nothing
    w.wallet(&unit).await.unwrap().check_mint_quote_status(&quote).await.unwrap();
    assert_eq!(payments(&bridge, &quote).await, 2);
    assert_eq!(w.balances().await.unwrap().get(&unit), Some(&(50 * CREDIT)));
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_nobody_asks_about_reaches_the_mint_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |c| c.credit_sync_secs = 1).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{quote}.rig");
    let (mut c, job) = miner(&bridge, &user).await;
    for i in 0..3 {
        submit_valid(&mut c, &user, &job, i).await;
    }
    let id = cdk_common::QuoteId::from_str(&quote).unwrap();
    wait_until("the scheduled payment", Duration::from_secs(10), || async {
        bridge.mint().mint().localstore().get_mint_quote(&id).await.unwrap().unwrap().amount_paid().value() == 3 * CREDIT
    })
    .await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_the_mint_cannot_take_is_kept_and_holds_back_no_other_quote() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit = current_unit(&bridge).await;
    let good = w.create_quote(&unit).await.unwrap();
    // a quote the ledger credits but the mint does not know (its database restored from an
    // older backup than the ledger's): sorted first, so it is tried first
    let ghost = "00000000-0000-4000-8000-000000000000";
    let ledger = bridge.epochs().ledger();
    let share = |id: &str, q: &str| ehash_mint_bridge::ledger::ShareRecord {
        share_id: id.into(),
        epoch: 1,
        quote_id: q.into(),
        worker: None,
        header: "00".repeat(80),
        difficulty_exp: DIFF_EXP,
        amount: CREDIT,
        is_block: false,
        created_at: 1,
    };
    ledger.record(&[share(&"a".repeat(64), ghost), share(&"b".repeat(64), &good)], &[]).await.unwrap();
    assert!(ghost < good.as_str());
    let paid = bridge.epochs().sync_all().await.unwrap();
    assert_eq!(paid, 1, "the known quote is paid");
    let err = bridge.epochs().sync_quote(ghost).await.unwrap_err().to_string();
    assert!(err.contains(ghost) && err.contains("unknown to the mint"), "{err}");
    // the ghost's credit is still owed, not marked paid
    assert_eq!(ledger.unsynced_quotes("", 10).await.unwrap(), vec![(ghost.to_owned(), CREDIT)]);
    assert_eq!(w.mint_credited(&unit, &good).await.unwrap(), CREDIT);
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_that_does_not_wait_for_answers_gets_them_all_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let user = format!("{quote}.rig");
    let (mut c, job) = miner(&bridge, &user).await;
    // 100 shares and a repeat in one write, every submit with the same id as cpuminer does,
    // and an authorize behind them
    let mut lines = String::new();
    let mut first = None;
    for i in 0..100u64 {
        let (en2, nonce) = solve(&c, &job, i);
        let params = json!([user, job.id, hex::encode(&en2), format!("{:08x}", job.ntime), format!("{nonce:08x}")]);
        first.get_or_insert(params.clone());
        lines.push_str(&json!({"id": 4, "method": "mining.submit", "params": params}).to_string());
        lines.push('\n');
    }
    lines.push_str(&json!({"id": 4, "method": "mining.submit", "params": first.unwrap()}).to_string());
    lines.push('\n');
    lines.push_str(&json!({"id": 5, "method": "mining.authorize", "params": [format!("{quote}.second"), "x"]}).to_string());
    lines.push('\n');
    c.send_bytes(lines.as_bytes()).await.unwrap();
    let mut answers = vec![];
    while answers.len() < 102 {
        let v = c.read(Duration::from_secs(10)).await.unwrap();
        if v.get("method").is_none() {
            answers.push(v);
        }
    }
    assert!(answers[..100].iter().all(|a| a["result"] == Value::Bool(true) && a["id"] == 4), "{:?}", &answers[..3]);
    assert_eq!(code(&answers[100]), 22, "the repeat is a duplicate: {}", answers[100]);
    assert_eq!((answers[101]["id"].clone(), answers[101]["result"].clone()), (json!(5), Value::Bool(true)));
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (100 * CREDIT, 100));
    bridge.shutdown().await;
}
