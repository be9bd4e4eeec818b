//! The matching engine (`ehash_exchange::book`) as a user of the market sees it (protocol §9,
//! "Amounts and prices" and "Matching"). Every book event is a journal entry carrying a real
//! signed nostr event (kind-38190 offers, each under its own fresh key, and NIP-09 deletions),
//! exactly as the exchange journals them, and the tests check the fills it makes (amount, sats,
//! price, maker and taker, sat mint, trade id) and the book it leaves behind: price-time
//! priority, fills at the resting offer's price, partial fills, minimum fills, sat mints, exact
//! integer money, offer versions and cancellations, expiry, failed trades, determinism of a
//! replay, and — with a deterministic random order flow — the invariants of the book after every
//! entry.
#![allow(missing_docs, clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use ehash_exchange::book::{Book, Fill, Refusal};
use ehash_protocol::api::{BookEntry, JournalEntry, JournalKind};
use ehash_protocol::events::{KIND_OFFER, Offer, OfferStatus};
use ehash_protocol::market::{MAX_SATS, Price, Side, trade_id};
use nostr_sdk::prelude::*;

const MARKET: &str = "00ab12cd34ef5678";
const LOT: u64 = 1024;
/// When the offers are made.
const T0: u64 = 1_750_000_000;
/// When offers expire unless a test says otherwise.
const EXPIRES: u64 = T0 + 86_400;
const MINT_A: &str = "https://sats-a.example";
const MINT_B: &str = "https://sats-b.example";
const MINT_C: &str = "https://sats-c.example";

fn pool() -> PublicKey {
    Keys::parse(&"01".repeat(32)).unwrap().public_key()
}

fn exchange() -> PublicKey {
    Keys::parse(&"02".repeat(32)).unwrap().public_key()
}

/// An open offer of `lots` lots (minimum fill `min_lots`) at `price` sats per lot, accepting
/// [`MINT_A`], expiring at [`EXPIRES`], priced per `lot`.
fn offer_at_lot(side: Side, lots: u64, min_lots: u64, price: u64, lot: u64) -> Offer {
    Offer {
        id: "offer-1".into(),
        side,
        status: OfferStatus::Pending,
        market: MARKET.into(),
        unit: "hash_ab12_7".into(),
        mint_url: "https://pool.example".into(),
        pool: pool(),
        sat_mints: vec![MINT_A.into()],
        amount: lots * lot,
        min: min_lots * lot,
        price: Price { sats_per_lot: price, lot },
        exchange: exchange(),
        expiration: EXPIRES,
        note: String::new(),
    }
}

fn offer(side: Side, lots: u64, min_lots: u64, price: u64) -> Offer {
    offer_at_lot(side, lots, min_lots, price, LOT)
}

/// One version of an offer, signed by the offer's own key.
#[derive(Clone)]
struct Signed {
    keys: Keys,
    offer: Offer,
    event: Event,
}

impl Signed {
    /// A new offer under a fresh key (as the product does), dated [`T0`].
    fn new(offer: Offer) -> Self {
        Self::with_keys(Keys::generate(), offer, T0)
    }

    fn with_keys(keys: Keys, offer: Offer, created_at: u64) -> Self {
        let event = offer.to_builder().custom_created_at(Timestamp::from_secs(created_at)).finalize(&keys).unwrap();
        Self { keys, offer, event }
    }

    /// Another version of the same offer (same key and `d`), dated `created_at`.
    fn version(&self, created_at: u64, change: impl FnOnce(&mut Offer)) -> Self {
        let mut o = self.offer.clone();
        change(&mut o);
        Self::with_keys(self.keys.clone(), o, created_at)
    }

    /// A `canceled` version.
    fn canceled(&self, created_at: u64) -> Self {
        self.version(created_at, |o| o.status = OfferStatus::Canceled)
    }

    fn address(&self) -> String {
        format!("{KIND_OFFER}:{}:{}", self.keys.public_key().to_hex(), self.offer.id)
    }
}

fn sell(lots: u64, min_lots: u64, price: u64) -> Signed {
    Signed::new(offer(Side::Sell, lots, min_lots, price))
}

fn buy(lots: u64, min_lots: u64, price: u64) -> Signed {
    Signed::new(offer(Side::Buy, lots, min_lots, price))
}

fn with_mints(side: Side, lots: u64, price: u64, mints: &[&str]) -> Signed {
    let mut o = offer(side, lots, 1, price);
    o.sat_mints = mints.iter().map(|m| (*m).to_owned()).collect();
    Signed::new(o)
}

/// A NIP-09 deletion of `address` signed by `keys`.
fn deletion(keys: &Keys, address: &str) -> Event {
    deletion_at(keys, address, T0 + 1)
}

/// A NIP-09 deletion of `address` signed by `keys`, dated `created_at`.
fn deletion_at(keys: &Keys, address: &str, created_at: u64) -> Event {
    EventBuilder::new(Kind::EventDeletion, "")
        .tag(Tag::custom("a", [address.to_owned()]))
        .tag(Tag::custom("k", [KIND_OFFER.to_string()]))
        .custom_created_at(Timestamp::from_secs(created_at))
        .finalize(keys)
        .unwrap()
}

/// A book and the journal that built it, numbered as the exchange numbers it: an entry the book
/// refuses is not journaled and does not use up a number.
struct Market {
    book: Book,
    journal: Vec<JournalEntry>,
    fills: Vec<Fill>,
    /// The time of the next entry.
    at: u64,
}

impl Market {
    fn new() -> Self {
        Self::with_lot(LOT)
    }

    fn with_lot(lot: u64) -> Self {
        Self { book: Book::new(MARKET, lot), journal: vec![], fills: vec![], at: T0 + 1 }
    }

    fn entry(&mut self, kind: JournalKind, event: Option<&Event>, address: Option<String>) -> Result<Vec<Fill>, Refusal> {
        let entry = JournalEntry {
            seq: self.book.seq() + 1,
            kind,
            at: self.at,
            event: event.map(|e| serde_json::to_value(e).unwrap()),
            address,
            trade: None,
            remove: None,
            restore: None,
        };
        self.apply(entry)
    }

    fn apply(&mut self, entry: JournalEntry) -> Result<Vec<Fill>, Refusal> {
        let fills = self.book.apply(&entry)?;
        assert_eq!(self.book.seq(), entry.seq);
        for f in &fills {
            assert_eq!((f.seq, f.at), (entry.seq, entry.at), "a fill carries its entry's number and time");
        }
        self.journal.push(entry);
        self.fills.extend(fills.iter().cloned());
        Ok(fills)
    }

    /// Book an offer version (a `canceled` one as a cancellation).
    fn offer(&mut self, s: &Signed) -> Result<Vec<Fill>, Refusal> {
        let kind = if s.offer.status == OfferStatus::Canceled { JournalKind::Cancel } else { JournalKind::Offer };
        self.entry(kind, Some(&s.event), Some(s.address()))
    }

    /// Book an offer version that must be accepted.
    fn place(&mut self, s: &Signed) -> Vec<Fill> {
        self.offer(s).unwrap()
    }

    fn delete(&mut self, by: &Keys, address: &str) -> Result<Vec<Fill>, Refusal> {
        // dated now, so it covers every version published so far (NIP-09)
        let ev = deletion_at(by, address, self.at.max(T0 + 1));
        self.entry(JournalKind::Cancel, Some(&ev), Some(address.to_owned()))
    }

    fn expire(&mut self, address: &str) -> Result<Vec<Fill>, Refusal> {
        self.entry(JournalKind::Expire, None, Some(address.to_owned()))
    }

    fn fail(&mut self, trade: &str, remove: Option<&Signed>, restore: Option<(&Signed, u64)>) -> Result<Vec<Fill>, Refusal> {
        let entry = JournalEntry {
            seq: self.book.seq() + 1,
            kind: JournalKind::Fail,
            at: self.at,
            event: None,
            address: None,
            trade: Some(trade.to_owned()),
            remove: remove.map(Signed::address),
            restore: restore.map(|(s, amount)| (s.address(), amount)),
        };
        self.apply(entry)
    }

    fn asks(&self) -> Vec<BookEntry> {
        self.book.view(usize::MAX).asks
    }

    fn bids(&self) -> Vec<BookEntry> {
        self.book.view(usize::MAX).bids
    }
}

/// Check one fill: `maker` rested, `taker` came in, `lots` lots at `price` sats per lot (the
/// maker's), settled at `sat_mint`.
#[track_caller]
fn assert_fill(f: &Fill, maker: &Signed, taker: &Signed, lots: u64, price: u64, sat_mint: &str) {
    assert_eq!(f.maker.event_id, maker.event.id, "maker");
    assert_eq!(f.taker.event_id, taker.event.id, "taker");
    assert_eq!(f.maker.address, maker.address());
    assert_eq!(f.taker.address, taker.address());
    assert_eq!(f.amount, lots * LOT, "amount");
    assert_eq!(f.sats, lots * price, "sats");
    assert_eq!(f.price, Price { sats_per_lot: price, lot: LOT }, "price");
    assert_eq!(f.price, maker.offer.price, "a fill is at the resting offer's price");
    assert_eq!(f.sat_mint, sat_mint, "sat mint");
    assert_eq!(f.maker_side(), maker.offer.side);
}

/// (address, price, remaining lots, seq) of a side of the book, best first.
fn side(entries: &[BookEntry]) -> Vec<(String, u64, u64, u64)> {
    entries.iter().map(|e| (e.address.clone(), e.price, e.remaining / LOT, e.seq)).collect()
}

// --- 1. price and time priority -------------------------------------------------------------

#[test]
fn a_buy_takes_the_cheapest_asks_first_and_the_oldest_at_equal_price() {
    let mut m = Market::new();
    let a12 = sell(1, 1, 12); // seq 1
    let a10 = sell(1, 1, 10); // seq 2
    let a11 = sell(1, 1, 11); // seq 3
    let a10_later = sell(1, 1, 10); // seq 4
    let a13 = sell(1, 1, 13); // seq 5
    for s in [&a12, &a10, &a11, &a10_later, &a13] {
        assert!(m.place(s).is_empty());
    }
    assert_eq!(m.book.best(), (None, Some(10)));
    let order: Vec<u64> = m.asks().iter().map(|e| e.seq).collect();
    assert_eq!(order, [2, 4, 3, 1, 5], "asks: lowest price first, then lowest seq");

    let b = buy(4, 1, 12);
    let fills = m.place(&b);
    assert_eq!(fills.len(), 4);
    assert_fill(&fills[0], &a10, &b, 1, 10, MINT_A);
    assert_fill(&fills[1], &a10_later, &b, 1, 10, MINT_A);
    assert_fill(&fills[2], &a11, &b, 1, 11, MINT_A);
    assert_fill(&fills[3], &a12, &b, 1, 12, MINT_A);
    assert!(fills.iter().all(|f| f.seq == 6));
    assert!(!m.book.is_resting(&b.address()), "a fully filled taker does not rest");
    assert_eq!(m.book.remaining(&b.address()), 0);
    assert_eq!(side(&m.asks()), [(a13.address(), 13, 1, 5)]);
    assert!(m.bids().is_empty());
    assert_eq!(m.book.best(), (None, Some(13)));
}

#[test]
fn a_sell_takes_the_highest_bids_first_and_the_oldest_at_equal_price() {
    let mut m = Market::new();
    let b8 = buy(1, 1, 8);
    let b9 = buy(1, 1, 9);
    let b9_later = buy(1, 1, 9);
    let b7 = buy(1, 1, 7);
    for s in [&b8, &b9, &b9_later, &b7] {
        m.place(s);
    }
    let order: Vec<u64> = m.bids().iter().map(|e| e.seq).collect();
    assert_eq!(order, [2, 3, 1, 4], "bids: highest price first, then lowest seq");

    let s = sell(3, 1, 8);
    let fills = m.place(&s);
    assert_eq!(fills.len(), 3);
    assert_fill(&fills[0], &b9, &s, 1, 9, MINT_A);
    assert_fill(&fills[1], &b9_later, &s, 1, 9, MINT_A);
    assert_fill(&fills[2], &b8, &s, 1, 8, MINT_A);
    assert_eq!(side(&m.bids()), [(b7.address(), 7, 1, 4)]);
    assert!(m.asks().is_empty());
}

// --- 2. the maker's price -------------------------------------------------------------------

#[test]
fn fills_are_at_the_resting_offers_price_never_the_takers() {
    let mut m = Market::new();
    let ask = sell(2, 1, 10);
    m.place(&ask);
    let eager = buy(1, 1, 15);
    let fills = m.place(&eager);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &ask, &eager, 1, 10, MINT_A);
    assert_eq!(fills[0].sats, 10, "the buyer pays the ask, not its own limit of 15");

    // a bid at 20 takes the rest of the ask, still at 10
    let bid = buy(1, 1, 20);
    let fills = m.place(&bid);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &ask, &bid, 1, 10, MINT_A);

    let bid = buy(1, 1, 20);
    assert!(m.place(&bid).is_empty());
    let cheap = sell(1, 1, 5);
    let fills = m.place(&cheap);
    assert_fill(&fills[0], &bid, &cheap, 1, 20, MINT_A);
    assert_eq!(fills[0].sats, 20, "the seller gets the bid, not its own limit of 5");
    assert_eq!(m.book.best(), (None, None));
}

#[test]
fn a_buy_below_the_best_ask_does_not_trade_and_rests() {
    let mut m = Market::new();
    let ask = sell(2, 1, 10);
    m.place(&ask);
    let low = buy(3, 1, 9);
    assert!(m.place(&low).is_empty());
    assert_eq!(m.book.best(), (Some(9), Some(10)));
    assert_eq!(side(&m.bids()), [(low.address(), 9, 3, 2)]);
    assert_eq!(side(&m.asks()), [(ask.address(), 10, 2, 1)]);
    let low_sell = sell(1, 1, 10);
    assert!(m.place(&low_sell).is_empty(), "a sell above the best bid does not trade either");
    assert_eq!(m.asks().len(), 2);
    assert!(m.fills.is_empty());
}

// --- 3. partial fills -----------------------------------------------------------------------

#[test]
fn the_remainder_of_a_partly_filled_taker_rests() {
    let mut m = Market::new();
    let ask = sell(2, 1, 10);
    m.place(&ask);
    let b = buy(5, 1, 11);
    let fills = m.place(&b);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &ask, &b, 2, 10, MINT_A);
    assert!(m.book.is_resting(&b.address()));
    assert_eq!(m.book.remaining(&b.address()), 3 * LOT);
    assert_eq!(side(&m.bids()), [(b.address(), 11, 3, 2)], "it rests at its own price with the seq that queued it");
    assert!(m.asks().is_empty());
    assert_eq!(m.book.remaining(&ask.address()), 0);
}

#[test]
fn the_remainder_of_a_partly_filled_maker_keeps_its_priority() {
    let mut m = Market::new();
    let first = sell(5, 1, 10); // seq 1
    let second = sell(5, 1, 10); // seq 2
    m.place(&first);
    m.place(&second);
    let b1 = buy(2, 1, 10);
    let fills = m.place(&b1);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &first, &b1, 2, 10, MINT_A);
    assert_eq!(side(&m.asks()), [(first.address(), 10, 3, 1), (second.address(), 10, 5, 2)]);

    let b2 = buy(4, 1, 10);
    let fills = m.place(&b2);
    assert_eq!(fills.len(), 2);
    assert_fill(&fills[0], &first, &b2, 3, 10, MINT_A);
    assert_fill(&fills[1], &second, &b2, 1, 10, MINT_A);
    assert_eq!(side(&m.asks()), [(second.address(), 10, 4, 2)]);
    assert_eq!(m.book.remaining(&first.address()), 0);
}

// --- 4. minimum fill ------------------------------------------------------------------------

#[test]
fn a_resting_offer_whose_minimum_exceeds_what_is_left_is_skipped_without_blocking() {
    let mut m = Market::new();
    let big_min = sell(4, 3, 10); // cheapest, but needs at least 3 lots
    let behind = sell(4, 1, 11);
    m.place(&big_min);
    m.place(&behind);
    let b = buy(2, 1, 11);
    let fills = m.place(&b);
    assert_eq!(fills.len(), 1, "the 2-lot buy cannot fill the 3-lot minimum, so it trades with the next ask");
    assert_fill(&fills[0], &behind, &b, 2, 11, MINT_A);
    assert_eq!(side(&m.asks()), [(big_min.address(), 10, 4, 1), (behind.address(), 11, 2, 2)]);

    // a buy large enough for the minimum takes it first
    let b = buy(3, 1, 10);
    let fills = m.place(&b);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &big_min, &b, 3, 10, MINT_A);
}

#[test]
fn no_fill_is_smaller_than_the_takers_minimum() {
    let mut m = Market::new();
    let small = sell(1, 1, 10);
    let large = sell(3, 1, 11);
    m.place(&small);
    m.place(&large);
    let b = buy(3, 2, 11);
    let fills = m.place(&b);
    assert_eq!(fills.len(), 1, "a 1-lot fill is below the buyer's 2-lot minimum");
    assert_fill(&fills[0], &large, &b, 3, 11, MINT_A);
    assert_eq!(side(&m.asks()), [(small.address(), 10, 1, 1)]);

    // nothing big enough: the buy rests even though the prices cross
    let b = buy(3, 2, 12);
    assert!(m.place(&b).is_empty());
    assert!(m.book.is_resting(&b.address()));
    assert_eq!(m.book.best(), (Some(12), Some(10)), "crossed only because of the minimum");
    assert_eq!(m.fills.len(), 1);
}

#[test]
fn a_side_whose_remainder_is_below_its_minimum_can_still_fill_completely() {
    let mut m = Market::new();
    // maker: 5 lots, min 3; after 3 lots, the last 2 can still go
    let ask = sell(5, 3, 10);
    m.place(&ask);
    let b = buy(3, 1, 10);
    assert_fill(&m.place(&b)[0], &ask, &b, 3, 10, MINT_A);
    assert_eq!(m.book.remaining(&ask.address()), 2 * LOT);
    let b = buy(2, 1, 10);
    let fills = m.place(&b);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &ask, &b, 2, 10, MINT_A);
    assert!(!m.book.is_resting(&ask.address()));

    // but not partly: a 1-lot buy cannot take 1 of a 2-lot remainder under a 3-lot minimum
    let ask = sell(5, 3, 10);
    m.place(&ask);
    m.place(&buy(3, 1, 10));
    let one = buy(1, 1, 10);
    assert!(m.place(&one).is_empty());
    assert_eq!(m.book.remaining(&ask.address()), 2 * LOT);
    assert!(m.book.is_resting(&one.address()));

    // taker side: 5 lots, min 4; 4 fill, the last one rests and fills alone as a maker
    let mut m = Market::new();
    let four = sell(4, 1, 10);
    m.place(&four);
    let b = buy(5, 4, 10);
    assert_fill(&m.place(&b)[0], &four, &b, 4, 10, MINT_A);
    assert_eq!(side(&m.bids()), [(b.address(), 10, 1, 2)]);
    let s = sell(2, 1, 10);
    let fills = m.place(&s);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &b, &s, 1, 10, MINT_A);
    assert_eq!(side(&m.asks()), [(s.address(), 10, 1, 3)]);
}

// --- 5. sat mints ---------------------------------------------------------------------------

#[test]
fn offers_that_share_no_sat_mint_never_match() {
    let mut m = Market::new();
    let ask = with_mints(Side::Sell, 2, 10, &[MINT_A]);
    m.place(&ask);
    let b = with_mints(Side::Buy, 2, 12, &[MINT_B, MINT_C]);
    assert!(m.place(&b).is_empty(), "no common sat mint, whatever the prices");
    assert!(m.book.is_resting(&ask.address()) && m.book.is_resting(&b.address()));

    // a second ask reachable through MINT_C trades with the bid, skipping nothing it could use
    let s = with_mints(Side::Sell, 1, 11, &[MINT_A, MINT_C]);
    let fills = m.place(&s);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &b, &s, 1, 12, MINT_C);
    assert_eq!(m.book.remaining(&ask.address()), 2 * LOT);
}

#[test]
fn the_sat_mint_is_the_makers_first_choice_that_the_taker_accepts() {
    let mut m = Market::new();
    let ask = with_mints(Side::Sell, 2, 10, &[MINT_C, MINT_B, MINT_A]);
    m.place(&ask);
    let b = with_mints(Side::Buy, 1, 10, &[MINT_A, MINT_B]);
    let fills = m.place(&b);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &ask, &b, 1, 10, MINT_B);

    // roles swapped: the resting bid's order decides
    let mut m = Market::new();
    let bid = with_mints(Side::Buy, 1, 10, &[MINT_A, MINT_B]);
    m.place(&bid);
    let s = with_mints(Side::Sell, 1, 9, &[MINT_B, MINT_A]);
    let fills = m.place(&s);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &bid, &s, 1, 10, MINT_A);
}

// --- 6. exact integer money -----------------------------------------------------------------

#[test]
fn sats_are_whole_lots_times_the_makers_price_with_no_rounding() {
    let mut m = Market::new();
    let ask = sell(7, 1, 333);
    m.place(&ask);
    let b = buy(7, 1, 400);
    let f = &m.place(&b)[0];
    assert_eq!(f.amount, 7 * 1024);
    assert_eq!(f.sats, 2331);
    assert_eq!(f.price.sats_for(f.amount).unwrap(), f.sats);
}

#[test]
fn huge_amounts_and_prices_are_exact_and_do_not_overflow() {
    // lot 10^9 ehash, 2.1·10^6 lots at 10^9 sats per lot: exactly 21·10^14 sats. The naive
    // amount × price (2.1·10^24) does not fit in 64 bits.
    let lot = 1_000_000_000;
    let mut m = Market::with_lot(lot);
    let ask = Signed::new(offer_at_lot(Side::Sell, 2_100_000, 1, 1_000_000_000, lot));
    let bid = Signed::new(offer_at_lot(Side::Buy, 2_100_000, 1, 1_000_000_000, lot));
    m.place(&ask);
    let f = m.place(&bid);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].amount, 2_100_000 * lot);
    assert_eq!(f[0].sats, MAX_SATS);

    // prices near the top: lot 1, one unit at MAX_SATS − 1 against a bid at MAX_SATS
    let mut m = Market::with_lot(1);
    let top_ask = Signed::new(offer_at_lot(Side::Sell, 1, 1, MAX_SATS, 1));
    let ask = Signed::new(offer_at_lot(Side::Sell, 1, 1, MAX_SATS - 1, 1));
    let low_bid = Signed::new(offer_at_lot(Side::Buy, 1, 1, MAX_SATS - 2, 1));
    m.place(&top_ask);
    m.place(&ask);
    assert!(m.place(&low_bid).is_empty());
    assert_eq!(m.book.best(), (Some(MAX_SATS - 2), Some(MAX_SATS - 1)));
    let bid = Signed::new(offer_at_lot(Side::Buy, 1, 1, MAX_SATS, 1));
    let f = m.place(&bid);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].maker.event_id, ask.event.id, "the cheaper of two huge asks goes first");
    assert_eq!((f[0].amount, f[0].sats), (1, MAX_SATS - 1));
    assert_eq!(m.book.best(), (Some(MAX_SATS - 2), Some(MAX_SATS)));
}

#[test]
fn an_offer_worth_more_than_21e14_sats_is_refused() {
    let at_limit = Signed::new(offer_at_lot(Side::Sell, 1, 1, MAX_SATS, 1));
    Offer::parse(&at_limit.event).unwrap();
    let over = Signed::new(offer_at_lot(Side::Sell, 2, 1, MAX_SATS, 1));
    assert_eq!(Offer::parse(&over.event).unwrap_err().field, "amount");
    let over_price = Signed::new(offer_at_lot(Side::Buy, 1, 1, MAX_SATS + 1, 1));
    assert_eq!(Offer::parse(&over_price.event).unwrap_err().field, "amount");
    let huge = Signed::new(offer(Side::Buy, u64::MAX / LOT, 1, u64::MAX));
    assert_eq!(Offer::parse(&huge.event).unwrap_err().field, "amount");

    let mut m = Market::with_lot(1);
    m.place(&at_limit);
    for s in [&over, &over_price] {
        match m.offer(s) {
            Err(Refusal::Invalid(why)) => assert!(why.starts_with("amount:"), "{why}"),
            other => panic!("expected the amount refused, got {other:?}"),
        }
    }
    assert_eq!(m.book.seq(), 1, "refused entries are not booked");
    assert_eq!(m.asks().len(), 1);
    assert!(m.bids().is_empty());
}

#[test]
fn an_offer_at_another_lot_or_not_in_whole_lots_is_refused_naming_the_field() {
    let mut m = Market::new();
    let expect = |r: Result<Vec<Fill>, Refusal>, field: &str| match r {
        Err(Refusal::Invalid(why)) => assert!(why.starts_with(&format!("{field}:")), "{why} should name {field}"),
        other => panic!("expected {field} refused, got {other:?}"),
    };
    // another lot (a whole number of its own lots)
    expect(m.offer(&Signed::new(offer_at_lot(Side::Sell, 2, 1, 10, 2 * LOT))), "price");
    // amount not whole lots
    let mut o = offer(Side::Sell, 2, 1, 10);
    o.amount = 2 * LOT + 1;
    expect(m.offer(&Signed::new(o)), "amount");
    // minimum not whole lots
    let mut o = offer(Side::Buy, 2, 1, 10);
    o.min = LOT / 2;
    expect(m.offer(&Signed::new(o)), "min");
    // minimum above the amount
    let mut o = offer(Side::Buy, 2, 1, 10);
    o.min = 3 * LOT;
    expect(m.offer(&Signed::new(o)), "min");
    // another market
    let mut o = offer(Side::Buy, 2, 1, 10);
    o.market = "ffffffffffffffff".into();
    expect(m.offer(&Signed::new(o)), "market");
    // a tampered signature
    let s = sell(1, 1, 10);
    let mut json = serde_json::to_value(&s.event).unwrap();
    json["content"] = serde_json::Value::String("tampered".into());
    let entry = JournalEntry {
        seq: 1,
        kind: JournalKind::Offer,
        at: T0 + 1,
        event: Some(json),
        address: Some(s.address()),
        trade: None,
        remove: None,
        restore: None,
    };
    assert!(matches!(m.book.apply(&entry), Err(Refusal::Invalid(_))));

    assert_eq!(m.book.seq(), 0);
    assert_eq!(m.book.best(), (None, None));
    assert!(m.fills.is_empty());
}

// --- 7. versions and cancellations ----------------------------------------------------------

#[test]
fn a_newer_version_replaces_the_old_one_and_loses_time_priority() {
    let mut m = Market::new();
    let a = sell(2, 1, 10); // seq 1
    let b = sell(2, 1, 10); // seq 2
    m.place(&a);
    m.place(&b);
    let a2 = a.version(T0 + 5, |o| o.note = "same terms, new version".into());
    assert!(m.place(&a2).is_empty());
    assert_eq!(m.book.version(&a.address()).unwrap().event_id, a2.event.id);
    assert_eq!(side(&m.asks()), [(b.address(), 10, 2, 2), (a.address(), 10, 2, 3)], "the new version queues behind");

    let t = buy(1, 1, 10);
    assert_fill(&m.place(&t)[0], &b, &t, 1, 10, MINT_A);

    // a cheaper version goes to the front by price, and trades as the new version
    let a3 = a2.version(T0 + 6, |o| o.price.sats_per_lot = 9);
    m.place(&a3);
    assert_eq!(m.asks()[0].address, a.address());
    assert_eq!(m.asks()[0].event_id, a3.event.id.to_hex());
    let t = buy(1, 1, 10);
    assert_fill(&m.place(&t)[0], &a3, &t, 1, 9, MINT_A);
    assert_eq!(m.book.remaining(&a.address()), LOT);

    // a new version cannot change the side
    let flipped = a3.version(T0 + 7, |o| o.side = Side::Buy);
    assert!(matches!(m.offer(&flipped), Err(Refusal::Invalid(_))));
}

#[test]
fn a_new_version_of_a_partly_filled_offer_keeps_what_was_filled() {
    let mut m = Market::new();
    let a = sell(5, 1, 10);
    m.place(&a);
    m.place(&buy(2, 1, 10));
    let a2 = a.version(T0 + 5, |o| o.price.sats_per_lot = 11);
    m.place(&a2);
    assert_eq!(m.book.remaining(&a.address()), 3 * LOT, "the amount is the total; fills are not undone");
    assert_eq!(side(&m.asks()), [(a.address(), 11, 3, 3)]);
}

#[test]
fn an_older_version_is_refused() {
    let mut m = Market::new();
    let a = sell(2, 1, 10).version(T0 + 10, |_| {});
    m.place(&a);
    let older = a.version(T0 + 5, |o| o.price.sats_per_lot = 5);
    assert_eq!(m.offer(&older), Err(Refusal::Older { got: T0 + 5, booked: T0 + 10 }));
    assert_eq!(m.book.check_offer(&ehash_exchange::book::OfferVersion::from_event(&older.event).unwrap()), Err(Refusal::Older { got: T0 + 5, booked: T0 + 10 }));
    assert_eq!(side(&m.asks()), [(a.address(), 10, 2, 1)]);
    assert_eq!(m.book.seq(), 1);
}

#[test]
fn a_different_version_with_the_same_created_at_conflicts_and_the_first_wins() {
    let mut m = Market::new();
    let a = sell(2, 1, 10);
    m.place(&a);
    let rival = a.version(T0, |o| o.price.sats_per_lot = 8);
    assert_ne!(rival.event.id, a.event.id);
    assert_eq!(m.offer(&rival), Err(Refusal::Conflicting(T0)));
    assert_eq!(m.book.version(&a.address()).unwrap().event_id, a.event.id);
    assert_eq!(m.book.best(), (None, Some(10)));
}

#[test]
fn the_same_event_again_is_a_duplicate() {
    let mut m = Market::new();
    let a = sell(2, 1, 10);
    m.place(&a);
    assert_eq!(m.offer(&a), Err(Refusal::Duplicate));
    // even once it has left the book
    m.place(&buy(2, 1, 10));
    assert_eq!(m.offer(&a), Err(Refusal::Duplicate));
    assert_eq!(m.book.seq(), 2);
    assert_eq!(m.fills.len(), 1, "a duplicate never trades again");
}

#[test]
fn a_canceled_version_removes_the_offer_from_the_book() {
    let mut m = Market::new();
    let a = sell(2, 1, 10);
    let other = sell(2, 1, 12);
    m.place(&a);
    m.place(&other);
    let cancel = a.canceled(T0 + 5);
    assert!(m.place(&cancel).is_empty());
    assert_eq!(m.journal.last().unwrap().kind, JournalKind::Cancel);
    assert!(!m.book.is_resting(&a.address()));
    assert_eq!(side(&m.asks()), [(other.address(), 12, 2, 2)]);
    let t = buy(1, 1, 12);
    assert_fill(&m.place(&t)[0], &other, &t, 1, 12, MINT_A);
    // an older version cannot revive it
    assert!(matches!(m.offer(&a.version(T0 + 4, |_| {})), Err(Refusal::Older { .. })));
    // cancelling an offer the exchange never booked does nothing
    let stranger = sell(1, 1, 10);
    assert!(matches!(m.offer(&stranger.canceled(T0 + 1)), Err(Refusal::Nothing(_))));
}

#[test]
fn a_nip09_deletion_by_the_author_removes_the_offer_and_anyone_elses_is_refused() {
    let mut m = Market::new();
    let a = buy(2, 1, 10);
    m.place(&a);
    let mallory = Keys::generate();
    assert!(matches!(m.book.check_deletion(&mallory.public_key(), &a.address(), T0 + 1), Err(Refusal::Invalid(_))));
    assert!(matches!(m.delete(&mallory, &a.address()), Err(Refusal::Invalid(_))));
    assert!(m.book.is_resting(&a.address()), "someone else's deletion changes nothing");
    assert_eq!(m.book.seq(), 1);

    m.book.check_deletion(&a.keys.public_key(), &a.address(), T0 + 1).unwrap();
    assert!(m.delete(&a.keys, &a.address()).unwrap().is_empty());
    assert!(!m.book.is_resting(&a.address()));
    assert_eq!(m.book.best(), (None, None));
    let s = sell(2, 1, 10);
    assert!(m.place(&s).is_empty(), "a deleted offer never trades");
    // deleting it again has nothing to do
    assert!(matches!(m.delete(&a.keys, &a.address()), Err(Refusal::Nothing(_))));
    // a deletion that names another address than the entry's is refused
    let b = buy(1, 1, 5);
    m.place(&b);
    let ev = deletion(&b.keys, &a.address());
    assert!(matches!(m.entry(JournalKind::Cancel, Some(&ev), Some(b.address())), Err(Refusal::Invalid(_))));
    assert!(m.book.is_resting(&b.address()));
}

#[test]
fn a_deletion_covers_only_the_versions_up_to_its_created_at() {
    // NIP-09: a deletion of an `a` coordinate covers the versions up to its own created_at. A
    // user who deleted an offer and later published a new version of it must not lose the new
    // version when the old deletion reaches the exchange again (another relay, a reconnect).
    let mut m = Market::new();
    let v1 = buy(2, 1, 10);
    m.place(&v1);
    let old_deletion = deletion_at(&v1.keys, &v1.address(), T0 + 5);
    m.entry(JournalKind::Cancel, Some(&old_deletion), Some(v1.address())).unwrap();
    assert!(!m.book.is_resting(&v1.address()));
    let v2 = v1.version(T0 + 10, |o| o.price.sats_per_lot = 11);
    m.place(&v2);
    assert!(m.book.is_resting(&v2.address()));
    let again = m.entry(JournalKind::Cancel, Some(&old_deletion), Some(v1.address()));
    assert!(again.is_err(), "a deletion dated before the booked version must not cancel it: {again:?}");
    assert!(m.book.is_resting(&v2.address()), "the newer version was cancelled by an older deletion");

    // and a version dated before a booked deletion is covered by it
    let mut m = Market::new();
    let v1 = buy(2, 1, 10);
    m.place(&v1);
    m.entry(JournalKind::Cancel, Some(&deletion_at(&v1.keys, &v1.address(), T0 + 10)), Some(v1.address())).unwrap();
    let late = v1.version(T0 + 5, |o| o.price.sats_per_lot = 11);
    assert!(m.offer(&late).is_err(), "a version the deletion covers must not be booked");
    assert!(!m.book.is_resting(&v1.address()));
}

#[test]
fn a_cancel_does_not_undo_fills_already_made() {
    let mut m = Market::new();
    let a = sell(5, 1, 10);
    m.place(&a);
    let t = buy(2, 1, 10);
    assert_fill(&m.place(&t)[0], &a, &t, 2, 10, MINT_A);
    assert!(m.place(&a.canceled(T0 + 5)).is_empty());
    assert_eq!(m.book.remaining(&a.address()), 3 * LOT, "remaining accounts for the fill");
    assert!(!m.book.is_resting(&a.address()));
    assert_eq!(m.fills.len(), 1);

    let d = buy(5, 1, 10);
    m.place(&sell(1, 1, 10));
    m.place(&d);
    assert_eq!(m.book.remaining(&d.address()), 4 * LOT);
    m.delete(&d.keys, &d.address()).unwrap();
    assert_eq!(m.book.remaining(&d.address()), 4 * LOT);
    assert_eq!(m.fills.len(), 2);
    assert_eq!(m.book.best(), (None, None));
}

// --- 8. expiry ------------------------------------------------------------------------------

#[test]
fn expired_lists_resting_offers_due_and_an_expire_entry_removes_them() {
    let mut m = Market::new();
    let expiring = |exp: u64, s: Signed| s.version(T0, |o| o.expiration = exp);
    let c = expiring(T0 + 300, sell(1, 1, 12)); // seq 1
    let a = expiring(T0 + 100, sell(1, 1, 10)); // seq 2
    let b = expiring(T0 + 200, buy(1, 1, 5)); // seq 3
    for s in [&c, &a, &b] {
        m.place(s);
    }
    assert!(m.book.expired(T0 + 99).is_empty());
    assert_eq!(m.book.expired(T0 + 100), [a.address()], "due at its expiration");
    assert_eq!(m.book.expired(T0 + 250), [a.address(), b.address()]);
    assert_eq!(m.book.expired(T0 + 1000), [c.address(), a.address(), b.address()], "in journal order");

    m.at = T0 + 250;
    for addr in m.book.expired(m.at) {
        assert!(m.expire(&addr).unwrap().is_empty());
    }
    assert!(!m.book.is_resting(&a.address()) && !m.book.is_resting(&b.address()));
    assert_eq!(side(&m.asks()), [(c.address(), 12, 1, 1)]);
    assert!(m.bids().is_empty());
    assert!(m.book.expired(T0 + 250).is_empty(), "an expired offer is listed once");
    assert_eq!(m.book.expired(T0 + 300), [c.address()]);
}

#[test]
fn an_expire_entry_before_the_expiration_is_refused() {
    // The journal is public so that anyone can replay it with this code; an `expire` entry whose
    // `at` is before the offer's expiration would let an exchange silently pull a resting offer
    // (and so change who trades) without `ehash exchange verify` noticing.
    let mut m = Market::new();
    let a = sell(2, 1, 10).version(T0, |o| o.expiration = T0 + 100);
    m.place(&a);
    m.at = T0 + 50;
    let r = m.expire(&a.address());
    assert!(r.is_err(), "expired at {} although it expires at {}: {r:?}", T0 + 50, T0 + 100);
    assert!(m.book.is_resting(&a.address()));
    // nothing to expire: an unknown offer, or one no longer resting
    m.at = T0 + 100;
    assert!(m.expire("38190:00:nothing").is_err());
    m.expire(&a.address()).unwrap();
    assert!(m.expire(&a.address()).is_err());
}

#[test]
fn a_resting_offer_past_its_expiration_is_never_matched() {
    let mut m = Market::new();
    let stale = sell(1, 1, 10).version(T0, |o| o.expiration = T0 + 100);
    let fresh = sell(1, 1, 11);
    m.place(&stale);
    m.place(&fresh);
    m.at = T0 + 100; // not yet swept by an expire entry
    let t = buy(2, 1, 11);
    let fills = m.place(&t);
    assert_eq!(fills.len(), 1, "the cheaper ask expired at this entry's time");
    assert_fill(&fills[0], &fresh, &t, 1, 11, MINT_A);
    assert_eq!(m.book.remaining(&t.address()), LOT);
    assert_eq!(m.book.expired(m.at), [stale.address()]);

    // one second earlier it would have traded
    let mut m = Market::new();
    m.place(&stale);
    m.at = T0 + 99;
    let t = buy(1, 1, 11);
    assert_fill(&m.place(&t)[0], &stale, &t, 1, 10, MINT_A);
}

// --- 9. failed trades -----------------------------------------------------------------------

#[test]
fn a_failed_trade_removes_the_blamed_offer_for_good() {
    let mut m = Market::new();
    let s = sell(4, 1, 10);
    m.place(&s);
    let b = buy(2, 1, 10);
    let f = m.place(&b)[0].clone();
    assert_fill(&f, &s, &b, 2, 10, MINT_A);
    assert!(m.book.is_resting(&s.address()));

    // the seller is blamed; the buyer had nothing locked
    let fills = m.fail(&f.trade_id(), Some(&s), Some((&b, f.amount))).unwrap();
    assert!(fills.is_empty(), "the only ask left the book");
    assert!(!m.book.is_resting(&s.address()));
    assert_eq!(side(&m.bids()), [(b.address(), 10, 2, 2)], "the buyer's quantity is back, at its old seq");
    assert!(m.asks().is_empty());

    let again = s.version(T0 + 5, |_| {});
    assert!(matches!(m.offer(&again), Err(Refusal::Removed(_))));
    assert!(matches!(m.offer(&s.canceled(T0 + 6)), Err(Refusal::Removed(_))));
    assert_eq!(m.offer(&s), Err(Refusal::Duplicate));

    // the buyer's restored quantity trades with the next seller
    let s2 = sell(2, 1, 9);
    let fills = m.place(&s2);
    assert_eq!(fills.len(), 1);
    assert_fill(&fills[0], &b, &s2, 2, 10, MINT_A);
}

#[test]
fn restored_quantity_keeps_its_original_time_priority() {
    let mut m = Market::new();
    let first = buy(2, 1, 10); // seq 1
    m.place(&first);
    let s = sell(2, 1, 10); // seq 2
    let f = m.place(&s)[0].clone();
    assert_fill(&f, &first, &s, 2, 10, MINT_A);
    let later = buy(2, 1, 10); // seq 3
    m.place(&later);
    assert_eq!(side(&m.bids()), [(later.address(), 10, 2, 3)]);

    assert!(m.fail(&f.trade_id(), Some(&s), Some((&first, 2 * LOT))).unwrap().is_empty()); // seq 4
    assert_eq!(side(&m.bids()), [(first.address(), 10, 2, 1), (later.address(), 10, 2, 3)], "ahead of a later offer at the same price");

    let s2 = sell(3, 1, 10);
    let fills = m.place(&s2);
    assert_eq!(fills.len(), 2);
    assert_fill(&fills[0], &first, &s2, 2, 10, MINT_A);
    assert_fill(&fills[1], &later, &s2, 1, 10, MINT_A);
}

#[test]
fn restored_quantity_of_a_resting_offer_keeps_its_place() {
    let mut m = Market::new();
    let first = sell(5, 1, 10); // seq 1
    let later = sell(5, 1, 10); // seq 2
    m.place(&first);
    m.place(&later);
    let b = buy(2, 1, 10); // seq 3
    let f = m.place(&b)[0].clone();
    assert_fill(&f, &first, &b, 2, 10, MINT_A);
    m.fail(&f.trade_id(), Some(&b), Some((&first, 2 * LOT))).unwrap();
    assert_eq!(side(&m.asks()), [(first.address(), 10, 5, 1), (later.address(), 10, 5, 2)]);
    assert!(matches!(m.offer(&b.version(T0 + 9, |_| {})), Err(Refusal::Removed(_))));
}

#[test]
fn a_restored_taker_never_trades_again_with_the_same_maker_version() {
    // the buyer took from a resting ask; the trade fails with nobody to blame
    let mut m = Market::new();
    let s = sell(3, 1, 10);
    m.place(&s);
    let b = buy(2, 1, 10);
    let f = m.place(&b)[0].clone();
    assert_fill(&f, &s, &b, 2, 10, MINT_A);
    let fills = m.fail(&f.trade_id(), None, Some((&b, 2 * LOT))).unwrap();
    assert!(fills.is_empty(), "the same two versions must not trade again: {fills:?}");
    assert_eq!(m.fills.len(), 1);
    assert!(m.book.is_resting(&b.address()));
    assert_eq!(m.book.remaining(&b.address()), 2 * LOT);
    // other asks are still fine
    let s2 = sell(1, 1, 10);
    let fills = m.place(&s2);
    assert_fill(&fills[0], &b, &s2, 1, 10, MINT_A);
}

#[test]
fn a_restored_maker_never_trades_again_with_the_same_taker_version() {
    // The buyer rested; a larger sell took it and its remainder rests. The trade fails with
    // nobody to blame (engine: remove none, restore the buyer), so the buyer's quantity comes
    // back and is matched again — against the very sell version it already traded with.
    let mut m = Market::new();
    let b = buy(2, 1, 10);
    m.place(&b);
    let s = sell(3, 1, 10);
    let f = m.place(&s)[0].clone();
    assert_fill(&f, &b, &s, 2, 10, MINT_A);
    assert!(m.book.is_resting(&s.address()));
    let fills = m.fail(&f.trade_id(), None, Some((&b, 2 * LOT))).unwrap();
    let again = |fills: &[Fill], x: &Signed, y: &Signed| {
        fills.iter().any(|g| [g.maker.event_id, g.taker.event_id] == [x.event.id, y.event.id] || [g.maker.event_id, g.taker.event_id] == [y.event.id, x.event.id])
    };
    assert!(!again(&fills, &b, &s), "the same pair of versions traded twice (blame none): {fills:?}");

    // The same with a party blamed: the ask rested; a buy took 1 lot of it, then a larger buy
    // took the other 2 and rests with its remainder. The first buyer is blamed for its trade,
    // so it leaves and the seller's lot comes back — and is matched against the second buy,
    // which already traded with this very ask version.
    let mut m = Market::new();
    let ask = sell(3, 1, 10);
    m.place(&ask);
    let first = buy(1, 1, 10);
    let f = m.place(&first)[0].clone();
    assert_fill(&f, &ask, &first, 1, 10, MINT_A);
    let second = buy(4, 1, 10);
    assert_fill(&m.place(&second)[0], &ask, &second, 2, 10, MINT_A);
    assert_eq!(side(&m.bids()), [(second.address(), 10, 2, 3)]);
    let fills = m.fail(&f.trade_id(), Some(&first), Some((&ask, LOT))).unwrap();
    assert!(!again(&fills, &ask, &second), "the same pair of versions traded twice (buyer blamed): {fills:?}");
}

// --- 10. determinism ------------------------------------------------------------------------

/// A market with every kind of book event.
fn busy_market() -> Market {
    let mut m = Market::new();
    let a = sell(5, 2, 10);
    let b = with_mints(Side::Sell, 3, 11, &[MINT_B, MINT_A]);
    let c = buy(2, 1, 9);
    for s in [&a, &b, &c] {
        m.place(s);
    }
    let t = with_mints(Side::Buy, 4, 11, &[MINT_A, MINT_B]);
    m.place(&t);
    m.at += 5;
    m.place(&c.version(T0 + 5, |o| o.price.sats_per_lot = 10));
    let d = buy(3, 1, 12);
    let f = m.place(&d);
    assert_eq!(f[0].maker.event_id, b.event.id);
    m.fail(&f[0].trade_id(), Some(&b), Some((&d, f[0].amount))).unwrap();
    let e = buy(1, 1, 5).version(T0, |o| o.expiration = T0 + 20);
    m.place(&e);
    m.at = T0 + 30;
    for addr in m.book.expired(m.at) {
        m.expire(&addr).unwrap();
    }
    assert_eq!(m.journal.last().unwrap().kind, JournalKind::Expire);
    m.delete(&d.keys, &d.address()).unwrap();
    m.place(&sell(4, 1, 9));
    assert!(m.offer(&buy(1, 1, 13).canceled(T0 + 1)).is_err());
    m
}

#[test]
fn replaying_the_journal_gives_the_same_fills_and_book() {
    let m = busy_market();
    assert!(m.journal.len() >= 10, "{}", m.journal.len());
    assert!(!m.fills.is_empty());
    // through JSON, as `ehash exchange verify` reads the public journal
    let journal: Vec<JournalEntry> = serde_json::from_str(&serde_json::to_string(&m.journal).unwrap()).unwrap();
    assert_eq!(journal, m.journal);
    for _ in 0..2 {
        let mut book = Book::new(MARKET, LOT);
        let mut fills = vec![];
        for e in &journal {
            fills.extend(book.apply(e).unwrap());
        }
        assert_eq!(fills, m.fills);
        assert_eq!(book.view(usize::MAX), m.book.view(usize::MAX));
        assert_eq!(book.view(1), m.book.view(1));
        assert_eq!(book.best(), m.book.best());
        assert_eq!(book.seq(), m.book.seq());
    }
}

#[test]
fn journal_entries_out_of_order_are_refused() {
    let m = busy_market();
    let mut book = Book::new(MARKET, LOT);
    assert!(matches!(book.apply(&m.journal[1]), Err(Refusal::Invalid(_))), "entry 2 cannot come first");
    assert_eq!(book.seq(), 0);
    book.apply(&m.journal[0]).unwrap();
    assert!(matches!(book.apply(&m.journal[0]), Err(Refusal::Invalid(_))), "entry 1 twice");
    assert!(matches!(book.apply(&m.journal[2]), Err(Refusal::Invalid(_))), "a gap");
    assert_eq!(book.seq(), 1);
    book.apply(&m.journal[1]).unwrap();
    assert_eq!(book.seq(), 2);
}

// --- 11. trade ids --------------------------------------------------------------------------

#[test]
fn the_trade_id_hashes_taker_then_maker_and_changes_when_roles_swap() {
    let s = sell(1, 1, 10);
    let b = buy(1, 1, 10);

    let mut m = Market::new();
    m.place(&s);
    let f = m.place(&b)[0].clone();
    assert_fill(&f, &s, &b, 1, 10, MINT_A);
    assert_eq!(f.trade_id(), trade_id(b.event.id.as_bytes(), s.event.id.as_bytes()));
    assert_eq!(f.trade_id().len(), 32);

    let mut m = Market::new();
    m.place(&b);
    let g = m.place(&s)[0].clone();
    assert_fill(&g, &b, &s, 1, 10, MINT_A);
    assert_eq!(g.trade_id(), trade_id(s.event.id.as_bytes(), b.event.id.as_bytes()));
    assert_ne!(f.trade_id(), g.trade_id(), "the same two offers make another trade id with roles swapped");
    assert_eq!((f.amount, f.sats), (g.amount, g.sats));
}

// --- property: a random order flow ----------------------------------------------------------

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn coin(&mut self) -> bool {
        self.next() >> 63 == 1
    }

    /// Uniform in `lo..=hi` (bias irrelevant here).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// What the test knows independently of the book: every offer's latest accepted version, how
/// much of each was filled, when each last changed, the pairs of versions that traded, the
/// offers removed by failed trades, and the money.
#[derive(Default)]
struct Model {
    latest: Vec<Signed>,
    index: HashMap<String, usize>,
    filled: HashMap<String, u64>,
    /// The last entry that filled an offer, or restored quantity to it while it rested.
    last_change: HashMap<String, u64>,
    /// The journal number that booked each version.
    booked: HashMap<EventId, u64>,
    traded: HashSet<(EventId, EventId)>,
    banned: HashSet<String>,
    failed: HashSet<usize>,
    sats: u128,
    expected_sats: u128,
}

impl Model {
    /// Check the fills of the entry just applied and account for them.
    fn fills(&mut self, m: &Market, fills: &[Fill]) {
        let seq = m.book.seq();
        if let Some(ev) = m.journal.last().and_then(|e| e.event.clone()) {
            let ev: Event = serde_json::from_value(ev).unwrap();
            self.booked.entry(ev.id).or_insert(seq);
        }
        for f in fills {
            assert_eq!(f.seq, seq);
            assert!(f.amount > 0 && f.amount.is_multiple_of(LOT), "{} is not a whole number of lots", f.amount);
            assert_eq!(f.price, f.maker.offer.price, "at the maker's price");
            assert_eq!(f.sats, f.price.sats_for(f.amount).unwrap());
            assert_eq!(f.sat_mint, MINT_A);
            assert_ne!(f.maker.offer.side, f.taker.offer.side);
            let (bid, ask) = if f.taker.offer.side == Side::Buy { (&f.taker, &f.maker) } else { (&f.maker, &f.taker) };
            assert!(bid.offer.price.sats_per_lot >= ask.offer.price.sats_per_lot, "prices cross");
            assert!(!self.traded.contains(&(f.taker.event_id, f.maker.event_id)), "a pair of versions traded twice (roles swapped)");
            assert!(self.traded.insert((f.maker.event_id, f.taker.event_id)), "a pair of versions traded twice");
            for v in [&f.maker, &f.taker] {
                assert!(!self.banned.contains(&v.address), "a removed offer traded");
                assert_eq!(self.latest[self.index[&v.address]].event.id, v.event_id, "the booked version is the one that trades");
                let done = self.filled.entry(v.address.clone()).or_default();
                let before = v.offer.amount.checked_sub(*done).unwrap_or_else(|| panic!("{} filled beyond its amount", v.address));
                assert!(f.amount <= before, "{} filled beyond its amount", v.address);
                assert!(f.amount >= v.offer.min.min(before), "a fill of {} below the effective minimum of {}", f.amount, v.address);
                *done += f.amount;
                self.last_change.insert(v.address.clone(), seq);
            }
            self.sats += u128::from(f.sats);
            self.expected_sats += u128::from(f.amount / LOT) * u128::from(f.maker.offer.price.sats_per_lot);
        }
    }

    /// Check the book against the model.
    fn book(&self, m: &Market, min_one_lot: bool) {
        for s in &self.latest {
            let a = s.address();
            let done = self.filled.get(&a).copied().unwrap_or(0);
            assert!(done <= s.offer.amount, "{a}: filled {done} of {}", s.offer.amount);
            assert_eq!(m.book.remaining(&a), s.offer.amount - done, "{a}");
            assert_eq!(m.book.version(&a).unwrap().event_id, s.event.id);
            if s.offer.status == OfferStatus::Canceled || self.banned.contains(&a) {
                assert!(!m.book.is_resting(&a));
            }
        }
        let view = m.book.view(usize::MAX);
        for e in view.bids.iter().chain(&view.asks) {
            assert!(e.remaining > 0 && e.remaining.is_multiple_of(LOT));
            assert!(m.book.is_resting(&e.address));
        }
        assert!(view.bids.windows(2).all(|w| (Reverse(w[0].price), w[0].seq) < (Reverse(w[1].price), w[1].seq)));
        assert!(view.asks.windows(2).all(|w| (w[0].price, w[0].seq) < (w[1].price, w[1].seq)));
        // A crossing pair left resting could not trade when the later of the two came in, and
        // still cannot: the two versions already traded (a failed trade's restored quantity
        // never trades with the same version again); or a minimum forbids it now; or one of
        // them changed in a later entry (matching happens only when an offer comes in or its
        // quantity returns after a failure, so a remainder that falls below its minimum, or
        // grows on a resting offer, is not re-matched); or the later one, as taker, skipped the
        // earlier one because of its own minimum and then filled further down the book, leaving
        // a remainder below its minimum (one pass over the book: skipped offers are not
        // revisited). With one-lot minimums only the first reason can apply.
        for b in &view.bids {
            for a in view.asks.iter().take_while(|a| a.price <= b.price) {
                let ids = (EventId::from_hex(&a.event_id).unwrap(), EventId::from_hex(&b.event_id).unwrap());
                let done = self.traded.contains(&ids) || self.traded.contains(&(ids.1, ids.0));
                if min_one_lot {
                    assert!(done, "crossed book at seq {}: bid {b:?} ask {a:?}", m.book.seq());
                    continue;
                }
                let q = b.remaining.min(a.remaining);
                let forbidden = q < b.min.min(b.remaining) || q < a.min.min(a.remaining);
                let booked = a.seq.max(b.seq);
                let changed = [&a.address, &b.address].iter().any(|x| self.last_change.get(*x).is_some_and(|s| *s > booked));
                let (later, earlier) = if a.seq > b.seq { (a, b) } else { (b, a) };
                let key = |price: u64, seq: u64| if earlier.side == Side::Buy { (u64::MAX - price, seq) } else { (price, seq) };
                let revisit = m
                    .fills
                    .iter()
                    .filter(|f| f.seq == booked && f.taker.address == later.address)
                    .any(|f| key(f.price.sats_per_lot, self.booked[&f.maker.event_id]) > key(earlier.price, earlier.seq));
                assert!(done || forbidden || changed || revisit, "bid {b:?} and ask {a:?} cross and could trade at seq {}", m.book.seq());
            }
        }
    }
}

/// Apply `steps` random book events (new offers; new versions at another price or a larger
/// amount; cancellations; deletions; failed trades that remove one side and restore the other)
/// and check the book's invariants after every one. With `min_one_lot`, every minimum is one
/// lot, so the book may only be crossed by two versions that already traded. Unless
/// `any_failure`, a failed trade only restores quantity to an offer version that made no other
/// trade as the resting offer (see `a_restored_maker_never_trades_again_with_the_same_taker_version`).
fn random_flow(seed: u64, steps: u64, min_one_lot: bool, any_failure: bool) {
    let mut rng = Rng(seed);
    let mut m = Market::new();
    let mut model = Model::default();
    let mut kinds: HashMap<&str, usize> = HashMap::new();

    for step in 0..steps {
        m.at = T0 + 10 + step;
        let roll = rng.range(0, 99);
        let result = if roll < 65 || model.latest.is_empty() {
            *kinds.entry("offer").or_default() += 1;
            let side = if rng.coin() { Side::Buy } else { Side::Sell };
            let lots = rng.range(1, 8);
            let min = if min_one_lot { 1 } else { rng.range(1, lots) };
            let s = Signed::with_keys(Keys::generate(), offer(side, lots, min, rng.range(90, 110)), m.at);
            let r = m.offer(&s);
            assert!(r.is_ok(), "{r:?}");
            model.index.insert(s.address(), model.latest.len());
            model.latest.push(s);
            r
        } else if roll < 90 {
            let i = rng.range(0, model.latest.len() as u64 - 1) as usize;
            let old = model.latest[i].clone();
            let banned = model.banned.contains(&old.address());
            if roll < 85 {
                *kinds.entry(if roll < 79 { "version" } else { "canceled" }).or_default() += 1;
                let s = if roll < 79 {
                    let price = rng.range(90, 110);
                    let more = rng.range(0, 2) * LOT;
                    old.version(m.at, |o| {
                        o.status = OfferStatus::Pending;
                        o.price.sats_per_lot = price;
                        o.amount += more;
                    })
                } else {
                    old.canceled(m.at)
                };
                let r = m.offer(&s);
                if banned {
                    assert!(matches!(r, Err(Refusal::Removed(_))), "{r:?}");
                } else {
                    assert!(r.is_ok(), "{r:?}");
                    model.latest[i] = s;
                }
                r
            } else {
                *kinds.entry("deletion").or_default() += 1;
                let resting = m.book.is_resting(&old.address());
                let r = m.delete(&old.keys, &old.address());
                assert_eq!(r.is_ok(), resting, "{r:?}");
                assert!(!m.book.is_resting(&old.address()));
                r
            }
        } else {
            // a trade fails: one side is blamed, the other's quantity returns
            let maker_of_another = |f: &Fill, v: &ehash_exchange::book::OfferVersion| {
                m.fills.iter().any(|g| g.maker.event_id == v.event_id && g.taker.event_id != f.taker.event_id && g.taker.event_id != f.maker.event_id)
            };
            let open: Vec<usize> = (0..m.fills.len())
                .filter(|i| !model.failed.contains(i))
                .filter(|i| any_failure || !(maker_of_another(&m.fills[*i], &m.fills[*i].maker) || maker_of_another(&m.fills[*i], &m.fills[*i].taker)))
                .collect();
            if open.is_empty() {
                continue;
            }
            *kinds.entry("fail").or_default() += 1;
            let k = open[rng.range(0, open.len() as u64 - 1) as usize];
            model.failed.insert(k);
            let f = m.fills[k].clone();
            let (blamed, other) = if rng.coin() { (&f.maker, &f.taker) } else { (&f.taker, &f.maker) };
            let resting_before = m.book.is_resting(&other.address);
            let entry = JournalEntry {
                seq: m.book.seq() + 1,
                kind: JournalKind::Fail,
                at: m.at,
                event: None,
                address: None,
                trade: Some(f.trade_id()),
                remove: Some(blamed.address.clone()),
                restore: Some((other.address.clone(), f.amount)),
            };
            let r = m.apply(entry);
            assert!(r.is_ok(), "{r:?}");
            assert!(!m.book.is_resting(&blamed.address));
            model.banned.insert(blamed.address.clone());
            let done = model.filled.entry(other.address.clone()).or_default();
            *done = done.saturating_sub(f.amount);
            if resting_before {
                model.last_change.insert(other.address.clone(), m.book.seq());
            }
            r
        };
        match &result {
            Ok(fills) => model.fills(&m, fills),
            Err(_) => *kinds.entry("refused").or_default() += 1,
        }
        model.book(&m, min_one_lot);
    }
    assert!(m.fills.len() > steps as usize / 10, "the flow should trade: {} fills", m.fills.len());
    assert!(["offer", "version", "canceled", "deletion", "fail"].iter().all(|k| kinds.get(k).is_some_and(|n| *n > 0)), "{kinds:?}");
    assert_eq!(model.sats, model.expected_sats);
    assert_eq!(model.sats, m.fills.iter().map(|f| u128::from(f.sats)).sum::<u128>());

    // and the whole journal replays to the same result
    let mut book = Book::new(MARKET, LOT);
    let mut fills = vec![];
    for e in &m.journal {
        fills.extend(book.apply(e).unwrap());
    }
    assert_eq!(fills, m.fills);
    assert_eq!(book.view(usize::MAX), m.book.view(usize::MAX));
}

#[test]
fn random_order_flow_with_minimums_keeps_the_book_consistent() {
    for seed in [0x9E37_79B9_7F4A_7C15, 42, 0xDEAD_BEEF] {
        random_flow(seed, 300, false, false);
    }
}

#[test]
fn random_order_flow_with_one_lot_minimums_never_leaves_the_book_crossed() {
    for seed in [7, 0x1234_5678_9ABC_DEF0] {
        random_flow(seed, 300, true, false);
    }
}

#[test]
fn random_order_flow_with_any_failed_trades_keeps_the_book_consistent() {
    for seed in [0x9E37_79B9_7F4A_7C15, 42, 0xDEAD_BEEF, 7, 0x1234_5678_9ABC_DEF0] {
        random_flow(seed, 300, false, true);
        random_flow(seed, 300, true, true);
    }
}
