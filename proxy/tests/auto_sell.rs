//! The proxy's auto-sell: a miner mines through the proxy, the proxy mints what the pool credits
//! and offers it on the exchange at the configured price; a buyer's agent takes it and the swap
//! settles into the miner's own wallet. All parts are real: relay, pool, sat mint, exchange.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ehash_exchange::Exchange;
use ehash_protocol::market::Side;
use ehash_proxy::{Config, Proxy};
use ehash_testkit::market::{CREDIT, Market};
use ehash_wallet::agent::record::Step;
use ehash_wallet::agent::sell::SellPolicy;
use ehash_wallet::agent::{Agent, OfferRequest, TradeConfig};
use ehash_wallet::{MinerWallet, seed};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_sells_what_it_mints_by_policy_and_the_sats_land_in_the_miners_wallet() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let ex = Exchange::start(m.exchange_config(8, 15, 15, 10)).await.unwrap();
    let trade = TradeConfig { exchange_url: ex.url(), ..m.trade_config() };
    let mut c = Config {
        data_dir: dir.path().join("proxy"),
        wallet_dir: dir.path().join("wallet"),
        listen: "127.0.0.1:0".parse().unwrap(),
        status_listen: "127.0.0.1:0".parse().unwrap(),
        pool: m.pool.stratum_addr().to_string(),
        mint_url: m.pool.mint_url().to_owned(),
        mint_secs: 1,
        // keep one share's worth; sell the rest at 5 sats per lot of 8
        auto_sell: SellPolicy { sats_per_lot: 5, keep: CREDIT, interval_secs: 1, ttl_secs: 600 },
        trade: trade.clone(),
        ..Default::default()
    };
    c.stratum.initial_difficulty_exp = -18;
    c.stratum.min_difficulty_exp = -18;
    c.stratum.max_difficulty_exp = -18;
    let proxy = Proxy::start(c).await.unwrap();
    // 5 shares = 20 ehash: 4 kept, 16 = two lots offered
    let got = ehash_sim_miner::client::submit_shares(proxy.local_addr(), "rig.1", 5, 11).await.unwrap();
    assert_eq!(got, 5);

    let bdir = dir.path().join("buyer");
    std::fs::create_dir_all(&bdir).unwrap();
    let bw = Arc::new(MinerWallet::open(&bdir.join("wallet.sqlite"), m.pool.mint_url(), [2; 64]).await.unwrap());
    m.fund(&bw, 50).await;
    let buyer = Agent::open_with(bw.clone(), &bdir, trade, ex.info().clone()).await.unwrap();
    let cancel = CancellationToken::new();
    buyer.run(cancel.clone());
    let unit = m.unit().await;
    // wait for the proxy's offer to rest, then take all of it
    let market = loop {
        let r = bitreq::get(format!("{}/api/markets", ex.url())).send_async().await.unwrap();
        let ms: Vec<ehash_protocol::api::MarketSummary> = r.json().unwrap();
        if let Some(x) = ms.into_iter().find(|x| x.unit == unit && x.ask.is_some()) {
            break x.market;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let b: ehash_protocol::api::Book =
        bitreq::get(format!("{}/api/markets/{market}/book", ex.url())).send_async().await.unwrap().json().unwrap();
    assert_eq!((b.asks.len(), b.asks[0].remaining, b.asks[0].price), (1, 16, 5), "{b:#?}");
    buyer.place_offer(OfferRequest { side: Side::Buy, unit: unit.clone(), amount: 16, min: None, sats_per_lot: 5, sat_mints: vec![], ttl_secs: Some(600) }).await.unwrap();
    for _ in 0..240 {
        let t = buyer.trades().await.unwrap();
        if t.len() == 1 && t[0].step.is_final() {
            assert_eq!(t[0].step, Step::Settled, "{:?}", t[0].note);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(bw.balance_at(m.pool.mint_url(), &unit).await.unwrap(), 16);
    // the miner's wallet: 10 sats in, 4 ehash kept, nothing offered twice
    let (mnemonic, _) = seed::load_or_create(&dir.path().join("wallet")).unwrap();
    let mw = MinerWallet::open(&dir.path().join("wallet").join("wallet.sqlite"), m.pool.mint_url(), seed::seed_of(&mnemonic)).await.unwrap();
    let mut sats = 0;
    for _ in 0..120 {
        sats = mw.balance_at(&m.sat_url, "sat").await.unwrap();
        if sats == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(sats, 10);
    assert_eq!(mw.balance_at(m.pool.mint_url(), &unit).await.unwrap(), CREDIT);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b: ehash_protocol::api::Book =
        bitreq::get(format!("{}/api/markets/{market}/book", ex.url())).send_async().await.unwrap().json().unwrap();
    assert!(b.asks.is_empty(), "the kept ehash is never offered: {b:#?}");
    cancel.cancel();
    proxy.shutdown();
    ex.shutdown().await;
    m.shutdown().await;
}
