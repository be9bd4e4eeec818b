//! `ehash trade list` and `ehash trade take` against a real exchange: a buyer takes a seller's
//! resting offer from the command line and the swap settles; bad takes are refused with the
//! reason and nothing is published; what an open offer holds cannot be sent until it is
//! cancelled.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use ehash_exchange::Exchange;
use ehash_protocol::market::Side;
use ehash_testkit::market::Market;
use ehash_wallet::agent::record::Step;
use ehash_wallet::agent::{Agent, OfferRequest};
use ehash_wallet::{MinerWallet, seed};
use tokio_util::sync::CancellationToken;

fn trade(dir: &std::path::Path, m: &Market, ex: &Exchange, args: &[&str]) -> Output {
    trade_at(dir, m, ex, Some(&m.sat_url), args)
}

/// `ehash trade` trusting `sat_mint` (none: no `--sat-mint`, and no configuration file).
fn trade_at(dir: &std::path::Path, m: &Market, ex: &Exchange, sat_mint: Option<&str>, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["--log", "warn", "trade", "--dir"])
        .arg(dir)
        .args(["--mint-url", m.pool.mint_url(), "--exchange", &ex.url(), "--relay", m.relay.url()])
        .args(sat_mint.map(|u| ["--sat-mint", u]).into_iter().flatten())
        .args(args)
        .env_remove("EHASH_CONFIG")
        .env("EHASH_TRADE__MIN_MARGIN_SECS", "5")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_takes_a_resting_offer_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let ex = Exchange::start(m.exchange_config(4, 20, 20, 10)).await.unwrap();
    // the seller: an agent in this process with a resting offer of 12 ehash at 7 sats per lot
    let sdir = dir.path().join("seller");
    std::fs::create_dir_all(&sdir).unwrap();
    let sw = Arc::new(MinerWallet::open(&sdir.join("wallet.sqlite"), m.pool.mint_url(), [1; 64]).await.unwrap());
    let unit = m.earn(&sw, 3).await;
    let config = m.trade_config();
    let seller = Agent::open_with(sw.clone(), &sdir, config, ex.info().clone()).await.unwrap();
    let cancel = CancellationToken::new();
    seller.run(cancel.clone());
    let o = seller
        .place_offer(OfferRequest { side: Side::Sell, unit: unit.clone(), amount: 12, min: None, sats_per_lot: 7, sat_mints: vec![], ttl_secs: Some(600) })
        .await
        .unwrap();
    let address = format!("38190:{}:{}", o.pubkey, o.d);
    // the buyer: a CLI wallet with 30 sats
    let bdir = dir.path().join("buyer");
    let (words, _) = seed::load_or_create(&bdir).unwrap();
    {
        let bw = MinerWallet::open(&bdir.join("wallet.sqlite"), m.pool.mint_url(), seed::seed_of(&words)).await.unwrap();
        m.fund(&bw, 30).await;
    }
    let mut listed = String::new();
    for _ in 0..40 {
        let out = trade(&bdir, &m, &ex, &["list"]);
        listed = String::from_utf8_lossy(&out.stdout).to_string();
        if listed.contains(&o.pubkey) || listed.contains(&o.d) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(listed.contains(&unit) && listed.contains('7'), "{listed}");
    // refused: more than the offer has, and not whole lots; nothing is published
    let out = trade(&bdir, &m, &ex, &["take", &address, "--amount", "16"]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = trade(&bdir, &m, &ex, &["take", &address, "--amount", "6"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lot"), "{}", String::from_utf8_lossy(&out.stderr));
    // refused: a wallet that trusts no sat mint, or another one, does not take the offer's
    for (trusted, named) in [(None, m.sat_url.as_str()), (Some("http://127.0.0.1:9/"), "--sat-mint")] {
        let out = trade_at(&bdir, &m, &ex, trusted, &["take", &address, "--amount", "8"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(named) && err.contains("[trade].sat_mints"), "{err}");
    }
    // 8 ehash cost 14 sats; the command runs the buyer's agent until the trade settled
    let out = trade(&bdir, &m, &ex, &["take", &address, "--amount", "8", "--ttl", "60"]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let bw = MinerWallet::open(&bdir.join("wallet.sqlite"), m.pool.mint_url(), seed::seed_of(&words)).await.unwrap();
    assert_eq!(bw.balance_at(m.pool.mint_url(), &unit).await.unwrap(), 8);
    assert_eq!(bw.balance_at(&m.sat_url, "sat").await.unwrap(), 30 - 14);
    for _ in 0..80 {
        if seller.trades().await.unwrap().first().is_some_and(|t| t.step == Step::Settled) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seller.trades().await.unwrap()[0].step, Step::Settled);
    assert_eq!(sw.balance_at(&m.sat_url, "sat").await.unwrap(), 14);
    let status = trade(&bdir, &m, &ex, &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("settled"), "{}", String::from_utf8_lossy(&status.stdout));

    // the ehash behind an open ask cannot be sent until the ask is cancelled
    let wallet = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ehash"))
            .args(["--log", "warn", "wallet", "--dir"])
            .arg(&bdir)
            .args(["--mint-url", m.pool.mint_url()])
            .args(args)
            .env_remove("EHASH_CONFIG")
            .output()
            .unwrap()
    };
    let out = trade(&bdir, &m, &ex, &["offer", "--side", "sell", "--unit", &unit, "--amount", "8", "--price", "1000", "--no-wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = ehash_wallet::agent::store::Store::open(&bdir).await.unwrap();
    let ask = store.offers().await.unwrap().into_iter().find(|o| o.side == Side::Sell).expect("the ask").d;
    let out = wallet(&["send", "--unit", &unit, "--amount", "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("offer {ask}")) && err.contains("ehash trade cancel"), "{err}");
    let out = wallet(&["balance"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(8 held by open offers)"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = trade(&bdir, &m, &ex, &["cancel", &ask]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = wallet(&["send", "--unit", &unit, "--amount", "4"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("cashuB"), "{}", String::from_utf8_lossy(&out.stderr));
    cancel.cancel();
    ex.shutdown().await;
    m.shutdown().await;
}
