//! Redemption (protocol §2): a redeemable epoch's ehash is exchanged for sat ecash at the pool's
//! own mint at the payout rate, atomically (NUT-05 melt of the ehash paying a NUT-04 sat quote);
//! redeeming too early, after expiry, dust, and the same proofs twice are refused with clear
//! errors, and a refusal spends nothing. Redeemed sats are withdrawn over Lightning when the
//! pool has a backend (never deposited), and refused with the reason when it has none.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cdk::nuts::{MeltRequest, PaymentMethod};
use cdk::wallet::{HttpClient, MintConnector};
use cdk_fake_wallet::create_fake_invoice;
use ehash_lightning::Lightning;
use common::*;
use ehash_protocol::epoch::{CloseReason, EpochState, REDEEM_METHOD, redeem_sats};
use serde_json::Value;

/// A pool where every share is a block paying `reward` sats: one share earns [`CREDIT`] ehash
/// in epoch 1 (closing it), one in epoch 2 (maturing epoch 1 with `maturity_blocks` = 1), both
/// minted into the wallet. `lightning` pays sat withdrawals. Returns the pool, the wallet, the
/// miner and the two units.
async fn two_epochs(dir: &std::path::Path, reward: u64, lightning: Option<Lightning>) -> (ehash_mint_bridge::MintBridge, ehash_wallet::MinerWallet, String, String) {
    let bridge = start(dir, |c| {
        c.lightning = lightning;
        c.devnet.network_difficulty_exp = DIFF_EXP; // every share is a block
        c.devnet.block_reward_sat = reward;
        c.payout.pool_fee_ppm = 0;
        c.payout.maturity_blocks = 1;
        c.payout.redeem_window_secs = 3600;
    })
    .await;
    let w = wallet(dir, &bridge, 1).await;
    let unit1 = current_unit(&bridge).await;
    let q1 = w.create_quote(&unit1).await.unwrap();
    let user1 = format!("{q1}.rig");
    let (mut c, job) = miner(&bridge, &user1).await;
    submit_valid(&mut c, &user1, &job, 1).await;
    wait_until("epoch 1 closes", Duration::from_secs(10), || async { bridge.epochs().all().await.len() == 2 }).await;
    assert_eq!(w.mint_credited(&unit1, &q1).await.unwrap(), CREDIT);
    let err = w.redeem(&unit1, None).await.unwrap_err().to_string();
    assert!(err.contains("cannot be redeemed now") && err.contains("not matured"), "{err}");
    let unit2 = current_unit(&bridge).await;
    let q2 = w.create_quote(&unit2).await.unwrap();
    let user2 = format!("{q2}.rig");
    assert_eq!(c.authorize(&user2).await.unwrap()["result"], Value::Bool(true));
    let job2 = c.jobs.last().cloned().unwrap();
    submit_valid(&mut c, &user2, &job2, 2).await;
    wait_until("epoch 1 redeemable", Duration::from_secs(10), || async { bridge.epochs().all().await[0].state == EpochState::Redeemable }).await;
    assert_eq!(w.mint_credited(&unit2, &q2).await.unwrap(), CREDIT);
    (bridge, w, unit1, unit2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeemable_epoch_redeems_for_sats_at_the_payout_rate_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    // (two_epochs checks that epoch 1 is refused before its block matures, spending nothing)
    let (bridge, w, unit1, _) = two_epochs(dir.path(), 1_000, Some(Lightning::Fake)).await;
    let e1 = bridge.epochs().all().await.remove(0);
    let (payout, issued) = (e1.payout.unwrap(), e1.issued.unwrap());
    assert_eq!((payout, issued), (1_000, CREDIT));
    assert_eq!(w.balance_at(bridge.mint_url(), &unit1).await.unwrap(), CREDIT);

    // redeem one ehash: floor(1 × 1000 / 4) = 250 sats, in the pool's sat keyset
    let got = w.redeem(&unit1, Some(1)).await.unwrap();
    assert_eq!(got, redeem_sats(1, payout, issued));
    assert_eq!(got, 250);
    assert_eq!(w.balance_at(bridge.mint_url(), "sat").await.unwrap(), 250);
    assert_eq!(w.balance_at(bridge.mint_url(), &unit1).await.unwrap(), CREDIT - 1);

    // the sats go out over Lightning: 100 of them pay an invoice, the unused fee reserve comes back
    let paid = w.withdraw(bridge.mint_url(), &create_fake_invoice(100_000, "withdraw".into()).to_string()).await.unwrap();
    assert_eq!(paid.amount, 100);
    assert_eq!(w.balance_at(bridge.mint_url(), "sat").await.unwrap(), 250 - 100 - paid.fee_paid);
    let left = 150 - paid.fee_paid;
    // an invoice the sats do not cover is refused before anything is spent
    let err = w.withdraw(bridge.mint_url(), &create_fake_invoice(1_000_000, "too much".into()).to_string()).await.unwrap_err().to_string();
    assert!(err.contains("sat") && err.contains(&left.to_string()), "{err}");
    assert_eq!(w.balance_at(bridge.mint_url(), "sat").await.unwrap(), left);
    // a client that prefers an asynchronous answer gets the outcome of a quick payment at once
    let sat = w.wallet_at(bridge.mint_url(), "sat").await.unwrap();
    let mq = sat.melt_quote(PaymentMethod::BOLT11, create_fake_invoice(10_000, "async".into()).to_string(), None, None).await.unwrap();
    let inputs = sat.get_unspent_proofs().await.unwrap();
    let client = HttpClient::new(bridge.mint_url().parse().unwrap(), None);
    let r = client.post_melt(&PaymentMethod::BOLT11, MeltRequest::new(mq.id, inputs, None).prefer_async(true)).await.unwrap();
    assert_eq!(r.state(), cdk::nuts::MeltQuoteState::Paid, "a withdrawal is answered with its outcome");
    // and sats are never issued for Lightning deposits: NUT-06 lists bolt11 for melting only
    let r = bitreq::post(format!("{}/v1/mint/quote/bolt11", bridge.mint_url()))
        .with_header("content-type", "application/json")
        .with_body("{\"unit\":\"sat\",\"amount\":1000}")
        .send_async()
        .await
        .unwrap();
    assert_eq!(r.status_code, 400);
    let v: Value = r.json().unwrap();
    assert!(v["detail"].as_str().unwrap_or("").contains("only for redeemed ehash"), "{v}");
    let info = HttpClient::new(bridge.mint_url().parse().unwrap(), None).get_mint_info().await.unwrap();
    assert!(info.nuts.nut04.methods.iter().all(|m| m.method != PaymentMethod::BOLT11), "{:?}", info.nuts.nut04);
    assert!(info.nuts.nut05.methods.iter().any(|m| m.method == PaymentMethod::BOLT11 && m.unit == cdk::nuts::CurrencyUnit::Sat), "{:?}", info.nuts.nut05);

    // the same proofs twice: the second melt is refused and pays nothing
    let ew = w.wallet(&unit1).await.unwrap();
    let proofs = ew.get_unspent_proofs().await.unwrap();
    let client = HttpClient::new(bridge.mint_url().parse().unwrap(), None);
    let sat = w.wallet_at(bridge.mint_url(), "sat").await.unwrap();
    let method = PaymentMethod::Custom(REDEEM_METHOD.into());
    let melt = |amount: u64| {
        let (sat, ew, method) = (sat.clone(), ew.clone(), method.clone());
        async move {
            let q = sat.mint_quote(method.clone(), Some(redeem_sats(amount, payout, issued).into()), None, None).await.unwrap();
            let mq = ew.melt_quote(method, q.request, None, Some(format!("{{\"ehash_amount\":{amount}}}"))).await.unwrap();
            (q.id, mq.id)
        }
    };
    let total: u64 = proofs.iter().map(|p| p.amount.to_u64()).sum();
    let (sq1, mq1) = melt(total).await;
    // a wallet that prefers an asynchronous answer still gets the final one: cdk's mint would
    // answer PENDING and never tell a late NUT-17 subscriber of this custom-method quote
    let r = client.post_melt(&method, MeltRequest::new(mq1, proofs.clone(), None).prefer_async(true)).await.unwrap();
    assert_eq!(r.state(), cdk::nuts::MeltQuoteState::Paid, "a redemption melt is answered with its final state");
    let (sq2, mq2) = melt(total).await;
    let err = client.post_melt(&method, MeltRequest::new(mq2, proofs.clone(), None)).await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("spent"), "{err}");
    let paid = |id: String| {
        let sat = sat.clone();
        async move { sat.check_mint_quote_status(&id).await.unwrap().amount_paid.to_u64() }
    };
    assert_eq!(paid(sq1).await, redeem_sats(total, payout, issued));
    assert_eq!(paid(sq2).await, 0, "the refused melt paid nothing");

    // after the window: refused
    bridge.epochs().advance(u32::MAX, cdk::util::unix_time() + 7200).await.unwrap();
    assert_eq!(bridge.epochs().all().await[0].state, EpochState::Expired);
    let w2 = wallet(dir.path(), &bridge, 2).await;
    let err = w2.redeem(&unit1, Some(1)).await.unwrap_err().to_string();
    assert!(err.contains("redemption window ended"), "{err}");
    // and the mint itself refuses a melt quote in the expired unit, saying why (cdk's client
    // replaces the detail with its own words, so read the body)
    let q = sat.mint_quote(method, Some(1.into()), None, None).await.unwrap();
    let body = format!("{{\"method\":\"{REDEEM_METHOD}\",\"request\":\"{}\",\"unit\":\"{unit1}\",\"ehash_amount\":1}}", q.request);
    let r = bitreq::post(format!("{}/v1/melt/quote/{REDEEM_METHOD}", bridge.mint_url())).with_header("content-type", "application/json").with_body(body).send_async().await.unwrap();
    assert_eq!(r.status_code, 400);
    let v: Value = r.json().unwrap();
    assert!(v["detail"].as_str().unwrap().contains("expired"), "{v}");
}

/// Dust and the wrong epoch: with 4 ehash paying 3 sats, one ehash redeems for nothing and is
/// refused (by the wallet and by the mint, naming the minimum); ehash of another epoch cannot
/// pay a redemption melt quoted in this epoch's unit; neither spends anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dust_and_another_epochs_ehash_are_refused_and_spend_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (bridge, w, unit1, unit2) = two_epochs(dir.path(), 3, None).await;

    // dust, at the wallet and at the mint
    let err = w.redeem(&unit1, Some(1)).await.unwrap_err().to_string();
    assert!(err.contains("dust") && err.contains("at least 2"), "{err}");
    let sat = w.wallet_at(bridge.mint_url(), "sat").await.unwrap();
    let method = PaymentMethod::Custom(REDEEM_METHOD.into());
    let q = sat.mint_quote(method.clone(), Some(1.into()), None, None).await.unwrap();
    let body = format!("{{\"method\":\"{REDEEM_METHOD}\",\"request\":\"{}\",\"unit\":\"{unit1}\",\"ehash_amount\":1}}", q.request);
    let r = bitreq::post(format!("{}/v1/melt/quote/{REDEEM_METHOD}", bridge.mint_url())).with_header("content-type", "application/json").with_body(body).send_async().await.unwrap();
    let v: Value = r.json().unwrap();
    assert!(v["detail"].as_str().unwrap_or("").contains("dust"), "{v}");

    // epoch 2's ehash cannot pay a melt quoted in epoch 1's unit
    let e1 = w.wallet(&unit1).await.unwrap();
    let mq = e1.melt_quote(method.clone(), q.request.clone(), None, Some("{\"ehash_amount\":2}".into())).await.unwrap();
    let other = w.wallet(&unit2).await.unwrap().get_unspent_proofs().await.unwrap();
    let client = HttpClient::new(bridge.mint_url().parse().unwrap(), None);
    let err = client.post_melt(&method, MeltRequest::new(mq.id, other.clone(), None)).await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("unit"), "{err}");
    let states = w.wallet(&unit2).await.unwrap().check_proofs_spent(other).await.unwrap();
    assert!(states.iter().all(|s| s.state == cdk::nuts::State::Unspent), "the refused melt spent nothing");
    assert_eq!(sat.check_mint_quote_status(&q.id).await.unwrap().amount_paid.to_u64(), 0);

    // two ehash redeem for one sat
    assert_eq!(w.redeem(&unit1, Some(2)).await.unwrap(), 1);

    // this pool has no Lightning backend: a withdrawal is refused saying so, and spends nothing
    let body = format!("{{\"request\":\"{}\",\"unit\":\"sat\"}}", create_fake_invoice(1_000, "withdraw".into()));
    let r = bitreq::post(format!("{}/v1/melt/quote/bolt11", bridge.mint_url())).with_header("content-type", "application/json").with_body(body).send_async().await.unwrap();
    assert_eq!(r.status_code, 400);
    let v: Value = r.json().unwrap();
    assert!(v["detail"].as_str().unwrap_or("").contains("mint_bridge.lightning"), "{v}");
    assert!(w.withdraw(bridge.mint_url(), &create_fake_invoice(1_000, "withdraw".into()).to_string()).await.is_err());
    assert_eq!(w.balance_at(bridge.mint_url(), "sat").await.unwrap(), 1);
}

/// A Lightning payment that takes long does not hold back the pool: the withdrawal is answered
/// PENDING after a while, an epoch change goes ahead while the payment is in flight (the
/// restarted mint neither waits for it nor rolls it back), and the payment then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_withdrawal_does_not_hold_back_an_epoch_change() {
    let dir = tempfile::tempdir().unwrap();
    let slow = ehash_mint_bridge::http::WITHDRAW_ANSWER_AFTER.as_secs() + 6;
    let (bridge, w, unit1, _) = two_epochs(dir.path(), 1_000, Some(Lightning::FakeSlow { payment_secs: slow })).await;
    assert_eq!(w.redeem(&unit1, None).await.unwrap(), 1_000);
    let sat = w.wallet_at(bridge.mint_url(), "sat").await.unwrap();
    let mq = sat.melt_quote(PaymentMethod::BOLT11, create_fake_invoice(100_000, "slow".into()).to_string(), None, None).await.unwrap();
    let inputs = sat.get_unspent_proofs().await.unwrap();
    let client = HttpClient::new(bridge.mint_url().parse().unwrap(), None);
    let r = client.post_melt(&PaymentMethod::BOLT11, MeltRequest::new(mq.id.clone(), inputs.clone(), None)).await.unwrap();
    assert_eq!(r.state(), cdk::nuts::MeltQuoteState::Pending, "answered while the payment is in flight");

    let epochs = bridge.epochs().all().await.len();
    bridge.epochs().close_active(CloseReason::Operator, None).await.unwrap();
    assert_eq!(bridge.epochs().all().await.len(), epochs + 1);
    let state = |id: String| {
        let client = client.clone();
        async move { client.get_melt_quote_status(PaymentMethod::BOLT11, &id).await.unwrap().state() }
    };
    assert_eq!(state(mq.id.clone()).await, cdk::nuts::MeltQuoteState::Pending, "the epoch changed while the payment was still in flight");

    wait_until("the slow payment completes", Duration::from_secs(slow + 20), || async { state(mq.id.clone()).await == cdk::nuts::MeltQuoteState::Paid }).await;
    let spent = sat.check_proofs_spent(inputs).await.unwrap();
    assert!(spent.iter().all(|s| s.state == cdk::nuts::State::Spent), "the paid withdrawal spent its inputs");
}
