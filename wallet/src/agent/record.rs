//! What an agent stores about its offers and trades.

use cdk::nuts::{KeySet, Proofs};
use ehash_protocol::market::{Price, SettlementTimes, Side};
use serde::{Deserialize, Serialize};

use crate::durable::PendingSwap;

/// An offer this agent made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRecord {
    /// The offer id (`d`).
    pub d: String,
    /// Derivation index of its key.
    pub key_index: u32,
    /// Its key (hex).
    pub pubkey: String,
    /// Sell or buy.
    pub side: Side,
    /// The market (keyset id).
    pub market: String,
    /// The epoch unit.
    pub unit: String,
    /// The pool mint.
    pub mint_url: String,
    /// The pool's nostr key (hex).
    pub pool: String,
    /// The market's keyset as the pool announced it (DLEQ checks of ehash locks).
    pub keyset: KeySet,
    /// Sat mints accepted.
    pub sat_mints: Vec<String>,
    /// Ehash offered.
    pub amount: u64,
    /// Smallest fill.
    pub min: u64,
    /// Price.
    pub price: Price,
    /// NIP-40 expiration.
    pub expiration: u64,
    /// Whether it was cancelled.
    pub canceled: bool,
    /// Event id of the current version.
    pub event_id: String,
    /// When it was made.
    pub created_at: u64,
}

/// The trade's terms, from the exchange's trade event (checked against the offer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// Market (keyset id).
    pub market: String,
    /// Epoch unit.
    pub unit: String,
    /// Pool mint.
    pub mint_url: String,
    /// Sat mint.
    pub sat_mint: String,
    /// Ehash traded.
    pub amount: u64,
    /// Sats paid.
    pub sats: u64,
    /// The timetable.
    pub times: SettlementTimes,
    /// The counterparty's offer key (hex).
    pub counterparty: String,
    /// The exchange's key (hex).
    pub exchange: String,
}

/// Where this agent's side of a trade stands. Each state is written before the network action
/// it leads to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Matched; nothing done yet.
    Matched,
    /// The lock swap is written down and being sent.
    Locking,
    /// My lock is made and announced; waiting for the other side.
    Locked,
    /// The claim of the other side's lock is written down and being sent.
    Claiming,
    /// I claimed the other side's lock: done.
    Settled,
    /// Giving up; my lock goes back to me after its locktime.
    AwaitRefund,
    /// The refund swap is written down and being sent.
    Refunding,
    /// My lock came back to me: done.
    Refunded,
    /// Over, with nothing locked (or nothing left to do).
    Failed,
}

impl Step {
    /// The wire/display name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::Locking => "locking",
            Self::Locked => "locked",
            Self::Claiming => "claiming",
            Self::Settled => "settled",
            Self::AwaitRefund => "await_refund",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
            Self::Failed => "failed",
        }
    }

    /// Whether nothing more will happen.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Settled | Self::Refunded | Self::Failed)
    }
}

/// A lock (mine or theirs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The `cashuB` token.
    pub token: String,
    /// Its proofs.
    pub proofs: Proofs,
}

/// One trade as this agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRecord {
    /// Trade id.
    pub id: String,
    /// My offer.
    pub offer_d: String,
    /// Seller (`Sell`) or buyer (`Buy`).
    pub role: Side,
    /// The terms.
    pub terms: Terms,
    /// Progress.
    pub step: Step,
    /// The payment hash (hex).
    pub hash: Option<String>,
    /// The preimage: the seller's own, or the one the buyer learned.
    pub preimage: Option<String>,
    /// A preimage the buyer was told (checked before use).
    pub preimage_hint: Option<String>,
    /// My lock.
    pub my_lock: Option<Lock>,
    /// The counterparty's lock token as received.
    pub their_token: Option<String>,
    /// The counterparty's lock once verified.
    pub their_lock: Option<Lock>,
    /// The counterparty aborted, saying why.
    pub their_abort: Option<String>,
    /// The swap in flight.
    pub pending: Option<PendingSwap>,
    /// What happened, for people.
    pub note: Option<String>,
    /// Last change (unix seconds).
    pub updated_at: u64,
    /// Why the counterparty's last lock did not verify. Not final before its deadline: the
    /// exchange sends the lock it verified, which may differ (a sender can show it one lock and
    /// us another).
    #[serde(default)]
    pub bad_lock: Option<String>,
    /// The hash of the seller's lock as the exchange judged it (from its trade event): a buyer
    /// locks only against that one.
    #[serde(default)]
    pub judged_hash: Option<String>,
    /// Whether my refund's witness carries a dummy 32-byte preimage instead of an empty one
    /// (tried after a mint refused the empty one: nutshell before 0.19 wants one).
    #[serde(default)]
    pub refund_preimage: bool,
}
