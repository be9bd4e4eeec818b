//! The Cashu HTTP API of the pool mint, driven by a raw client: unlocked quotes are refused,
//! nothing can be minted beyond what shares credited, and outputs cannot be signed twice.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use cdk::amount::{FeeAndAmounts, SplitTarget};
use cdk::nuts::{CurrencyUnit, MintQuoteCustomRequest, MintRequest, PaymentMethod, PreMintSecrets, SecretKey};
use cdk::wallet::{HttpClient, MintConnector};
use cdk::{Amount, MintQuoteRequest};
use common::*;
use serde_json::Value;

fn quote_request(unit: &str, pubkey: Option<cdk::nuts::PublicKey>) -> MintQuoteRequest {
    MintQuoteRequest::Custom {
        method: PaymentMethod::Custom("ehash".into()),
        request: MintQuoteCustomRequest {
            amount: Some(Amount::from(1)),
            unit: CurrencyUnit::custom(unit),
            description: None,
            pubkey,
            extra: serde_json::json!({}),
        },
    }
}

fn amounts() -> FeeAndAmounts {
    (0u64, (0..63).map(|i| 1u64 << i).collect::<Vec<u64>>()).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_must_be_locked_and_in_the_active_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let client = HttpClient::new(bridge.mint_url().parse().unwrap(), None);
    let unit = current_unit(&bridge).await;
    let err = client.post_mint_quote(quote_request(&unit, None)).await.unwrap_err().to_string();
    assert!(err.contains("Pubkey required"), "{err}");
    // the same request as plain JSON gets the Cashu error body with code 20009
    let resp = bitreq::post(format!("{}/v1/mint/quote/ehash", bridge.mint_url()))
        .with_header("content-type", "application/json")
        .with_body(format!("{{\"unit\":\"{unit}\",\"amount\":1}}"))
        .send_async()
        .await
        .unwrap();
    assert_eq!(resp.status_code, 400);
    let body: Value = serde_json::from_str(resp.as_str().unwrap()).unwrap();
    assert_eq!(body["code"], 20009);
    assert!(body["detail"].as_str().unwrap().contains("NUT-20 locked"), "{body}");
    // a unit that is not this pool's current epoch
    let err = client.post_mint_quote(quote_request("sat", Some(SecretKey::generate().public_key()))).await.unwrap_err().to_string();
    assert!(err.contains("Unit unsupported"), "{err}");
    let pk = SecretKey::generate().public_key();
    let resp = bitreq::post(format!("{}/v1/mint/quote/ehash", bridge.mint_url()))
        .with_header("content-type", "application/json")
        .with_body(format!("{{\"unit\":\"sat\",\"amount\":1,\"pubkey\":\"{pk}\"}}"))
        .send_async()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(resp.as_str().unwrap()).unwrap();
    assert_eq!(body["code"], 11013);
    assert!(body["detail"].as_str().unwrap().contains(&format!("the current epoch's unit is {unit}")), "{body}");
    // a locked quote in the current unit works and starts unpaid
    let q = client.post_mint_quote(quote_request(&unit, Some(SecretKey::generate().public_key()))).await.unwrap();
    assert_eq!(q.state().map(|s| s.to_string()).as_deref(), Some("UNPAID"));
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_mints_beyond_credited_work_and_outputs_are_signed_once() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let client = HttpClient::new(bridge.mint_url().parse().unwrap(), None);
    let unit = current_unit(&bridge).await;
    let sk = SecretKey::generate();
    let quote = client.post_mint_quote(quote_request(&unit, Some(sk.public_key()))).await.unwrap();
    let quote_id = quote.quote().to_string();
    let keyset_id = *bridge.mint().mint().get_active_keysets().get(&CurrencyUnit::custom(&unit)).unwrap();
    let method = PaymentMethod::Custom("ehash".into());
    let mint_req = |amount: u64, sign_with: &SecretKey| {
        let pre = PreMintSecrets::random(keyset_id, Amount::from(amount), &SplitTarget::default(), &amounts()).unwrap();
        let mut req = MintRequest { quote: quote_id.clone(), outputs: pre.blinded_messages(), signature: None };
        req.sign(sign_with).unwrap();
        (req, pre)
    };

    // unpaid: nothing to mint
    let (req, _) = mint_req(CREDIT, &sk);
    assert!(client.post_mint(&method, req).await.is_err());

    // one share credits CREDIT
    let user = format!("{quote_id}.w");
    let (mut c, job) = miner(&bridge, &user).await;
    submit_valid(&mut c, &user, &job, 1).await;

    // more than credited: refused
    let (req, _) = mint_req(2 * CREDIT, &sk);
    let err = client.post_mint(&method, req).await.unwrap_err().to_string();
    assert!(!err.is_empty());
    // a signature by another key (NUT-20): refused
    let (req, _) = mint_req(CREDIT, &SecretKey::generate());
    assert!(client.post_mint(&method, req).await.is_err());
    // exactly the credit: signed
    let (req, pre) = mint_req(CREDIT, &sk);
    let outputs = req.outputs.clone();
    let signed = client.post_mint(&method, req).await.unwrap();
    assert_eq!(signed.signatures.len(), pre.blinded_messages().len());
    // the credit is used up
    let (req, _) = mint_req(CREDIT, &sk);
    assert!(client.post_mint(&method, req).await.is_err());
    // a new credit cannot be minted with outputs that were already signed
    submit_valid(&mut c, &user, &job, 2).await;
    let mut reuse = MintRequest { quote: quote_id.clone(), outputs, signature: None };
    reuse.sign(&sk).unwrap();
    assert!(client.post_mint(&method, reuse).await.is_err(), "reused outputs must be refused");
    let issued = || async { bridge.mint().mint().total_issued().await.unwrap().values().map(|a| a.to_u64()).sum::<u64>() };
    assert_eq!(issued().await, CREDIT);
    // the refused request lost nothing: the second credit still mints with fresh outputs
    let (req, _) = mint_req(CREDIT, &sk);
    client.post_mint(&method, req).await.unwrap();
    // the mint's books: everything issued came from credited shares
    let (credited, _) = bridge.epochs().ledger().quote_totals(&quote_id).await.unwrap();
    assert_eq!(credited, 2 * CREDIT);
    assert_eq!(issued().await, 2 * CREDIT);
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_quotes_mint_in_one_batch_request() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let info = HttpClient::new(bridge.mint_url().parse().unwrap(), None).get_mint_info().await.unwrap();
    assert!(info.nuts.nut29.methods.as_ref().is_some_and(|m| m.iter().any(|m| m == "ehash")), "NUT-29 advertised for ehash");
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit = current_unit(&bridge).await;
    let (q1, q2) = (w.create_quote(&unit).await.unwrap(), w.create_quote(&unit).await.unwrap());
    for (i, q) in [&q1, &q2].into_iter().enumerate() {
        let user = format!("{q}.w");
        let (mut c, job) = miner(&bridge, &user).await;
        submit_valid(&mut c, &user, &job, i as u64).await;
        submit_valid(&mut c, &user, &job, 10 + i as u64).await;
    }
    let cw = w.wallet(&unit).await.unwrap();
    for q in [&q1, &q2] {
        cw.check_mint_quote_status(q).await.unwrap();
    }
    let proofs = cw.batch_mint(&[q1.as_str(), q2.as_str()], SplitTarget::default(), None, None).await.unwrap();
    let total: u64 = proofs.iter().map(|p| p.amount.to_u64()).sum();
    assert_eq!(total, 4 * CREDIT);
    assert_eq!(w.mint_credited(&unit, &q1).await.unwrap(), 0, "nothing left to mint");
    bridge.shutdown().await;
}
