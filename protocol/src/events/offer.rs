//! Offer to buy or sell one epoch's ehash for sats (kind 38190, addressable, author: a key made
//! for this offer). Tags reuse NIP-69's names where they fit.
//!
//! ```json
//! {"kind":38190,"content":"",
//!  "tags":[["d","<offer id>"],["k","sell"],["s","pending"],["market","<keyset id>"],
//!          ["unit","hash_3f9a1c2e_7"],["mint","https://pool.example"],
//!          ["a","38180:<pool pubkey>:<keyset id>"],["pm","https://sats.example"],
//!          ["amount","4096"],["min","1024"],["price","3","1024"],["p","<exchange pubkey>"],
//!          ["expiration","1760000000"],["expires_at","1760000000"],["y","ehash"],["z","order"],
//!          ["alt","…"]]}
//! ```

use std::str::FromStr;

use nostr::event::{Event, EventBuilder, Kind, Tag};
use nostr::key::PublicKey;
use nostr::nips::nip01::Coordinate;
use nostr::types::Timestamp;

use super::{KIND_EPOCH_ANNOUNCEMENT, KIND_OFFER, alt, check_kind, check_url, parse_u64, required, tag_value, tag_values};
use crate::epoch::EpochUnit;
use crate::error::SchemaError;
use crate::market::{Price, Side};

/// Most sat mints one offer may accept.
pub const MAX_SAT_MINTS: usize = 8;
/// Longest offer id.
pub const MAX_OFFER_ID: usize = 64;
/// Longest note in an offer's content.
pub const MAX_NOTE: usize = 280;

/// An offer's status as its maker states it (NIP-69 `s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OfferStatus {
    /// Open.
    Pending,
    /// Withdrawn by its maker.
    Canceled,
}

impl OfferStatus {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Canceled => "canceled",
        }
    }
}

/// An offer (its JSON form names the fields as the vectors in protocol/vectors/events.json do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Offer {
    /// The offer id (`d`).
    pub id: String,
    /// Sell or buy ehash.
    pub side: Side,
    /// Open or cancelled.
    pub status: OfferStatus,
    /// The market: the epoch's keyset id.
    pub market: String,
    /// The epoch unit.
    pub unit: String,
    /// The pool's mint URL.
    pub mint_url: String,
    /// The pool's nostr key (from the `a` tag naming the epoch announcement).
    pub pool: PublicKey,
    /// Sat mints accepted, in order of preference.
    pub sat_mints: Vec<String>,
    /// Total ehash offered (whole lots).
    pub amount: u64,
    /// Smallest fill (whole lots).
    pub min: u64,
    /// Price per lot.
    pub price: Price,
    /// The exchange asked to match it.
    pub exchange: PublicKey,
    /// NIP-40 expiration (unix seconds).
    pub expiration: u64,
    /// Free text.
    pub note: String,
}

impl Offer {
    /// The offer's address `38190:<author>:<id>`.
    pub fn address(&self, author: &PublicKey) -> String {
        format!("{KIND_OFFER}:{}:{}", author.to_hex(), self.id)
    }

    /// The unsigned event.
    pub fn to_builder(&self) -> EventBuilder {
        let mut b = EventBuilder::new(Kind::Custom(KIND_OFFER), self.note.clone())
            .tag(Tag::identifier(self.id.clone()))
            .tag(Tag::custom("k", [self.side.as_str()]))
            .tag(Tag::custom("s", [self.status.as_str()]))
            .tag(Tag::custom("market", [self.market.clone()]))
            .tag(Tag::custom("unit", [self.unit.clone()]))
            .tag(Tag::custom("mint", [self.mint_url.clone()]))
            .tag(Tag::custom("a", [format!("{KIND_EPOCH_ANNOUNCEMENT}:{}:{}", self.pool.to_hex(), self.market)]))
            .tag(Tag::custom("pm", self.sat_mints.clone()))
            .tag(Tag::custom("amount", [self.amount.to_string()]))
            .tag(Tag::custom("min", [self.min.to_string()]))
            .tag(Tag::custom("price", [self.price.sats_per_lot.to_string(), self.price.lot.to_string()]))
            .tag(Tag::public_key(self.exchange))
            .tag(Tag::expiration(Timestamp::from_secs(self.expiration)))
            .tag(Tag::custom("expires_at", [self.expiration.to_string()]))
            .tag(Tag::custom("y", ["ehash"]))
            .tag(Tag::custom("z", ["order"]));
        b = b.tag(alt(format!(
            "ehash offer: {} {} ehash of {} at {} sat per {}",
            self.side, self.amount, self.unit, self.price.sats_per_lot, self.price.lot
        )));
        b
    }

    /// Parse and validate a received event (schema only: the signature, the exchange's lot and
    /// the market's state are the reader's to check).
    pub fn parse(event: &Event) -> Result<Self, SchemaError> {
        check_kind(event, KIND_OFFER)?;
        if event.content.chars().count() > MAX_NOTE {
            return Err(SchemaError::new("content", format!("a note is at most {MAX_NOTE} characters")));
        }
        let id = required(event, "d")?.to_owned();
        if id.len() > MAX_OFFER_ID || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(SchemaError::new("d", format!("at most {MAX_OFFER_ID} characters of [0-9A-Za-z_-]")));
        }
        let side = Side::from_str(required(event, "k")?).map_err(|e| SchemaError::new("k", e))?;
        let status = match required(event, "s")? {
            "pending" => OfferStatus::Pending,
            "canceled" => OfferStatus::Canceled,
            s => return Err(SchemaError::new("s", format!("{s:?} is not pending or canceled"))),
        };
        let market = required(event, "market")?.to_owned();
        if !(market.len() == 16 || market.len() == 66) || !market.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SchemaError::new("market", format!("{market:?} is not a keyset id")));
        }
        let unit = required(event, "unit")?.to_owned();
        EpochUnit::parse(&unit).map_err(|e| SchemaError::new("unit", e.to_string()))?;
        let mint_url = required(event, "mint")?.to_owned();
        check_url("mint", &mint_url)?;
        let a = required(event, "a")?;
        let coordinate = Coordinate::parse(a).map_err(|e| SchemaError::new("a", format!("{a:?}: {e}")))?;
        if coordinate.kind.as_u16() != KIND_EPOCH_ANNOUNCEMENT || coordinate.identifier != market {
            return Err(SchemaError::new("a", format!("must be {KIND_EPOCH_ANNOUNCEMENT}:<pool pubkey>:{market}")));
        }
        let sat_mints: Vec<String> = tag_values(event, "pm").map(<[String]>::to_vec).unwrap_or_default();
        if sat_mints.is_empty() || sat_mints.len() > MAX_SAT_MINTS {
            return Err(SchemaError::new("pm", format!("name 1 to {MAX_SAT_MINTS} sat mint URLs")));
        }
        for m in &sat_mints {
            check_url("pm", m)?;
        }
        let amount = parse_u64("amount", required(event, "amount")?)?;
        let min = parse_u64("min", required(event, "min")?)?;
        let price_values = tag_values(event, "price").unwrap_or_default();
        let (sats, lot) = match price_values {
            [sats, lot, ..] => (parse_u64("price", sats)?, parse_u64("price", lot)?),
            _ => return Err(SchemaError::new("price", "must be [\"price\", <sats per lot>, <lot>]")),
        };
        let price = Price::new(sats, lot).map_err(|e| SchemaError::new("price", e.to_string()))?;
        if amount == 0 {
            return Err(SchemaError::new("amount", "must be at least one lot"));
        }
        price.sats_for(amount).map_err(|e| SchemaError::new("amount", e.to_string()))?;
        if min == 0 || min > amount {
            return Err(SchemaError::new("min", format!("must be between one lot and the amount {amount}")));
        }
        if min % lot != 0 {
            return Err(SchemaError::new("min", format!("{min} is not a whole number of lots of {lot}")));
        }
        let exchange = tag_value(event, "p").ok_or_else(|| SchemaError::new("p", "missing tag (the exchange asked to match the offer)"))?;
        let exchange = PublicKey::parse(exchange).map_err(|e| SchemaError::new("p", format!("not a public key: {e}")))?;
        let expiration = event
            .tags
            .expiration()
            .map(|t| t.as_secs())
            .ok_or_else(|| SchemaError::new("expiration", "missing tag (offers must expire, NIP-40)"))?;
        if let Some(e) = tag_value(event, "expires_at")
            && parse_u64("expires_at", e)? != expiration
        {
            return Err(SchemaError::new("expires_at", "differs from expiration"));
        }
        Ok(Self {
            id,
            side,
            status,
            market,
            unit,
            mint_url,
            pool: coordinate.public_key,
            sat_mints,
            amount,
            min,
            price,
            exchange,
            expiration,
            note: event.content.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::event::FinalizeEvent;
    use nostr::key::Keys;

    pub(crate) fn offer() -> Offer {
        Offer {
            id: "a1b2c3".into(),
            side: Side::Sell,
            status: OfferStatus::Pending,
            market: "00".repeat(8),
            unit: "hash_ab12_3".into(),
            mint_url: "http://127.0.0.1:3338".into(),
            pool: Keys::parse(&"01".repeat(32)).unwrap().public_key(),
            sat_mints: vec!["http://127.0.0.1:3339".into(), "https://sats.example".into()],
            amount: 4096,
            min: 1024,
            price: Price::new(3, 1024).unwrap(),
            exchange: Keys::parse(&"02".repeat(32)).unwrap().public_key(),
            expiration: 2_000_000_000,
            note: String::new(),
        }
    }

    #[test]
    fn round_trip() {
        let keys = Keys::generate();
        let ev = offer().to_builder().finalize(&keys).unwrap();
        assert_eq!(Offer::parse(&ev).unwrap(), offer());
        assert_eq!(offer().address(&keys.public_key()), format!("38190:{}:a1b2c3", keys.public_key().to_hex()));
    }

    #[test]
    fn every_bad_field_is_named() {
        let keys = Keys::generate();
        let field = |o: Offer| Offer::parse(&o.to_builder().finalize(&keys).unwrap()).unwrap_err().field;
        let mut o = offer();
        o.amount = 1000;
        assert_eq!(field(o), "amount");
        let mut o = offer();
        o.amount = 0;
        o.min = 0;
        assert_eq!(field(o), "amount");
        let mut o = offer();
        o.min = 8192;
        assert_eq!(field(o), "min");
        let mut o = offer();
        o.min = 1000;
        assert_eq!(field(o), "min");
        let mut o = offer();
        o.sat_mints = vec![];
        assert_eq!(field(o), "pm");
        let mut o = offer();
        o.sat_mints = vec!["ftp://x".into()];
        assert_eq!(field(o), "pm");
        let mut o = offer();
        o.market = "xyz".into();
        assert_eq!(field(o), "market");
        let mut o = offer();
        o.unit = "sat".into();
        assert_eq!(field(o), "unit");
        let mut o = offer();
        o.price = Price { sats_per_lot: 0, lot: 1024 };
        assert_eq!(field(o), "price");
        let mut o = offer();
        o.price = Price { sats_per_lot: u64::MAX, lot: 1024 };
        assert_eq!(field(o), "amount");
        let mut o = offer();
        o.id = "has space".into();
        assert_eq!(field(o), "d");
        // no expiration
        let ev = EventBuilder::new(Kind::Custom(KIND_OFFER), "")
            .tags(offer().to_builder().finalize(&keys).unwrap().tags.into_iter().filter(|t| t.kind() != "expiration" && t.kind() != "expires_at"))
            .finalize(&keys)
            .unwrap();
        assert_eq!(Offer::parse(&ev).unwrap_err().field, "expiration");
        // an `a` tag naming another keyset
        let ev = EventBuilder::new(Kind::Custom(KIND_OFFER), "")
            .tags(offer().to_builder().finalize(&keys).unwrap().tags.into_iter().filter(|t| t.kind() != "a"))
            .tag(Tag::custom("a", [format!("38180:{}:{}", keys.public_key().to_hex(), "11".repeat(8))]))
            .finalize(&keys)
            .unwrap();
        assert_eq!(Offer::parse(&ev).unwrap_err().field, "a");
    }
}
