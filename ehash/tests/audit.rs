//! `ehash audit` against a real pool (relay, mint-bridge) after an epoch closes: the books check
//! out, every share's inclusion proof leads to the announced root, and the auditor catches a
//! share log changed after it was committed and an announced issued total the log does not add
//! up to.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use ehash_protocol::epoch::CloseReason;
use ehash_testkit::market::{CREDIT, Market};
use ehash_wallet::MinerWallet;

/// Run `ehash audit` and return (success, stdout + stderr).
fn audit(m: &Market, epoch: u32) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["--log", "warn", "audit", &epoch.to_string(), "--mint-url", m.pool.mint_url(), "--relay", m.relay.url()])
        .env_remove("EHASH_CONFIG")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Run the audit until its output satisfies `ok` (announcements reach the relay asynchronously).
fn audit_until(m: &Market, epoch: u32, what: &str, ok: impl Fn(bool, &str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (passed, out) = audit(m, epoch);
        if ok(passed, &out) {
            return out;
        }
        assert!(Instant::now() < deadline, "{what}; last audit:\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

async fn ledger(m: &Market) -> sqlx::AnyPool {
    let path = m.dir.join("pool").join("ledger.sqlite");
    ehash_outbox::connect(&format!("sqlite://{}", path.display()), 1).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_checks_a_closed_epoch_and_catches_a_changed_log_and_a_wrong_issued_total() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let w = MinerWallet::open(&dir.path().join("w.sqlite"), m.pool.mint_url(), [3; 64]).await.unwrap();
    m.earn(&w, 5).await;

    // an open epoch has no books yet
    let (passed, out) = audit(&m, 1);
    assert!(!passed && out.contains("still active"), "{out}");

    let closed = m.pool.epochs().close_active(CloseReason::Operator, None).await.unwrap().unwrap();
    assert_eq!(closed.issued, Some(5 * CREDIT));
    let root = closed.log_root.clone().expect("the closed epoch commits to its share log");
    let out = audit_until(&m, 1, "the closed epoch's books check out", |p, _| p);
    assert!(out.contains("ok   shares       5 shares, each real work"), "{out}");
    assert!(out.contains(&format!("the served log hashes to the announced root {root}")), "{out}");
    assert!(out.contains(&format!("the log credits {} ehash, the pool announced {} issued", 5 * CREDIT, 5 * CREDIT)), "{out}");
    assert!(out.contains(&format!("{} ehash outstanding at the mint", 5 * CREDIT)), "{out}");

    // a miner holding one share checks that it was counted, with its amount
    let log: serde_json::Value = bitreq::get(format!("{}/v1/ehash/epochs/1/log", m.pool.mint_url())).send_async().await.unwrap().json().unwrap();
    let shares: Vec<ehash_protocol::audit::LogShare> = serde_json::from_value(log["shares"].clone()).unwrap();
    assert_eq!(shares.len(), 5);
    assert_eq!((log["count"].as_u64(), log["next"].as_str()), (Some(5), None), "{log}");
    // served in pages, it is the same log: two shares a page, each naming where the next starts
    let page = |q: String| {
        let url = format!("{}/v1/ehash/epochs/1/log?{q}", m.pool.mint_url());
        async move { bitreq::get(url).send_async().await.unwrap() }
    };
    let first: serde_json::Value = page("limit=2".into()).await.json().unwrap();
    assert_eq!(first["shares"].as_array().unwrap().len(), 2);
    assert_eq!(first["next"].as_str(), Some(shares[1].id(1).unwrap().as_str()));
    let last: serde_json::Value = page(format!("limit=2&after={}", shares[3].id(3).unwrap())).await.json().unwrap();
    assert_eq!((last["shares"].as_array().unwrap().len(), last["next"].as_str()), (1, None), "{last}");
    let paged = ehash_wallet::audit::served_log(m.pool.mint_url(), 1, 2).await.unwrap();
    assert_eq!(paged.shares, shares);
    // pages it cannot serve are refused, saying why
    let r = page("limit=0".into()).await;
    assert_eq!(r.status_code, 400);
    assert!(r.as_str().unwrap().contains("limit must be between 1 and 10000"), "{}", r.as_str().unwrap());
    let r = page("after=xyz".into()).await;
    assert_eq!(r.status_code, 400);
    assert!(r.as_str().unwrap().contains("after must be a share id"), "{}", r.as_str().unwrap());
    for (i, s) in shares.iter().enumerate() {
        let p = ehash_wallet::audit::proof(m.pool.mint_url(), 1, &s.id(i).unwrap()).await.unwrap();
        assert_eq!(&p.share, s);
        assert_eq!(p.share.amount, CREDIT);
        assert_eq!(hex::encode(p.root().unwrap().hash), root);
    }
    let missing = ehash_wallet::audit::proof(m.pool.mint_url(), 1, &"00".repeat(32)).await.unwrap_err().to_string();
    assert!(missing.contains("is not in epoch 1's log"), "{missing}");

    // the pool doubles one share's credit in its ledger after the epoch closed
    let db = ledger(&m).await;
    let id = shares[2].id(2).unwrap();
    sqlx::query("UPDATE ehash_shares SET amount = amount * 2 WHERE share_id = $1").bind(&id).execute(&db).await.unwrap();
    let (passed, out) = audit(&m, 1);
    assert!(!passed, "{out}");
    assert!(out.contains(&format!("FAIL shares       1 of 5 shares do not check out: share 2 ({id}): credited {}, its difficulty earns {CREDIT}", 2 * CREDIT)), "{out}");
    assert!(out.contains("the log was changed after it was committed"), "{out}");
    assert!(out.contains(&format!("FAIL issued       the log credits {} ehash", 6 * CREDIT)), "{out}");
    sqlx::query("UPDATE ehash_shares SET amount = amount / 2 WHERE share_id = $1").bind(&id).execute(&db).await.unwrap();
    audit_until(&m, 1, "the restored log checks out again", |p, _| p);

    // the pool announces an issued total its log does not add up to
    sqlx::query("UPDATE ehash_epochs SET issued = issued + 7 WHERE epoch = 1").execute(&db).await.unwrap();
    let rec = m.pool.epochs().ledger().epochs().await.unwrap().into_iter().find(|e| e.epoch == 1).unwrap();
    m.pool.epochs().announcer().announce_epoch(m.pool.mint(), &rec).await.unwrap();
    let out = audit_until(&m, 1, "the auditor sees the wrong issued total", |p, o| !p && o.contains("FAIL issued"));
    assert!(out.contains(&format!("the log credits {} ehash, the pool announced {} issued", 5 * CREDIT, 5 * CREDIT + 7)), "{out}");
    assert!(out.contains("ok   commitment"), "{out}");
    m.shutdown().await;
}
