//! Work and amount math: share difficulties, targets and ehash credits.
//!
//! Share difficulties are powers of two, `d = 2^exp` ([`DifficultyExp`]). The share target is the
//! Stratum V1 target every miner computes from `mining.set_difficulty`:
//! `T = DIFF1 / d` with `DIFF1 = 0x00000000FFFF0000…` (rust-bitcoin's `Target::MAX`), which for a
//! power of two is an exact shift of `DIFF1`.
//!
//! A share at difficulty `d` is credited `d · 2^32` hashes of work, the convention that difficulty 1
//! is 2^32 hashes. (The exact expectation for `DIFF1` is `2^256 / (DIFF1 + 1) = 2^32 · 65536/65535`;
//! the convention under-counts every share by the same factor 1/65535, so every share keeps its
//! exact relative weight.) One ehash unit is `2^unit_log2` hashes ([`UnitSize`]), so a share earns
//! `2^(32 + exp − unit_log2)` units: an exact integer whenever the share difficulty is at least one
//! unit. The credit depends only on the target the pool assigned, never on how far below the target
//! the share's hash happened to land.

use bitcoin::{BlockHash, CompactTarget, Target};

use crate::error::WorkError;

/// Smallest supported difficulty exponent (difficulty 2^-32: target `DIFF1 << 32`, just below 2^256).
pub const MIN_DIFFICULTY_EXP: i32 = -32;
/// Largest supported difficulty exponent (difficulty 2^192).
pub const MAX_DIFFICULTY_EXP: i32 = 192;
/// log2 of the hashes credited for one share of difficulty 1.
pub const DIFF1_HASHES_LOG2: i32 = 32;

/// A power-of-two difficulty: `difficulty = 2^exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DifficultyExp(i32);

impl DifficultyExp {
    /// The hardest supported difficulty, 2^[`MAX_DIFFICULTY_EXP`].
    pub const MAX: Self = Self(MAX_DIFFICULTY_EXP);

    /// A difficulty exponent, checked against [`MIN_DIFFICULTY_EXP`]..=[`MAX_DIFFICULTY_EXP`].
    pub fn new(exp: i32) -> Result<Self, WorkError> {
        if (MIN_DIFFICULTY_EXP..=MAX_DIFFICULTY_EXP).contains(&exp) {
            Ok(Self(exp))
        } else {
            Err(WorkError::DifficultyOutOfRange(exp))
        }
    }

    /// The exponent.
    pub fn exp(self) -> i32 {
        self.0
    }

    /// The difficulty as sent in `mining.set_difficulty` (exact for powers of two).
    pub fn as_f64(self) -> f64 {
        2f64.powi(self.0)
    }

    /// The largest power of two not above `difficulty` (for `mining.suggest_difficulty`).
    pub fn floor_of(difficulty: f64) -> Result<Self, WorkError> {
        if !difficulty.is_finite() || difficulty <= 0.0 {
            return Err(WorkError::InvalidDifficulty(difficulty.to_string()));
        }
        let exp = difficulty.log2().floor();
        let exp = exp.clamp(MIN_DIFFICULTY_EXP as f64, MAX_DIFFICULTY_EXP as f64) as i32;
        Self::new(exp)
    }

    /// The share target for this difficulty: `DIFF1 / 2^exp`, exact.
    pub fn target(self) -> Target {
        let diff1 = Target::MAX.to_be_bytes();
        let bytes = if self.0 >= 0 {
            shift_right_be(diff1, self.0 as u32)
        } else {
            shift_left_be(diff1, (-self.0) as u32)
        };
        Target::from_be_bytes(bytes)
    }

    /// The easiest difficulty whose target is at or below `target` (a pool's channel target, as
    /// Stratum V2 sends it): every hash that meets its target meets `target`. Exact for the targets
    /// of powers of two; `None` for a target harder than the hardest difficulty.
    pub fn within_target(target: Target) -> Option<Self> {
        (MIN_DIFFICULTY_EXP..=MAX_DIFFICULTY_EXP).map(Self).find(|d| d.target() <= target)
    }

    /// The compact (`nBits`) form of [`Self::target`]; exact for every power of two in range.
    pub fn compact(self) -> CompactTarget {
        self.target().to_compact_lossy()
    }

    /// The one-byte tag of this difficulty in a job's coinbase (protocol §4, "One difficulty per
    /// header"): `exp − MIN_DIFFICULTY_EXP`, 0 ..= 224.
    pub fn tag(self) -> u8 {
        // in range by construction: 0 ..= MAX − MIN = 224
        u8::try_from(self.0 - MIN_DIFFICULTY_EXP).unwrap_or(u8::MAX)
    }

    /// The difficulty a coinbase tag names.
    pub fn from_tag(tag: u8) -> Result<Self, WorkError> {
        Self::new(i32::from(tag) + MIN_DIFFICULTY_EXP)
    }

    /// The difficulty one step up (twice as hard), saturating at the maximum.
    pub fn harder(self) -> Self {
        Self(self.0.saturating_add(1).min(MAX_DIFFICULTY_EXP))
    }

    /// The difficulty one step down (half as hard), saturating at the minimum.
    pub fn easier(self) -> Self {
        Self(self.0.saturating_sub(1).max(MIN_DIFFICULTY_EXP))
    }
}

impl std::fmt::Display for DifficultyExp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "2^{}", self.0)
    }
}

/// The size of one ehash unit in expected hashes: `2^log2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnitSize {
    log2: u32,
}

impl UnitSize {
    /// A unit of `2^log2` hashes. `log2` must be at most 224.
    pub fn new(log2: u32) -> Result<Self, WorkError> {
        if log2 > 224 {
            return Err(WorkError::UnitTooLarge(log2));
        }
        Ok(Self { log2 })
    }

    /// log2 of the hashes in one unit.
    pub fn log2(self) -> u32 {
        self.log2
    }

    /// The smallest share difficulty that earns at least one whole unit.
    pub fn min_difficulty(self) -> DifficultyExp {
        DifficultyExp((self.log2 as i32 - DIFF1_HASHES_LOG2).max(MIN_DIFFICULTY_EXP))
    }

    /// The ehash amount credited for one accepted share at `difficulty`.
    ///
    /// Errors if the share is worth less than one unit, or more than 2^62 units (cdk stores
    /// amounts as signed 64-bit integers, and quotes accumulate many shares).
    pub fn credit(self, difficulty: DifficultyExp) -> Result<u64, WorkError> {
        let log2 = DIFF1_HASHES_LOG2 + difficulty.exp() - self.log2 as i32;
        if log2 < 0 {
            return Err(WorkError::ShareBelowUnit {
                difficulty_exp: difficulty.exp(),
                unit_log2: self.log2,
            });
        }
        if log2 > 62 {
            return Err(WorkError::CreditOverflow(log2));
        }
        Ok(1u64 << log2)
    }
}

/// Whether `hash` meets `target` (`hash ≤ target`, both as little-endian 256-bit integers).
pub fn meets(hash: BlockHash, target: Target) -> bool {
    target.is_met_by(hash)
}

/// The difficulty a hash achieved, `DIFF1 / hash`, for logs and display only (never for money).
pub fn achieved_difficulty(hash: BlockHash) -> f64 {
    use bitcoin::hashes::Hash as _;
    let t = Target::from_le_bytes(hash.to_byte_array());
    if t == Target::ZERO {
        return f64::INFINITY;
    }
    t.difficulty_float()
}

fn shift_left_be(bytes: [u8; 32], n: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    let byte_shift = (n / 8) as usize;
    let bit_shift = n % 8;
    for (i, o) in out.iter_mut().enumerate() {
        let src = i + byte_shift;
        if src >= 32 {
            break;
        }
        let mut v = (bytes[src] as u16) << bit_shift;
        if bit_shift > 0 && src + 1 < 32 {
            v |= (bytes[src + 1] as u16) >> (8 - bit_shift);
        }
        *o = v as u8;
    }
    out
}

fn shift_right_be(bytes: [u8; 32], n: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    let byte_shift = (n / 8) as usize;
    let bit_shift = n % 8;
    for i in (0..32).rev() {
        if i < byte_shift {
            break;
        }
        let src = i - byte_shift;
        let mut v = (bytes[src] as u16) >> bit_shift;
        if bit_shift > 0 && src >= 1 {
            v |= ((bytes[src - 1] as u16) << (8 - bit_shift)) & 0xff;
        }
        out[i] = v as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difficulty_one_is_diff1() {
        let d = DifficultyExp::new(0).unwrap();
        assert_eq!(d.target(), Target::MAX);
        assert_eq!(d.compact().to_consensus(), 0x1d00ffff);
    }

    #[test]
    fn power_of_two_targets_are_exact() {
        // 2^-10: DIFF1 << 10 = 0x000003fffc00...
        let t = DifficultyExp::new(-10).unwrap().target();
        assert_eq!(&t.to_be_bytes()[..6], &[0x00, 0x00, 0x03, 0xff, 0xfc, 0x00]);
        assert_eq!(t.difficulty_float(), 0.0009765625);
        // 2^5: DIFF1 >> 5
        let t = DifficultyExp::new(5).unwrap().target();
        assert_eq!(t.difficulty_float(), 32.0);
        // every exponent round-trips through its compact form exactly
        for exp in MIN_DIFFICULTY_EXP..=MAX_DIFFICULTY_EXP {
            let d = DifficultyExp::new(exp).unwrap();
            assert_eq!(Target::from_compact(d.compact()), d.target(), "exp {exp}");
            assert_eq!(d.target().difficulty_float(), d.as_f64(), "exp {exp}");
        }
    }

    #[test]
    fn a_channel_target_gives_the_easiest_difficulty_within_it() {
        // a power of two's target is its own difficulty
        for exp in [MIN_DIFFICULTY_EXP, -18, 0, 7, MAX_DIFFICULTY_EXP] {
            let d = DifficultyExp::new(exp).unwrap();
            assert_eq!(DifficultyExp::within_target(d.target()), Some(d), "exp {exp}");
        }
        // between two powers of two: the harder one, whose shares all meet the target
        let d = DifficultyExp::new(-18).unwrap();
        let mut below = d.target().to_be_bytes();
        // minus one, borrowing from the left
        for b in below.iter_mut().rev() {
            let (v, borrow) = b.overflowing_sub(1);
            *b = v;
            if !borrow {
                break;
            }
        }
        let just_below = Target::from_be_bytes(below);
        assert!(just_below < d.target() && just_below > d.harder().target());
        assert_eq!(DifficultyExp::within_target(just_below), Some(d.harder()));
        // the easiest target there is (all ones) takes the easiest difficulty; one below the
        // hardest difficulty's target is out of range
        assert_eq!(DifficultyExp::within_target(Target::from_le_bytes([0xff; 32])), DifficultyExp::new(MIN_DIFFICULTY_EXP).ok());
        assert_eq!(DifficultyExp::within_target(Target::ZERO), None);
    }

    #[test]
    fn out_of_range_difficulty_is_refused() {
        assert!(DifficultyExp::new(MIN_DIFFICULTY_EXP - 1).is_err());
        assert!(DifficultyExp::new(MAX_DIFFICULTY_EXP + 1).is_err());
        for exp in [MIN_DIFFICULTY_EXP, -18, 0, MAX_DIFFICULTY_EXP] {
            let d = DifficultyExp::new(exp).unwrap();
            assert_eq!(DifficultyExp::from_tag(d.tag()).unwrap(), d);
        }
        assert_eq!(DifficultyExp::new(-32).unwrap().tag(), 0);
        assert_eq!(DifficultyExp::new(0).unwrap().tag(), 32);
        assert!(DifficultyExp::from_tag(225).is_err());
        assert!(DifficultyExp::floor_of(0.0).is_err());
        assert!(DifficultyExp::floor_of(f64::NAN).is_err());
        assert_eq!(DifficultyExp::floor_of(1000.0).unwrap().exp(), 9);
        assert_eq!(DifficultyExp::floor_of(0.001).unwrap().exp(), -10);
    }

    #[test]
    fn credit_is_the_target_work_in_units() {
        let unit = UnitSize::new(32).unwrap(); // 1 unit = one difficulty-1 share
        assert_eq!(unit.credit(DifficultyExp::new(0).unwrap()).unwrap(), 1);
        assert_eq!(unit.credit(DifficultyExp::new(10).unwrap()).unwrap(), 1024);
        assert!(matches!(
            unit.credit(DifficultyExp::new(-1).unwrap()),
            Err(WorkError::ShareBelowUnit { .. })
        ));
        let unit = UnitSize::new(16).unwrap(); // devnet: 1 unit = 65536 hashes
        assert_eq!(unit.min_difficulty().exp(), -16);
        assert_eq!(unit.credit(DifficultyExp::new(-16).unwrap()).unwrap(), 1);
        assert_eq!(unit.credit(DifficultyExp::new(-12).unwrap()).unwrap(), 16);
        // doubling the difficulty doubles the credit: the credit follows the target
        for exp in -16..20 {
            let a = unit.credit(DifficultyExp::new(exp).unwrap()).unwrap();
            let b = unit.credit(DifficultyExp::new(exp + 1).unwrap()).unwrap();
            assert_eq!(b, 2 * a);
        }
        assert!(matches!(
            UnitSize::new(0).unwrap().credit(DifficultyExp::new(40).unwrap()),
            Err(WorkError::CreditOverflow(_))
        ));
    }

    #[test]
    fn credit_matches_rust_bitcoin_work_within_the_diff1_convention() {
        // rust-bitcoin's Work for DIFF1 is 2^256/(DIFF1+1) = 0x1_0001_0001 ≈ 2^32 · 65536/65535.
        let w = Target::MAX.to_work();
        assert_eq!(format!("{w:x}").trim_start_matches("0x").trim_start_matches('0'), "100010001");
    }
}
