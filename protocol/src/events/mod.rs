//! ehash nostr events: kinds, tags and schemas. Builders produce unsigned [`EventBuilder`]s;
//! parsers validate a received [`Event`] and name the field that is wrong.
//!
//! | kind  | what                                | `d`                  | author    |
//! |-------|-------------------------------------|----------------------|-----------|
//! | 38172 | NIP-87 Cashu mint announcement      | mint pubkey (NUT-06) | pool key  |
//! | 38180 | ehash epoch / keyset announcement   | keyset id            | pool key  |
//! | 38190 | ehash offer                         | offer id             | offer key |
//! | 38191 | ehash trade and settlement progress | trade id             | exchange  |
//! | 4190  | settlement message (NIP-44)         | —                    | offer key |
//!
//! The 38xxx kinds are addressable: a newer `created_at` for the same `(kind, author, d)`
//! replaces the old one. Publishers keep `created_at` strictly increasing per address.

pub mod epoch;
pub mod mint;
pub mod offer;
pub mod settlement;
pub mod trade;

pub use epoch::EpochAnnouncement;
pub use mint::MintAnnouncement;
pub use offer::{Offer, OfferStatus};
pub use trade::{Blame, LockStatus, OfferRef, Trade, TradeState};

use nostr::event::{Event, Tag};

use crate::error::SchemaError;

/// NIP-87 Cashu mint announcement.
pub const KIND_MINT_ANNOUNCEMENT: u16 = 38172;
/// ehash epoch and keyset announcement.
pub const KIND_EPOCH_ANNOUNCEMENT: u16 = 38180;
/// ehash offer to buy or sell an epoch's ehash.
pub const KIND_OFFER: u16 = 38190;
/// ehash trade and its settlement progress, published by an exchange.
pub const KIND_TRADE: u16 = 38191;
/// Settlement message between the agents of a trade (and the exchange).
pub const KIND_SETTLEMENT: u16 = 4190;

/// Largest content of an ehash announcement we accept, in bytes (a 64-key keyset is ~5 KiB).
pub const MAX_CONTENT_BYTES: usize = 32 * 1024;

/// The values of the first tag named `name`.
pub(crate) fn tag_values<'a>(event: &'a Event, name: &str) -> Option<&'a [String]> {
    event
        .tags
        .iter()
        .find(|t| t.kind() == name)
        .map(|t| &t.as_slice()[1..])
}

/// The first value of the first tag named `name`.
pub(crate) fn tag_value<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    tag_values(event, name).and_then(|v| v.first()).map(String::as_str)
}

pub(crate) fn required<'a>(event: &'a Event, name: &str) -> Result<&'a str, SchemaError> {
    match tag_value(event, name) {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(SchemaError::new(name, "is empty")),
        None => Err(SchemaError::new(name, "missing tag")),
    }
}

pub(crate) fn parse_u64(name: &str, v: &str) -> Result<u64, SchemaError> {
    if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit()) || (v.len() > 1 && v.starts_with('0')) {
        return Err(SchemaError::new(name, format!("{v:?} is not a non-negative integer")));
    }
    v.parse().map_err(|_| SchemaError::new(name, format!("{v:?} is out of range")))
}

pub(crate) fn optional_u64(event: &Event, name: &str) -> Result<Option<u64>, SchemaError> {
    tag_value(event, name).map(|v| parse_u64(name, v)).transpose()
}

pub(crate) fn check_kind(event: &Event, kind: u16) -> Result<(), SchemaError> {
    if event.kind.as_u16() != kind {
        return Err(SchemaError::new("kind", format!("expected {kind}, got {}", event.kind.as_u16())));
    }
    if event.content.len() > MAX_CONTENT_BYTES {
        return Err(SchemaError::new("content", format!("longer than {MAX_CONTENT_BYTES} bytes")));
    }
    Ok(())
}

pub(crate) fn check_url(name: &str, url: &str) -> Result<(), SchemaError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 8 || url.contains(char::is_whitespace) {
        return Err(SchemaError::new(name, format!("{url:?} is not an http(s) URL")));
    }
    Ok(())
}

/// A NIP-31 `alt` tag: a human-readable summary for clients that do not know the kind.
pub(crate) fn alt(text: String) -> Tag {
    Tag::custom("alt", [text])
}

/// Validate any ehash event by kind; `Ok(None)` for kinds this crate does not define.
pub fn validate(event: &Event) -> Result<Option<()>, SchemaError> {
    match event.kind.as_u16() {
        KIND_MINT_ANNOUNCEMENT => MintAnnouncement::parse(event).map(|_| Some(())),
        KIND_EPOCH_ANNOUNCEMENT => EpochAnnouncement::parse(event).map(|_| Some(())),
        KIND_OFFER => Offer::parse(event).map(|_| Some(())),
        KIND_TRADE => Trade::parse(event).map(|_| Some(())),
        KIND_SETTLEMENT => settlement::Message::check_envelope(event).map(|_| Some(())),
        _ => Ok(None),
    }
}
