//! The ehash quote on the wire (NUT-04, protocol §3), read as raw JSON over HTTP and the NUT-17
//! WebSocket: a malformed field is a 400 naming it; a quote has `expiry: null` (it never
//! expires; never 0, which a wallet reads as a time long past) and a `state` that follows its
//! credit; and `/v1/info` advertises the WebSocket subscriptions the mint serves, each of which
//! delivers.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cdk::nuts::SecretKey;
use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let resp = bitreq::post(url).with_header("content-type", "application/json").with_body(body.to_string()).send_async().await.unwrap();
    (resp.status_code as u16, serde_json::from_str(resp.as_str().unwrap()).unwrap())
}

async fn get(url: &str) -> Value {
    let resp = bitreq::get(url).send_async().await.unwrap();
    assert_eq!(resp.status_code, 200, "{url}: {}", resp.as_str().unwrap_or(""));
    serde_json::from_str(resp.as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_quote_request_is_a_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let unit = current_unit(&bridge).await;
    let url = format!("{}/v1/mint/quote/ehash", bridge.mint_url());
    let pk = SecretKey::generate().public_key().to_hex();
    for (body, field) in [
        (json!({"unit": unit, "amount": 1, "pubkey": "zz"}), "pubkey"),
        (json!({"unit": unit, "amount": 1, "pubkey": 7}), "pubkey"),
        // a 32-byte x-only key is not the 33-byte key NUT-20 signs with
        (json!({"unit": unit, "amount": 1, "pubkey": &pk[2..]}), "pubkey"),
        (json!({"unit": unit, "amount": "one", "pubkey": pk}), "amount"),
        (json!({"unit": unit, "amount": -1, "pubkey": pk}), "amount"),
        (json!({"unit": unit, "amount": 1, "pubkey": pk, "description": 5}), "description"),
        (json!({"amount": 1, "pubkey": pk}), "unit"),
    ] {
        let (status, answer) = post(&url, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.starts_with(&format!("{field}: ")), "{body}: {answer}");
    }
    // the same request with a good key is a quote
    let (status, answer) = post(&url, &json!({"unit": unit, "amount": 1, "pubkey": pk})).await;
    assert_eq!(status, 200, "{answer}");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_never_expires_and_its_state_follows_its_credit_over_http_and_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let unit = current_unit(&bridge).await;
    let mint = bridge.mint_url().trim_end_matches('/').to_owned();

    // NUT-17 lists what the socket serves: for the epoch's unit, its quotes and proof states
    let info = get(&format!("{mint}/v1/info")).await;
    let supported = info["nuts"]["17"]["supported"].as_array().unwrap();
    let ours = supported.iter().find(|s| s["method"] == "ehash" && s["unit"] == unit.as_str()).unwrap_or_else(|| panic!("no ehash/{unit} in {supported:?}"));
    assert_eq!(ours["commands"], json!(["ehash_mint_quote", "proof_state"]));
    let redeem_sats = supported.iter().find(|s| s["method"] == "ehash-redeem" && s["unit"] == "sat").unwrap();
    assert_eq!(redeem_sats["commands"], json!(["ehash-redeem_mint_quote", "proof_state"]));
    let redeem_ehash = supported.iter().find(|s| s["method"] == "ehash-redeem" && s["unit"] == unit.as_str()).unwrap();
    assert_eq!(redeem_ehash["commands"], json!(["ehash-redeem_melt_quote", "proof_state"]));
    // no Lightning backend: nothing in bolt11
    assert!(!supported.iter().any(|s| s["method"] == "bolt11"), "{supported:?}");

    // a wallet makes the quote (its key signs the mint request)
    let w = wallet(dir.path(), &bridge, 1).await;
    let q = w.create_quote(&unit).await.unwrap();
    let quote = get(&format!("{mint}/v1/mint/quote/ehash/{q}")).await;
    assert_eq!(quote["expiry"], Value::Null, "{quote}");
    assert_eq!(quote["state"], "UNPAID", "{quote}");
    // the quote as first answered
    let pk = SecretKey::generate().public_key().to_hex();
    let (_, fresh) = post(&format!("{mint}/v1/mint/quote/ehash"), &json!({"unit": unit, "amount": 1, "pubkey": pk})).await;
    assert_eq!((&fresh["expiry"], &fresh["state"]), (&Value::Null, &json!("UNPAID")), "{fresh}");

    // a subscriber of the quote hears of its credit in the same form
    let addr = mint.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/v1/ws"), tcp).await.unwrap();
    let sub = json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"kind": "ehash_mint_quote", "subId": "q", "filters": [q]}});
    ws.send(Message::text(sub.to_string())).await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("\"status\":\"OK\""), "{ack}");

    let user = format!("{q}.rig");
    let (mut c, job) = miner(&bridge, &user).await;
    submit_valid(&mut c, &user, &job, 1).await;
    let quote = get(&format!("{mint}/v1/mint/quote/ehash/{q}")).await;
    assert_eq!((&quote["amount_paid"], &quote["state"], &quote["expiry"]), (&json!(CREDIT), &json!("PAID"), &Value::Null), "{quote}");
    let note = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = ws.next().await.unwrap().unwrap();
            let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
            if v["params"]["payload"]["amount_paid"] == json!(CREDIT) {
                return v["params"]["payload"].clone();
            }
        }
    })
    .await
    .expect("the subscriber hears of the credit");
    assert_eq!((&note["quote"], &note["state"], &note["expiry"]), (&json!(q), &json!("PAID"), &Value::Null), "{note}");

    // minted: ISSUED (the batch check answers in the same form)
    assert_eq!(w.mint_credited(&unit, &q).await.unwrap(), CREDIT);
    let (status, checked) = post(&format!("{mint}/v1/mint/quote/ehash/check"), &json!({"quotes": [q]})).await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!((&checked[0]["state"], &checked[0]["expiry"]), (&json!("ISSUED"), &Value::Null), "{checked}");
    // the next share's credit makes it PAID again: an ehash quote accumulates
    submit_valid(&mut c, &user, &job, 2).await;
    let quote = get(&format!("{mint}/v1/mint/quote/ehash/{q}")).await;
    assert_eq!((&quote["amount_paid"], &quote["amount_issued"], &quote["state"]), (&json!(2 * CREDIT), &json!(CREDIT), &json!("PAID")), "{quote}");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_quote_never_expires_and_has_a_state() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |_| {}).await;
    let mint = bridge.mint_url();
    let pk = SecretKey::generate().public_key().to_hex();
    // the sat side of a redemption (NUT-04 `ehash-redeem`): paid by a melt of redeemable ehash
    let (status, quote) = post(&format!("{mint}/v1/mint/quote/ehash-redeem"), &json!({"unit": "sat", "pubkey": pk})).await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!((&quote["expiry"], &quote["state"]), (&Value::Null, &json!("UNPAID")), "{quote}");
    let q = quote["quote"].as_str().unwrap();
    let again = get(&format!("{mint}/v1/mint/quote/ehash-redeem/{q}")).await;
    assert_eq!((&again["expiry"], &again["state"]), (&Value::Null, &json!("UNPAID")), "{again}");
    bridge.shutdown().await;
}
