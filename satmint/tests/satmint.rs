//! The development sat mint over HTTP: a cdk wallet buys sats with a bolt11 quote that the
//! fake Lightning backend pays, swaps them paying the configured input fee, and the mint keeps
//! its keyset and balances across a restart on the same port.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use cdk::amount::SplitTarget;
use cdk::nuts::{CurrencyUnit, MintQuoteState, PaymentMethod};
use cdk::wallet::{SendOptions, Wallet, WalletBuilder};
use ehash_satmint::{Config, SatMint};

async fn wallet(url: &str) -> Wallet {
    let store = Arc::new(cdk_sqlite::wallet::memory::empty().await.unwrap());
    WalletBuilder::new().mint_url(url.parse().unwrap()).unit(CurrencyUnit::Sat).localstore(store).seed([5; 64]).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sats_are_bought_swapped_with_fees_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), listen: "127.0.0.1:0".parse().unwrap(), input_fee_ppk: 100, ..Default::default() };
    let mint = SatMint::start(&config).await.unwrap();
    let url = mint.url().to_owned();
    let w = wallet(&url).await;
    let q = w.mint_quote(PaymentMethod::BOLT11, Some(100.into()), None, None).await.unwrap();
    assert!(q.request.starts_with("lnbc"), "a bolt11 invoice: {}", q.request);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while w.check_mint_quote_status(&q.id).await.unwrap().state != MintQuoteState::Paid {
        assert!(tokio::time::Instant::now() < deadline, "the fake invoice was never paid");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.mint(&q.id, SplitTarget::default(), None).await.unwrap();
    assert_eq!(w.total_balance().await.unwrap().to_u64(), 100);
    let keysets = w.keysets(cdk_common::wallet::KeysetLoadPolicy::Refresh).await.unwrap();
    let sat = keysets.iter().find(|k| k.unit == CurrencyUnit::Sat && k.active == Some(true)).unwrap();
    assert_eq!(sat.input_fee_ppk, 100);
    // a send that needs a swap pays the input fee
    let prepared = w.prepare_send(30.into(), SendOptions::default()).await.unwrap();
    let fee = prepared.fee().to_u64();
    prepared.confirm(None).await.unwrap();
    assert_eq!(w.total_balance().await.unwrap().to_u64(), 100 - 30 - fee);

    mint.shutdown().await;
    assert!(w.check_mint_quote_status(&q.id).await.is_err(), "the mint is down");
    let config = Config { listen: url.trim_start_matches("http://").parse().unwrap(), ..config };
    let again = SatMint::start(&config).await.unwrap();
    let keysets2 = w.keysets(cdk_common::wallet::KeysetLoadPolicy::Refresh).await.unwrap();
    assert!(keysets2.iter().any(|k| k.id == sat.id && k.active == Some(true)), "the keyset survives the restart");
    let prepared = w.prepare_send(10.into(), SendOptions::default()).await.unwrap();
    prepared.confirm(None).await.unwrap();
    again.shutdown().await;
}
