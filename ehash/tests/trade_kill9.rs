//! kill -9 of `ehash trade run` again and again while its trade settles, once on the seller's
//! side and once on the buyer's: every step was written before its network action, so each
//! restart resumes it, and the trade settles with every sat and every ehash where it belongs.
//! Real relay, pool mint, sat mint (with fees) and exchange; the other side's agent runs in this
//! process.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ehash_exchange::Exchange;
use ehash_protocol::market::Side;
use ehash_testkit::market::Market;
use ehash_wallet::agent::record::Step;
use ehash_wallet::agent::{Agent, OfferRequest};
use ehash_wallet::{MinerWallet, seed};
use tokio_util::sync::CancellationToken;

fn trade(dir: &Path, m: &Market, ex: &Exchange, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ehash"));
    c.args(["--log", "warn", "trade", "--dir"])
        .arg(dir)
        .args(["--mint-url", m.pool.mint_url(), "--exchange", &ex.url(), "--relay", m.relay.url(), "--sat-mint", &m.sat_url])
        .args(args)
        .env_remove("EHASH_CONFIG")
        .env("EHASH_TRADE__MIN_MARGIN_SECS", "5")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

/// The CLI's process, killed when the test ends however it ends.
struct Cli(Child);

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kill9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_of_the_sellers_agent_mid_swap_resumes_and_settles() {
    killed_side_settles(Side::Sell).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_of_the_buyers_agent_mid_swap_resumes_and_settles() {
    killed_side_settles(Side::Buy).await;
}

/// The `killed` side runs as `ehash trade run` subprocesses, killed at each step; the other side
/// is an agent in this process.
async fn killed_side_settles(killed: Side) {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 100).await;
    let ex = Exchange::start(m.exchange_config(4, 30, 30, 10)).await.unwrap();
    // the CLI's wallet (seller: 8 ehash; buyer: 100 sats), and its offer published by the CLI
    let cdir = dir.path().join("cli");
    let (words, _) = seed::load_or_create(&cdir).unwrap();
    let cw = MinerWallet::open(&cdir.join("wallet.sqlite"), m.pool.mint_url(), seed::seed_of(&words)).await.unwrap();
    // the other side, in process
    let adir = dir.path().join("agent");
    std::fs::create_dir_all(&adir).unwrap();
    let aw = Arc::new(MinerWallet::open(&adir.join("wallet.sqlite"), m.pool.mint_url(), [2; 64]).await.unwrap());
    let (sw, bw): (&MinerWallet, &MinerWallet) = if killed == Side::Sell { (&cw, &aw) } else { (&aw, &cw) };
    let unit = m.earn(sw, 2).await;
    m.fund(bw, 100).await;
    drop(cw);
    let side = if killed == Side::Sell { "sell" } else { "buy" };
    let status = trade(&cdir, &m, &ex, &["offer", "--side", side, "--unit", &unit, "--amount", "8", "--price", "10", "--no-wait"]).status().unwrap();
    assert!(status.success());
    let config = m.trade_config();
    let agent = Agent::open_with(aw.clone(), &adir, config, ex.info().clone()).await.unwrap();
    let cancel = CancellationToken::new();
    agent.run(cancel.clone());

    let mut cli = Cli(trade(&cdir, &m, &ex, &["run"]).spawn().unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let req = OfferRequest { side: killed.opposite(), unit: unit.clone(), amount: 8, min: None, sats_per_lot: 10, sat_mints: vec![], ttl_secs: Some(600) };
    agent.place_offer(req).await.unwrap();
    // kill the CLI's agent as soon as its trade reaches each new step (so mid-way to the next
    // network action), restarting it each time
    let store = ehash_wallet::agent::store::Store::open(&cdir).await.unwrap();
    let mut killed_at = vec![];
    let mut last = None;
    for _ in 0..6000 {
        let step = store.trades(false).await.unwrap().first().map(|t| t.step.clone());
        if step != last {
            if let Some(s) = &step {
                if s.is_final() {
                    break;
                }
                kill9(&mut cli.0);
                killed_at.push(s.clone());
                cli = Cli(trade(&cdir, &m, &ex, &["run"]).spawn().unwrap());
            }
            last = step;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("{side}er killed at steps {killed_at:?}");
    assert!(killed_at.len() >= 3, "the {side}er was killed mid-swap: {killed_at:?}");
    // both sides settle, with every sat and ehash where it belongs
    let mut done = None;
    for _ in 0..360 {
        let t = agent.trades().await.unwrap();
        if t.len() == 1 && t[0].step.is_final() {
            done = Some(t[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let done = done.expect("the in-process side's trade finished");
    assert_eq!(done.step, Step::Settled, "{:?}", done.note);
    let mut cli_done = None;
    for _ in 0..240 {
        if let Some(t) = store.trades(false).await.unwrap().first().filter(|t| t.step.is_final()) {
            cli_done = Some(t.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cli_done = cli_done.expect("the CLI's trade finished");
    assert_eq!(cli_done.step, Step::Settled, "{:?}", cli_done.note);
    kill9(&mut cli.0);
    let cw = MinerWallet::open(&cdir.join("wallet.sqlite"), m.pool.mint_url(), seed::seed_of(&words)).await.unwrap();
    let (sw, bw): (&MinerWallet, &MinerWallet) = if killed == Side::Sell { (&cw, &aw) } else { (&aw, &cw) };
    assert_eq!(sw.balance_at(&m.sat_url, "sat").await.unwrap(), 20, "the seller's sats");
    assert_eq!(sw.balance_at(m.pool.mint_url(), &unit).await.unwrap(), 0, "the seller kept nothing it sold");
    assert_eq!(bw.balance_at(m.pool.mint_url(), &unit).await.unwrap(), 8, "the buyer's ehash");
    let left = bw.balance_at(&m.sat_url, "sat").await.unwrap();
    assert!((100 - 20 - 4..100 - 20).contains(&left), "the buyer paid 20 sats and its fees once: {left} left");
    cancel.cancel();
    ex.shutdown().await;
    m.shutdown().await;
}
