//! NIP-87 Cashu mint announcement (kind 38172).
//!
//! ```json
//! {"kind":38172,"content":"<kind:0-style metadata JSON, optional>",
//!  "tags":[["d","<mint pubkey from /v1/info>"],["u","https://mint.example"],
//!          ["nuts","1,2,3,4,5,7,8,9,10,11,12,14,20"],["n","mainnet|testnet|signet|regtest"]]}
//! ```

use nostr::event::{Event, EventBuilder, Kind, Tag};
use serde_json::Value;

use super::{KIND_MINT_ANNOUNCEMENT, alt, check_kind, check_url, required, tag_values};
use crate::error::SchemaError;

/// A NIP-87 mint announcement (its JSON form names the fields as the vectors in
/// protocol/vectors/events.json do).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MintAnnouncement {
    /// The mint's public key (hex, compressed), as in its `/v1/info`.
    pub mint_pubkey: String,
    /// The mint's URLs (at least one).
    pub urls: Vec<String>,
    /// Supported NUT numbers.
    pub nuts: Vec<u16>,
    /// Bitcoin network: mainnet, testnet, signet or regtest.
    pub network: String,
    /// Optional kind:0-style metadata (name, about, …).
    pub metadata: Option<Value>,
}

const NETWORKS: [&str; 4] = ["mainnet", "testnet", "signet", "regtest"];

impl MintAnnouncement {
    /// The unsigned event.
    pub fn to_builder(&self) -> EventBuilder {
        let content = self.metadata.as_ref().map(Value::to_string).unwrap_or_default();
        let nuts = self.nuts.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let mut b = EventBuilder::new(Kind::Custom(KIND_MINT_ANNOUNCEMENT), content)
            .tag(Tag::identifier(self.mint_pubkey.clone()));
        for url in &self.urls {
            b = b.tag(Tag::custom("u", [url.clone()]));
        }
        b.tag(Tag::custom("nuts", [nuts]))
            .tag(Tag::custom("n", [self.network.clone()]))
            .tag(alt(format!("Cashu mint {}", self.urls.first().map(String::as_str).unwrap_or(""))))
    }

    /// Parse and validate a received event.
    pub fn parse(event: &Event) -> Result<Self, SchemaError> {
        check_kind(event, KIND_MINT_ANNOUNCEMENT)?;
        let mint_pubkey = required(event, "d")?.to_owned();
        if mint_pubkey.len() != 66 || !mint_pubkey.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SchemaError::new("d", "must be the mint's 33-byte public key in hex"));
        }
        let urls: Vec<String> = event
            .tags
            .iter()
            .filter(|t| t.kind() == "u")
            .filter_map(|t| t.content().map(str::to_owned))
            .collect();
        if urls.is_empty() {
            return Err(SchemaError::new("u", "missing tag"));
        }
        for url in &urls {
            check_url("u", url)?;
        }
        let nuts = match tag_values(event, "nuts").and_then(|v| v.first()) {
            None => vec![],
            Some(list) => list
                .split(',')
                .map(|n| n.trim().parse::<u16>().map_err(|_| SchemaError::new("nuts", format!("{n:?} is not a NUT number"))))
                .collect::<Result<_, _>>()?,
        };
        let network = required(event, "n")?.to_owned();
        if !NETWORKS.contains(&network.as_str()) {
            return Err(SchemaError::new("n", format!("{network:?} is not one of mainnet|testnet|signet|regtest")));
        }
        let metadata = if event.content.trim().is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<Value>(&event.content)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| SchemaError::new("content", "must be empty or a JSON object"))?,
            )
        };
        Ok(Self { mint_pubkey, urls, nuts, network, metadata })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::event::FinalizeEvent;
    use nostr::key::Keys;

    fn sample() -> MintAnnouncement {
        MintAnnouncement {
            mint_pubkey: format!("02{}", "ab".repeat(32)),
            urls: vec!["http://127.0.0.1:3338".into()],
            nuts: vec![1, 2, 3, 4, 7, 20],
            network: "regtest".into(),
            metadata: Some(serde_json::json!({"name": "pool"})),
        }
    }

    #[test]
    fn round_trip() {
        let keys = Keys::generate();
        let ev = sample().to_builder().finalize(&keys).unwrap();
        assert_eq!(MintAnnouncement::parse(&ev).unwrap(), sample());
        assert_eq!(super::super::validate(&ev), Ok(Some(())));
    }

    #[test]
    fn bad_fields_are_named() {
        let keys = Keys::generate();
        let mut a = sample();
        a.network = "moon".into();
        let e = MintAnnouncement::parse(&a.to_builder().finalize(&keys).unwrap()).unwrap_err();
        assert_eq!(e.field, "n");
        let mut a = sample();
        a.urls = vec!["ftp://x".into()];
        assert_eq!(MintAnnouncement::parse(&a.to_builder().finalize(&keys).unwrap()).unwrap_err().field, "u");
        let mut a = sample();
        a.mint_pubkey = "zz".into();
        assert_eq!(MintAnnouncement::parse(&a.to_builder().finalize(&keys).unwrap()).unwrap_err().field, "d");
    }
}
