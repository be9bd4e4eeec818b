//! One market's order book and its matching engine (protocol §9, "Matching"): price-time
//! priority, partial fills, fills at the resting offer's price. Pure and deterministic: the
//! service and `ehash exchange verify` apply the same journal entries with this code and must
//! get the same fills.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};

use ehash_protocol::api::{self, JournalEntry, JournalKind};
use ehash_protocol::events::{EpochAnnouncement, KIND_OFFER, Offer, OfferStatus};
use ehash_protocol::market::{Price, Side};
use nostr_sdk::prelude::*;

/// Why a book event cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Schema, signature or content problem.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A version older than the one booked.
    #[error("stale: version of {got} is older than the booked one of {booked}")]
    Older {
        /// Its `created_at`.
        got: u64,
        /// The booked version's.
        booked: u64,
    },
    /// A different version with the same `created_at` as the booked one (first booked wins).
    #[error("conflict: another version with created_at {0} was booked first")]
    Conflicting(u64),
    /// The very version already booked.
    #[error("duplicate: already booked")]
    Duplicate,
    /// The offer left the book for good (its author was blamed for a failed trade).
    #[error("removed: {0}")]
    Removed(String),
    /// Nothing to do (cancelling an offer that is not resting, and the like).
    #[error("nothing to do: {0}")]
    Nothing(String),
}

/// One version of an offer, from its signed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferVersion {
    /// `38190:<pubkey>:<d>`.
    pub address: String,
    /// The version's event id.
    pub event_id: EventId,
    /// The offer key.
    pub pubkey: PublicKey,
    /// The version's `created_at`.
    pub created_at: u64,
    /// The parsed offer.
    pub offer: Offer,
}

impl OfferVersion {
    /// Parse a signed kind-38190 event (signature and schema checked).
    pub fn from_event(event: &Event) -> Result<Self, Refusal> {
        event.verify().map_err(|e| Refusal::Invalid(format!("signature: {e}")))?;
        let offer = Offer::parse(event).map_err(|e| Refusal::Invalid(e.to_string()))?;
        Ok(Self {
            address: offer.address(&event.pubkey),
            event_id: event.id,
            pubkey: event.pubkey,
            created_at: event.created_at.as_secs(),
            offer,
        })
    }
}

/// A match made by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    /// Journal number of the book event that made it.
    pub seq: u64,
    /// When (the journal entry's `at`).
    pub at: u64,
    /// The resting offer's version.
    pub maker: OfferVersion,
    /// The incoming offer's version.
    pub taker: OfferVersion,
    /// Ehash traded.
    pub amount: u64,
    /// Sats paid.
    pub sats: u64,
    /// The resting offer's price.
    pub price: Price,
    /// The sat mint of the trade.
    pub sat_mint: String,
}

impl Fill {
    /// The trade id (protocol §9).
    pub fn trade_id(&self) -> String {
        ehash_protocol::market::trade_id(self.taker.event_id.as_bytes(), self.maker.event_id.as_bytes())
    }

    /// The side of the resting offer.
    pub fn maker_side(&self) -> Side {
        self.maker.offer.side
    }
}

#[derive(Debug, Clone)]
struct Entry {
    version: OfferVersion,
    filled: u64,
    /// Queue position (journal seq of the event that queued it); kept when it leaves the queue
    /// so restored quantity keeps its priority.
    queued_at: u64,
    resting: bool,
    canceled: bool,
    banned: Option<String>,
    /// `created_at` of the newest NIP-09 deletion applied: it covers versions up to then.
    deleted_at: Option<u64>,
}

impl Entry {
    fn remaining(&self) -> u64 {
        self.version.offer.amount.saturating_sub(self.filled)
    }
}

/// One market's book.
#[derive(Debug, Clone)]
pub struct Book {
    market: String,
    lot: u64,
    seq: u64,
    offers: HashMap<String, Entry>,
    asks: BTreeMap<(u64, u64), String>,
    bids: BTreeMap<(Reverse<u64>, u64), String>,
    traded: HashSet<(EventId, EventId)>,
    /// Trades made: id → (seller address, buyer address, amount, failed yet).
    trades: HashMap<String, (String, String, u64, bool)>,
}

impl Book {
    /// An empty book for `market` at the exchange's `lot`.
    pub fn new(market: impl Into<String>, lot: u64) -> Self {
        Self {
            market: market.into(),
            lot,
            seq: 0,
            offers: HashMap::new(),
            asks: BTreeMap::new(),
            bids: BTreeMap::new(),
            traded: HashSet::new(),
            trades: HashMap::new(),
        }
    }

    /// The last applied journal number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The booked version of an offer.
    pub fn version(&self, address: &str) -> Option<&OfferVersion> {
        self.offers.get(address).map(|e| &e.version)
    }

    /// Offers resting with an expiration at or before `now`.
    pub fn expired(&self, now: u64) -> Vec<String> {
        let mut v: Vec<(u64, String)> = self
            .offers
            .values()
            .filter(|e| e.resting && e.version.offer.expiration <= now)
            .map(|e| (e.queued_at, e.version.address.clone()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, a)| a).collect()
    }

    /// Whether a new offer version may be booked (before it is written to the journal).
    pub fn check_offer(&self, v: &OfferVersion) -> Result<(), Refusal> {
        if v.offer.market != self.market {
            return Err(Refusal::Invalid(format!("market: {} is not this book's {}", v.offer.market, self.market)));
        }
        if v.offer.price.lot != self.lot {
            return Err(Refusal::Invalid(format!("price: lot {} is not the exchange's lot {}", v.offer.price.lot, self.lot)));
        }
        if let Some(e) = self.offers.get(&v.address) {
            if e.version.event_id == v.event_id {
                return Err(Refusal::Duplicate);
            }
            if let Some(why) = &e.banned {
                return Err(Refusal::Removed(why.clone()));
            }
            if let Some(d) = e.deleted_at
                && v.created_at <= d
            {
                return Err(Refusal::Older { got: v.created_at, booked: d });
            }
            if v.created_at < e.version.created_at {
                return Err(Refusal::Older { got: v.created_at, booked: e.version.created_at });
            }
            if v.created_at == e.version.created_at {
                return Err(Refusal::Conflicting(v.created_at));
            }
            if e.version.offer.side != v.offer.side {
                return Err(Refusal::Invalid("k: a new version cannot change the side".into()));
            }
        } else if v.offer.status == OfferStatus::Canceled {
            return Err(Refusal::Nothing("cancels an offer this exchange never booked".into()));
        }
        Ok(())
    }

    /// Whether a NIP-09 deletion by `author` of `address`, dated `created_at`, changes anything
    /// (it covers the versions up to its date).
    pub fn check_deletion(&self, author: &PublicKey, address: &str, created_at: u64) -> Result<(), Refusal> {
        match self.offers.get(address) {
            Some(e) if e.version.pubkey != *author => Err(Refusal::Invalid("only an offer's author can delete it".into())),
            Some(e) if e.version.created_at > created_at => {
                Err(Refusal::Nothing(format!("the deletion (dated {created_at}) is older than the booked version")))
            }
            Some(e) if e.resting => Ok(()),
            Some(_) => Err(Refusal::Nothing("the offer is not resting".into())),
            None => Err(Refusal::Nothing("no such offer".into())),
        }
    }

    /// Apply the next journal entry; returns the fills it made. Entries must come in order.
    pub fn apply(&mut self, entry: &JournalEntry) -> Result<Vec<Fill>, Refusal> {
        if entry.seq != self.seq + 1 {
            return Err(Refusal::Invalid(format!("journal entry {} follows {}", entry.seq, self.seq)));
        }
        let fills = match entry.kind {
            JournalKind::Offer => {
                let ev = event_of(entry)?;
                let v = OfferVersion::from_event(&ev)?;
                self.check_offer(&v)?;
                self.book_version(v, entry)
            }
            JournalKind::Cancel => {
                let ev = event_of(entry)?;
                if ev.kind.as_u16() == KIND_OFFER {
                    let v = OfferVersion::from_event(&ev)?;
                    self.check_offer(&v)?;
                    self.book_version(v, entry)
                } else {
                    ev.verify().map_err(|e| Refusal::Invalid(format!("signature: {e}")))?;
                    let address = entry.address.clone().ok_or_else(|| Refusal::Invalid("a cancel entry names no offer".into()))?;
                    if !deletes(&ev, &address) {
                        return Err(Refusal::Invalid(format!("the deletion does not name {address}")));
                    }
                    self.check_deletion(&ev.pubkey, &address, ev.created_at.as_secs())?;
                    self.unqueue(&address);
                    if let Some(e) = self.offers.get_mut(&address) {
                        e.canceled = true;
                        e.deleted_at = Some(ev.created_at.as_secs());
                    }
                    vec![]
                }
            }
            JournalKind::Expire => {
                let address = entry.address.clone().ok_or_else(|| Refusal::Invalid("an expire entry names no offer".into()))?;
                let e = self.offers.get(&address).ok_or_else(|| Refusal::Nothing(format!("{address} is not booked")))?;
                if !e.resting {
                    return Err(Refusal::Nothing(format!("{address} is not resting")));
                }
                // due by its own expiration, or because its epoch expired (the signed epoch
                // announcement saying so is attached)
                let epoch_expired = entry.event.is_some() && self.expired_epoch(entry)?;
                if e.version.offer.expiration > entry.at && !epoch_expired {
                    return Err(Refusal::Invalid(format!("{address} expires at {}, not by {}", e.version.offer.expiration, entry.at)));
                }
                self.unqueue(&address);
                vec![]
            }
            JournalKind::Fail => {
                let id = entry.trade.clone().ok_or_else(|| Refusal::Invalid("a fail entry names no trade".into()))?;
                let (seller, buyer, amount, failed) =
                    self.trades.get(&id).cloned().ok_or_else(|| Refusal::Invalid(format!("trade {id} was not made by this book")))?;
                if failed {
                    return Err(Refusal::Duplicate);
                }
                let party = |a: &String| *a == seller || *a == buyer;
                if entry.remove.as_ref().is_some_and(|a| !party(a)) {
                    return Err(Refusal::Invalid(format!("the offer removed is not a party to trade {id}")));
                }
                if let Some((a, n)) = &entry.restore
                    && (!party(a) || Some(a) == entry.remove.as_ref() || *n > amount)
                {
                    return Err(Refusal::Invalid(format!("the quantity restored is not the other party's share of trade {id}")));
                }
                if let Some(t) = self.trades.get_mut(&id) {
                    t.3 = true;
                }
                if let Some(a) = &entry.remove {
                    self.unqueue(a);
                    if let Some(e) = self.offers.get_mut(a) {
                        e.banned = Some(format!("blamed for the failed trade {}", entry.trade.clone().unwrap_or_default()));
                    }
                }
                let mut fills = vec![];
                if let Some((a, amount)) = &entry.restore
                    && let Some(e) = self.offers.get_mut(a)
                {
                    e.filled = e.filled.saturating_sub(*amount);
                    let live = e.banned.is_none() && !e.canceled && e.version.offer.expiration > entry.at;
                    if live && !e.resting && e.remaining() > 0 {
                        let a = a.clone();
                        fills = self.take(&a, entry);
                        self.queue(&a);
                    }
                }
                fills
            }
        };
        self.seq = entry.seq;
        Ok(fills)
    }

    fn book_version(&mut self, v: OfferVersion, entry: &JournalEntry) -> Vec<Fill> {
        let address = v.address.clone();
        self.unqueue(&address);
        let filled = self.offers.get(&address).map(|e| e.filled).unwrap_or(0);
        let canceled = v.offer.status == OfferStatus::Canceled;
        let deleted_at = self.offers.get(&address).and_then(|e| e.deleted_at);
        self.offers.insert(address.clone(), Entry { version: v, filled, queued_at: entry.seq, resting: false, canceled, banned: None, deleted_at });
        if canceled {
            return vec![];
        }
        let fills = self.take(&address, entry);
        self.queue(&address);
        fills
    }

    /// Match the offer at `address` against the other side while prices cross.
    fn take(&mut self, address: &str, entry: &JournalEntry) -> Vec<Fill> {
        let Some(taker) = self.offers.get(address).cloned() else { return vec![] };
        let tp = taker.version.offer.price.sats_per_lot;
        let candidates: Vec<String> = match taker.version.offer.side {
            Side::Buy => self.asks.iter().take_while(|((p, _), _)| *p <= tp).map(|(_, a)| a.clone()).collect(),
            Side::Sell => self.bids.iter().take_while(|((Reverse(p), _), _)| *p >= tp).map(|(_, a)| a.clone()).collect(),
        };
        let mut fills = vec![];
        let mut t_filled = taker.filled;
        let t = &taker.version;
        for addr in candidates {
            let t_rem = t.offer.amount.saturating_sub(t_filled);
            if t_rem == 0 {
                break;
            }
            let Some(m) = self.offers.get(&addr) else { continue };
            let pair = (t.event_id, m.version.event_id);
            let traded = self.traded.contains(&pair) || self.traded.contains(&(pair.1, pair.0));
            if m.version.offer.expiration <= entry.at || traded || m.version.pubkey == t.pubkey {
                continue;
            }
            let Some(sat_mint) = m.version.offer.sat_mints.iter().find(|s| t.offer.sat_mints.contains(s)).cloned() else { continue };
            let m_rem = m.remaining();
            let q = t_rem.min(m_rem);
            if q < m.version.offer.min.min(m_rem) || q < t.offer.min.min(t_rem) {
                continue;
            }
            let price = m.version.offer.price;
            let Ok(sats) = price.sats_for(q) else { continue };
            let maker = m.version.clone();
            t_filled += q;
            self.traded.insert((t.event_id, maker.event_id));
            if let Some(m) = self.offers.get_mut(&addr) {
                m.filled += q;
                if m.remaining() == 0 {
                    self.unqueue(&addr);
                }
            }
            let fill = Fill { seq: entry.seq, at: entry.at, maker, taker: t.clone(), amount: q, sats, price, sat_mint };
            let (seller, buyer) = match t.offer.side {
                Side::Sell => (t.address.clone(), addr.clone()),
                Side::Buy => (addr.clone(), t.address.clone()),
            };
            self.trades.insert(fill.trade_id(), (seller, buyer, q, false));
            fills.push(fill);
        }
        if let Some(e) = self.offers.get_mut(address) {
            e.filled = t_filled;
        }
        fills
    }

    /// Whether the entry carries a signed announcement that this market's epoch expired.
    fn expired_epoch(&self, entry: &JournalEntry) -> Result<bool, Refusal> {
        let ev = event_of(entry)?;
        ev.verify().map_err(|e| Refusal::Invalid(format!("signature: {e}")))?;
        let a = EpochAnnouncement::parse(&ev).map_err(|e| Refusal::Invalid(e.to_string()))?;
        Ok(a.keyset.id.to_string() == self.market && a.state.has_ended())
    }

    fn queue(&mut self, address: &str) {
        let Some(e) = self.offers.get_mut(address) else { return };
        if e.resting || e.remaining() == 0 || e.canceled || e.banned.is_some() {
            return;
        }
        e.resting = true;
        let p = e.version.offer.price.sats_per_lot;
        let key = e.queued_at;
        match e.version.offer.side {
            Side::Sell => {
                self.asks.insert((p, key), address.to_owned());
            }
            Side::Buy => {
                self.bids.insert((Reverse(p), key), address.to_owned());
            }
        }
    }

    fn unqueue(&mut self, address: &str) {
        let Some(e) = self.offers.get_mut(address) else { return };
        if !e.resting {
            return;
        }
        e.resting = false;
        let p = e.version.offer.price.sats_per_lot;
        match e.version.offer.side {
            Side::Sell => {
                self.asks.remove(&(p, e.queued_at));
            }
            Side::Buy => {
                self.bids.remove(&(Reverse(p), e.queued_at));
            }
        }
    }

    /// The remaining quantity of an offer (0 if unknown).
    pub fn remaining(&self, address: &str) -> u64 {
        self.offers.get(address).map(Entry::remaining).unwrap_or(0)
    }

    /// Whether an offer rests in the book.
    pub fn is_resting(&self, address: &str) -> bool {
        self.offers.get(address).is_some_and(|e| e.resting)
    }

    /// Best bid and ask (sats per lot).
    pub fn best(&self) -> (Option<u64>, Option<u64>) {
        (self.bids.keys().next().map(|(Reverse(p), _)| *p), self.asks.keys().next().map(|(p, _)| *p))
    }

    /// The book as the API shows it, best first, at most `depth` offers a side.
    pub fn view(&self, depth: usize) -> api::Book {
        let entry = |a: &String| {
            let e = &self.offers[a];
            let o = &e.version.offer;
            api::BookEntry {
                address: a.clone(),
                event_id: e.version.event_id.to_hex(),
                pubkey: e.version.pubkey.to_hex(),
                side: o.side,
                price: o.price.sats_per_lot,
                remaining: e.remaining(),
                min: o.min,
                sat_mints: o.sat_mints.clone(),
                expiration: o.expiration,
                seq: e.queued_at,
            }
        };
        api::Book {
            market: self.market.clone(),
            lot: self.lot,
            bids: self.bids.values().take(depth).map(entry).collect(),
            asks: self.asks.values().take(depth).map(entry).collect(),
            seq: self.seq,
        }
    }
}

fn event_of(entry: &JournalEntry) -> Result<Event, Refusal> {
    let v = entry.event.as_ref().ok_or_else(|| Refusal::Invalid(format!("journal entry {} carries no event", entry.seq)))?;
    serde_json::from_value::<Event>(v.clone()).map_err(|e| Refusal::Invalid(format!("journal entry {}: {e}", entry.seq)))
}

/// Whether the NIP-09 deletion `ev` names the offer at `address`.
pub fn deletes(ev: &Event, address: &str) -> bool {
    ev.kind == Kind::EventDeletion
        && ev.tags.iter().any(|t| {
            let s = t.as_slice();
            s.len() >= 2 && s[0] == "a" && s[1] == address
        })
        && address.split(':').nth(1) == Some(ev.pubkey.to_hex().as_str())
}
