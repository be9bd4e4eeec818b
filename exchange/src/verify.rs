//! `ehash exchange verify`: replay an exchange's public journal with the matching code and check
//! that the trades it published on nostr are exactly the trades price-time priority makes.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ehash_protocol::api::{JournalEntry, JournalKind, MarketSummary};
use ehash_protocol::events::{Blame, KIND_OFFER, KIND_TRADE, Trade, TradeState};
use ehash_protocol::market::ExchangeInfo;
use nostr_sdk::prelude::*;
use serde::Serialize;

use crate::book::{Book, Fill, OfferVersion};
use crate::{Error, Result};

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Markets replayed.
    pub markets: usize,
    /// Journal entries replayed.
    pub entries: usize,
    /// Trades the replay made.
    pub expected: usize,
    /// Trades the exchange published on the relays.
    pub published: usize,
    /// Every disagreement (empty: the exchange matched correctly).
    pub mismatches: Vec<String>,
    /// Offers to this exchange on the relays that no journal entry booked (refused, or never
    /// seen by the exchange).
    pub unbooked: Vec<String>,
}

impl Report {
    /// Whether the exchange's published trades are exactly the replay's.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

async fn get<T: serde::de::DeserializeOwned>(url: &str) -> Result<T> {
    let resp = bitreq::get(url).with_timeout(30).send_async().await.map_err(|e| Error::Remote(format!("{url}: {e}; is the exchange running?")))?;
    if resp.status_code != 200 {
        return Err(Error::Remote(format!("{url}: HTTP {}", resp.status_code)));
    }
    resp.json::<T>().map_err(|e| Error::Remote(format!("{url}: unexpected answer: {e}")))
}

/// The fields of a trade that matching decides.
fn key_of_fill(f: &Fill) -> String {
    format!(
        "amount {} sats {} price {}/{} seq {} maker {} taker {} maker side {} sat mint {}",
        f.amount, f.sats, f.price.sats_per_lot, f.price.lot, f.seq, f.maker.event_id, f.taker.event_id, f.maker_side(), f.sat_mint
    )
}

fn key_of_trade(t: &Trade) -> String {
    format!(
        "amount {} sats {} price {}/{} seq {} maker {} taker {} maker side {} sat mint {}",
        t.amount, t.sats, t.price.sats_per_lot, t.price.lot, t.seq, t.maker.event_id, t.taker.event_id, t.maker_side, t.sat_mint
    )
}

/// Replay one market's journal; returns the fills, and adds rule violations to `mismatches`.
pub fn replay(market: &str, lot: u64, max_skew: u64, journal: &[JournalEntry], mismatches: &mut Vec<String>) -> Vec<Fill> {
    let mut book = Book::new(market, lot);
    let mut fills = vec![];
    for e in journal {
        if e.kind == JournalKind::Offer
            && let Some(ev) = e.event.as_ref().and_then(|v| serde_json::from_value::<Event>(v.clone()).ok())
            && let Ok(v) = OfferVersion::from_event(&ev)
        {
            if v.offer.expiration <= e.at {
                mismatches.push(format!("{market} #{}: booked {} after it expired", e.seq, v.address));
            }
            if v.created_at.abs_diff(e.at) > max_skew {
                mismatches.push(format!("{market} #{}: booked {} dated {} at {}", e.seq, v.address, v.created_at, e.at));
            }
        }
        match book.apply(e) {
            Ok(f) => fills.extend(f),
            Err(err) => {
                mismatches.push(format!("{market} #{}: {err}", e.seq));
                break;
            }
        }
    }
    fills
}

/// Verify the exchange at `exchange_url`, reading its trades from `relays` (default: the ones
/// it names).
pub async fn verify(exchange_url: &str, relays: &[String]) -> Result<Report> {
    let base = exchange_url.trim_end_matches('/').to_owned();
    let info: ExchangeInfo = get(&format!("{base}/api/info")).await?;
    let markets: Vec<MarketSummary> = get(&format!("{base}/api/markets")).await?;
    let mut journals = BTreeMap::new();
    for m in &markets {
        let mut all: Vec<JournalEntry> = vec![];
        loop {
            let after = all.last().map(|e| e.seq).unwrap_or(0);
            let page: Vec<JournalEntry> = get(&format!("{base}/api/markets/{}/journal?after={after}&limit=10000", m.market)).await?;
            if page.is_empty() {
                break;
            }
            all.extend(page);
        }
        journals.insert(m.market.clone(), all);
    }
    let exchange = PublicKey::parse(&info.pubkey).map_err(|e| Error::Remote(format!("the exchange's key: {e}")))?;
    let mut report = Report { markets: markets.len(), ..Default::default() };
    let mut expected = BTreeMap::new();
    let mut booked = HashSet::new();
    for (market, journal) in &journals {
        report.entries += journal.len();
        for e in journal {
            if let Some(id) = e.event.as_ref().and_then(|v| v.get("id")).and_then(|v| v.as_str()) {
                booked.insert(id.to_owned());
            }
        }
        for f in replay(market, info.lot, info.max_clock_skew_secs, journal, &mut report.mismatches) {
            expected.insert(f.trade_id(), key_of_fill(&f));
        }
    }
    report.expected = expected.len();
    let relays = if relays.is_empty() { info.relays.clone() } else { relays.to_vec() };
    let client = Client::default();
    for r in &relays {
        client.add_relay(r.as_str()).await.map_err(|e| Error::Remote(format!("relay {r}: {e}")))?;
    }
    client.connect().and_wait(Duration::from_secs(5)).await;
    let trades = client.fetch_events(Filter::new().kind(Kind::Custom(KIND_TRADE)).author(exchange)).timeout(Duration::from_secs(20)).await;
    let offers = client.fetch_events(Filter::new().kind(Kind::Custom(KIND_OFFER)).pubkey(exchange)).timeout(Duration::from_secs(20)).await;
    client.shutdown().await;
    let trades = trades.map_err(|e| Error::Remote(format!("fetching trades: {e}")))?;
    let fails: Vec<(String, JournalEntry)> =
        journals.iter().flat_map(|(m, j)| j.iter().filter(|e| e.kind == JournalKind::Fail).map(move |e| (m.clone(), e.clone()))).collect();
    let mut published = BTreeMap::new();
    let mut parsed = BTreeMap::new();
    for ev in trades {
        if ev.verify().is_err() {
            report.mismatches.push(format!("trade event {} has a bad signature", ev.id));
            continue;
        }
        match Trade::parse(&ev) {
            Ok(t) => {
                published.insert(t.id.clone(), key_of_trade(&t));
                parsed.insert(t.id.clone(), t);
            }
            Err(e) => report.mismatches.push(format!("trade event {}: {e}", ev.id)),
        }
    }
    report.published = published.len();
    for (id, want) in &expected {
        match published.get(id) {
            None => report.mismatches.push(format!("trade {id} ({want}) is not published")),
            Some(got) if got != want => report.mismatches.push(format!("trade {id}: published {got}, replay makes {want}")),
            Some(_) => {}
        }
    }
    for (id, got) in &published {
        if !expected.contains_key(id) {
            report.mismatches.push(format!("trade {id} ({got}) was published but the journal does not make it"));
        }
    }
    // a failure in the journal must be a failed trade, and the offer removed its blamed party's
    for (market, e) in &fails {
        let id = e.trade.clone().unwrap_or_default();
        let Some(t) = parsed.get(&id) else { continue };
        if !matches!(t.state, TradeState::Failed | TradeState::Refunded) {
            report.mismatches.push(format!("{market} #{}: journals trade {id} as failed, but it is {}", e.seq, t.state));
            continue;
        }
        let blamed = match t.blame {
            Some(Blame::Seller) => Some(t.seller().address()),
            Some(Blame::Buyer) => Some(t.buyer().address()),
            _ => None,
        };
        if e.remove != blamed {
            report.mismatches.push(format!("{market} #{}: removes {:?} for trade {id}, whose blamed party's offer is {blamed:?}", e.seq, e.remove));
        }
    }
    if let Ok(offers) = offers {
        for ev in offers {
            if !booked.contains(&ev.id.to_hex()) {
                let address = OfferVersion::from_event(&ev).map(|v| v.address).unwrap_or_else(|e| format!("{} ({e})", ev.id));
                report.unbooked.push(address);
            }
        }
    }
    Ok(report)
}
