//! The shared vectors of protocol/vectors (remaining amounts, settlement times) against the
//! protocol crate's rules; web/ui/tests/unit.mjs runs the same files against the browser agent's.
#![allow(missing_docs, clippy::unwrap_used)]

use ehash_protocol::market::{OfferTrade, SettlementTimes, Side, offer_remaining};
use serde_json::Value;

fn vectors(name: &str) -> Value {
    let path = format!("{}/vectors/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

fn times(t: &Value) -> SettlementTimes {
    SettlementTimes {
        seller_lock_by: u(&t["seller_lock_by"]),
        buyer_lock_by: u(&t["buyer_lock_by"]),
        sats_locktime: u(&t["sats_locktime"]),
        ehash_locktime: u(&t["ehash_locktime"]),
    }
}

#[test]
fn remaining() {
    let v = vectors("remaining");
    let cases = v["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    let mut wrong = vec![];
    for c in cases {
        let trades = c["trades"].as_array().unwrap().iter().map(|t| OfferTrade { amount: u(&t["amount"]), failed: t["step"] == "failed", locked: t["locked"].as_bool().unwrap() });
        let got = offer_remaining(u(&c["amount"]), trades);
        if got != u(&c["remaining"]) {
            wrong.push(format!("{}: {got}, the vector says {}", c["name"], c["remaining"]));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn deadlines() {
    let v = vectors("deadlines");
    for c in v["timetables"].as_array().unwrap() {
        let t = SettlementTimes::new(u(&c["t0"]), u(&c["lock_secs"]), u(&c["claim_secs"]), u(&c["margin_secs"]));
        assert_eq!(t, times(&c["times"]), "{}", c["name"]);
    }
    let cases = v["acceptance"].as_array().unwrap();
    assert!(!cases.is_empty());
    let mut wrong = vec![];
    for c in cases {
        let side = if c["role"] == "sell" { Side::Sell } else { Side::Buy };
        let got = times(&c["times"]).refusal(side, u(&c["now"]), u(&c["min_margin_secs"]), u(&c["max_lock_secs"]));
        let ok = match (&got, c["accept"].as_bool().unwrap()) {
            (None, true) => true,
            (Some(why), false) => why.contains(c["error_contains"].as_str().unwrap()),
            _ => false,
        };
        if !ok {
            wrong.push(format!("{}: {got:?}, the vector says accept = {}", c["name"], c["accept"]));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
