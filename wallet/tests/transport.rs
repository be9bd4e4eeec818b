//! A mint is someone else's server: the wallet's mint client gives up on one that never answers
//! or answers without end, and leaves alone one that asked for a pause (Retry-After).
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ehash_testkit::front::{Fault, Front};
use ehash_wallet::MinerWallet;
use ehash_wallet::transport::{MAX_BODY, TIMEOUT};

/// A front with nothing behind it: every request gets the fault it is given.
async fn front() -> Front {
    Front::start("127.0.0.1:9").await
}

/// A wallet (its pool mint is never asked) and the mint behind `f` as a sat mint of it.
struct Client {
    _dir: tempfile::TempDir,
    wallet: MinerWallet,
    mint: String,
}

impl Client {
    async fn new(f: &Front) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wallet = MinerWallet::open(&dir.path().join("wallet.sqlite"), "http://127.0.0.1:9", [3; 64]).await.unwrap();
        Self { _dir: dir, wallet, mint: f.url() }
    }

    /// Open the wallet at the mint (it reads the mint's keysets).
    async fn get_mint_keysets(&self) -> Result<(), ehash_wallet::Error> {
        self.wallet.wallet_at(&self.mint, "sat").await.map(|_| ())
    }
}

#[tokio::test]
async fn an_endless_answer_is_cut_off_at_the_size_cap() {
    let f = front().await;
    f.fail("/v1/", None, 0, Fault::EndlessBody);
    let client = Client::new(&f).await;
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), client.get_mint_keysets()).await.expect("the client gives up by itself");
    let e = r.expect_err("an endless answer is an error").to_string();
    assert!(e.contains(&format!("more than {} MiB", MAX_BODY >> 20)), "{e}");
    assert!(started.elapsed() <= TIMEOUT + Duration::from_secs(2), "cut off within the call's deadline: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_mint_that_never_answers_times_out() {
    let f = front().await;
    f.fail("/v1/", None, 0, Fault::Hang);
    let client = Client::new(&f).await;
    let r = tokio::time::timeout(TIMEOUT + Duration::from_secs(20), client.get_mint_keysets()).await.expect("the client gives up by itself");
    let e = r.expect_err("no answer is an error").to_string();
    assert!(e.to_lowercase().contains("timeout"), "{e}");
}

#[tokio::test]
async fn retry_after_is_honoured_without_calling_the_mint_again() {
    let f = front().await;
    f.fail("/v1/", None, 1, Fault::Status { code: 429, body: r#"{"detail":"Rate limit exceeded."}"#.into(), retry_after: Some(3) });
        let client = Client::new(&f).await;
    let e = client.get_mint_keysets().await.expect_err("rate limited").to_string();
    assert!(e.contains("429"), "{e}");
    let started = Instant::now();
    // asked again at once: refused here, the mint is not called
    let e = client.get_mint_keysets().await.expect_err("still within Retry-After").to_string();
    assert!(e.contains("Retry-After") && e.contains("429"), "{e}");
    assert_eq!(f.seen("/v1/").len(), 1, "the mint was left alone");
    // once the pause is over the mint is asked again
    while f.seen("/v1/").len() < 2 && started.elapsed() < Duration::from_secs(10) {
        let _ = client.get_mint_keysets().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(f.seen("/v1/").len(), 2, "asked again after the pause");
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the pause was over: {:?}", started.elapsed());
}
