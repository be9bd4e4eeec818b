//! The shared vectors of protocol/vectors (lock secrets, fees, lock face values) against the Rust
//! agent's functions; web/ui/tests/unit.mjs runs the same files against the browser agent's.
//! Splits are checked against cdk's `Amount::split`, the implementation the wallet uses.
#![allow(missing_docs, clippy::unwrap_used)]

use cdk::nuts::PublicKey;
use cdk_common::Amount;
use cdk_common::amount::FeeAndAmounts;
use ehash_wallet::durable::lock_face_value;
use ehash_wallet::htlc::{self, LockError};
use serde_json::Value;

fn vectors(name: &str) -> Value {
    let path = format!("{}/../protocol/vectors/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

fn amounts(v: &Value) -> Option<Vec<u64>> {
    v.as_array().unwrap().iter().map(Value::as_u64).collect()
}

/// The field a lock error names, as the vectors' `terms_error` does.
fn field(e: &LockError) -> String {
    e.to_string().split(':').next().unwrap().to_owned()
}

#[test]
fn lock_secrets() {
    let v = vectors("lock_secrets");
    let t = &v["terms"];
    let key = |k: &str| PublicKey::from_hex(t[k].as_str().unwrap()).unwrap();
    let (receiver, maker) = (key("receiver"), key("maker"));
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() > 50);
    let mut wrong = vec![];
    for c in cases {
        let name = c["name"].as_str().unwrap();
        match (htlc::read_lock_secret(c["secret"].as_str().unwrap()), c["valid"].as_bool().unwrap()) {
            (Ok(s), true) => {
                let r = &c["read"];
                let keys = |k: &str| r[k].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_owned()).collect::<Vec<_>>();
                let want = htlc::LockSecret {
                    data: r["data"].as_str().unwrap().to_owned(),
                    locktime: r["locktime"].as_u64(),
                    pubkeys: keys("pubkeys"),
                    refund: keys("refund"),
                    n_sigs: r["n_sigs"].as_u64(),
                    n_sigs_refund: r["n_sigs_refund"].as_u64(),
                    sigflag: r["sigflag"].as_str().map(str::to_owned),
                };
                if s != want {
                    wrong.push(format!("{name}: read {s:?}, the vector says {want:?}"));
                }
                let checked = htlc::check_conditions(&s, t["hash"].as_str(), u(&t["locktime"]), &receiver, &maker);
                match (checked, c["terms_error"].as_str()) {
                    (Ok(()), None) => {}
                    (Err(e), Some(f)) if field(&e) == f => {}
                    (got, want) => wrong.push(format!("{name}: against the terms {got:?}, the vector says {want:?}")),
                }
            }
            (Err(e), false) => {
                let contains = c["error_contains"].as_str().unwrap();
                if !e.to_string().starts_with("secret: ") || !e.to_string().contains(contains) {
                    wrong.push(format!("{name}: {e} does not say {contains:?}"));
                }
            }
            (got, _) => wrong.push(format!("{name}: {got:?}, the vector says valid = {}", c["valid"])),
        }
    }
    assert!(wrong.is_empty(), "{} of {} lock secret vectors disagree:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

#[test]
fn the_lock_the_rust_agent_makes_reads_as_its_terms() {
    let (r, m) = (PublicKey::from_hex("02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5").unwrap(), PublicKey::from_hex("02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9").unwrap());
    let hash = "ab".repeat(32);
    let secret: cdk::nuts::nut10::Secret = htlc::conditions(&hash, 4_000_000_000, r, m).unwrap().try_into().unwrap();
    let s = htlc::read_lock_secret(&serde_json::to_string(&secret).unwrap()).unwrap();
    htlc::check_conditions(&s, Some(&hash), 4_000_000_000, &r, &m).unwrap();
    assert!(htlc::check_conditions(&s, Some(&hash), 4_000_000_001, &r, &m).is_err());
}

#[test]
fn fees() {
    let v = vectors("fees");
    for c in v["input_fee"].as_array().unwrap() {
        let ppks = amounts(&c["ppks"]).unwrap();
        let fee = u(&c["fee"]);
        assert_eq!(htlc::fee_for_ppk(ppks.iter().sum()), fee, "{}", c["name"]);
        if let Some(&ppk) = ppks.first()
            && ppks.iter().all(|&p| p == ppk)
        {
            assert_eq!(htlc::input_fee(ppks.len() as u64, ppk), fee, "{}", c["name"]);
        }
    }
    for c in v["split"].as_array().unwrap() {
        // a keyset's amounts are integers by type here (cdk's `Keys`): a fractional one never parses
        let Some(am) = amounts(&c["keyset_amounts"]) else {
            assert_eq!(c["error"], true, "{}", c["name"]);
            continue;
        };
        let fees: FeeAndAmounts = (0, am).into();
        let got = Amount::from(u(&c["amount"])).split(&fees).map(|p| {
            let mut p: Vec<u64> = p.iter().map(|a| a.to_u64()).collect();
            p.sort_unstable();
            p
        });
        match (got, c.get("parts")) {
            (Ok(p), Some(want)) => assert_eq!(p, amounts(want).unwrap(), "{}", c["name"]),
            (Err(_), None) => assert_eq!(c["error"], true, "{}", c["name"]),
            (got, want) => panic!("{}: {got:?}, the vector says {want:?}", c["name"]),
        }
    }
    for c in v["lock_face"].as_array().unwrap() {
        let fees: FeeAndAmounts = (u(&c["ppk"]), amounts(&c["keyset_amounts"]).unwrap()).into();
        match (lock_face_value(&fees, u(&c["net"]), u(&c["ppk"])), c.get("face")) {
            (Ok(f), Some(want)) => assert_eq!(f, u(want), "{}", c["name"]),
            (Err(_), None) => assert_eq!(c["error"], true, "{}", c["name"]),
            (got, want) => panic!("{}: {got:?}, the vector says {want:?}", c["name"]),
        }
    }
}
