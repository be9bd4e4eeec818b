//! The HTTP + WebSocket API (protocol §9, "API"), read by `ehash trade`, `ehash exchange
//! verify` and the web UI.
//!
//! | route | body |
//! |-------|------|
//! | `GET /api/info` | [`ExchangeInfo`](ehash_protocol::market::ExchangeInfo) |
//! | `GET /api/markets` | [`MarketSummary`] list |
//! | `GET /api/markets/{market}/book?depth=N` | [`api::Book`] |
//! | `GET /api/markets/{market}/trades?limit=N` | [`TradeView`] list, newest first |
//! | `GET /api/markets/{market}/candles?interval=SECS` | [`Candle`] list, oldest first |
//! | `GET /api/markets/{market}/journal?after=SEQ&limit=N` | [`JournalEntry`](ehash_protocol::api::JournalEntry) list |
//! | `GET /api/trades/{id}` | [`TradeView`] |
//! | `GET /api/epochs` | the epoch announcements (signed kind-38180 events) |
//! | `GET /api/refusals` | offers not booked, and why (newest last) |
//! | `GET /api/ws` | WebSocket: `{"type":"book"\|"trade"\|"epoch","market":…,"data":…}` |
//! | `GET /api/openapi.json` | the OpenAPI 3.1 description of these routes ([`OPENAPI`]) |
//!
//! Query numbers and their limits (anything else is refused with 400, never silently changed):
//! `depth` 1–1000 (default 100), trades `limit` 1–1000 (default 100), `interval` 1–31 536 000
//! seconds (default 60), journal `after` 0–9 223 372 036 854 775 807 (default 0) and `limit`
//! 1–10 000 (default 1000). A market the exchange does not list is 404 on all four of its routes.
//! Every error, whatever the route (unknown paths and methods too), is JSON
//! [`ApiError`](ehash_protocol::api::ApiError) `{"error": "…"}` with its status: 400 for a bad
//! query, 404 for an unknown market, trade or path, 405 for another method, 500 when the
//! exchange's database fails.
//!
//! Every route allows cross-origin calls from any origin (`Access-Control-Allow-Origin: *`,
//! preflights answered; see `ehash-cors`): the web UI is served from another origin.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::Arc;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{MethodRouter, get};
use axum::Router;
use axum::http::header;
use ehash_protocol::api::{self, ApiError, Candle, MarketSummary, TradeView};
use ehash_protocol::epoch::{EpochState, redeem_sats, value_of};
use ehash_protocol::events::TradeState;

use crate::engine::{Inner, now};

type Shared = Arc<Inner>;

/// The OpenAPI description of the routes, served at `GET /api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route, by path (the OpenAPI description lists exactly these).
fn routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    vec![
        ("/health", get(|| async { "ok" })),
        ("/api/info", get(info)),
        ("/api/markets", get(markets)),
        ("/api/markets/{market}/book", get(book)),
        ("/api/markets/{market}/trades", get(trades)),
        ("/api/markets/{market}/candles", get(candles)),
        ("/api/markets/{market}/journal", get(journal)),
        ("/api/trades/{id}", get(trade)),
        ("/api/epochs", get(epochs)),
        ("/api/refusals", get(refusals)),
        ("/api/ws", get(ws)),
        ("/api/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) })),
    ]
}

/// The API's routes.
pub(crate) fn router(inner: Shared) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |r, (path, route)| {
            r.route(path, route.fallback(|| async { fail(StatusCode::METHOD_NOT_ALLOWED, "this route answers GET only".into()) }))
        })
        .fallback(|| async { fail(StatusCode::NOT_FOUND, "no such route; GET /api/openapi.json lists them".into()) })
        .layer(axum::middleware::from_fn(ehash_cors::middleware))
        .with_state(inner)
}

/// An error answer: `{"error": …}` with its status.
fn fail(status: StatusCode, error: String) -> Response {
    (status, Json(ApiError { error })).into_response()
}

fn not_found(what: String) -> Response {
    fail(StatusCode::NOT_FOUND, what)
}

fn no_market(market: &str) -> Response {
    not_found(format!("no market {market}; GET /api/markets lists them"))
}

type Params = Query<HashMap<String, String>>;

/// A query parameter that is not a number within its documented range: answered 400.
struct BadQuery(String);

impl IntoResponse for BadQuery {
    fn into_response(self) -> Response {
        fail(StatusCode::BAD_REQUEST, self.0)
    }
}

/// A query number within its documented range, or the 400 answer naming it.
fn number(q: &HashMap<String, String>, name: &str, default: u64, range: RangeInclusive<u64>) -> Result<u64, BadQuery> {
    let Some(text) = q.get(name) else { return Ok(default) };
    match text.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(BadQuery(format!("{name} must be a whole number from {} to {}; got {text:?}", range.start(), range.end()))),
    }
}

async fn info(AxState(s): AxState<Shared>) -> Json<ehash_protocol::market::ExchangeInfo> {
    Json(s.info.clone())
}

fn counts(state: TradeState) -> bool {
    !matches!(state, TradeState::Failed | TradeState::Refunded)
}

async fn markets(AxState(s): AxState<Shared>) -> Json<Vec<MarketSummary>> {
    let st = s.state.lock().await;
    let day_ago = now().saturating_sub(86_400);
    let mut out: Vec<MarketSummary> = st
        .epochs
        .iter()
        .map(|(m, e)| {
            let (bid, ask) = st.books.get(m).map(|b| b.best()).unwrap_or((None, None));
            let mut trades: Vec<_> = st.trades.values().filter(|l| &l.trade.market == m && counts(l.trade.state)).collect();
            trades.sort_by_key(|l| (l.s.matched_at, l.trade.seq));
            let a = &e.announcement;
            let value = value_of(s.config.lot, a.state, a.payout, a.issued, a.hashprice);
            MarketSummary {
                market: m.clone(),
                unit: e.announcement.keyset.unit.to_string(),
                mint_url: e.announcement.mint_url.clone(),
                pool: e.pool.to_hex(),
                epoch: e.announcement.epoch,
                state: e.announcement.state,
                issued: e.announcement.issued,
                payout: e.announcement.payout,
                fair_price: match (e.announcement.state, e.announcement.payout, e.announcement.issued) {
                    (EpochState::Redeemable, Some(payout), Some(issued)) => Some(redeem_sats(s.config.lot, payout, issued)),
                    _ => None,
                },
                expires: e.announcement.expires,
                value: value.map(|v| v.0),
                value_basis: value.map(|v| v.1),
                bid,
                ask,
                last: trades.last().map(|l| l.trade.price.sats_per_lot),
                volume_24h: trades.iter().filter(|l| l.s.matched_at >= day_ago).map(|l| l.trade.amount).sum(),
                lot: s.config.lot,
            }
        })
        .collect();
    out.sort_by(|a, b| b.epoch.cmp(&a.epoch).then(a.market.cmp(&b.market)));
    Json(out)
}

async fn book(AxState(s): AxState<Shared>, Path(market): Path<String>, Query(q): Params) -> Response {
    let depth = match number(&q, "depth", 100, 1..=1000) {
        Ok(n) => n as usize,
        Err(r) => return r.into_response(),
    };
    let st = s.state.lock().await;
    match st.books.get(&market) {
        Some(b) => Json(b.view(depth)).into_response(),
        None if st.epochs.contains_key(&market) => {
            Json(api::Book { market, lot: s.config.lot, bids: vec![], asks: vec![], seq: 0 }).into_response()
        }
        None => no_market(&market),
    }
}

/// Whether the exchange lists `market`.
fn known(st: &crate::engine::State, market: &str) -> bool {
    st.epochs.contains_key(market) || st.books.contains_key(market)
}

async fn trades(AxState(s): AxState<Shared>, Path(market): Path<String>, Query(q): Params) -> Response {
    let limit = match number(&q, "limit", 100, 1..=1000) {
        Ok(n) => n as usize,
        Err(r) => return r.into_response(),
    };
    let st = s.state.lock().await;
    if !known(&st, &market) {
        return no_market(&market);
    }
    let mut v: Vec<_> = st.trades.values().filter(|l| l.trade.market == market).collect();
    v.sort_by_key(|l| std::cmp::Reverse((l.s.matched_at, l.trade.seq, l.trade.id.clone())));
    Json(v.into_iter().take(limit).map(|l| l.view()).collect::<Vec<TradeView>>()).into_response()
}

async fn candles(AxState(s): AxState<Shared>, Path(market): Path<String>, Query(q): Params) -> Response {
    let interval = match number(&q, "interval", 60, 1..=31_536_000) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let st = s.state.lock().await;
    if !known(&st, &market) {
        return no_market(&market);
    }
    let mut v: Vec<_> = st.trades.values().filter(|l| l.trade.market == market && counts(l.trade.state)).collect();
    v.sort_by_key(|l| (l.s.matched_at, l.trade.seq));
    let mut out: BTreeMap<u64, Candle> = BTreeMap::new();
    for l in v {
        let t = l.s.matched_at - l.s.matched_at % interval;
        let p = l.trade.price.sats_per_lot;
        let c = out.entry(t).or_insert(Candle { t, open: p, high: p, low: p, close: p, volume: 0, sats: 0 });
        c.high = c.high.max(p);
        c.low = c.low.min(p);
        c.close = p;
        c.volume += l.trade.amount;
        c.sats += l.trade.sats;
    }
    Json(out.into_values().collect::<Vec<Candle>>()).into_response()
}

async fn journal(AxState(s): AxState<Shared>, Path(market): Path<String>, Query(q): Params) -> Response {
    let (after, limit) = match (number(&q, "after", 0, 0..=i64::MAX as u64), number(&q, "limit", 1000, 1..=10_000)) {
        (Ok(a), Ok(l)) => (a, l as i64),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    if !known(&*s.state.lock().await, &market) {
        return no_market(&market);
    }
    match s.store.journal(&market, after, limit).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, %market, "reading the journal");
            fail(StatusCode::INTERNAL_SERVER_ERROR, format!("the exchange could not read its journal ({e}); try again later"))
        }
    }
}

async fn trade(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    match s.state.lock().await.trades.get(&id) {
        Some(l) => Json(l.view()).into_response(),
        None => not_found(format!("no trade {id}")),
    }
}

async fn epochs(AxState(s): AxState<Shared>) -> Json<Vec<serde_json::Value>> {
    let st = s.state.lock().await;
    let mut v: Vec<_> = st.epochs.values().collect();
    v.sort_by_key(|e| e.announcement.epoch);
    Json(v.into_iter().filter_map(|e| serde_json::to_value(&e.event).ok()).collect())
}

async fn refusals(AxState(s): AxState<Shared>) -> Json<Vec<crate::engine::Refused>> {
    Json(s.state.lock().await.refusals.iter().cloned().collect())
}

async fn ws(AxState(s): AxState<Shared>, up: WebSocketUpgrade) -> Response {
    up.on_upgrade(move |socket| push(s, socket))
}

async fn push(s: Shared, mut socket: WebSocket) {
    let mut rx = s.updates.subscribe();
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Ok(text) => if socket.send(WsMessage::Text(text.into())).await.is_err() { break },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let resync = serde_json::json!({"type": "resync"}).to_string();
                    if socket.send(WsMessage::Text(resync.into())).await.is_err() { break }
                }
                Err(_) => break,
            },
            m = socket.recv() => match m {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_description_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let described: std::collections::BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
        let routed: std::collections::BTreeSet<String> = routes().into_iter().map(|(p, _)| p.to_owned()).collect();
        assert_eq!(described, routed, "routes and /api/openapi.json disagree");
        for (path, item) in doc["paths"].as_object().unwrap() {
            assert!(item.get("get").is_some(), "{path}: every route answers GET");
        }
    }
}
