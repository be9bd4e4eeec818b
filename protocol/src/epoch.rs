//! Pool epochs: one Cashu unit and keyset per epoch.
//!
//! An epoch runs from the moment it opens until the pool finds a block (a share meeting the
//! network target) or the operator closes it. Every share accepted during the epoch is credited
//! in the epoch's own unit, so ehash of different epochs is never fungible: the mint refuses any
//! swap that mixes units.
//!
//! **Unit naming**: `hash_<pool-id>_<epoch>`, e.g. `hash_3f9a1c2e_7`, where `<pool-id>` is 1–16
//! characters of `[0-9a-z]` chosen by the operator (by default the first 8 hex digits of the
//! pool's nostr public key) and `<epoch>` is the epoch number in decimal, starting at 1. Cashu
//! units are case-insensitive and cdk normalises them to lowercase, so the name is lowercase.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::IdentError;

/// Prefix of every epoch unit.
pub const UNIT_PREFIX: &str = "hash_";

/// An epoch's lifecycle state, as announced on nostr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EpochState {
    /// Accepting shares; its unit is the one new quotes are created in.
    Active,
    /// Closed (block found or operator command); issued total is final.
    Closed,
    /// The payout rate is fixed and the block matured: ehash redeems for sats.
    Redeemable,
    /// The redemption window ended.
    Expired,
    /// The block it closed on left the active chain before it matured (a reorg): it pays
    /// nothing and never redeems.
    Orphaned,
}

impl EpochState {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Closed => "closed",
            Self::Redeemable => "redeemable",
            Self::Expired => "expired",
            Self::Orphaned => "orphaned",
        }
    }

    /// Whether the epoch's ehash is worth nothing more (expired or orphaned): markets stop.
    pub fn has_ended(self) -> bool {
        matches!(self, Self::Expired | Self::Orphaned)
    }
}

impl fmt::Display for EpochState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EpochState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "active" => Self::Active,
            "closed" => Self::Closed,
            "redeemable" => Self::Redeemable,
            "expired" => Self::Expired,
            "orphaned" => Self::Orphaned,
            other => return Err(format!("unknown epoch state {other:?} (active|closed|redeemable|expired|orphaned)")),
        })
    }
}

/// Why an epoch closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseReason {
    /// A share met the network target.
    Block,
    /// The operator closed it.
    Operator,
}

impl CloseReason {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Operator => "operator",
        }
    }
}

impl FromStr for CloseReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(Self::Block),
            "operator" => Ok(Self::Operator),
            other => Err(format!("unknown close reason {other:?} (block|operator)")),
        }
    }
}

/// A validated pool id (1–16 characters of `[0-9a-z]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PoolId(String);

impl PoolId {
    /// Validate a pool id.
    pub fn new(s: &str) -> Result<Self, IdentError> {
        if s.is_empty() || s.len() > 16 || !s.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()) {
            return Err(IdentError::BadPoolId(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The default pool id for a nostr public key (hex): its first 8 hex digits.
    pub fn from_pubkey_hex(hex: &str) -> Result<Self, IdentError> {
        Self::new(&hex.chars().take(8).collect::<String>().to_ascii_lowercase())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PoolId {
    type Error = IdentError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<PoolId> for String {
    fn from(p: PoolId) -> String {
        p.0
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An epoch's unit: pool id and epoch number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EpochUnit {
    /// The pool.
    pub pool: PoolId,
    /// The epoch number (from 1).
    pub epoch: u32,
}

impl EpochUnit {
    /// The unit of `epoch` at `pool`.
    pub fn new(pool: PoolId, epoch: u32) -> Self {
        Self { pool, epoch }
    }

    /// The unit string, `hash_<pool>_<epoch>`.
    pub fn unit(&self) -> String {
        format!("{UNIT_PREFIX}{}_{}", self.pool, self.epoch)
    }

    /// Parse a unit string (case-insensitive).
    pub fn parse(unit: &str) -> Result<Self, IdentError> {
        let bad = || IdentError::NotEpochUnit(unit.to_owned());
        let lower = unit.trim().to_ascii_lowercase();
        let rest = lower.strip_prefix(UNIT_PREFIX).ok_or_else(bad)?;
        let (pool, epoch) = rest.rsplit_once('_').ok_or_else(bad)?;
        let pool = PoolId::new(pool).map_err(|_| bad())?;
        if epoch.is_empty() || !epoch.chars().all(|c| c.is_ascii_digit()) || epoch.starts_with('0') {
            return Err(bad());
        }
        let epoch: u32 = epoch.parse().map_err(|_| bad())?;
        Ok(Self { pool, epoch })
    }
}

impl fmt::Display for EpochUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.unit())
    }
}

/// The Cashu custom payment method of redemptions (NUT-04 in `sat`, NUT-05 in epoch units).
pub const REDEEM_METHOD: &str = "ehash-redeem";

/// Parts per million.
pub const PPM: u64 = 1_000_000;

/// What an epoch closed on a block pays out in total: the block reward less the pool's fee of
/// `fee_ppm` parts per million, the fee floored (rounding in the miners' favour).
pub fn epoch_payout(reward: u64, fee_ppm: u32) -> u64 {
    let fee = (u128::from(reward) * u128::from(fee_ppm) / u128::from(PPM)) as u64;
    reward.saturating_sub(fee)
}

/// Expected sats per ehash of work on a template (the "hashprice" of an open epoch):
///
/// `payout × 2^unit_log2 × (T + 1) / 2^256`, where `payout = epoch_payout(coinbase_value,
/// fee_ppm)` (the template's subsidy plus fees, less the pool's fee) and `T` the target of the
/// template's `nbits`: a hash finds a block with probability `(T + 1) / 2^256`, so one ehash of
/// `2^unit_log2` hashes earns that share of a block's payout. (With the network difficulty
/// `D`, `2^256 / (T + 1)` is about `D × 2^32`.) An estimate for valuing an open epoch: the epoch
/// pays what its block really pays, shared by what was really issued.
pub fn hashprice(nbits: u32, coinbase_value: u64, fee_ppm: u32, unit_log2: u32) -> f64 {
    let target = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(nbits));
    let t = target.to_be_bytes().iter().fold(0f64, |acc, b| acc * 256.0 + f64::from(*b));
    let p_block = (t + 1.0) / 2f64.powi(256);
    epoch_payout(coinbase_value, fee_ppm) as f64 * 2f64.powi(unit_log2 as i32) * p_block
}

/// What a holder can expect for ehash of an epoch, and on what that rests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueBasis {
    /// The epoch is redeemable: its ehash pays `payout / issued` sats each, now.
    Redeemable,
    /// The epoch closed on a block: it will pay `payout / issued` once the block matures (unless
    /// the block leaves the chain first).
    Payout,
    /// The epoch is open: an estimate from the pool's hashprice (expected sats per ehash of work
    /// on its current template); what it really pays depends on the block that closes it.
    Estimate,
}

/// What `amount` ehash of an epoch is worth in sats, and on what basis: the redemption value once
/// the epoch has a payout ([`redeem_sats`]), else for an open epoch `floor(amount × hashprice)`;
/// `None` when it pays nothing (closed by the operator, orphaned, expired) or nothing is known.
pub fn value_of(amount: u64, state: EpochState, payout: Option<u64>, issued: Option<u64>, hashprice: Option<f64>) -> Option<(u64, ValueBasis)> {
    match (state, payout, issued) {
        (EpochState::Redeemable, Some(p), Some(i)) => Some((redeem_sats(amount, p, i), ValueBasis::Redeemable)),
        (EpochState::Closed, Some(p), Some(i)) => Some((redeem_sats(amount, p, i), ValueBasis::Payout)),
        (EpochState::Active, _, _) => hashprice.filter(|h| h.is_finite() && *h >= 0.0).map(|h| ((amount as f64 * h).floor().min(u64::MAX as f64) as u64, ValueBasis::Estimate)),
        _ => None,
    }
}

/// Sats paid for redeeming `amount` ehash of an epoch that issued `issued` and pays `payout`:
/// `floor(amount × payout / issued)`, in 128 bits. Flooring every redemption means the total paid
/// can never exceed the payout; what the floors leave, and whatever is not redeemed before the
/// epoch expires, stays with the pool.
pub fn redeem_sats(amount: u64, payout: u64, issued: u64) -> u64 {
    if issued == 0 {
        return 0;
    }
    (u128::from(amount) * u128::from(payout) / u128::from(issued)).min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lot_is_worth_its_redemption_its_payout_or_the_hashprice_estimate() {
        let (p, i) = (Some(306_250_000), Some(1_000_000));
        assert_eq!(value_of(128, EpochState::Redeemable, p, i, None), Some((39_200, ValueBasis::Redeemable)));
        assert_eq!(value_of(128, EpochState::Closed, p, i, None), Some((39_200, ValueBasis::Payout)));
        assert_eq!(value_of(128, EpochState::Active, None, None, Some(2.5)), Some((320, ValueBasis::Estimate)));
        // closed by the operator (no payout), orphaned, expired: worth nothing known
        assert_eq!(value_of(128, EpochState::Closed, None, i, None), None);
        assert_eq!(value_of(128, EpochState::Orphaned, p, i, None), None);
        assert_eq!(value_of(128, EpochState::Expired, p, i, None), None);
        assert_eq!(value_of(128, EpochState::Active, None, None, Some(f64::NAN)), None);
    }

    #[test]
    fn payouts_are_exact_integers_that_never_pay_more_than_the_block() {
        assert_eq!(epoch_payout(312_500_000, 20_000), 306_250_000);
        assert_eq!(epoch_payout(999, 20_000), 980, "a fee of 19.98 sats is floored to 19");
        assert_eq!(epoch_payout(u64::MAX, 0), u64::MAX);
        assert_eq!(epoch_payout(100, 1_000_000), 0);
        // three holders of 1/3 each: the floors leave 1 sat with the pool
        let (payout, issued) = (100, 3);
        assert_eq!(redeem_sats(1, payout, issued), 33);
        assert_eq!(3 * redeem_sats(1, payout, issued), 99);
        assert_eq!(redeem_sats(3, payout, issued), 100);
        // no overflow at the extremes
        assert_eq!(redeem_sats(u64::MAX, u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(redeem_sats(5, 10, 0), 0);
        assert_eq!(redeem_sats(1, 1, 2), 0, "dust redeems for nothing");
    }

    #[test]
    fn hashprice_is_the_payout_shared_by_the_ehash_a_block_takes() {
        let close = |a: f64, b: f64| (a - b).abs() / b < 1e-9;
        // difficulty 1 (nbits 1d00ffff, T = 0xffff × 2^208): 2^48 / 0xffff hashes per block
        let per_block = 2f64.powi(48) / 65535.0;
        assert!(close(hashprice(0x1d00ffff, 312_500_000, 0, 32), 312_500_000.0 * 2f64.powi(32) / per_block));
        assert!(close(hashprice(0x1d00ffff, 312_500_000, 20_000, 32), 306_250_000.0 * 2f64.powi(32) / per_block));
        // regtest (nbits 207fffff): about 2 hashes per block, so a 2^12-hash ehash earns 2048 blocks
        let h = hashprice(0x207fffff, 1_000, 0, 12);
        assert!(close(h, 1_000.0 * 4096.0 * (8_388_607.0 * 2f64.powi(232) + 1.0) / 2f64.powi(256)), "{h}");
        // mainnet-like difficulty (nbits 17034219, about 1.1e14): a few millionths of a sat
        let h = hashprice(0x17034219, 315_000_000, 20_000, 32);
        assert!(h > 1e-6 && h < 1e-5, "{h}");
    }

    #[test]
    fn unit_names_round_trip() {
        let u = EpochUnit::new(PoolId::new("3f9a1c2e").unwrap(), 7);
        assert_eq!(u.unit(), "hash_3f9a1c2e_7");
        assert_eq!(EpochUnit::parse("HASH_3F9A1C2E_7").unwrap(), u);
        for bad in ["hash", "hash_x", "hash__1", "hash_ab_", "hash_ab_01", "hash_a-b_1", "sat", "hash_ab_x1"] {
            assert!(EpochUnit::parse(bad).is_err(), "{bad}");
        }
        assert!(PoolId::new("ABC").is_err());
        assert!(PoolId::new("0123456789abcdefg").is_err());
        assert_eq!(PoolId::from_pubkey_hex("3F9A1C2E55").unwrap().as_str(), "3f9a1c2e");
    }

    #[test]
    fn states_round_trip() {
        for s in [EpochState::Active, EpochState::Closed, EpochState::Redeemable, EpochState::Expired] {
            assert_eq!(s.as_str().parse::<EpochState>().unwrap(), s);
        }
        assert!("open".parse::<EpochState>().is_err());
    }
}
