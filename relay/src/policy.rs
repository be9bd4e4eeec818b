//! The market's write and query policies, run by the relay for every EVENT and REQ.
//!
//! Writes: an allow-list of kinds; pool announcements only from configured pool keys and trade
//! events only from configured exchange keys; every ehash event validated against its schema
//! in `ehash-protocol` (refused with `invalid: <field>: <reason>`); events dated further ahead
//! than the allowed clock skew refused; a replaceable event older than the stored one answered
//! `duplicate:`; expirations recorded so expired events can be purged from disk. Queries: filters with absurd numbers of values are
//! refused, oversized limits lowered.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use ehash_protocol::events::{KIND_EPOCH_ANNOUNCEMENT, KIND_MINT_ANNOUNCEMENT, KIND_OFFER, KIND_SETTLEMENT, KIND_TRADE};
use nostr_sdk::prelude::*;

use crate::expiry::ExpiryIndex;

/// NIP-87 mint recommendation.
pub const KIND_MINT_RECOMMENDATION: u16 = 38000;
/// NIP-60 wallet, token, history and quote events: served only to their authenticated author.
pub const OWNER_ONLY_KINDS: [u16; 4] = [17375, 7375, 7376, 7374];
/// NIP-59 gift wraps: served only to their authenticated recipient (`p` tag).
pub const RECIPIENT_ONLY_KINDS: [u16; 1] = [1059];

/// The built-in allow-list: profiles, relay lists, NIP-09 deletions, NIP-17/59 messaging,
/// NIP-60/61 wallets and nutzaps, NIP-87 mint discovery, and the ehash kinds.
pub fn default_kinds() -> HashSet<u16> {
    let mut k: HashSet<u16> = [
        0,     // profile
        5,     // NIP-09 deletion
        1059,  // NIP-59 gift wrap
        10002, // NIP-65 relay list
        10050, // NIP-17 DM relays
        17375, 7375, 7376, 7374, // NIP-60 wallet
        10019, 9321, // NIP-61 nutzaps
        KIND_MINT_RECOMMENDATION,
        KIND_MINT_ANNOUNCEMENT,
        KIND_EPOCH_ANNOUNCEMENT,
        KIND_OFFER,
        KIND_TRADE,
        KIND_SETTLEMENT,
    ]
    .into_iter()
    .collect();
    k.shrink_to_fit();
    k
}

/// Parse a list of keys given as hex or npub.
pub fn parse_keys(keys: &[String], what: &str) -> Result<HashSet<PublicKey>, String> {
    keys.iter()
        .map(|k| PublicKey::parse(k.trim()).map_err(|e| format!("{what}: {k:?} is not a nostr public key ({e})")))
        .collect()
}

/// The write policy.
#[derive(Debug, Clone)]
pub struct MarketWritePolicy {
    /// Accepted kinds.
    pub kinds: HashSet<u16>,
    /// Keys that may publish pool announcements.
    pub pool_keys: HashSet<PublicKey>,
    /// Keys that may publish trade events.
    pub exchange_keys: HashSet<PublicKey>,
    /// Seconds an event may be dated ahead of the relay's clock.
    pub max_future_secs: u64,
    /// Where expirations are recorded.
    pub expiry: Arc<ExpiryIndex>,
    /// The event store (to compare a replaceable event with the stored one).
    pub db: Arc<dyn NostrDatabase>,
}

impl MarketWritePolicy {
    /// Decide on one event (synchronous part).
    pub fn check(&self, event: &Event) -> Result<(), (MachineReadablePrefix, String)> {
        let kind = event.kind.as_u16();
        if !self.kinds.contains(&kind) {
            return Err((MachineReadablePrefix::Blocked, format!("kind {kind} is not accepted by this relay")));
        }
        let restricted = match kind {
            KIND_MINT_ANNOUNCEMENT | KIND_EPOCH_ANNOUNCEMENT => Some((&self.pool_keys, "pool_keys")),
            KIND_TRADE => Some((&self.exchange_keys, "exchange_keys")),
            _ => None,
        };
        if let Some((allowed, setting)) = restricted
            && !allowed.contains(&event.pubkey) {
                return Err((
                    MachineReadablePrefix::Restricted,
                    format!("kind {kind} is accepted only from this relay's configured {setting}"),
                ));
            }
        let ahead = event.created_at.as_secs().saturating_sub(Timestamp::now().as_secs());
        if ahead > self.max_future_secs {
            return Err((
                MachineReadablePrefix::Invalid,
                format!("created_at is {ahead} s in the future; this relay accepts at most {} s of clock skew", self.max_future_secs),
            ));
        }
        if let Err(e) = ehash_protocol::events::validate(event) {
            return Err((MachineReadablePrefix::Invalid, e.to_string()));
        }
        Ok(())
    }

    /// A replaceable or addressable event that the stored one supersedes (NIP-01: the newer
    /// `created_at`, then the lower id, wins).
    async fn superseded(&self, event: &Event) -> Result<Option<Timestamp>, String> {
        let mut filter = Filter::new().kind(event.kind).author(event.pubkey).limit(1);
        if event.kind.is_addressable() {
            filter = filter.identifier(event.tags.identifier().unwrap_or_default());
        } else if !event.kind.is_replaceable() {
            return Ok(None);
        }
        let stored = self.db.query(filter).await.map_err(|e| e.to_string())?;
        Ok(stored
            .iter()
            .max_by_key(|s| (s.created_at, std::cmp::Reverse(s.id)))
            .filter(|s| s.id != event.id && (s.created_at, std::cmp::Reverse(s.id)) > (event.created_at, std::cmp::Reverse(event.id)))
            .map(|s| s.created_at))
    }
}

impl WritePolicy for MarketWritePolicy {
    fn admit_event<'a>(&'a self, event: &'a Event, _addr: &'a SocketAddr) -> Pin<Box<dyn Future<Output = WritePolicyResult> + Send + 'a>> {
        Box::pin(async move {
            if let Err((prefix, message)) = self.check(event) {
                return WritePolicyResult::reject(prefix, message);
            }
            match self.superseded(event).await {
                Ok(None) => {}
                Ok(Some(at)) => {
                    return WritePolicyResult::reject(
                        MachineReadablePrefix::Duplicate,
                        format!("a newer version of this replaceable event is stored (created_at {})", at.as_secs()),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the stored version of a replaceable event");
                    return WritePolicyResult::reject(MachineReadablePrefix::Error, "could not read the stored version of this event; try again");
                }
            }
            if let Some(exp) = event.tags.expiration()
                && let Err(e) = self.expiry.record(&event.id, exp.as_secs()).await {
                    tracing::warn!(error = %e, "cannot record an expiration; refusing the event so it cannot outlive it");
                    return WritePolicyResult::reject(MachineReadablePrefix::Error, "could not record the event's expiration; try again");
                }
            WritePolicyResult::Accept
        })
    }
}

/// The query policy: bounded filters.
#[derive(Debug)]
pub struct MarketQueryPolicy {
    /// Most values in any one filter field.
    pub max_filter_values: usize,
    /// Largest limit honoured.
    pub max_limit: usize,
}

impl MarketQueryPolicy {
    /// Check and normalise a filter.
    pub fn check(&self, f: &mut Filter) -> Result<(), String> {
        let counts = [
            ("ids", f.ids.as_ref().map_or(0, |s| s.len())),
            ("authors", f.authors.as_ref().map_or(0, |s| s.len())),
            ("kinds", f.kinds.as_ref().map_or(0, |s| s.len())),
        ];
        for (field, n) in counts {
            if n > self.max_filter_values {
                return Err(format!("filter has {n} {field}; at most {} are allowed", self.max_filter_values));
            }
        }
        for (tag, values) in f.generic_tags.iter() {
            if values.len() > self.max_filter_values {
                return Err(format!("filter has {} #{tag} values; at most {} are allowed", values.len(), self.max_filter_values));
            }
        }
        if f.limit.is_none_or(|l| l > self.max_limit) {
            f.limit = Some(self.max_limit);
        }
        Ok(())
    }
}

impl QueryPolicy for MarketQueryPolicy {
    fn admit_query<'a>(&'a self, query: &'a mut Filter, _addr: &'a SocketAddr) -> Pin<Box<dyn Future<Output = QueryPolicyResult> + Send + 'a>> {
        Box::pin(async move {
            match self.check(query) {
                Ok(()) => QueryPolicyResult::Accept,
                Err(m) => QueryPolicyResult::reject(MachineReadablePrefix::Invalid, m),
            }
        })
    }
}
