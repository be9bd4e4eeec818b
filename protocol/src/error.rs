//! Errors of the protocol crate: one enum per concern, each naming what was wrong.

/// Work and amount math errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    /// A difficulty exponent outside the supported range.
    #[error("difficulty 2^{0} is out of range (2^-32 ..= 2^192)")]
    DifficultyOutOfRange(i32),
    /// A difficulty that is not a positive finite number.
    #[error("difficulty {0} is not a positive number")]
    InvalidDifficulty(String),
    /// A unit larger than 2^224 hashes.
    #[error("unit size 2^{0} hashes is too large (at most 2^224)")]
    UnitTooLarge(u32),
    /// A share whose work is less than one ehash unit.
    #[error(
        "a share at difficulty 2^{difficulty_exp} is worth less than one ehash unit of 2^{unit_log2} hashes; raise the minimum difficulty to 2^{}",
        *unit_log2 as i64 - 32
    )]
    ShareBelowUnit {
        /// The share's difficulty exponent.
        difficulty_exp: i32,
        /// log2 of the unit size in hashes.
        unit_log2: u32,
    },
    /// A credit too large to store.
    #[error("a single share credit of 2^{0} units is too large (at most 2^62)")]
    CreditOverflow(i32),
}

/// Why a share (or its submission) is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The extranonce2 length differs from what `mining.subscribe` assigned.
    #[error("extranonce2 must be {expected} bytes, got {got}")]
    Extranonce2Size {
        /// Assigned size.
        expected: usize,
        /// Submitted size.
        got: usize,
    },
    /// `version_bits` outside the negotiated version-rolling mask.
    #[error("version bits {bits:08x} are outside the negotiated mask {mask:08x}")]
    VersionBitsOutsideMask {
        /// Submitted bits.
        bits: u32,
        /// Negotiated mask.
        mask: u32,
    },
    /// `version_bits` sent without negotiated version rolling.
    #[error("version bits sent but version rolling was not negotiated (mining.configure)")]
    VersionRollingNotNegotiated,
    /// ntime outside the accepted window.
    #[error("ntime {ntime:08x} is out of range ({min:08x} ..= {max:08x})")]
    NtimeOutOfRange {
        /// Submitted ntime.
        ntime: u32,
        /// Earliest accepted.
        min: u32,
        /// Latest accepted.
        max: u32,
    },
}

/// Errors decoding a Stratum V1 request line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The line is not a JSON object.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The object has no string `method`.
    #[error("request has no \"method\" string")]
    MissingMethod,
    /// A method this server does not implement.
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// The params of a known method are wrong.
    #[error("invalid params for {method}: {detail}")]
    InvalidParams {
        /// The method.
        method: String,
        /// What is wrong.
        detail: String,
    },
}

/// An ehash nostr event that does not follow its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SchemaError {
    /// The tag name, `content`, `kind` or `pubkey` that is wrong.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl SchemaError {
    /// A schema error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Errors parsing ehash identifiers (units, usernames).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// A unit that is not an ehash epoch unit.
    #[error("{0:?} is not an ehash epoch unit (expected hash_<pool-id>_<epoch>)")]
    NotEpochUnit(String),
    /// A pool id with characters other than `[0-9a-z]` or a bad length.
    #[error("pool id {0:?} must be 1 to 16 characters of [0-9a-z]")]
    BadPoolId(String),
    /// A `mining.authorize` username that does not name a quote.
    #[error("username {0:?} must be <quote-id> or <quote-id>.<worker>")]
    BadUsername(String),
    /// A worker name longer than the pool stores.
    #[error("the worker name is {bytes} bytes; use at most {max}")]
    WorkerTooLong {
        /// Its length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

/// Market arithmetic errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketError {
    /// A lot of zero ehash.
    #[error("the lot must be at least 1 ehash")]
    ZeroLot,
    /// A price of zero sats.
    #[error("the price must be at least 1 sat per lot")]
    ZeroPrice,
    /// An amount that is not a whole number of lots.
    #[error("{amount} ehash is not a whole number of lots of {lot}; use a multiple of {lot}")]
    NotWholeLots {
        /// The amount.
        amount: u64,
        /// The lot.
        lot: u64,
    },
    /// A sats total above the bitcoin supply.
    #[error("{0} sats is more than there will ever be (at most 21·10^14)")]
    TooManySats(u128),
    /// Settlement times in the wrong order.
    #[error("settlement times: {0}")]
    BadTimes(String),
    /// A key that cannot be used as a Cashu lock key.
    #[error("key: {0}")]
    BadKey(String),
}
