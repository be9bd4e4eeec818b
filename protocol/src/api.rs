//! The exchange's HTTP + WebSocket API bodies (protocol §9, "API"). Served by `ehash exchange`,
//! read by `ehash trade`, `ehash exchange verify` and the web UI.

use serde::{Deserialize, Serialize};

use crate::epoch::EpochState;

/// One market (an epoch's ehash), at `GET /api/markets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSummary {
    /// The market: the epoch's keyset id.
    pub market: String,
    /// The epoch unit.
    pub unit: String,
    /// The pool's mint URL.
    pub mint_url: String,
    /// The pool's nostr key (hex).
    pub pool: String,
    /// The epoch number.
    pub epoch: u32,
    /// The epoch's announced state.
    pub state: EpochState,
    /// Ehash issued in the epoch, once announced.
    pub issued: Option<u64>,
    /// What the epoch pays out in total (sats), once closed on a block.
    pub payout: Option<u64>,
    /// Sats one lot redeems for while the epoch is redeemable (`floor(lot × payout / issued)`):
    /// the market's fair price.
    pub fair_price: Option<u64>,
    /// When a redeemable epoch expires (unix seconds).
    pub expires: Option<u64>,
    /// What one lot is worth in sats ([`crate::epoch::value_of`]): its redemption value once the
    /// epoch has a payout, an estimate from the pool's hashprice while it is open.
    #[serde(default)]
    pub value: Option<u64>,
    /// What `value` rests on: `redeemable`, `payout` (when the block matures) or `estimate`.
    #[serde(default)]
    pub value_basis: Option<crate::epoch::ValueBasis>,
    /// Best bid (sats per lot).
    pub bid: Option<u64>,
    /// Best ask (sats per lot).
    pub ask: Option<u64>,
    /// Price of the last trade (sats per lot).
    pub last: Option<u64>,
    /// Ehash traded in the last 24 hours (trades not failed).
    pub volume_24h: u64,
    /// The exchange's lot.
    pub lot: u64,
}

/// One resting offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookEntry {
    /// `38190:<pubkey>:<d>`.
    pub address: String,
    /// The booked version's event id.
    pub event_id: String,
    /// The offer key (hex).
    pub pubkey: String,
    /// `sell` or `buy`.
    pub side: crate::market::Side,
    /// Sats per lot.
    pub price: u64,
    /// Ehash not yet matched.
    pub remaining: u64,
    /// Smallest fill.
    pub min: u64,
    /// Accepted sat mints.
    pub sat_mints: Vec<String>,
    /// NIP-40 expiration.
    pub expiration: u64,
    /// Journal number of the book event that queued it (time priority).
    pub seq: u64,
}

/// A market's order book at `GET /api/markets/<market>/book`, best first on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    /// The market.
    pub market: String,
    /// The exchange's lot.
    pub lot: u64,
    /// Buy offers, highest price first, then oldest.
    pub bids: Vec<BookEntry>,
    /// Sell offers, lowest price first, then oldest.
    pub asks: Vec<BookEntry>,
    /// The journal number the book reflects.
    pub seq: u64,
}

/// A trade at `GET /api/markets/<market>/trades` and `GET /api/trades/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeView {
    /// Trade id.
    pub id: String,
    /// The market.
    pub market: String,
    /// Ehash traded.
    pub amount: u64,
    /// Sats paid.
    pub sats: u64,
    /// Sats per lot.
    pub price: u64,
    /// The side of the resting offer.
    pub maker_side: crate::market::Side,
    /// The kind-38191 state.
    pub state: crate::events::TradeState,
    /// Why it failed.
    pub reason: Option<String>,
    /// Who it is blamed on.
    pub blame: Option<String>,
    /// When it was matched (unix seconds).
    pub matched_at: u64,
    /// The latest signed kind-38191 event (JSON).
    pub event: serde_json::Value,
}

/// One OHLC candle at `GET /api/markets/<market>/candles?interval=SECS`, over trades that did
/// not fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candle {
    /// Start of the interval (unix seconds).
    pub t: u64,
    /// First price.
    pub open: u64,
    /// Highest price.
    pub high: u64,
    /// Lowest price.
    pub low: u64,
    /// Last price.
    pub close: u64,
    /// Ehash traded.
    pub volume: u64,
    /// Sats paid.
    pub sats: u64,
}

/// What a journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalKind {
    /// An offer or a new version of one (the event is attached).
    Offer,
    /// A cancellation (a `canceled` version or a NIP-09 deletion, attached).
    Cancel,
    /// An offer reached its expiration.
    Expire,
    /// A trade failed: the blamed party's offer leaves the book and the other party's quantity
    /// returns to its offer.
    Fail,
}

/// One book event at `GET /api/markets/<market>/journal?after=SEQ`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Its number in the market (from 1, no gaps).
    pub seq: u64,
    /// What happened.
    pub kind: JournalKind,
    /// When the exchange applied it (unix seconds); expiries are applied at this time.
    pub at: u64,
    /// The signed event that caused it (offer, canceled version or deletion).
    pub event: Option<serde_json::Value>,
    /// The offer it concerns (`38190:<pubkey>:<d>`).
    pub address: Option<String>,
    /// For `fail`: the trade.
    pub trade: Option<String>,
    /// For `fail`: the offer that leaves the book (the blamed party's), if any.
    pub remove: Option<String>,
    /// For `fail`: the offer whose quantity returns, and how much.
    pub restore: Option<(String, u64)>,
}

/// The body of every error the exchange's API answers (4xx and 5xx): one sentence naming what
/// is wrong and what to do, e.g. `{"error": "limit must be a whole number from 1 to 1000; got \"0\""}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What is wrong, and the fix.
    pub error: String,
}
