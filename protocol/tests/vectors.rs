//! The shared vectors of protocol/vectors (events, identifiers, work, the audit commitment,
//! remaining amounts, settlement times) against the protocol crate's rules;
//! web/ui/tests/unit.mjs runs the same files against the browser agent's.
#![allow(missing_docs, clippy::unwrap_used)]

use ehash_protocol::audit::{self, AuditError, InclusionProof, LogShare, SumNode};
use ehash_protocol::epoch::{self, EpochUnit};
use ehash_protocol::events::epoch::EpochAnnouncement;
use ehash_protocol::events::mint::MintAnnouncement;
use ehash_protocol::events::offer::Offer;
use ehash_protocol::events::settlement::Message;
use ehash_protocol::events::trade::Trade;
use ehash_protocol::market::{self, OfferTrade, SettlementTimes, Side, offer_remaining};
use ehash_protocol::stratum::Username;
use ehash_protocol::work::{DifficultyExp, UnitSize};
use nostr::event::Event;
use nostr::key::{Keys, PublicKey, SecretKey};
use serde_json::{Value, json};

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

/// What a reader makes of a vector's event: its terms as JSON, or the field it refuses.
fn read(case: &Value, keys: &Value) -> Result<Value, String> {
    let ev: Event = serde_json::from_value(case["event"].clone()).map_err(|e| format!("json: {e}"))?;
    if !ev.verify_id() {
        return Err("id".into());
    }
    if !ev.verify_signature() {
        return Err("sig".into());
    }
    let terms = match ev.kind.as_u16() {
        38172 => MintAnnouncement::parse(&ev).map(|m| serde_json::to_value(m).unwrap()),
        38180 => EpochAnnouncement::parse(&ev).map(|m| serde_json::to_value(m).unwrap()),
        38190 => Offer::parse(&ev).map(|o| {
            let mut v = serde_json::to_value(&o).unwrap();
            v["address"] = json!(o.address(&ev.pubkey));
            v
        }),
        38191 => Trade::parse(&ev).map(|t| {
            let mut v = serde_json::to_value(&t).unwrap();
            v["trade_id"] = json!(market::trade_id(t.taker.event_id.as_bytes(), t.maker.event_id.as_bytes()));
            v
        }),
        4190 => {
            let who = case["recipient"].as_str().unwrap();
            let me = Keys::new(SecretKey::from_hex(keys[who]["secret"].as_str().unwrap()).unwrap());
            Message::check_envelope(&ev).and_then(|()| Message::from_event(&ev, &me)).map(|m| serde_json::to_value(m).unwrap())
        }
        k => panic!("kind {k} has no reader"),
    };
    terms.map_err(|e| e.field.to_string())
}

#[test]
fn events() {
    let v = vectors("events");
    let cases = v["cases"].as_array().unwrap();
    let mut wrong = vec![];
    let mut kinds = std::collections::BTreeSet::new();
    for c in cases {
        kinds.insert((c["event"]["kind"].as_u64().unwrap(), c["valid"].as_bool().unwrap()));
        let got = read(c, &v["keys"]);
        let ok = match (&got, c["valid"].as_bool().unwrap()) {
            (Ok(terms), true) => {
                // a derived value a vector leaves out is not compared
                let mut terms = terms.clone();
                let want = c["reads_as"].as_object().unwrap();
                terms.as_object_mut().unwrap().retain(|k, _| want.contains_key(k));
                terms == c["reads_as"]
            }
            (Err(field), false) => field == c["refused_for"].as_str().unwrap(),
            _ => false,
        };
        if !ok {
            wrong.push(format!("{}: {got:?}", c["name"]));
        }
    }
    assert!(wrong.is_empty(), "{} vectors disagree:\n{}", wrong.len(), wrong.join("\n"));
    // every kind is there, readable and refused
    for k in [38172, 38180, 38190, 38191, 4190] {
        assert!(kinds.contains(&(k, true)) && kinds.contains(&(k, false)), "kind {k} lacks a valid or an invalid case");
    }
    // the keys are what they say
    for (name, k) in v["keys"].as_object().unwrap() {
        if name != "mint" {
            let keys = Keys::new(SecretKey::from_hex(k["secret"].as_str().unwrap()).unwrap());
            assert_eq!(keys.public_key().to_hex(), k["pubkey"].as_str().unwrap(), "{name}");
        }
    }
}

#[test]
fn identifiers() {
    let v = vectors("identifiers");
    for c in v["units"].as_array().unwrap() {
        let got = EpochUnit::parse(c["unit"].as_str().unwrap()).ok().map(|u| json!({"pool": u.pool.as_str(), "epoch": u.epoch}));
        let want = c["valid"].as_bool().unwrap().then(|| json!({"pool": c["pool"], "epoch": c["epoch"]}));
        assert_eq!(got, want, "unit {}", c["unit"]);
    }
    for c in v["usernames"].as_array().unwrap() {
        let got = Username::parse(c["username"].as_str().unwrap()).ok().map(|u| json!({"quote_id": u.quote_id, "worker": u.worker}));
        let want = c["valid"].as_bool().unwrap().then(|| json!({"quote_id": c["quote_id"], "worker": c["worker"]}));
        assert_eq!(got, want, "username {}", c["username"]);
    }
    let id32 = |v: &Value| -> [u8; 32] { hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap() };
    for c in v["trade_ids"].as_array().unwrap() {
        assert_eq!(market::trade_id(&id32(&c["taker_event_id"]), &id32(&c["maker_event_id"])), c["trade_id"].as_str().unwrap());
    }
    for c in v["lock_keys"].as_array().unwrap() {
        let pk = PublicKey::from_hex(c["nostr_pubkey"].as_str().unwrap()).unwrap();
        assert_eq!(market::lock_key(&pk).unwrap().to_hex(), c["lock_key"].as_str().unwrap());
    }
}

#[test]
fn work() {
    let v = vectors("work");
    for c in v["difficulties"].as_array().unwrap() {
        let d = DifficultyExp::new(c["exp"].as_i64().unwrap() as i32).unwrap();
        assert_eq!(ehash_protocol::stratum::messages::set_difficulty(d), c["set_difficulty"].as_str().unwrap());
        assert_eq!(hex::encode(d.target().to_be_bytes()), c["target"].as_str().unwrap(), "exp {}", c["exp"]);
        assert_eq!(format!("{:08x}", d.compact().to_consensus()), c["compact"].as_str().unwrap(), "exp {}", c["exp"]);
    }
    for e in v["bad_exps"].as_array().unwrap() {
        assert!(DifficultyExp::new(e.as_i64().unwrap() as i32).is_err(), "exp {e}");
    }
    for c in v["credits"].as_array().unwrap() {
        let got = UnitSize::new(c["unit_size"].as_u64().unwrap() as u32).unwrap().credit(DifficultyExp::new(c["exp"].as_i64().unwrap() as i32).unwrap()).ok();
        assert_eq!(got, c["credit"].as_u64(), "{c}");
    }
    for c in v["payouts"].as_array().unwrap() {
        assert_eq!(epoch::epoch_payout(u(&c["reward"]), c["fee_ppm"].as_u64().unwrap() as u32), u(&c["payout"]), "{c}");
    }
    for c in v["redemptions"].as_array().unwrap() {
        assert_eq!(epoch::redeem_sats(u(&c["amount"]), u(&c["payout"]), u(&c["issued"])), u(&c["sats"]), "{c}");
    }
    for c in v["hashprices"].as_array().unwrap() {
        let nbits = u32::from_str_radix(c["nbits"].as_str().unwrap(), 16).unwrap();
        let got = epoch::hashprice(nbits, u(&c["coinbase_value"]), c["fee_ppm"].as_u64().unwrap() as u32, c["unit_size"].as_u64().unwrap() as u32);
        let want = c["sats_per_ehash"].as_f64().unwrap();
        assert!((got - want).abs() <= want * 1e-9, "{c}: {got}");
    }
}

#[test]
fn audit() {
    let v = vectors("audit");
    let unit = UnitSize::new(v["unit_size"].as_u64().unwrap() as u32).unwrap();
    let log: Vec<LogShare> = serde_json::from_value(v["log"].clone()).unwrap();
    let root: SumNode = serde_json::from_value(v["root"].clone()).unwrap();
    assert_eq!(audit::check_log(&log, unit).unwrap(), root);
    for (i, (s, l)) in log.iter().zip(v["leaves"].as_array().unwrap()).enumerate() {
        assert_eq!(s.id(i).unwrap(), l["id"].as_str().unwrap());
        assert_eq!(serde_json::to_value(s.leaf(i).unwrap()).unwrap(), l["leaf"]);
    }
    for p in v["proofs"].as_array().unwrap() {
        let p: InclusionProof = serde_json::from_value(p.clone()).unwrap();
        assert_eq!(p.root().unwrap(), root);
        assert_eq!(Some(p.clone()), audit::prove(&log, p.index).unwrap());
    }
    assert_eq!(serde_json::to_value(audit::empty_root()).unwrap(), v["empty_root"]);
    for b in v["bad_logs"].as_array().unwrap() {
        let shares: Vec<LogShare> = serde_json::from_value(b["shares"].clone()).unwrap();
        let (kind, index) = match audit::check_log(&shares, unit).unwrap_err() {
            AuditError::Amount { index, .. } => ("amount", index),
            AuditError::NotWork { index, .. } => ("not_work", index),
            AuditError::Order { index, .. } => ("order", index),
            e => panic!("{}: {e}", b["name"]),
        };
        assert_eq!((kind, index as u64), (b["error"].as_str().unwrap(), u(&b["index"])), "{}", b["name"]);
    }
    // the redeemable epoch of events.json commits to this log
    let events = vectors("events");
    let epoch = events["cases"].as_array().unwrap().iter().find(|c| c["event"]["kind"] == 38180 && c["reads_as"]["state"] == "redeemable").unwrap();
    assert_eq!(epoch["reads_as"]["log_root"].as_str().unwrap(), hex::encode(root.hash));
    assert_eq!(u(&epoch["reads_as"]["issued"]), root.sum);
    assert_eq!(u(&epoch["reads_as"]["shares"]), log.len() as u64);
}
