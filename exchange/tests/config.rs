//! Starting the exchange with settings that cannot work fails with an error naming the setting
//! and the fix.
#![allow(missing_docs, clippy::unwrap_used)]

use ehash_exchange::{Config, Exchange};

fn config(dir: &std::path::Path, lot: u64) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        relays: vec!["ws://127.0.0.1:9".into()],
        lot,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_lot_or_a_bad_pool_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ex = Exchange::start(config(dir.path(), 4)).await.unwrap();
    assert_eq!(ex.info().lot, 4);
    ex.shutdown().await;
    let e = Exchange::start(config(dir.path(), 8)).await.unwrap_err().to_string();
    assert!(e.contains("per lot of 4") && e.contains("--lot 4"), "{e}");
    // the same lot starts again
    Exchange::start(config(dir.path(), 4)).await.unwrap().shutdown().await;

    let other = tempfile::tempdir().unwrap();
    let e = Exchange::start(Config { pools: vec!["npub1nonsense".into()], ..config(other.path(), 4) }).await.unwrap_err().to_string();
    assert!(e.contains("pools") && e.contains("npub1nonsense"), "{e}");
    let e = Exchange::start(Config { relays: vec![], ..config(other.path(), 4) }).await.unwrap_err().to_string();
    assert!(e.contains("relay"), "{e}");
    let e = Exchange::start(Config { lot: 0, ..config(other.path(), 4) }).await.unwrap_err().to_string();
    assert!(e.contains("lot"), "{e}");
}
