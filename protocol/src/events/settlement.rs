//! Settlement messages between the two agents of a trade, with a copy to the exchange (kind
//! 4190, regular; author: the sender's offer key; `["p", <recipient>]`; NIP-40 expiration;
//! `content`: NIP-44 v2 encryption to the recipient of one JSON object).
//!
//! ```json
//! {"v":1,"trade":"<trade id>","type":"lock","token":"cashuB…"}
//! {"v":1,"trade":"<trade id>","type":"preimage","preimage":"<64 hex>"}
//! {"v":1,"trade":"<trade id>","type":"abort","reason":"<text>"}
//! ```

use nostr::event::{Event, EventBuilder, FinalizeEvent, Kind, Tag};
use nostr::key::{Keys, PublicKey};
use nostr::nips::nip44;
use nostr::types::Timestamp;
use serde::{Deserialize, Serialize};

use super::{KIND_SETTLEMENT, check_kind, tag_value};
use crate::error::SchemaError;

/// The message format version.
pub const VERSION: u8 = 1;
/// Largest token a lock message may carry, in characters: its NIP-44 payload (padded to a power
/// of two in 32-byte steps beyond 256, then base64) still fits an event's content limit
/// ([`super::MAX_CONTENT_BYTES`]).
pub const MAX_TOKEN: usize = 20_000;
/// Longest abort reason.
pub const MAX_ABORT_REASON: usize = 300;

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// The sender's HTLC lock, as a `cashuB` token.
    Lock {
        /// The token.
        token: String,
    },
    /// The preimage, after the seller claimed the sats.
    Preimage {
        /// 32 bytes, hex.
        preimage: String,
    },
    /// The sender will not continue (e.g. the other lock did not verify).
    Abort {
        /// Why.
        reason: String,
    },
}

/// One settlement message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Format version, [`VERSION`].
    pub v: u8,
    /// The trade id.
    pub trade: String,
    /// The content.
    #[serde(flatten)]
    pub body: Body,
}

impl Message {
    /// A message about `trade`.
    pub fn new(trade: impl Into<String>, body: Body) -> Self {
        Self { v: VERSION, trade: trade.into(), body }
    }

    fn check(&self) -> Result<(), SchemaError> {
        if self.v != VERSION {
            return Err(SchemaError::new("content", format!("message version {} (this software speaks {VERSION})", self.v)));
        }
        if self.trade.len() != 32 || !self.trade.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SchemaError::new("trade", "a trade id is 32 hex characters"));
        }
        match &self.body {
            Body::Lock { token } if token.len() > MAX_TOKEN => {
                Err(SchemaError::new("token", format!("longer than {MAX_TOKEN} characters")))
            }
            Body::Lock { token } if !token.starts_with("cashuB") => Err(SchemaError::new("token", "not a cashuB token")),
            Body::Preimage { preimage } if preimage.len() != 64 || !preimage.chars().all(|c| c.is_ascii_hexdigit()) => {
                Err(SchemaError::new("preimage", "must be 32 bytes of hex"))
            }
            Body::Abort { reason } if reason.chars().count() > MAX_ABORT_REASON => {
                Err(SchemaError::new("reason", format!("longer than {MAX_ABORT_REASON} characters")))
            }
            _ => Ok(()),
        }
    }

    /// Encrypt to `recipient` and sign with the sender's offer key; the event expires at
    /// `expiration`.
    pub fn to_event(&self, sender: &Keys, recipient: &PublicKey, expiration: u64) -> Result<Event, SchemaError> {
        self.check()?;
        let json = serde_json::to_string(self).map_err(|e| SchemaError::new("content", e.to_string()))?;
        let content = nip44::encrypt(sender.secret_key(), recipient, json, nip44::Version::V2)
            .map_err(|e| SchemaError::new("content", format!("NIP-44: {e}")))?;
        EventBuilder::new(Kind::Custom(KIND_SETTLEMENT), content)
            .tag(Tag::public_key(*recipient))
            .tag(Tag::expiration(Timestamp::from_secs(expiration)))
            .finalize(sender)
            .map_err(|e| SchemaError::new("content", format!("signing: {e}")))
    }

    /// What anyone (a relay) can check without the key: one recipient (`p`), an expiration
    /// (NIP-40), and a content of NIP-44 v2 size and alphabet.
    pub fn check_envelope(event: &Event) -> Result<(), SchemaError> {
        check_kind(event, KIND_SETTLEMENT)?;
        let mut recipients = event.tags.iter().filter(|t| t.as_slice().first().map(String::as_str) == Some("p"));
        let to = recipients.next().ok_or_else(|| SchemaError::new("p", "missing tag (the recipient)"))?;
        if recipients.next().is_some() {
            return Err(SchemaError::new("p", "exactly one recipient"));
        }
        let to = to.as_slice().get(1).map(String::as_str).unwrap_or_default();
        PublicKey::parse(to).map_err(|e| SchemaError::new("p", format!("not a public key: {e}")))?;
        if event.tags.expiration().is_none() {
            return Err(SchemaError::new("expiration", "missing tag (settlement messages must expire, NIP-40)"));
        }
        const MAX_CONTENT: usize = super::MAX_CONTENT_BYTES;
        // version byte 2 puts `A` then one of `g`..`v` first
        let v2 = event.content.starts_with('A') && event.content.chars().nth(1).is_some_and(|c| ('g'..='v').contains(&c));
        if event.content.len() > MAX_CONTENT || !v2 {
            return Err(SchemaError::new("content", "must be a NIP-44 v2 payload of a settlement message"));
        }
        Ok(())
    }

    /// Decrypt and validate a message addressed to `recipient` (the event's signature is the
    /// caller's to verify).
    pub fn from_event(event: &Event, recipient: &Keys) -> Result<Self, SchemaError> {
        check_kind(event, KIND_SETTLEMENT)?;
        let to = tag_value(event, "p").ok_or_else(|| SchemaError::new("p", "missing tag"))?;
        if to != recipient.public_key().to_hex() {
            return Err(SchemaError::new("p", "addressed to another key"));
        }
        let json = nip44::decrypt(recipient.secret_key(), &event.pubkey, &event.content)
            .map_err(|e| SchemaError::new("content", format!("NIP-44: {e}")))?;
        let m: Message = serde_json::from_str(&json).map_err(|e| SchemaError::new("content", format!("not a settlement message: {e}")))?;
        m.check()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_lock_fits_an_event_and_a_longer_one_is_refused_before_sending() {
        let (alice, bob) = (Keys::generate(), Keys::generate());
        let token = |n: usize| format!("cashuB{}", "A".repeat(n - 6));
        let ev = Message::new("ab".repeat(16), Body::Lock { token: token(MAX_TOKEN) }).to_event(&alice, &bob.public_key(), 2_000_000_000).unwrap();
        assert!(ev.content.len() <= super::super::MAX_CONTENT_BYTES, "{} bytes", ev.content.len());
        Message::check_envelope(&ev).unwrap();
        assert_eq!(Message::from_event(&ev, &bob).unwrap().body, Body::Lock { token: token(MAX_TOKEN) });
        let long = Message::new("ab".repeat(16), Body::Lock { token: token(MAX_TOKEN + 1) }).to_event(&alice, &bob.public_key(), 2_000_000_000);
        assert_eq!(long.unwrap_err().field, "token");
    }

    #[test]
    fn only_the_recipient_reads_it() {
        let alice = Keys::generate();
        let bob = Keys::generate();
        let eve = Keys::generate();
        let m = Message::new("ab".repeat(16), Body::Preimage { preimage: "cd".repeat(32) });
        let ev = m.to_event(&alice, &bob.public_key(), 2_000_000_000).unwrap();
        ev.verify().unwrap();
        assert_eq!(ev.kind.as_u16(), KIND_SETTLEMENT);
        assert!(!ev.content.contains("preimage"));
        assert_eq!(Message::from_event(&ev, &bob).unwrap(), m);
        assert_eq!(Message::from_event(&ev, &eve).unwrap_err().field, "p");
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json, serde_json::json!({"v":1,"trade":"ab".repeat(16),"type":"preimage","preimage":"cd".repeat(32)}));
    }

    #[test]
    fn bad_messages_are_named() {
        let alice = Keys::generate();
        let bob = Keys::generate();
        let bad = |m: Message| m.to_event(&alice, &bob.public_key(), 2_000_000_000).unwrap_err().field;
        assert_eq!(bad(Message::new("xy", Body::Abort { reason: "x".into() })), "trade");
        assert_eq!(bad(Message::new("ab".repeat(16), Body::Lock { token: "cashuA...".into() })), "token");
        assert_eq!(bad(Message::new("ab".repeat(16), Body::Preimage { preimage: "00".into() })), "preimage");
        // a sender that encrypts garbage
        let content = nip44::encrypt(alice.secret_key(), &bob.public_key(), "{\"v\":1}", nip44::Version::V2).unwrap();
        let ev = EventBuilder::new(Kind::Custom(KIND_SETTLEMENT), content)
            .tag(Tag::public_key(bob.public_key()))
            .finalize(&alice)
            .unwrap();
        assert_eq!(Message::from_event(&ev, &bob).unwrap_err().field, "content");
    }

    #[test]
    fn a_relay_checks_the_envelope_without_the_key() {
        let alice = Keys::generate();
        let bob = Keys::generate();
        let good = Message::new("ab".repeat(16), Body::Abort { reason: "x".into() }).to_event(&alice, &bob.public_key(), 2_000_000_000).unwrap();
        Message::check_envelope(&good).unwrap();
        let field = |b: EventBuilder| Message::check_envelope(&b.finalize(&alice).unwrap()).unwrap_err().field;
        let exp = Tag::expiration(Timestamp::from_secs(2_000_000_000));
        let to = Tag::public_key(bob.public_key());
        let b = |content: &str| EventBuilder::new(Kind::Custom(KIND_SETTLEMENT), content.to_owned());
        assert_eq!(field(b(&good.content).tag(exp.clone())), "p");
        assert_eq!(field(b(&good.content).tag(to.clone()).tag(Tag::public_key(alice.public_key())).tag(exp.clone())), "p");
        assert_eq!(field(b(&good.content).tag(to.clone())), "expiration");
        assert_eq!(field(b("hello").tag(to.clone()).tag(exp.clone())), "content");
        assert_eq!(field(b(&format!("Ag{}", "A".repeat(64 * 1024))).tag(to).tag(exp)), "content");
    }
}
