//! User-facing commands are quiet by default: `ehash wallet balance` prints the balance, and no
//! INFO lines of the libraries under it (cdk's mint metadata cache, sqlx); `--log info` shows
//! them.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;

use ehash_testkit::market::{CREDIT, Market};
use ehash_wallet::MinerWallet;

/// Run `ehash [--log LOG] wallet` on `dir` (no RUST_LOG); returns (stdout, stderr) of a success.
fn wallet(m: &Market, dir: &std::path::Path, log: Option<&str>, args: &[&str]) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ehash"));
    if let Some(log) = log {
        cmd.args(["--log", log]);
    }
    let out = cmd
        .args(["wallet", "--dir", dir.to_str().unwrap(), "--mint-url", m.pool.mint_url(), "--sat-mint", &m.sat_url])
        .args(args)
        .env_remove("EHASH_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "ehash wallet {args:?}:\n{stdout}{stderr}");
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_balance_shows_the_balance_without_library_logs_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let miner = MinerWallet::open(&dir.path().join("miner.sqlite"), m.pool.mint_url(), [5; 64]).await.unwrap();
    let unit = m.earn(&miner, 2).await;
    let token = miner.send(&unit, 2 * CREDIT, None).await.unwrap();
    let cli = dir.path().join("cli");
    wallet(&m, &cli, Some("warn"), &["init"]);
    wallet(&m, &cli, Some("warn"), &["receive", &token]);

    let (stdout, stderr) = wallet(&m, &cli, None, &["balance"]);
    assert!(stdout.contains(&unit) && stdout.contains(&(2 * CREDIT).to_string()), "{stdout}");
    assert!(!stderr.contains("INFO") && !stderr.contains("cdk") && !stderr.contains("sqlx"), "library logs by default:\n{stderr}");

    // --log shows more
    let (_, stderr) = wallet(&m, &cli, Some("info"), &["balance"]);
    assert!(stderr.contains("INFO") && stderr.contains("cdk"), "--log info shows cdk's info lines:\n{stderr}");
}
