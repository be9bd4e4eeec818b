//! Who may announce a market (protocol §9). With no `[exchange].pools`, an epoch announcement
//! (kind 38180) is accepted only from the key its mint names as its pool (`GET
//! {mint}/v1/ehash/epochs` → `pool_pubkey`, the key wallets check announcements against too),
//! so nobody can re-sign a real pool's keyset and take its market.

use std::collections::HashMap;
use std::sync::Mutex;

use nostr_sdk::prelude::PublicKey;
use serde::Deserialize;

use crate::reach;

/// Largest answer read from a mint's epoch list.
const MAX_EPOCHS_BODY: usize = 8 << 20;
/// Seconds the exchange waits for it.
const TIMEOUT_SECS: u64 = 10;

#[derive(Deserialize)]
struct PoolEpochs {
    pool_pubkey: String,
}

/// The pool key each mint names, as learned.
#[derive(Debug, Default)]
pub(crate) struct Authorities {
    known: Mutex<HashMap<String, PublicKey>>,
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
        let url = format!("{key}/v1/ehash/epochs");
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
        let pool = PublicKey::parse(&epochs.pool_pubkey).map_err(|e| format!("{url} names an unreadable pool key: {e}"))?;
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(key, pool);
        Ok(pool)
    }
}
