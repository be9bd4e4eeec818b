//! NIP-60: the wallet's state on nostr, NIP-44-encrypted to the user's own key, so the nostr key
//! alone restores the balance on a fresh machine.
//!
//! - kind 17375 (wallet): `[["privkey", <hex>], ["mint", <url>]]`, where `privkey` is a P2PK key
//!   derived from the wallet seed (never the nostr key);
//! - kind 7375 (token): `{"mint", "unit", "proofs": [...], "del": [<replaced token event ids>]}`,
//!   one per unit, replaced (and the old one deleted with a NIP-09 event carrying `["k","7375"]`)
//!   whenever the unit's unspent proofs change;
//! - kind 7376 (history): `[["direction","in"|"out"],["amount",n],["unit",u],["e",id,"","created"|"destroyed"]…]`.
//!
//! The last published token event per unit is kept in `nip60.json` in the wallet directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use cdk::nuts::{CheckStateRequest, Proof, Proofs, ProofsMethods, SecretKey, State};
use cdk::wallet::ReceiveOptions;
use nostr_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, MinerWallet, Result};

/// NIP-60 wallet event.
pub const KIND_WALLET: u16 = 17375;
/// NIP-60 token event.
pub const KIND_TOKEN: u16 = 7375;
/// NIP-60 spending history event.
pub const KIND_HISTORY: u16 = 7376;
/// Where the backup's bookkeeping lives.
pub const STATE_FILE: &str = "nip60.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct BackupState {
    /// Digest of the last published wallet event's plaintext, and its created_at.
    #[serde(default)]
    wallet: Option<(String, u64)>,
    /// unit → (token event id, amount, sorted secrets digest)
    units: BTreeMap<String, UnitState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UnitState {
    event_id: String,
    amount: u64,
    digest: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenContent {
    mint: String,
    unit: String,
    proofs: Vec<Proof>,
    #[serde(default)]
    del: Vec<String>,
}

/// What a backup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Units whose token event was (re)published.
    pub published: Vec<String>,
    /// Units already up to date.
    pub unchanged: Vec<String>,
}

fn digest(proofs: &Proofs) -> String {
    use bitcoin::hashes::{Hash, sha256};
    let mut secrets: Vec<String> = proofs.iter().map(|p| p.secret.to_string()).collect();
    secrets.sort();
    sha256::Hash::hash(secrets.join(",").as_bytes()).to_string()
}

/// A client that answers NIP-42 AUTH with the user's key (relays serve NIP-60 events only to
/// their authenticated author).
async fn connect(relays: &[String], keys: &Keys) -> Result<Client> {
    if relays.is_empty() {
        return Err(Error::Nostr("no relays configured for the NIP-60 backup".into()));
    }
    let client = Client::builder().authenticator(SignerAuthenticator::new(keys.clone())).build();
    for r in relays {
        client.add_relay(r.as_str()).await.map_err(|e| Error::Nostr(format!("relay {r}: {e}")))?;
    }
    client.connect().and_wait(Duration::from_secs(5)).await;
    Ok(client)
}

async fn publish(client: &Client, ev: &Event) -> Result<()> {
    let out = client
        .send_event(ev)
        .ok_timeout(Duration::from_secs(10))
        .await
        .map_err(|e| Error::Nostr(format!("publishing kind {}: {e}", ev.kind)))?;
    if out.success.is_empty() {
        return Err(Error::Nostr(format!("no relay accepted kind {}: {:?}", ev.kind, out.failed)));
    }
    Ok(())
}

impl MinerWallet {
    /// The P2PK key named in the NIP-60 wallet event, derived from the seed.
    fn nip60_privkey(&self) -> Result<SecretKey> {
        use bitcoin::hashes::{Hash, sha256};
        let mut data = self.seed.to_vec();
        data.extend_from_slice(b"ehash/nip60/p2pk");
        SecretKey::from_slice(sha256::Hash::hash(&data).as_byte_array()).map_err(|e| Error::Seed(e.to_string()))
    }

    /// Publish the wallet's state as NIP-60 events; only units whose proofs changed since the last
    /// backup are republished. Fails (and can simply be retried) while no relay accepts.
    pub async fn backup_nip60(&self, keys: &Keys, relays: &[String], dir: &Path) -> Result<BackupReport> {
        let state_path = dir.join(STATE_FILE);
        let mut state: BackupState = std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let client = connect(relays, keys).await?;
        let me = keys.public_key();
        let result = async {
            let wallet_content = serde_json::json!([["privkey", self.nip60_privkey()?.to_secret_hex()], ["mint", self.mint_url.to_string()]]).to_string();
            let wallet_digest = {
                use bitcoin::hashes::{Hash, sha256};
                sha256::Hash::hash(wallet_content.as_bytes()).to_string()
            };
            if state.wallet.as_ref().map(|w| &w.0) != Some(&wallet_digest) {
                // replaceable: a newer created_at than the previous version, always
                let created = Timestamp::now().as_secs().max(state.wallet.as_ref().map_or(0, |w| w.1 + 1));
                let enc = keys.nip44_encrypt(&me, &wallet_content).map_err(|e| Error::Nostr(e.to_string()))?;
                let wallet_ev = EventBuilder::new(Kind::Custom(KIND_WALLET), enc)
                    .custom_created_at(Timestamp::from_secs(created))
                    .finalize(keys)
                    .map_err(|e| Error::Nostr(e.to_string()))?;
                publish(&client, &wallet_ev).await?;
                state.wallet = Some((wallet_digest, created));
            }
            let mut report = BackupReport::default();
            for unit in self.known_units().await? {
                let proofs = self.wallet(&unit).await?.get_unspent_proofs().await?;
                let d = digest(&proofs);
                let old = state.units.get(&unit).cloned();
                if old.as_ref().is_some_and(|o| o.digest == d) {
                    report.unchanged.push(unit);
                    continue;
                }
                let amount = proofs.total_amount().map(|a| a.to_u64()).unwrap_or(0);
                let content = TokenContent {
                    mint: self.mint_url.to_string(),
                    unit: unit.clone(),
                    proofs,
                    del: old.iter().map(|o| o.event_id.clone()).collect(),
                };
                let json = serde_json::to_string(&content).map_err(|e| Error::Nostr(e.to_string()))?;
                let enc = keys.nip44_encrypt(&me, &json).map_err(|e| Error::Nostr(e.to_string()))?;
                let token_ev = EventBuilder::new(Kind::Custom(KIND_TOKEN), enc).finalize(keys).map_err(|e| Error::Nostr(e.to_string()))?;
                publish(&client, &token_ev).await?;
                if let Some(o) = &old
                    && let Ok(id) = EventId::from_hex(&o.event_id) {
                        let del = EventDeletionRequest::new()
                            .id(id)
                            .reason("replaced by a newer NIP-60 token event")
                            .into_event_builder()
                            .tag(Tag::custom("k", [KIND_TOKEN.to_string()]))
                            .finalize(keys)
                            .map_err(|e| Error::Nostr(e.to_string()))?;
                        publish(&client, &del).await?;
                    }
                let before = old.as_ref().map(|o| o.amount).unwrap_or(0);
                let (direction, delta) = if amount >= before { ("in", amount - before) } else { ("out", before - amount) };
                let mut hist = vec![
                    serde_json::json!(["direction", direction]),
                    serde_json::json!(["amount", delta.to_string()]),
                    serde_json::json!(["unit", unit]),
                    serde_json::json!(["e", token_ev.id.to_hex(), "", "created"]),
                ];
                if let Some(o) = &old {
                    hist.push(serde_json::json!(["e", o.event_id, "", "destroyed"]));
                }
                let enc = keys.nip44_encrypt(&me, &serde_json::Value::Array(hist).to_string()).map_err(|e| Error::Nostr(e.to_string()))?;
                let hist_ev = EventBuilder::new(Kind::Custom(KIND_HISTORY), enc).finalize(keys).map_err(|e| Error::Nostr(e.to_string()))?;
                publish(&client, &hist_ev).await?;
                state.units.insert(unit.clone(), UnitState { event_id: token_ev.id.to_hex(), amount, digest: d });
                let text = serde_json::to_string_pretty(&state).map_err(|e| Error::Nostr(e.to_string()))?;
                std::fs::write(&state_path, text).map_err(|e| Error::Seed(format!("{}: {e}", state_path.display())))?;
                report.published.push(unit);
            }
            Ok(report)
        }
        .await;
        client.shutdown().await;
        result
    }

    /// Restore from NIP-60 events with the nostr key alone: every unspent proof of this mint in
    /// the user's token events is swapped into this wallet. Returns the recovered amount per unit.
    pub async fn restore_nip60(&self, keys: &Keys, relays: &[String]) -> Result<BTreeMap<String, u64>> {
        let client = connect(relays, keys).await?;
        let me = keys.public_key();
        let events = client
            .fetch_events(Filter::new().author(me).kind(Kind::Custom(KIND_TOKEN)))
            .timeout(Duration::from_secs(10))
            .await
            .map_err(|e| Error::Nostr(format!("fetching token events: {e}")));
        client.shutdown().await;
        let events = events?;
        let mut contents = vec![];
        for ev in events.iter() {
            if ev.verify().is_err() {
                continue;
            }
            let Ok(plain) = keys.nip44_decrypt(&me, &ev.content) else { continue };
            let Ok(c) = serde_json::from_str::<TokenContent>(&plain) else { continue };
            contents.push((ev.id.to_hex(), c));
        }
        // token events replaced by newer ones are skipped even if a relay missed the deletion
        let replaced: Vec<String> = contents.iter().flat_map(|(_, c)| c.del.clone()).collect();
        let mut by_unit: HashMap<String, Proofs> = HashMap::new();
        for (id, c) in contents {
            if replaced.contains(&id) || c.mint.trim_end_matches('/') != self.mint_url.to_string().trim_end_matches('/') {
                continue;
            }
            by_unit.entry(c.unit).or_default().extend(c.proofs);
        }
        let mut out = BTreeMap::new();
        for (unit, proofs) in by_unit {
            let w = self.wallet(&unit).await?;
            let ys = proofs.ys().map_err(|e| Error::InvalidToken(format!("restored proof: {e}")))?;
            let states = w.mint_connector().post_check_state(CheckStateRequest { ys }).await?;
            let unspent: Proofs = proofs
                .into_iter()
                .zip(states.states)
                .filter(|(_, s)| s.state == State::Unspent)
                .map(|(p, _)| p)
                .collect();
            if unspent.is_empty() {
                continue;
            }
            let got = w.receive_proofs(unspent, ReceiveOptions::default(), None, None).await?;
            out.insert(unit, got.to_u64());
        }
        Ok(out)
    }
}
