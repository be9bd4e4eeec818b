//! Redeeming and withdrawing from the command line: a matured epoch's ehash becomes sats at the
//! pool's mint (`ehash wallet redeem`), and the sats pay a Lightning invoice (`ehash wallet
//! withdraw`); an invoice the sats do not cover and an epoch that does not redeem are refused
//! with clear errors, and nothing is spent.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;

use ehash_protocol::epoch::{epoch_payout, redeem_sats};
use ehash_testkit::market::{CREDIT, Market, close_on_matured_block};
use ehash_wallet::MinerWallet;

/// Run `ehash wallet` on `dir`; returns (success, stdout + stderr).
fn wallet(m: &Market, dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["--log", "warn", "wallet", "--dir", dir.to_str().unwrap(), "--mint-url", m.pool.mint_url()])
        .args(args)
        .env_remove("EHASH_CONFIG")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn ok(m: &Market, dir: &std::path::Path, args: &[&str]) -> String {
    let (passed, out) = wallet(m, dir, args);
    assert!(passed, "ehash wallet {args:?}:\n{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matured_epochs_ehash_is_redeemed_and_withdrawn_over_lightning_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    // a miner earns 3 shares of epoch 1 and hands them to the CLI wallet as a token
    let miner = MinerWallet::open(&dir.path().join("miner.sqlite"), m.pool.mint_url(), [5; 64]).await.unwrap();
    let unit = m.earn(&miner, 3).await;
    let token = miner.send(&unit, 3 * CREDIT, None).await.unwrap();
    let cli = dir.path().join("cli");
    ok(&m, &cli, &["init"]);
    ok(&m, &cli, &["receive", &token]);

    // not redeemable while the epoch is open
    let (passed, out) = wallet(&m, &cli, &["redeem", "--unit", &unit]);
    assert!(!passed && out.contains("only redeemable epochs redeem"), "{out}");

    // the epoch closes on a block of 10 000 sats, which matures
    close_on_matured_block(&m.pool, 7, 10_000).await;
    let sats = redeem_sats(3 * CREDIT, epoch_payout(10_000, m.pool.epochs().payout_config().pool_fee_ppm), 3 * CREDIT);

    let out = ok(&m, &cli, &["redeem", "--unit", &unit]);
    assert!(out.contains(&format!("redeemed for {sats} sat")), "{out}");
    let out = ok(&m, &cli, &["balance"]);
    assert!(out.contains(&format!("{sats} sat at {}", m.pool.mint_url().trim_end_matches('/'))), "{out}");

    // an invoice larger than the sats is refused and spends nothing
    let big = cdk_fake_wallet::create_fake_invoice((sats + 1) * 1000, "too much".into()).to_string();
    let (passed, out) = wallet(&m, &cli, &["withdraw", &big]);
    assert!(!passed && out.contains(&sats.to_string()), "{out}");
    // 1000 sats leave over Lightning (the pool's fake backend pays); the rest stays
    let invoice = cdk_fake_wallet::create_fake_invoice(1_000_000, "withdraw".into()).to_string();
    let out = ok(&m, &cli, &["withdraw", &invoice]);
    assert!(out.contains("paid 1000 sat"), "{out}");
    let fee: u64 = out.split("(fee ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).expect("the fee is printed");
    assert!(out.contains(&format!("balance {} sat at", sats - 1000 - fee)), "{out}");
    m.shutdown().await;
}
