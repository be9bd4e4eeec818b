//! Nostr announcements: the NIP-87 mint announcement and one epoch/keyset announcement per
//! epoch, signed by the pool's key.
//!
//! Announcing only writes the signed event to the outbox (`ehash-outbox`, in the ledger's
//! database, with `created_at` strictly greater than the address's previous version); a
//! background task delivers every outbox event to every configured relay and records each
//! relay's acknowledgement. A relay that is down or refuses an event is retried until it accepts
//! the current version; nothing on the share path ever waits for a relay.

use cdk::mint::Mint;
use cdk::nuts::{CurrencyUnit, MintInfo};
use ehash_protocol::events::{EpochAnnouncement, KIND_EPOCH_ANNOUNCEMENT, KIND_MINT_ANNOUNCEMENT, MintAnnouncement};
use nostr_sdk::prelude::*;
use std::sync::Arc;

use ehash_protocol::epoch::{EpochState, hashprice};
use ehash_stratum::Template;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use ehash_outbox::Outbox;

use crate::ledger::EpochRecord;
use crate::mint::MintHandle;

/// The NUTs a mint serves, as its NUT-06 info (`GET /v1/info`) advertises them: the base NUTs
/// every mint serves (00–03, and 06 itself), each listed NUT the info marks as supported, NUT-04
/// and NUT-05 when not disabled, NUT-15, 17 and 19 when they list methods, subscriptions or
/// cached endpoints, and NUT-21, 22 and 29 when present; in increasing order. This is the
/// NIP-87 `nuts` tag of the mint announcement, so the two never disagree.
pub fn served_nuts(info: &MintInfo) -> Vec<u16> {
    let n = &info.nuts;
    let listed = [
        (4, !n.nut04.disabled && !n.nut04.methods.is_empty()),
        (5, !n.nut05.disabled && !n.nut05.methods.is_empty()),
        (7, n.nut07.supported),
        (8, n.nut08.supported),
        (9, n.nut09.supported),
        (10, n.nut10.supported),
        (11, n.nut11.supported),
        (12, n.nut12.supported),
        (14, n.nut14.supported),
        (15, !n.nut15.methods.is_empty()),
        (17, !n.nut17.supported.is_empty()),
        (19, !n.nut19.cached_endpoints.is_empty()),
        (20, n.nut20.supported),
        (21, n.nut21.is_some()),
        (22, n.nut22.is_some()),
        (29, !n.nut29.is_empty()),
    ];
    let mut out = vec![0, 1, 2, 3, 6];
    out.extend(listed.into_iter().filter(|(_, on)| *on).map(|(nut, _)| nut));
    out.sort_unstable();
    out
}

/// What the announcements say of the chain the pool mines.
#[derive(Debug)]
pub struct ChainFacts {
    /// The NIP-87 network name.
    pub network: String,
    /// The job source's templates (the hashprice follows the current one).
    pub templates: watch::Receiver<Arc<Template>>,
    /// The pool's fee, parts per million of a block's reward.
    pub pool_fee_ppm: u32,
}

/// Builds, signs and queues announcements.
#[derive(Clone)]
pub struct Announcer {
    keys: Keys,
    outbox: Outbox,
    mint_url: String,
    network: String,
    metadata: serde_json::Value,
    unit_log2: u32,
    templates: watch::Receiver<Arc<Template>>,
    pool_fee_ppm: u32,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer").field("pubkey", &self.keys.public_key()).finish_non_exhaustive()
    }
}

impl Announcer {
    /// An announcer signing with `keys`; epochs are announced with the pool's unit size
    /// (`2^unit_log2` hashes per ehash), the chain `network`, and the active epoch's hashprice
    /// from the job source's current template and the pool's fee.
    pub fn new(keys: Keys, outbox: Outbox, mint_url: String, metadata: serde_json::Value, unit_log2: u32, chain: ChainFacts) -> Self {
        let ChainFacts { network, templates, pool_fee_ppm } = chain;
        Self { keys, outbox, mint_url, network, metadata, unit_log2, templates, pool_fee_ppm }
    }

    /// Expected sats per ehash of work on the current template (protocol §2, "Hashprice");
    /// `None` when the job source does not say what its coinbase pays.
    pub fn hashprice(&self) -> Option<f64> {
        let t = self.templates.borrow();
        (t.coinbase_value > 0).then(|| hashprice(t.job.nbits, t.coinbase_value, self.pool_fee_ppm, self.unit_log2))
    }

    /// The chain the pool mines (NIP-87 `n`).
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The pool's nostr public key.
    pub fn public_key(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// Address (`kind:pubkey:d`) of the mint announcement for `mint_pubkey`.
    pub fn mint_address(&self, mint_pubkey: &str) -> String {
        format!("{KIND_MINT_ANNOUNCEMENT}:{}:{mint_pubkey}", self.keys.public_key().to_hex())
    }

    async fn mint_pubkey(mint: &Mint) -> Result<String> {
        mint.mint_info()
            .await?
            .pubkey
            .map(|p| p.to_hex())
            .ok_or_else(|| Error::Inconsistent("the mint has no public key".into()))
    }

    /// Queue the mint announcement (if it changed).
    pub async fn announce_mint(&self, mint: &Mint) -> Result<()> {
        let mint_pubkey = Self::mint_pubkey(mint).await?;
        let a = MintAnnouncement {
            mint_pubkey: mint_pubkey.clone(),
            urls: vec![self.mint_url.clone()],
            nuts: served_nuts(&mint.mint_info().await?),
            network: self.network.clone(),
            metadata: Some(self.metadata.clone()),
        };
        self.publish(self.mint_address(&mint_pubkey), a.to_builder()).await
    }

    /// Queue the announcement of one epoch's state and keyset (if it changed).
    pub async fn announce_epoch(&self, handle: &MintHandle, epoch: &EpochRecord) -> Result<()> {
        let mint = handle.mint();
        let unit = CurrencyUnit::custom(&epoch.unit);
        let id = *mint
            .get_active_keysets()
            .get(&unit)
            .ok_or_else(|| Error::Inconsistent(format!("no keyset for {}", epoch.unit)))?;
        let keyset = mint
            .keyset_pubkeys(&id)?
            .keysets
            .into_iter()
            .next()
            .ok_or_else(|| Error::Inconsistent(format!("keyset {id} has no keys")))?;
        let mint_pubkey = Self::mint_pubkey(&mint).await?;
        let a = EpochAnnouncement {
            keyset: cdk::nuts::KeySet { active: None, ..keyset },
            mint_url: self.mint_url.clone(),
            epoch: epoch.epoch,
            state: epoch.state,
            start: epoch.started_at,
            end: epoch.ended_at,
            issued: epoch.issued,
            shares: epoch.shares,
            reason: epoch.close_reason,
            block_hash: epoch.block_hash.clone(),
            log_root: epoch.log_root.clone(),
            unit_log2: Some(self.unit_log2),
            height: epoch.block_height,
            payout: epoch.payout,
            expires: epoch.expires_at,
            mint_address: Some(self.mint_address(&mint_pubkey)),
            network: Some(self.network.clone()),
            hashprice: if epoch.state == EpochState::Active { self.hashprice() } else { None },
            owner_proof: Some(handle.owner_proof(&id, &self.keys.public_key()).await?),
        };
        let address = format!("{KIND_EPOCH_ANNOUNCEMENT}:{}:{id}", self.keys.public_key().to_hex());
        self.publish(address, a.to_builder()).await
    }

    /// Queue the new version of `address` (unless unchanged) in the outbox.
    async fn publish(&self, address: String, builder: EventBuilder) -> Result<()> {
        self.outbox
            .publish_addressable(&address, builder, &self.keys)
            .await
            .map_err(|e| Error::Inconsistent(format!("announcement outbox: {e}")))?;
        Ok(())
    }

    /// Deliver the outbox to `relays` until `cancel` fires.
    pub fn spawn_delivery(&self, relays: Vec<String>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        self.outbox.spawn_delivery(relays, cancel)
    }
}
