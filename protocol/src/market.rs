//! Market arithmetic and identifiers: sides, prices per lot, exact trade amounts, trade ids,
//! settlement times and lock keys. Everything is an integer; products are taken in 128 bits.
//!
//! A price is `sats_per_lot` sats for `lot` ehash units. Offer amounts are whole lots, so a fill
//! of `q` ehash costs exactly `q / lot × sats_per_lot` sats and no trade ever rounds. A holder of
//! a number of ehash that is not a whole number of lots offers [`whole_lots`] of it, rounded down
//! in the holder's favour.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use bitcoin::hashes::{Hash, sha256};
use serde::{Deserialize, Serialize};

use crate::error::MarketError;

/// Most sats a single offer or trade may involve: the bitcoin supply, 21·10^14 sats.
pub const MAX_SATS: u64 = 2_100_000_000_000_000;

/// Which side of the market an offer is on, in terms of ehash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Sells ehash for sats.
    Sell,
    /// Buys ehash with sats.
    Buy,
}

impl Side {
    /// The wire string (NIP-69 `k`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sell => "sell",
            Self::Buy => "buy",
        }
    }

    /// The other side.
    pub fn opposite(self) -> Self {
        match self {
            Self::Sell => Self::Buy,
            Self::Buy => Self::Sell,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sell" => Ok(Self::Sell),
            "buy" => Ok(Self::Buy),
            _ => Err(format!("{s:?} is not sell or buy")),
        }
    }
}

/// A price: `sats_per_lot` sats for every `lot` ehash units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Price {
    /// Sats paid per lot.
    pub sats_per_lot: u64,
    /// Ehash units per lot.
    pub lot: u64,
}

impl Price {
    /// A price; both numbers must be positive.
    pub fn new(sats_per_lot: u64, lot: u64) -> Result<Self, MarketError> {
        if lot == 0 {
            return Err(MarketError::ZeroLot);
        }
        if sats_per_lot == 0 {
            return Err(MarketError::ZeroPrice);
        }
        Ok(Self { sats_per_lot, lot })
    }

    /// Compare the sats-per-ehash rates of two prices exactly (cross-multiplied in 128 bits).
    pub fn cmp_rate(&self, other: &Price) -> Ordering {
        let a = u128::from(self.sats_per_lot) * u128::from(other.lot);
        let b = u128::from(other.sats_per_lot) * u128::from(self.lot);
        a.cmp(&b)
    }

    /// The sats for `amount` ehash: `amount / lot × sats_per_lot`, exact. `amount` must be a
    /// whole number of lots and the result at most [`MAX_SATS`].
    pub fn sats_for(&self, amount: u64) -> Result<u64, MarketError> {
        if self.lot == 0 {
            return Err(MarketError::ZeroLot);
        }
        if !amount.is_multiple_of(self.lot) {
            return Err(MarketError::NotWholeLots { amount, lot: self.lot });
        }
        let sats = u128::from(amount / self.lot) * u128::from(self.sats_per_lot);
        if sats > u128::from(MAX_SATS) {
            return Err(MarketError::TooManySats(sats));
        }
        Ok(sats as u64)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sat per {} ehash", self.sats_per_lot, self.lot)
    }
}

/// The largest whole number of lots in `amount`, in ehash (rounded down: the remainder stays
/// with its holder).
pub fn whole_lots(amount: u64, lot: u64) -> u64 {
    if lot == 0 { 0 } else { amount - amount % lot }
}

/// Whether a buy at `bid` and a sell at `ask` cross (the buyer pays at least the seller asks).
pub fn crosses(bid: &Price, ask: &Price) -> bool {
    bid.cmp_rate(ask) != Ordering::Less
}

/// The id of the trade between a taker's and a maker's offer versions: the first 16 bytes, in
/// hex, of `sha256(taker event id ‖ maker event id)` (ids as 32 raw bytes).
pub fn trade_id(taker_event_id: &[u8; 32], maker_event_id: &[u8; 32]) -> String {
    let mut data = [0u8; 64];
    data[..32].copy_from_slice(taker_event_id);
    data[32..].copy_from_slice(maker_event_id);
    let h = sha256::Hash::hash(&data);
    hex::encode(&h.to_byte_array()[..16])
}

/// The timetable of one trade's settlement (unix seconds), fixed by the exchange at the match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementTimes {
    /// The seller's lock must be sent by then.
    pub seller_lock_by: u64,
    /// The buyer's lock must be sent by then.
    pub buyer_lock_by: u64,
    /// Locktime of the seller's ehash lock (T1): refundable to the seller after it.
    pub ehash_locktime: u64,
    /// Locktime of the buyer's sats lock (T2): refundable to the buyer after it.
    pub sats_locktime: u64,
}

impl SettlementTimes {
    /// The timetable of a trade matched at `t0`: each party gets `lock_secs` for its lock, the
    /// seller `claim_secs` to claim the sats, and the buyer's lock expires `margin_secs` before
    /// the seller's (`T2 = t0 + 2·lock + claim`, `T1 = T2 + margin`).
    pub fn new(t0: u64, lock_secs: u64, claim_secs: u64, margin_secs: u64) -> Self {
        let seller_lock_by = t0.saturating_add(lock_secs);
        let buyer_lock_by = seller_lock_by.saturating_add(lock_secs);
        let sats_locktime = buyer_lock_by.saturating_add(claim_secs);
        let ehash_locktime = sats_locktime.saturating_add(margin_secs);
        Self { seller_lock_by, buyer_lock_by, ehash_locktime, sats_locktime }
    }

    /// Seconds between the two locktimes (the buyer's safety margin).
    pub fn margin(&self) -> u64 {
        self.ehash_locktime.saturating_sub(self.sats_locktime)
    }

    /// Why an agent on `side` with these settings refuses a trade with these times at `now`, if
    /// it does: times out of order ([`Self::check`]), a margin below `min_margin_secs`, or its own
    /// lock (the seller's is the ehash lock, T1; the buyer's the sats lock, T2) locked for more
    /// than `max_lock_secs` from now.
    pub fn refusal(&self, side: Side, now: u64, min_margin_secs: u64, max_lock_secs: u64) -> Option<String> {
        if let Err(e) = self.check() {
            return Some(format!("the trade's times are out of order: {e}"));
        }
        if self.margin() < min_margin_secs {
            return Some(format!("the locktimes leave a margin of {} s; this agent needs {min_margin_secs}", self.margin()));
        }
        let mine = match side {
            Side::Sell => self.ehash_locktime,
            Side::Buy => self.sats_locktime,
        };
        if mine.saturating_sub(now) > max_lock_secs {
            return Some(format!("my lock would stay locked until {mine}, longer than this agent's {max_lock_secs} s"));
        }
        None
    }

    /// Check the ordering every agent relies on: deadlines before locktimes, T2 before T1.
    pub fn check(&self) -> Result<(), MarketError> {
        if self.seller_lock_by > self.buyer_lock_by
            || self.buyer_lock_by >= self.sats_locktime
            || self.sats_locktime >= self.ehash_locktime
        {
            return Err(MarketError::BadTimes(format!(
                "need seller deadline {} ≤ buyer deadline {} < sats locktime {} < ehash locktime {}",
                self.seller_lock_by, self.buyer_lock_by, self.sats_locktime, self.ehash_locktime
            )));
        }
        Ok(())
    }
}

/// One trade of an offer as the offer's own agent sees it, for [`offer_remaining`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferTrade {
    /// Ehash traded.
    pub amount: u64,
    /// Whether the trade failed (is over with nothing more to do).
    pub failed: bool,
    /// Whether anything of the agent's was locked for it.
    pub locked: bool,
}

/// What is left of an offer whose latest version offers `amount` (protocol §9): every trade of
/// the offer, of any version, takes its amount, except one that failed with nothing of the
/// agent's locked (the exchange returns that quantity, §10). A new version's amount is the
/// offer's total, as the exchange books it: an edit never undoes fills.
pub fn offer_remaining(amount: u64, trades: impl IntoIterator<Item = OfferTrade>) -> u64 {
    let taken = trades.into_iter().filter(|t| !t.failed || t.locked).fold(0u64, |sum, t| sum.saturating_add(t.amount));
    amount.saturating_sub(taken)
}

/// What an exchange says about itself at `GET /api/info`: the key its trade events are signed
/// with and offers must name, its lot, the relays it watches, and its settlement windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeInfo {
    /// The exchange's nostr public key (hex).
    pub pubkey: String,
    /// Ehash units per lot; every offer's price is per this lot.
    pub lot: u64,
    /// Relays the exchange reads offers from and publishes trades to.
    pub relays: Vec<String>,
    /// Seconds each party has for its lock.
    pub lock_secs: u64,
    /// Seconds the seller has to claim the sats.
    pub claim_secs: u64,
    /// Seconds between the two locktimes.
    pub margin_secs: u64,
    /// Offers dated further than this from the exchange's clock are refused.
    #[serde(default = "default_skew")]
    pub max_clock_skew_secs: u64,
}

fn default_skew() -> u64 {
    600
}

/// The Cashu lock key of a nostr key: `02 ‖ x-only key` (as NIP-61). BIP-340 signatures by the
/// nostr secret key verify against it.
pub fn lock_key(pubkey: &nostr::key::PublicKey) -> Result<cashu::PublicKey, MarketError> {
    cashu::PublicKey::from_hex(format!("02{}", pubkey.to_hex())).map_err(|e| MarketError::BadKey(e.to_string()))
}

/// The Cashu signing key of a nostr secret key (the same scalar).
pub fn signing_key(secret: &nostr::key::SecretKey) -> Result<cashu::SecretKey, MarketError> {
    cashu::SecretKey::from_slice(&secret.secret_bytes()).map_err(|e| MarketError::BadKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trades_are_exact_whole_lots() {
        let p = Price::new(3, 1024).unwrap();
        assert_eq!(p.sats_for(0).unwrap(), 0);
        assert_eq!(p.sats_for(1024).unwrap(), 3);
        assert_eq!(p.sats_for(5 * 1024).unwrap(), 15);
        assert_eq!(p.sats_for(1000).unwrap_err(), MarketError::NotWholeLots { amount: 1000, lot: 1024 });
        assert_eq!(p.sats_for(1025).unwrap_err(), MarketError::NotWholeLots { amount: 1025, lot: 1024 });
        // the largest amounts do not overflow: products are taken in 128 bits
        let p = Price::new(u64::MAX, 1).unwrap();
        assert!(matches!(p.sats_for(u64::MAX), Err(MarketError::TooManySats(_))));
        assert_eq!(Price::new(MAX_SATS, 1).unwrap().sats_for(1).unwrap(), MAX_SATS);
        assert!(Price::new(MAX_SATS, 1).unwrap().sats_for(2).is_err());
        assert_eq!(Price::new(0, 1).unwrap_err(), MarketError::ZeroPrice);
        assert_eq!(Price::new(1, 0).unwrap_err(), MarketError::ZeroLot);
    }

    #[test]
    fn remainders_stay_with_the_holder() {
        assert_eq!(whole_lots(5000, 1024), 4096);
        assert_eq!(whole_lots(1023, 1024), 0);
        assert_eq!(whole_lots(2048, 1024), 2048);
        assert_eq!(whole_lots(7, 0), 0);
    }

    #[test]
    fn rates_compare_exactly_across_lots() {
        let a = Price::new(3, 1024).unwrap(); // 3/1024
        let b = Price::new(6, 2048).unwrap(); // the same rate
        let c = Price::new(7, 2048).unwrap(); // higher
        assert_eq!(a.cmp_rate(&b), Ordering::Equal);
        assert_eq!(a.cmp_rate(&c), Ordering::Less);
        assert!(crosses(&a, &b) && crosses(&c, &a) && !crosses(&a, &c));
        // no float could tell these apart: (2^53+1)/2^53 vs 1
        let x = Price::new((1 << 53) + 1, 1 << 53).unwrap();
        let y = Price::new(1, 1).unwrap();
        assert_eq!(x.cmp_rate(&y), Ordering::Greater);
    }

    #[test]
    fn trade_ids_are_deterministic_and_ordered() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert_eq!(trade_id(&a, &b), trade_id(&a, &b));
        assert_ne!(trade_id(&a, &b), trade_id(&b, &a));
        assert_eq!(trade_id(&a, &b).len(), 32);
    }

    #[test]
    fn the_seller_lock_outlives_the_buyer_lock_by_the_margin() {
        let t = SettlementTimes::new(1000, 60, 300, 600);
        assert_eq!((t.seller_lock_by, t.buyer_lock_by, t.sats_locktime, t.ehash_locktime), (1060, 1120, 1420, 2020));
        assert_eq!(t.margin(), 600);
        t.check().unwrap();
        assert!(SettlementTimes::new(1000, 60, 300, 0).check().is_err());
        assert!(SettlementTimes::new(1000, 60, 0, 10).check().is_err());
    }

    #[test]
    fn nostr_keys_sign_for_their_lock_key() {
        let keys = nostr::key::Keys::generate();
        let pk = lock_key(&keys.public_key()).unwrap();
        let sk = signing_key(keys.secret_key()).unwrap();
        let sig = sk.sign(b"ehash").unwrap();
        pk.verify(b"ehash", &sig).unwrap();
    }
}
