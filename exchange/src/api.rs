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
//!
//! Every route allows cross-origin calls from any origin (`Access-Control-Allow-Origin: *`,
//! preflights answered; see `ehash-cors`): the web UI is served from another origin.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use ehash_protocol::api::{self, Candle, MarketSummary, TradeView};
use ehash_protocol::epoch::{EpochState, redeem_sats};
use ehash_protocol::events::TradeState;
use serde::Deserialize;

use crate::engine::{Inner, now};

type Shared = Arc<Inner>;

/// The API's routes.
pub(crate) fn router(inner: Shared) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/info", get(info))
        .route("/api/markets", get(markets))
        .route("/api/markets/{market}/book", get(book))
        .route("/api/markets/{market}/trades", get(trades))
        .route("/api/markets/{market}/candles", get(candles))
        .route("/api/markets/{market}/journal", get(journal))
        .route("/api/trades/{id}", get(trade))
        .route("/api/epochs", get(epochs))
        .route("/api/refusals", get(refusals))
        .route("/api/ws", get(ws))
        .layer(axum::middleware::from_fn(ehash_cors::middleware))
        .with_state(inner)
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": what}))).into_response()
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

#[derive(Deserialize)]
struct DepthQ {
    depth: Option<usize>,
}

async fn book(AxState(s): AxState<Shared>, Path(market): Path<String>, Query(q): Query<DepthQ>) -> Response {
    let st = s.state.lock().await;
    let depth = q.depth.unwrap_or(100).min(1000);
    match st.books.get(&market) {
        Some(b) => Json(b.view(depth)).into_response(),
        None if st.epochs.contains_key(&market) => {
            Json(api::Book { market, lot: s.config.lot, bids: vec![], asks: vec![], seq: 0 }).into_response()
        }
        None => not_found(format!("no market {market}; GET /api/markets lists them")),
    }
}

#[derive(Deserialize)]
struct LimitQ {
    limit: Option<usize>,
}

async fn trades(AxState(s): AxState<Shared>, Path(market): Path<String>, Query(q): Query<LimitQ>) -> Json<Vec<TradeView>> {
    let st = s.state.lock().await;
    let mut v: Vec<_> = st.trades.values().filter(|l| l.trade.market == market).collect();
    v.sort_by_key(|l| std::cmp::Reverse((l.s.matched_at, l.trade.seq, l.trade.id.clone())));
    Json(v.into_iter().take(q.limit.unwrap_or(100).min(1000)).map(|l| l.view()).collect())
}

#[derive(Deserialize)]
struct CandleQ {
    interval: Option<u64>,
}

async fn candles(AxState(s): AxState<Shared>, Path(market): Path<String>, Query(q): Query<CandleQ>) -> Json<Vec<Candle>> {
    let interval = q.interval.unwrap_or(60).max(1);
    let st = s.state.lock().await;
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
    Json(out.into_values().collect())
}

#[derive(Deserialize)]
struct JournalQ {
    after: Option<u64>,
    limit: Option<i64>,
}

async fn journal(AxState(s): AxState<Shared>, Path(market): Path<String>, Query(q): Query<JournalQ>) -> Response {
    match s.store.journal(&market, q.after.unwrap_or(0), q.limit.unwrap_or(1000).clamp(1, 10_000)).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"error": e.to_string()}))).into_response(),
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
