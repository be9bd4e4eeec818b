//! The keysets a pool announced on nostr (kind 38180), used to check received ehash without
//! trusting the mint's own answer about its keys: its keyset must be announced, and the NUT-12
//! DLEQ proofs it carries must verify against the announced keys.

use std::collections::HashMap;
use std::time::Duration;

use cdk::nuts::{Id, Keys, Proofs};
use ehash_protocol::events::{EpochAnnouncement, KIND_EPOCH_ANNOUNCEMENT};
use nostr_sdk::prelude::*;

use crate::{Error, Result};

/// Every valid epoch announcement `pool` made for `mint_url` on `relays` (signature, schema and
/// NUT-02 keyset id checked), the newest version of each.
pub async fn fetch_epochs(relays: &[String], pool: &str, mint_url: &str) -> Result<Vec<EpochAnnouncement>> {
    let pool = PublicKey::parse(pool).map_err(|e| Error::Nostr(format!("pool key {pool:?}: {e}")))?;
    let client = Client::default();
    for r in relays {
        client.add_relay(r.as_str()).await.map_err(|e| Error::Nostr(format!("relay {r}: {e}")))?;
    }
    client.connect().and_wait(Duration::from_secs(5)).await;
    let events = client
        .fetch_events(Filter::new().author(pool).kind(Kind::Custom(KIND_EPOCH_ANNOUNCEMENT)))
        .timeout(Duration::from_secs(10))
        .await
        .map_err(|e| Error::Nostr(format!("fetching announcements: {e}")));
    client.shutdown().await;
    let mut newest: HashMap<Id, (u64, EpochAnnouncement)> = HashMap::new();
    for ev in events? {
        if ev.verify().is_err() {
            continue;
        }
        let Ok(a) = EpochAnnouncement::parse(&ev) else { continue };
        if a.mint_url.trim_end_matches('/') != mint_url.trim_end_matches('/') {
            continue;
        }
        let t = ev.created_at.as_secs();
        if newest.get(&a.keyset.id).is_none_or(|(old, _)| *old < t) {
            newest.insert(a.keyset.id, (t, a));
        }
    }
    let mut out: Vec<EpochAnnouncement> = newest.into_values().map(|(_, a)| a).collect();
    out.sort_by_key(|a| a.epoch);
    Ok(out)
}

/// Keysets announced by a pool for one mint URL.
#[derive(Debug, Clone, Default)]
pub struct AnnouncedKeysets {
    keys: HashMap<Id, Keys>,
}

impl AnnouncedKeysets {
    /// Fetch the pool's epoch announcements for `mint_url` from `relays`. Each announcement is
    /// validated (signature, schema, keyset id derived from its keys).
    pub async fn fetch(relays: &[String], pool: &str, mint_url: &str) -> Result<Self> {
        let mut out = Self::default();
        for a in fetch_epochs(relays, pool, mint_url).await? {
            out.keys.insert(a.keyset.id, a.keyset.keys);
        }
        Ok(out)
    }

    /// Number of keysets known.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether none are known.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Check every proof against the pool's announcements: its keyset must be one the pool
    /// announced, with a key for its amount, and a DLEQ proof it carries must verify against
    /// that key. A proof without a DLEQ proof passes (NUT-12 makes it optional, and many wallets
    /// leave it out): the swap that receives it is what proves the mint signed it.
    pub fn verify(&self, proofs: &Proofs) -> Result<()> {
        for p in proofs {
            let bad = |reason: String| Error::BadDleq { keyset: p.keyset_id.to_string(), amount: p.amount.to_u64(), reason };
            let keys = self.keys.get(&p.keyset_id).ok_or_else(|| bad("the pool announced no such keyset".into()))?;
            let key = keys.amount_key(p.amount).ok_or_else(|| bad("the keyset has no key for this amount".into()))?;
            if p.dleq.is_some() {
                p.verify_dleq(key).map_err(|e| bad(e.to_string()))?;
            }
        }
        Ok(())
    }
}
