//! Nostr announcements: the NIP-87 mint announcement and one epoch/keyset announcement per
//! epoch, signed by the pool's key.
//!
//! Announcing only writes the signed event to the ledger's outbox (with `created_at` strictly
//! greater than the address's previous version); a background task delivers every outbox event
//! to every configured relay and records each relay's acknowledgement. A relay that is down or
//! refuses an event is retried until it accepts the current version; nothing on the share path
//! ever waits for a relay.

use std::sync::Arc;
use std::time::Duration;

use cdk::mint::Mint;
use cdk::nuts::CurrencyUnit;
use ehash_protocol::events::{EpochAnnouncement, KIND_EPOCH_ANNOUNCEMENT, KIND_MINT_ANNOUNCEMENT, MintAnnouncement};
use nostr_sdk::prelude::*;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::ledger::{EpochRecord, Ledger, StoredAnnouncement};
use crate::mint::MintHandle;

/// How long to wait before retrying relays that failed.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// NUTs the pool mint supports (NUT-05 melting is not offered for ehash).
pub const SUPPORTED_NUTS: [u16; 14] = [0, 1, 2, 3, 4, 6, 7, 9, 10, 11, 12, 14, 17, 20];

/// Builds, signs and queues announcements.
#[derive(Clone)]
pub struct Announcer {
    keys: Keys,
    ledger: Ledger,
    mint_url: String,
    network: String,
    metadata: serde_json::Value,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer").field("pubkey", &self.keys.public_key()).finish_non_exhaustive()
    }
}

impl Announcer {
    /// An announcer signing with `keys`.
    pub fn new(keys: Keys, ledger: Ledger, mint_url: String, network: String, metadata: serde_json::Value) -> Self {
        Self { keys, ledger, mint_url, network, metadata, wake: Arc::new(Notify::new()) }
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
            nuts: SUPPORTED_NUTS.to_vec(),
            network: self.network.clone(),
            metadata: Some(self.metadata.clone()),
        };
        self.publish(self.mint_address(&mint_pubkey), a.to_builder()).await
    }

    /// Queue the announcement of one epoch's state and keyset (if it changed).
    pub async fn announce_epoch(&self, mint: &MintHandle, epoch: &EpochRecord) -> Result<()> {
        let mint = mint.mint();
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
            mint_address: Some(self.mint_address(&mint_pubkey)),
        };
        let address = format!("{KIND_EPOCH_ANNOUNCEMENT}:{}:{id}", self.keys.public_key().to_hex());
        self.publish(address, a.to_builder()).await
    }

    /// Sign `builder` with a `created_at` above the address's previous version and queue it,
    /// unless the stored version already has the same content and tags.
    async fn publish(&self, address: String, builder: EventBuilder) -> Result<()> {
        let stored = self.ledger.announcements().await?.into_iter().find(|a| a.address == address);
        let unsigned = builder.clone().finalize_unsigned(self.keys.public_key());
        let mut created_at = Timestamp::now().as_secs();
        if let Some(prev) = &stored {
            if let Ok(prev_ev) = Event::from_json(&prev.event_json)
                && prev_ev.content == unsigned.content && prev_ev.tags == unsigned.tags {
                    return Ok(());
                }
            created_at = created_at.max(prev.created_at + 1);
        }
        let event = builder
            .custom_created_at(Timestamp::from_secs(created_at))
            .finalize(&self.keys)
            .map_err(|e| Error::Inconsistent(format!("signing announcement: {e}")))?;
        self.ledger
            .save_announcement(&StoredAnnouncement {
                address,
                event_id: event.id.to_hex(),
                event_json: event.as_json(),
                created_at,
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Deliver the outbox to `relays` until `cancel` fires.
    pub fn spawn_delivery(&self, relays: Vec<String>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let ledger = self.ledger.clone();
        let wake = self.wake.clone();
        tokio::spawn(async move {
            if relays.is_empty() {
                return;
            }
            let client = Client::default();
            let mut urls = Vec::new();
            for r in &relays {
                match RelayUrl::parse(r) {
                    Ok(u) => {
                        if let Err(e) = client.add_relay(&u).await {
                            tracing::warn!(relay = %r, error = %e, "cannot add relay");
                        }
                        urls.push(u);
                    }
                    Err(e) => tracing::warn!(relay = %r, error = %e, "ignoring relay with an invalid URL"),
                }
            }
            client.connect().await;
            loop {
                let mut pending = false;
                for url in &urls {
                    match deliver_to(&client, &ledger, url).await {
                        Ok(all) => pending |= !all,
                        Err(e) => {
                            pending = true;
                            tracing::warn!(relay = %url, error = %e, "announcement delivery");
                        }
                    }
                }
                let wait = if pending { RETRY_INTERVAL } else { Duration::from_secs(300) };
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            client.shutdown().await;
        })
    }
}

/// Send every announcement the relay has not acknowledged in its current version.
/// Returns whether the relay is up to date.
async fn deliver_to(client: &Client, ledger: &Ledger, url: &RelayUrl) -> Result<bool> {
    let relay = url.to_string();
    let delivered = ledger.deliveries(&relay).await?;
    let mut all = true;
    for a in ledger.announcements().await? {
        if delivered.get(&a.address) == Some(&a.event_id) {
            continue;
        }
        let event = Event::from_json(&a.event_json).map_err(|e| Error::Inconsistent(format!("stored announcement: {e}")))?;
        match client
            .send_event(&event)
            .to([url])
            .save_into_database(false)
            .ok_timeout(Duration::from_secs(5))
            .await
        {
            Ok(out) if out.success.contains_key(url) => {
                ledger.mark_delivered(&a.address, &relay, &a.event_id).await?;
                tracing::debug!(relay = %relay, address = %a.address, "announcement delivered");
            }
            Ok(out) => {
                all = false;
                let why = out.failed.get(url).cloned().unwrap_or_else(|| "no answer".into());
                tracing::warn!(relay = %relay, address = %a.address, reason = %why, "relay did not accept the announcement; will retry");
            }
            Err(e) => {
                all = false;
                tracing::debug!(relay = %relay, error = %e, "relay unreachable; will retry");
                break;
            }
        }
    }
    Ok(all)
}
