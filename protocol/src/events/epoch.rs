//! ehash epoch and keyset announcement (kind 38180, addressable, `d` = keyset id).
//!
//! ```json
//! {"kind":38180,
//!  "content":"<NUT-01 keyset JSON: {\"id\",\"unit\",\"keys\":{\"1\":\"02…\",…},\"input_fee_ppk\"}>",
//!  "tags":[["d","<keyset id>"],["unit","hash_3f9a1c2e_7"],["u","https://mint.example"],
//!          ["epoch","7"],["s","active|closed|redeemable|expired"],["start","<unix>"],
//!          ["end","<unix>"],["issued","<ehash units>"],["shares","<count>"],
//!          ["reason","block|operator"],["block","<block hash hex>"],
//!          ["log","<share log root hex>"],["unit_size","<log2 hashes per unit>"],
//!          ["height","<block height>"],["payout","<sats>"],["expires","<unix>"],
//!          ["a","38172:<pool pubkey>:<mint pubkey>"],["owner","<BIP-340 signature>"],["alt","…"]]}
//! ```
//!
//! `end`, `issued`, `shares` and `reason` are present once the epoch is no longer active;
//! `block` when it closed on a found block. The content lets a wallet check DLEQ proofs and the
//! keyset id (NUT-02) without asking the mint. `owner` is the keyset's own signature of the
//! announcing key ([`owner_digest`]): only the mint that holds the keyset's private keys can
//! make it, so a copy re-signed by another key is refused.

use std::str::FromStr;

use bitcoin::hashes::{Hash, HashEngine, sha256};
use bitcoin::secp256k1::{Keypair, Message, schnorr};
use cashu::SECP256K1;
use cashu::nuts::{Id, KeySet};
use nostr::event::{Event, EventBuilder, Kind, Tag};
use nostr::key::PublicKey;

use super::{KIND_EPOCH_ANNOUNCEMENT, KIND_MINT_ANNOUNCEMENT, alt, check_kind, check_url, optional_u64, parse_u64, required, tag_value};
use crate::epoch::{CloseReason, EpochState, EpochUnit};
use crate::error::SchemaError;

/// An epoch's keyset and state (its JSON form names the fields as the vectors in
/// protocol/vectors/events.json do).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochAnnouncement {
    /// The epoch's keyset (NUT-01 form), whose unit is the epoch unit.
    pub keyset: KeySet,
    /// The mint's URL.
    pub mint_url: String,
    /// The epoch number.
    pub epoch: u32,
    /// The lifecycle state.
    pub state: EpochState,
    /// When the epoch opened (unix seconds).
    pub start: u64,
    /// When it closed.
    pub end: Option<u64>,
    /// Total ehash credited in the epoch (final once closed).
    pub issued: Option<u64>,
    /// Number of shares credited.
    pub shares: Option<u64>,
    /// Why it closed.
    pub reason: Option<CloseReason>,
    /// The block that closed it (display hex).
    pub block_hash: Option<String>,
    /// Root of the closed epoch's share log (protocol §12), hex.
    pub log_root: Option<String>,
    /// log2 of the expected hashes in one ehash unit (a share's credit follows from it).
    pub unit_log2: Option<u32>,
    /// Height of the block that closed it.
    pub height: Option<u32>,
    /// What the epoch pays out in total after the pool's fee (sats); each ehash redeems for
    /// `payout / issued` sats, floored per redemption.
    pub payout: Option<u64>,
    /// When a redeemable epoch expires (unix seconds).
    pub expires: Option<u64>,
    /// Address of the mint's NIP-87 announcement, `38172:<pool pubkey>:<mint pubkey>`.
    pub mint_address: Option<String>,
    /// The chain the pool mines (NIP-87 `n`: `mainnet`, `testnet`, `signet`, `regtest`).
    pub network: Option<String>,
    /// An active epoch's expected sats per ehash when announced ([`crate::epoch::hashprice`]).
    pub hashprice: Option<f64>,
    /// The keyset's signature of the announcing key ([`owner_proof`]), hex; checked against
    /// the event's author when read.
    pub owner_proof: Option<String>,
}

/// BIP-340 tag of the owner proof's message (protocol §5, "The owner proof").
pub const OWNER_PROOF_TAG: &str = "ehash/keyset-owner";

/// The message an owner proof signs: the BIP-340 tagged hash (tag [`OWNER_PROOF_TAG`]) of the
/// keyset id's bytes followed by the 32-byte x-only key of the pool that announces it.
pub fn owner_digest(keyset: &Id, pool: &PublicKey) -> [u8; 32] {
    let tag = sha256::Hash::hash(OWNER_PROOF_TAG.as_bytes());
    let mut engine = sha256::Hash::engine();
    engine.input(tag.as_byte_array());
    engine.input(tag.as_byte_array());
    engine.input(&keyset.to_bytes());
    engine.input(&pool.to_bytes());
    sha256::Hash::from_engine(engine).to_byte_array()
}

/// The key that signs a keyset's owner proof: its key for the smallest amount.
pub fn owner_key(keyset: &KeySet) -> Option<cashu::PublicKey> {
    keyset.keys.iter().min_by_key(|(amount, _)| **amount).map(|(_, k)| *k)
}

/// The owner proof of `keyset` for `pool` (hex BIP-340 signature of [`owner_digest`]), made
/// with `secret`, the private key of [`owner_key`]. Deterministic (no auxiliary randomness).
pub fn owner_proof(secret: &cashu::SecretKey, keyset: &Id, pool: &PublicKey) -> String {
    let keypair = Keypair::from_secret_key(&SECP256K1, secret);
    let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(owner_digest(keyset, pool)), &keypair);
    hex::encode(sig.serialize())
}

/// Check that `proof` is `keyset`'s owner proof for `pool`; `Err` says why not.
pub fn verify_owner_proof(keyset: &KeySet, pool: &PublicKey, proof: &str) -> Result<(), String> {
    let bytes = hex::decode(proof).ok().filter(|b| b.len() == 64).ok_or("is not a 64-byte signature in hex")?;
    let sig = schnorr::Signature::from_slice(&bytes).map_err(|_| "is not a BIP-340 signature")?;
    let key = owner_key(keyset).ok_or("the keyset has no keys")?;
    let xonly = key.x_only_public_key();
    SECP256K1
        .verify_schnorr(&sig, &Message::from_digest(owner_digest(&keyset.id, pool)), &xonly)
        .map_err(|_| format!("is not the keyset's signature of the announcing key {pool} (a copy of another pool's announcement?)"))
}

impl EpochAnnouncement {
    /// The unsigned event.
    pub fn to_builder(&self) -> EventBuilder {
        let content = serde_json::to_string(&self.keyset).unwrap_or_default();
        let mut b = EventBuilder::new(Kind::Custom(KIND_EPOCH_ANNOUNCEMENT), content)
            .tag(Tag::identifier(self.keyset.id.to_string()))
            .tag(Tag::custom("unit", [self.keyset.unit.to_string()]))
            .tag(Tag::custom("u", [self.mint_url.clone()]))
            .tag(Tag::custom("epoch", [self.epoch.to_string()]))
            .tag(Tag::custom("s", [self.state.as_str()]))
            .tag(Tag::custom("start", [self.start.to_string()]));
        if let Some(end) = self.end {
            b = b.tag(Tag::custom("end", [end.to_string()]));
        }
        if let Some(issued) = self.issued {
            b = b.tag(Tag::custom("issued", [issued.to_string()]));
        }
        if let Some(shares) = self.shares {
            b = b.tag(Tag::custom("shares", [shares.to_string()]));
        }
        if let Some(reason) = self.reason {
            b = b.tag(Tag::custom("reason", [reason.as_str()]));
        }
        if let Some(block) = &self.block_hash {
            b = b.tag(Tag::custom("block", [block.clone()]));
        }
        if let Some(root) = &self.log_root {
            b = b.tag(Tag::custom("log", [root.clone()]));
        }
        if let Some(u) = self.unit_log2 {
            b = b.tag(Tag::custom("unit_size", [u.to_string()]));
        }
        if let Some(h) = self.height {
            b = b.tag(Tag::custom("height", [h.to_string()]));
        }
        if let Some(p) = self.payout {
            b = b.tag(Tag::custom("payout", [p.to_string()]));
        }
        if let Some(x) = self.expires {
            b = b.tag(Tag::custom("expires", [x.to_string()]));
        }
        if let Some(a) = &self.mint_address {
            b = b.tag(Tag::custom("a", [a.clone()]));
        }
        if let Some(n) = &self.network {
            b = b.tag(Tag::custom("n", [n.clone()]));
        }
        if let Some(h) = self.hashprice {
            b = b.tag(Tag::custom("hashprice", [format!("{h:e}")]));
        }
        if let Some(p) = &self.owner_proof {
            b = b.tag(Tag::custom("owner", [p.clone()]));
        }
        b.tag(alt(format!(
            "ehash epoch {} ({}) is {}: keyset {}",
            self.epoch, self.keyset.unit, self.state, self.keyset.id
        )))
    }

    /// Parse and validate a received event, including the keyset id against its keys.
    pub fn parse(event: &Event) -> Result<Self, SchemaError> {
        check_kind(event, KIND_EPOCH_ANNOUNCEMENT)?;
        let d = required(event, "d")?;
        let keyset: KeySet = serde_json::from_str(&event.content)
            .map_err(|e| SchemaError::new("content", format!("not a NUT-01 keyset: {e}")))?;
        if keyset.id.to_string() != d {
            return Err(SchemaError::new("d", format!("{d} is not the content's keyset id {}", keyset.id)));
        }
        keyset
            .verify_id()
            .map_err(|e| SchemaError::new("content", format!("keyset id does not match its keys: {e}")))?;
        let unit = required(event, "unit")?;
        if !unit.eq_ignore_ascii_case(&keyset.unit.to_string()) {
            return Err(SchemaError::new("unit", format!("{unit} differs from the keyset's unit {}", keyset.unit)));
        }
        let epoch_unit = EpochUnit::parse(unit).map_err(|e| SchemaError::new("unit", e.to_string()))?;
        let mint_url = required(event, "u")?.to_owned();
        check_url("u", &mint_url)?;
        let epoch = parse_u64("epoch", required(event, "epoch")?)?;
        let epoch = u32::try_from(epoch).map_err(|_| SchemaError::new("epoch", "out of range"))?;
        if epoch != epoch_unit.epoch {
            return Err(SchemaError::new("epoch", format!("{epoch} differs from the unit's epoch {}", epoch_unit.epoch)));
        }
        let state = EpochState::from_str(required(event, "s")?).map_err(|e| SchemaError::new("s", e))?;
        let start = parse_u64("start", required(event, "start")?)?;
        let end = optional_u64(event, "end")?;
        let issued = optional_u64(event, "issued")?;
        let shares = optional_u64(event, "shares")?;
        let reason = tag_value(event, "reason")
            .map(|r| CloseReason::from_str(r).map_err(|e| SchemaError::new("reason", e)))
            .transpose()?;
        let block_hash = tag_value(event, "block").map(str::to_owned);
        if let Some(b) = &block_hash
            && (b.len() != 64 || !b.chars().all(|c| c.is_ascii_hexdigit())) {
                return Err(SchemaError::new("block", "must be a 32-byte block hash in hex"));
            }
        if state == EpochState::Active {
            if end.is_some() {
                return Err(SchemaError::new("end", "an active epoch has no end"));
            }
        } else {
            let end = end.ok_or_else(|| SchemaError::new("end", format!("missing tag (required when {state})")))?;
            if end < start {
                return Err(SchemaError::new("end", "is before start"));
            }
            if issued.is_none() {
                return Err(SchemaError::new("issued", format!("missing tag (required when {state})")));
            }
            if shares.is_none() {
                return Err(SchemaError::new("shares", format!("missing tag (required when {state})")));
            }
            if reason.is_none() {
                return Err(SchemaError::new("reason", format!("missing tag (required when {state})")));
            }
        }
        let log_root = tag_value(event, "log").map(str::to_owned);
        if let Some(r) = &log_root
            && (r.len() != 64 || !r.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(SchemaError::new("log", "must be a 32-byte share log root in hex"));
        }
        let unit_log2 = optional_u64(event, "unit_size")?
            .map(|u| u32::try_from(u).ok().filter(|u| *u <= 224).ok_or_else(|| SchemaError::new("unit_size", "out of range (at most 224)")))
            .transpose()?;
        let height = optional_u64(event, "height")?
            .map(|h| u32::try_from(h).map_err(|_| SchemaError::new("height", "out of range")))
            .transpose()?;
        let payout = optional_u64(event, "payout")?;
        let expires = optional_u64(event, "expires")?;
        if matches!(state, EpochState::Redeemable | EpochState::Expired) {
            if payout.is_none() {
                return Err(SchemaError::new("payout", format!("missing tag (required when {state})")));
            }
            if expires.is_none() {
                return Err(SchemaError::new("expires", format!("missing tag (required when {state})")));
            }
        }
        let mint_address = tag_value(event, "a").map(str::to_owned);
        if let Some(a) = &mint_address {
            let ok = a
                .split_once(':')
                .is_some_and(|(k, rest)| k == KIND_MINT_ANNOUNCEMENT.to_string() && rest.contains(':'));
            if !ok {
                return Err(SchemaError::new("a", format!("{a:?} is not a 38172:<pubkey>:<d> address")));
            }
        }
        let network = tag_value(event, "n").map(str::to_owned);
        let hashprice = tag_value(event, "hashprice")
            .map(|h| h.parse::<f64>().ok().filter(|h| h.is_finite() && *h >= 0.0).ok_or_else(|| SchemaError::new("hashprice", format!("{h:?} is not a non-negative number"))))
            .transpose()?;
        let owner_proof = tag_value(event, "owner").map(str::to_owned);
        if let Some(p) = &owner_proof {
            verify_owner_proof(&keyset, &event.pubkey, p).map_err(|why| SchemaError::new("owner", why))?;
        }
        Ok(Self { keyset, mint_url, epoch, state, start, end, issued, shares, reason, block_hash, log_root, unit_log2, height, payout, expires, mint_address, network, hashprice, owner_proof })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cashu::nuts::nut02::KeySetVersion;
    use cashu::nuts::{CurrencyUnit, Keys, MintKeySet};
    use nostr::event::FinalizeEvent;
    use nostr::key::Keys as NostrKeys;

    pub(crate) fn keyset(unit: &str) -> KeySet {
        let mk = mint_keyset(unit);
        KeySet { id: mk.id, unit: mk.unit, active: None, keys: Keys::from(mk.keys), input_fee_ppk: 0, final_expiry: None }
    }

    fn mint_keyset(unit: &str) -> MintKeySet {
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let amounts: Vec<u64> = (0..8).map(|i| 1 << i).collect();
        MintKeySet::generate_from_seed(
            &secp,
            &[7u8; 32],
            &amounts,
            CurrencyUnit::custom(unit),
            "m/0'/1'".parse().unwrap(),
            0,
            None,
            KeySetVersion::Version01,
        )
    }

    fn closed() -> EpochAnnouncement {
        EpochAnnouncement {
            keyset: keyset("hash_ab12_3"),
            mint_url: "http://127.0.0.1:3338".into(),
            epoch: 3,
            state: EpochState::Closed,
            start: 1_700_000_000,
            end: Some(1_700_000_600),
            issued: Some(4096),
            shares: Some(256),
            reason: Some(CloseReason::Block),
            block_hash: Some("00".repeat(32)),
            log_root: Some("ab".repeat(32)),
            unit_log2: Some(32),
            height: Some(840_000),
            payout: Some(306_250_000),
            expires: None,
            mint_address: Some(format!("38172:{}:{}", "aa".repeat(32), "02".repeat(33))),
            network: Some("signet".into()),
            hashprice: Some(1.5e-6),
            owner_proof: None,
        }
    }

    #[test]
    fn only_the_keysets_owner_can_name_the_pool() {
        let pool = NostrKeys::generate();
        let mk = mint_keyset("hash_ab12_3");
        let smallest = mk.keys.iter().min_by_key(|(a, _)| **a).map(|(_, k)| k.secret_key.clone()).unwrap();
        let mut a = closed();
        a.owner_proof = Some(owner_proof(&smallest, &a.keyset.id, &pool.public_key()));
        let ev = a.to_builder().finalize(&pool).unwrap();
        assert_eq!(EpochAnnouncement::parse(&ev).unwrap(), a, "the pool's own announcement reads");
        // a copier re-signs the same tags: the proof names the pool's key, not the copier's
        let copier = NostrKeys::generate();
        let copy = a.to_builder().finalize(&copier).unwrap();
        let e = EpochAnnouncement::parse(&copy).unwrap_err();
        assert_eq!(e.field, "owner");
        assert!(e.to_string().contains("a copy of another pool's announcement"), "{e}");
        // nor can the copier make a proof of its own without the keyset's private key
        let mut forged = a.clone();
        forged.owner_proof = Some(owner_proof(&cashu::SecretKey::generate(), &a.keyset.id, &copier.public_key()));
        assert_eq!(EpochAnnouncement::parse(&forged.to_builder().finalize(&copier).unwrap()).unwrap_err().field, "owner");
        // nor reuse a proof made for another keyset of the same mint
        let mut other = a.clone();
        other.owner_proof = Some(owner_proof(&smallest, &keyset("hash_ab12_4").id, &pool.public_key()));
        assert_eq!(EpochAnnouncement::parse(&other.to_builder().finalize(&pool).unwrap()).unwrap_err().field, "owner");
        let mut garbage = a;
        garbage.owner_proof = Some("zz".into());
        assert_eq!(EpochAnnouncement::parse(&garbage.to_builder().finalize(&pool).unwrap()).unwrap_err().field, "owner");
    }

    #[test]
    fn round_trip() {
        let keys = NostrKeys::generate();
        let ev = closed().to_builder().finalize(&keys).unwrap();
        assert_eq!(EpochAnnouncement::parse(&ev).unwrap(), closed());
        let mut active = closed();
        active.state = EpochState::Active;
        active.end = None;
        active.issued = None;
        active.shares = None;
        active.reason = None;
        active.block_hash = None;
        let ev = active.to_builder().finalize(&keys).unwrap();
        assert_eq!(EpochAnnouncement::parse(&ev).unwrap(), active);
    }

    #[test]
    fn every_bad_field_is_named() {
        let keys = NostrKeys::generate();
        let field = |a: EpochAnnouncement| EpochAnnouncement::parse(&a.to_builder().finalize(&keys).unwrap()).unwrap_err().field;
        let mut a = closed();
        a.epoch = 4;
        assert_eq!(field(a), "epoch");
        let mut a = closed();
        a.issued = None;
        assert_eq!(field(a), "issued");
        let mut a = closed();
        a.end = Some(1);
        assert_eq!(field(a), "end");
        let mut a = closed();
        a.mint_url = "nope".into();
        assert_eq!(field(a), "u");
        let mut a = closed();
        a.keyset = keyset("sat");
        assert_eq!(field(a), "unit");
        // a keyset whose id does not match its keys
        let mut a = closed();
        a.keyset.id = keyset("hash_ab12_4").id;
        assert_eq!(field(a), "content");
        // d tag that is not the content's keyset id
        let ev = EventBuilder::new(Kind::Custom(KIND_EPOCH_ANNOUNCEMENT), serde_json::to_string(&closed().keyset).unwrap())
            .tag(Tag::identifier("00ffff"))
            .finalize(&keys)
            .unwrap();
        assert_eq!(EpochAnnouncement::parse(&ev).unwrap_err().field, "d");
    }
}
