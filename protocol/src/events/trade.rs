//! A match and the progress of its settlement (kind 38191, addressable, author: the exchange,
//! `d` = trade id), replaced as the settlement goes on.
//!
//! ```json
//! {"kind":38191,"content":"",
//!  "tags":[["d","<trade id>"],["market","<keyset id>"],["unit","hash_3f9a1c2e_7"],
//!          ["mint","https://pool.example"],["pm","https://sats.example"],
//!          ["e","<maker offer event id>","","maker"],["e","<taker offer event id>","","taker"],
//!          ["a","38190:<maker key>:<d>","","maker"],["a","38190:<taker key>:<d>","","taker"],
//!          ["p","<seller offer key>","","seller"],["p","<buyer offer key>","","buyer"],
//!          ["amount","2048"],["sats","6"],["price","3","1024"],["seq","17"],
//!          ["state","sats_locked"],["s","in-progress"],["deadline","<t>","<t>"],
//!          ["locktime","<T1>","<T2>"],["hash","<hex>"],["ehash_lock","locked"],
//!          ["sats_lock","locked"],["y","ehash"],["z","trade"],["alt","…"]]}
//! ```

use std::fmt;
use std::str::FromStr;

use nostr::event::{Event, EventBuilder, EventId, Kind, Tag};
use nostr::key::PublicKey;
use nostr::nips::nip01::Coordinate;

use super::{KIND_OFFER, KIND_TRADE, alt, check_kind, check_url, parse_u64, required, tag_value};
use crate::error::SchemaError;
use crate::market::{Price, SettlementTimes, Side};

/// Longest failure reason published.
pub const MAX_REASON: usize = 300;

/// Where a trade's settlement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeState {
    /// Matched; waiting for the seller's lock.
    Matched,
    /// The seller's ehash lock verified; waiting for the buyer's.
    EhashLocked,
    /// Both locks verified; waiting for the seller to claim the sats.
    SatsLocked,
    /// The seller claimed the sats (the preimage is public); waiting for the buyer to claim.
    SatsClaimed,
    /// Both locks claimed.
    Settled,
    /// It will not settle; locks made are being refunded.
    Failed,
    /// It did not settle and every lock made was refunded.
    Refunded,
}

impl TradeState {
    /// Every state, in order.
    pub const ALL: [TradeState; 7] =
        [Self::Matched, Self::EhashLocked, Self::SatsLocked, Self::SatsClaimed, Self::Settled, Self::Failed, Self::Refunded];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::EhashLocked => "ehash_locked",
            Self::SatsLocked => "sats_locked",
            Self::SatsClaimed => "sats_claimed",
            Self::Settled => "settled",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
        }
    }

    /// The NIP-69 status bucket.
    pub fn nip69(self) -> &'static str {
        match self {
            Self::Settled => "success",
            Self::Failed | Self::Refunded => "canceled",
            _ => "in-progress",
        }
    }

    /// Whether nothing more will happen to the trade.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Settled | Self::Refunded)
    }
}

impl fmt::Display for TradeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TradeState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| format!("{s:?} is not a trade state"))
    }
}

/// What happened to one side's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockStatus {
    /// Not made (or not seen).
    None,
    /// Made and verified, not yet spent.
    Locked,
    /// Spent by its receiver with the preimage.
    Claimed,
    /// Spent back by its maker after the locktime.
    Refunded,
}

impl LockStatus {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Locked => "locked",
            Self::Claimed => "claimed",
            Self::Refunded => "refunded",
        }
    }
}

impl FromStr for LockStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "none" => Self::None,
            "locked" => Self::Locked,
            "claimed" => Self::Claimed,
            "refunded" => Self::Refunded,
            _ => return Err(format!("{s:?} is not none, locked, claimed or refunded")),
        })
    }
}

/// Who a failure is blamed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Blame {
    /// The seller missed a step or sent a bad lock.
    Seller,
    /// The buyer did.
    Buyer,
    /// Nobody (e.g. the epoch expired).
    None,
}

impl Blame {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seller => "seller",
            Self::Buyer => "buyer",
            Self::None => "none",
        }
    }
}

impl FromStr for Blame {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "seller" => Self::Seller,
            "buyer" => Self::Buyer,
            "none" => Self::None,
            _ => return Err(format!("{s:?} is not seller, buyer or none")),
        })
    }
}

/// One side's offer in a trade.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OfferRef {
    /// The offer version's event id.
    pub event_id: EventId,
    /// Its author (the offer key).
    pub pubkey: PublicKey,
    /// Its `d`.
    pub d: String,
}

impl OfferRef {
    /// The address `38190:<pubkey>:<d>`.
    pub fn address(&self) -> String {
        format!("{KIND_OFFER}:{}:{}", self.pubkey.to_hex(), self.d)
    }
}

/// A trade (its JSON form names the fields as the vectors in protocol/vectors/events.json do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Trade {
    /// Trade id ([`crate::market::trade_id`]).
    pub id: String,
    /// The market (keyset id).
    pub market: String,
    /// The epoch unit.
    pub unit: String,
    /// The pool mint.
    pub mint_url: String,
    /// The sat mint of this trade.
    pub sat_mint: String,
    /// The resting offer.
    pub maker: OfferRef,
    /// The offer that matched it.
    pub taker: OfferRef,
    /// Which side the maker is on.
    pub maker_side: Side,
    /// Ehash traded.
    pub amount: u64,
    /// Sats paid.
    pub sats: u64,
    /// The maker's price.
    pub price: Price,
    /// Journal number of the book event that made the match.
    pub seq: u64,
    /// Progress.
    pub state: TradeState,
    /// Deadlines and locktimes.
    pub times: SettlementTimes,
    /// The payment hash (hex), once the seller's lock is seen.
    pub hash: Option<String>,
    /// The preimage (hex), once public.
    pub preimage: Option<String>,
    /// The seller's ehash lock.
    pub ehash_lock: LockStatus,
    /// The buyer's sats lock.
    pub sats_lock: LockStatus,
    /// Why it failed.
    pub reason: Option<String>,
    /// Who it is blamed on.
    pub blame: Option<Blame>,
}

impl Trade {
    /// The seller's offer.
    pub fn seller(&self) -> &OfferRef {
        if self.maker_side == Side::Sell { &self.maker } else { &self.taker }
    }

    /// The buyer's offer.
    pub fn buyer(&self) -> &OfferRef {
        if self.maker_side == Side::Buy { &self.maker } else { &self.taker }
    }

    /// The unsigned event.
    pub fn to_builder(&self) -> EventBuilder {
        let role = |r: &str| r.to_owned();
        let mut b = EventBuilder::new(Kind::Custom(KIND_TRADE), "")
            .tag(Tag::identifier(self.id.clone()))
            .tag(Tag::custom("market", [self.market.clone()]))
            .tag(Tag::custom("unit", [self.unit.clone()]))
            .tag(Tag::custom("mint", [self.mint_url.clone()]))
            .tag(Tag::custom("pm", [self.sat_mint.clone()]))
            .tag(Tag::custom("e", [self.maker.event_id.to_hex(), String::new(), role("maker")]))
            .tag(Tag::custom("e", [self.taker.event_id.to_hex(), String::new(), role("taker")]))
            .tag(Tag::custom("a", [self.maker.address(), String::new(), role("maker")]))
            .tag(Tag::custom("a", [self.taker.address(), String::new(), role("taker")]))
            .tag(Tag::custom("p", [self.seller().pubkey.to_hex(), String::new(), role("seller")]))
            .tag(Tag::custom("p", [self.buyer().pubkey.to_hex(), String::new(), role("buyer")]))
            .tag(Tag::custom("amount", [self.amount.to_string()]))
            .tag(Tag::custom("sats", [self.sats.to_string()]))
            .tag(Tag::custom("price", [self.price.sats_per_lot.to_string(), self.price.lot.to_string()]))
            .tag(Tag::custom("seq", [self.seq.to_string()]))
            .tag(Tag::custom("state", [self.state.as_str()]))
            .tag(Tag::custom("s", [self.state.nip69()]))
            .tag(Tag::custom("deadline", [self.times.seller_lock_by.to_string(), self.times.buyer_lock_by.to_string()]))
            .tag(Tag::custom("locktime", [self.times.ehash_locktime.to_string(), self.times.sats_locktime.to_string()]))
            .tag(Tag::custom("ehash_lock", [self.ehash_lock.as_str()]))
            .tag(Tag::custom("sats_lock", [self.sats_lock.as_str()]));
        if let Some(h) = &self.hash {
            b = b.tag(Tag::custom("hash", [h.clone()]));
        }
        if let Some(p) = &self.preimage {
            b = b.tag(Tag::custom("preimage", [p.clone()]));
        }
        if let Some(r) = &self.reason {
            b = b.tag(Tag::custom("reason", [r.chars().take(MAX_REASON).collect::<String>()]));
        }
        if let Some(bl) = self.blame {
            b = b.tag(Tag::custom("blame", [bl.as_str()]));
        }
        b.tag(Tag::custom("y", ["ehash"])).tag(Tag::custom("z", ["trade"])).tag(alt(format!(
            "ehash trade {}: {} ehash of {} for {} sats, {}",
            self.id, self.amount, self.unit, self.sats, self.state
        )))
    }

    /// Parse and validate a received event.
    pub fn parse(event: &Event) -> Result<Self, SchemaError> {
        check_kind(event, KIND_TRADE)?;
        let id = required(event, "d")?.to_owned();
        if id.len() != 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SchemaError::new("d", "a trade id is 32 hex characters"));
        }
        let market = required(event, "market")?.to_owned();
        let unit = required(event, "unit")?.to_owned();
        let mint_url = required(event, "mint")?.to_owned();
        check_url("mint", &mint_url)?;
        let sat_mint = required(event, "pm")?.to_owned();
        check_url("pm", &sat_mint)?;
        let by_role = |name: &str, role: &str| -> Result<String, SchemaError> {
            event
                .tags
                .iter()
                .map(|t| t.as_slice())
                .find(|s| s.len() >= 4 && s[0] == name && s[3] == role)
                .map(|s| s[1].clone())
                .ok_or_else(|| SchemaError::new(name, format!("missing [\"{name}\", …, \"{role}\"]")))
        };
        let offer = |role: &str| -> Result<OfferRef, SchemaError> {
            let e = by_role("e", role)?;
            let event_id = EventId::from_hex(&e).map_err(|_| SchemaError::new("e", format!("{role} event id {e:?} is not hex")))?;
            let a = by_role("a", role)?;
            let c = Coordinate::parse(&a).map_err(|e| SchemaError::new("a", format!("{role} {a:?}: {e}")))?;
            if c.kind.as_u16() != KIND_OFFER {
                return Err(SchemaError::new("a", format!("{role} address is not an offer ({KIND_OFFER})")));
            }
            Ok(OfferRef { event_id, pubkey: c.public_key, d: c.identifier })
        };
        let maker = offer("maker")?;
        let taker = offer("taker")?;
        let seller = PublicKey::parse(&by_role("p", "seller")?).map_err(|e| SchemaError::new("p", format!("seller: {e}")))?;
        let buyer = PublicKey::parse(&by_role("p", "buyer")?).map_err(|e| SchemaError::new("p", format!("buyer: {e}")))?;
        let maker_side = if seller == maker.pubkey && buyer == taker.pubkey {
            Side::Sell
        } else if buyer == maker.pubkey && seller == taker.pubkey {
            Side::Buy
        } else {
            return Err(SchemaError::new("p", "seller and buyer must be the maker's and the taker's keys"));
        };
        let amount = parse_u64("amount", required(event, "amount")?)?;
        let sats = parse_u64("sats", required(event, "sats")?)?;
        let pair = |name: &str| -> Result<(u64, u64), SchemaError> {
            match super::tag_values(event, name).unwrap_or_default() {
                [a, b, ..] => Ok((parse_u64(name, a)?, parse_u64(name, b)?)),
                _ => Err(SchemaError::new(name, "needs two values")),
            }
        };
        let (sats_per_lot, lot) = pair("price")?;
        let price = Price::new(sats_per_lot, lot).map_err(|e| SchemaError::new("price", e.to_string()))?;
        if price.sats_for(amount).ok() != Some(sats) {
            return Err(SchemaError::new("sats", format!("{sats} is not {amount} ehash at {price}")));
        }
        let seq = parse_u64("seq", required(event, "seq")?)?;
        let state = TradeState::from_str(required(event, "state")?).map_err(|e| SchemaError::new("state", e))?;
        let (seller_lock_by, buyer_lock_by) = pair("deadline")?;
        let (ehash_locktime, sats_locktime) = pair("locktime")?;
        let times = SettlementTimes { seller_lock_by, buyer_lock_by, ehash_locktime, sats_locktime };
        times.check().map_err(|e| SchemaError::new("locktime", e.to_string()))?;
        let hex32 = |name: &str| -> Result<Option<String>, SchemaError> {
            tag_value(event, name)
                .map(|v| {
                    if v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit()) {
                        Ok(v.to_ascii_lowercase())
                    } else {
                        Err(SchemaError::new(name, "must be 32 bytes of hex"))
                    }
                })
                .transpose()
        };
        let hash = hex32("hash")?;
        let preimage = hex32("preimage")?;
        let ehash_lock = LockStatus::from_str(required(event, "ehash_lock")?).map_err(|e| SchemaError::new("ehash_lock", e))?;
        let sats_lock = LockStatus::from_str(required(event, "sats_lock")?).map_err(|e| SchemaError::new("sats_lock", e))?;
        let reason = tag_value(event, "reason").map(str::to_owned);
        let blame = tag_value(event, "blame").map(|b| Blame::from_str(b).map_err(|e| SchemaError::new("blame", e))).transpose()?;
        Ok(Self {
            id,
            market,
            unit,
            mint_url,
            sat_mint,
            maker,
            taker,
            maker_side,
            amount,
            sats,
            price,
            seq,
            state,
            times,
            hash,
            preimage,
            ehash_lock,
            sats_lock,
            reason,
            blame,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::event::FinalizeEvent;
    use nostr::key::Keys;

    fn trade() -> Trade {
        let maker = Keys::generate().public_key();
        let taker = Keys::generate().public_key();
        Trade {
            id: "ab".repeat(16),
            market: "00".repeat(8),
            unit: "hash_ab12_3".into(),
            mint_url: "http://127.0.0.1:3338".into(),
            sat_mint: "http://127.0.0.1:3339".into(),
            maker: OfferRef { event_id: EventId::from_byte_array([0; 32]), pubkey: maker, d: "m1".into() },
            taker: OfferRef { event_id: EventId::from_byte_array([1; 32]), pubkey: taker, d: "t1".into() },
            maker_side: Side::Buy,
            amount: 2048,
            sats: 6,
            price: Price::new(3, 1024).unwrap(),
            seq: 17,
            state: TradeState::SatsClaimed,
            times: SettlementTimes::new(1000, 60, 300, 600),
            hash: Some("11".repeat(32)),
            preimage: Some("22".repeat(32)),
            ehash_lock: LockStatus::Locked,
            sats_lock: LockStatus::Claimed,
            reason: None,
            blame: None,
        }
    }

    #[test]
    fn round_trip_and_roles() {
        let keys = Keys::generate();
        let t = trade();
        let parsed = Trade::parse(&t.to_builder().finalize(&keys).unwrap()).unwrap();
        assert_eq!(parsed, t);
        assert_eq!(parsed.seller().pubkey, t.taker.pubkey);
        assert_eq!(parsed.buyer().pubkey, t.maker.pubkey);
        let mut failed = trade();
        failed.state = TradeState::Failed;
        failed.reason = Some("the buyer did not lock by its deadline".into());
        failed.blame = Some(Blame::Buyer);
        assert_eq!(Trade::parse(&failed.to_builder().finalize(&keys).unwrap()).unwrap(), failed);
        assert_eq!(TradeState::Settled.nip69(), "success");
        assert_eq!(TradeState::Refunded.nip69(), "canceled");
    }

    #[test]
    fn inconsistent_trades_are_refused() {
        let keys = Keys::generate();
        let field = |t: Trade| Trade::parse(&t.to_builder().finalize(&keys).unwrap()).unwrap_err().field;
        let mut t = trade();
        t.sats = 7;
        assert_eq!(field(t), "sats");
        let mut t = trade();
        t.times.sats_locktime = t.times.ehash_locktime;
        assert_eq!(field(t), "locktime");
        let mut t = trade();
        t.hash = Some("zz".into());
        assert_eq!(field(t), "hash");
        let mut t = trade();
        t.id = "short".into();
        assert_eq!(field(t), "d");
    }
}
