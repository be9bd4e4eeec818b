//! Who may announce a market (protocol §9). With no `[exchange].pools`, an epoch announcement
//! (kind 38180) is accepted only from the key its mint names as its pool (`GET
//! {mint}/v1/ehash/epochs` → `pool_pubkey`, the key wallets check announcements against too),
//! so nobody can re-sign a real pool's keyset and take its market.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cdk::mint_url::MintUrl;
use nostr_sdk::prelude::PublicKey;
use serde::Deserialize;

use crate::reach;

/// Largest answer read from a mint's epoch list.
const MAX_EPOCHS_BODY: usize = 8 << 20;
/// Seconds the exchange waits for it.
const TIMEOUT_SECS: u64 = 10;
/// A mint that could not be asked is asked again after this long, not before.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// Mints asked at once (each answer may take [`MAX_EPOCHS_BODY`] of memory).
const CONCURRENT: usize = 2;

#[derive(Deserialize)]
struct PoolEpochs {
    pool_pubkey: String,
}

/// The pool key each mint names, as learned.
#[derive(Debug)]
pub(crate) struct Authorities {
    known: Mutex<HashMap<String, PublicKey>>,
    failed: Mutex<HashMap<String, Instant>>,
    permits: tokio::sync::Semaphore,
}

impl Default for Authorities {
    fn default() -> Self {
        Self { known: Mutex::default(), failed: Mutex::default(), permits: tokio::sync::Semaphore::new(CONCURRENT) }
    }
}

impl Authorities {
    /// The pool key the mint at `mint_url` names, asked once (without any lock held) and then
    /// remembered. `Err` says why it is not known (the mint cannot be reached, or may not be).
    pub(crate) async fn pool_of(&self, mint_url: &str, private_ok: bool) -> Result<PublicKey, String> {
        let key = mint_url.trim_end_matches('/').to_owned();
        if let Some(k) = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(*k);
        }
        if let Some(why) = reach::address_refusal(mint_url, private_ok) {
            return Err(why);
        }
        if self.failed.lock().unwrap_or_else(|p| p.into_inner()).get(&key).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return Err(format!("{key} could not be asked for its pool key a moment ago; asking again later"));
        }
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        let r = self.ask(&key).await;
        if r.is_err() {
            self.failed.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), Instant::now());
        }
        let pool = r?;
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(key, pool);
        Ok(pool)
    }

    /// Ask the mint at `key` (a URL without a trailing slash) for its pool key.
    async fn ask(&self, key: &str) -> Result<PublicKey, String> {
        // the URL as the address rules read it (reach::address_refusal)
        let url = MintUrl::from_str(key).and_then(|m| m.join_paths(&["v1", "ehash", "epochs"])).map_err(|e| format!("{key} is not a mint URL: {e}"))?.to_string();
        let resp = bitreq::get(url.as_str())
            .with_timeout(TIMEOUT_SECS)
            .with_max_redirects(0)
            .with_max_body_size(Some(MAX_EPOCHS_BODY))
            .send_async()
            .await
            .map_err(|e| format!("cannot ask {url} for the mint's pool key: {e}"))?;
        if resp.status_code != 200 {
            return Err(format!("{url} answered HTTP {} (is it an ehash pool mint?)", resp.status_code));
        }
        let epochs: PoolEpochs = resp.json().map_err(|e| format!("{url} names no pool key: {e}"))?;
        PublicKey::parse(&epochs.pool_pubkey).map_err(|e| format!("{url} names an unreadable pool key: {e}"))
    }
}
