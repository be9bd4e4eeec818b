//! The HTTP API on one port: the standard Cashu API (forwarded to the current cdk-axum router),
//! the ehash epoch list, health, and the operator's admin routes.
//!
//! | route | what |
//! |-------|------|
//! | `GET /health` | `ok` |
//! | `GET /v1/ehash/epochs` | pool key, unit size and every epoch with its unit, keyset and state |
//! | `GET /v1/ehash/epochs/{n}/log?after=&limit=` | one page of the epoch's share log (protocol §12) |
//! | `POST /v1/mint/quote/ehash` | NUT-04 quote; refused unless NUT-20 locked and in the active epoch's unit; a malformed field is a 400 naming it |
//! | `GET /v1/mint/quote/ehash/{id}`, `POST /v1/mint/quote/ehash/check`, `POST /v1/mint/ehash`, `POST /v1/mint/ehash/batch` | the quotes named are paid up to what the ledger credits them, then cdk answers |
//! | `POST /v1/mint/quote/ehash-redeem`, `GET /v1/mint/quote/ehash-redeem/{id}` | NUT-04 sat quote of a redemption, paid by its melt |
//! | (every ehash or redemption mint quote answered, here and on `/v1/ws`) | `expiry: null` and a `state`, see [`quote_on_the_wire`] |
//! | `POST /v1/melt/quote/ehash-redeem` | NUT-05 redemption quote; refused with the reason unless the epoch is redeemable |
//! | `POST /v1/melt/ehash-redeem` | NUT-05 redemption melt, always answered with its final state |
//! | `POST /v1/mint/quote/bolt11` | refused: sats are issued only for redeemed ehash |
//! | `POST /v1/melt/quote/bolt11` | NUT-05 withdrawal of sats over Lightning; refused with the reason unless `lightning` is set |
//! | `POST /v1/melt/bolt11` | the withdrawal: its final state, or PENDING once it has run for [`WITHDRAW_ANSWER_AFTER`] |
//! | `POST /admin/epoch/close` | close the active epoch (bearer token from `admin.token`) |
//! | `GET /v1/ws` | NUT-17 WebSocket, relayed to the current mint and closed (1012) when a new epoch restarts it (see [`crate::ws`]); at most `max_ws_connections` at once |
//! | everything else | cdk-axum: keys, keysets, swap, checkstate, restore, info, mint, batch mint, melt |
//!
//! Every route but the admin routes allows cross-origin calls from any origin (the web UI is
//! served from another origin; see `ehash-cors`): preflights are answered here, and the
//! `Access-Control-Allow-Origin: *` of cdk-axum's own layer is replaced, not repeated. The admin
//! routes get no CORS headers, so a browser page cannot call them.

use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cdk::nuts::CurrencyUnit;
use ehash_protocol::epoch::{CloseReason, EpochState};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::epochs::Epochs;
use crate::mint::MintHandle;

/// Largest request body accepted by the quote guards.
const MAX_QUOTE_BODY: usize = 64 * 1024;
/// Largest melt request body (its inputs are proofs).
const MAX_MELT_BODY: usize = 1024 * 1024;
/// How long a Lightning withdrawal may hold back a mint rebuild (a new epoch) before it is
/// answered with its current state (PENDING) while the payment goes on.
pub const WITHDRAW_ANSWER_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    /// Epochs.
    pub epochs: Arc<Epochs>,
    /// The mint.
    pub mint: Arc<MintHandle>,
    /// Admin bearer token.
    pub admin_token: Arc<String>,
    /// Whether sats can be withdrawn over Lightning (`lightning` is set).
    pub withdrawals: bool,
    /// One permit per open NUT-17 WebSocket.
    pub ws_slots: Arc<tokio::sync::Semaphore>,
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/ehash/epochs", get(get_epochs))
        .route("/v1/ehash/epochs/{epoch}/log", get(get_log))
        .route("/v1/ehash/epochs/{epoch}/proof/{share}", get(get_proof))
        .route("/v1/ehash/epochs/{epoch}/liabilities", get(get_liabilities))
        .route("/v1/mint/quote/ehash", post(post_quote))
        .route("/v1/mint/quote/ehash/check", post(post_check_synced))
        .route("/v1/mint/quote/ehash/{quote}", get(get_quote_synced))
        .route("/v1/mint/ehash", post(post_synced))
        .route("/v1/mint/ehash/batch", post(post_synced))
        .route("/v1/mint/quote/ehash-redeem", post(post_redeem_sat_quote))
        .route("/v1/mint/quote/ehash-redeem/{quote}", get(get_redeem_sat_quote))
        .route("/v1/melt/quote/ehash-redeem", post(post_redeem_quote))
        .route("/v1/melt/ehash-redeem", post(post_redeem_melt))
        .route("/v1/ws", get(get_ws))
        .route("/v1/mint/quote/bolt11", post(post_deposit_quote))
        .route("/v1/melt/quote/bolt11", post(post_withdraw_quote))
        .route("/v1/melt/bolt11", post(post_withdraw))
        .fallback(forward)
        .layer(axum::middleware::from_fn(ehash_cors::middleware))
        // after the layer: no CORS
        .route("/admin/epoch/close", post(post_close_epoch))
        .with_state(state)
}

fn cashu_error(status: StatusCode, code: u32, detail: String) -> Response {
    (status, axum::Json(json!({ "code": code, "detail": detail }))).into_response()
}

/// Serve a Cashu request with cdk, in its own task: a request runs to completion even if its
/// client goes away (cdk's swap leaves its inputs PENDING until the next restart when its
/// future is dropped half-way, which a client killed mid-request would otherwise cause).
async fn forward(State(state): State<HttpState>, req: Request) -> Response {
    let mint = state.mint.clone();
    let served = tokio::spawn(async move {
        let _entered = mint.enter().await;
        mint.router().oneshot(req).await
    });
    match served.await {
        Ok(Ok(r)) => r,
        Ok(Err(never)) => match never {},
        Err(e) => cashu_error(StatusCode::INTERNAL_SERVER_ERROR, 0, format!("the request failed: {e}")),
    }
}

async fn get_epochs(State(state): State<HttpState>) -> Response {
    let mint = state.mint.mint();
    let active = mint.get_active_keysets();
    let epochs: Vec<Value> = state
        .epochs
        .all()
        .await
        .into_iter()
        .map(|e| {
            let keyset = active.get(&CurrencyUnit::custom(&e.unit)).map(|id| id.to_string());
            json!({
                "epoch": e.epoch,
                "unit": e.unit,
                "keyset_id": keyset,
                "state": e.state,
                "started_at": e.started_at,
                "ended_at": e.ended_at,
                "close_reason": e.close_reason,
                "block_hash": e.block_hash,
                "issued": e.issued,
                "shares": e.shares,
                "block_height": e.block_height,
                "reward": e.reward,
                "payout": e.payout,
                "redeemable_at": e.redeemable_at,
                "expires_at": e.expires_at,
            })
        })
        .collect();
    let current = epochs.last().cloned().unwrap_or(Value::Null);
    let announcer = state.epochs.announcer();
    axum::Json(json!({
        "pool_pubkey": announcer.public_key().to_hex(),
        "network": announcer.network(),
        "hashprice": announcer.hashprice(),
        "unit_log2_hashes": state.epochs.unit_size().log2(),
        "current": current,
        "epochs": epochs,
    }))
    .into_response()
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({ "error": what }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": e.to_string() }))).into_response()
}

async fn epoch_record(state: &HttpState, epoch: u32) -> Result<crate::ledger::EpochRecord, Response> {
    state
        .epochs
        .all()
        .await
        .into_iter()
        .find(|e| e.epoch == epoch)
        .ok_or_else(|| not_found(format!("no epoch {epoch} at this pool (GET /v1/ehash/epochs lists them)")))
}

/// The epoch's share log (protocol §12), in log order, with the root committed at close.
/// Which page of a share log.
#[derive(Debug, serde::Deserialize)]
struct LogPage {
    /// The id of the last share of the previous page.
    after: Option<String>,
    /// Shares in this page, 1..=LOG_PAGE_MAX (default the maximum).
    limit: Option<u32>,
}

async fn get_log(State(state): State<HttpState>, Path(epoch): Path<u32>, Query(page): Query<LogPage>) -> Response {
    use ehash_protocol::audit::LOG_PAGE_MAX;
    let LogPage { after, limit } = page;
    let limit = limit.unwrap_or(LOG_PAGE_MAX);
    if limit == 0 || limit > LOG_PAGE_MAX {
        return cashu_error(StatusCode::BAD_REQUEST, 10000, format!("limit must be between 1 and {LOG_PAGE_MAX} shares, not {limit}"));
    }
    if let Some(a) = &after
        && (a.len() != 64 || !a.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return cashu_error(StatusCode::BAD_REQUEST, 10000, format!("after must be a share id (64 lowercase hex digits, the `next` of the previous page), not {a:?}"));
    }
    let e = match epoch_record(&state, epoch).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    match state.epochs.ledger().epoch_log_page(epoch, after.as_deref(), limit).await {
        Ok(page) => {
            let next = if page.len() == limit as usize { page.last().map(|(id, _)| id.clone()) } else { None };
            let shares: Vec<_> = page.into_iter().map(|(_, s)| s).collect();
            axum::Json(json!({
                "epoch": e.epoch,
                "unit": e.unit,
                "state": e.state,
                "unit_log2_hashes": state.epochs.unit_size().log2(),
                "root": e.log_root,
                "issued": e.issued,
                "count": e.shares,
                "shares": shares,
                "next": next,
            }))
            .into_response()
        }
        Err(err) => internal(err),
    }
}

/// The inclusion proof of one share (by share id: its block hash) in a closed epoch's committed
/// log: one block of shares is read, not the epoch.
async fn get_proof(State(state): State<HttpState>, Path((epoch, share)): Path<(u32, String)>) -> Response {
    let e = match epoch_record(&state, epoch).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let share = share.to_ascii_lowercase();
    let ledger = state.epochs.ledger();
    let log = match ledger.committed_log(epoch).await {
        Ok(Some(l)) => l,
        Ok(None) if e.state == EpochState::Active => {
            return cashu_error(StatusCode::CONFLICT, 10000, format!("epoch {epoch} is open: its log is committed, and proofs served, once it closes"));
        }
        Ok(None) => return cashu_error(StatusCode::SERVICE_UNAVAILABLE, 10000, format!("epoch {epoch}'s log is being committed; ask again shortly")),
        Err(err) => return internal(err),
    };
    let (index, block) = match ledger.log_block(epoch, &share, log.block_level).await {
        Ok(Some(b)) => b,
        Ok(None) => return not_found(format!("share {share} is not in epoch {epoch}'s log")),
        Err(err) => return internal(err),
    };
    match ehash_protocol::audit::prove_in_block(&block, index, log.count, log.block_level, &log.blocks) {
        Ok(Some(p)) => axum::Json(json!({ "epoch": e.epoch, "root": e.log_root, "proof": p })).into_response(),
        Ok(None) => not_found(format!("share {share} is not in epoch {epoch}'s log")),
        Err(err) => internal(err),
    }
}

/// The most quotes one request may name (NUT-29 batches).
const MAX_QUOTES_PER_REQUEST: usize = 100;

/// Pay the mint what the ledger credits these quotes, so the answer counts every share
/// acknowledged before the request. A quote that cannot be paid is logged; cdk answers anyway.
async fn sync_quotes(state: &HttpState, quotes: impl IntoIterator<Item = String>) {
    // the ledger keeps quote ids as the mint spells them
    let quotes = quotes.into_iter().filter_map(|q| cdk_common::QuoteId::from_str(&q).ok().map(|q| q.to_string()));
    for q in quotes.take(MAX_QUOTES_PER_REQUEST) {
        if let Err(e) = state.epochs.sync_quote(&q).await {
            tracing::warn!(quote = %q, error = %e, "paying the mint a quote's credit");
        }
    }
}

/// `GET /v1/mint/quote/ehash/{quote}`: the quote, paid up first.
async fn get_quote_synced(State(state): State<HttpState>, Path(quote): Path<String>, req: Request) -> Response {
    sync_quotes(&state, [quote]).await;
    quote_answer(forward(State(state), without_path_params(req)).await).await
}

/// The same request without this router's path parameters (cdk's router reads its own).
fn without_path_params(req: Request) -> Request {
    let (parts, body) = req.into_parts();
    let mut fresh = Request::new(body);
    *fresh.method_mut() = parts.method;
    *fresh.uri_mut() = parts.uri;
    *fresh.version_mut() = parts.version;
    *fresh.headers_mut() = parts.headers;
    if let Some(peer) = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        fresh.extensions_mut().insert(*peer);
    }
    fresh
}

/// Mint and quote-check requests naming quotes (`quote` or `quotes` in the body): paid up
/// first, then cdk answers the request unchanged.
async fn post_synced(State(state): State<HttpState>, req: Request) -> Response {
    let (parts, bytes, parsed) = match json_body(req, MAX_MELT_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut quotes: Vec<String> = parsed.get("quote").and_then(Value::as_str).map(str::to_owned).into_iter().collect();
    if let Some(list) = parsed.get("quotes").and_then(Value::as_array) {
        quotes.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    sync_quotes(&state, quotes).await;
    forward(State(state), Request::from_parts(parts, Body::from(bytes))).await
}

/// `POST /v1/mint/quote/ehash/check` (NUT-29): the quotes, paid up first.
async fn post_check_synced(state: State<HttpState>, req: Request) -> Response {
    quote_answer(post_synced(state, req).await).await
}

/// What the mint has signed and taken back in the epoch's keyset (cdk's totals): the ecash
/// outstanding can never exceed the credited total.
async fn get_liabilities(State(state): State<HttpState>, Path(epoch): Path<u32>) -> Response {
    let e = match epoch_record(&state, epoch).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let mint = state.mint.mint();
    let Some(id) = mint.keysets().keysets.into_iter().find(|k| k.unit == CurrencyUnit::custom(&e.unit)).map(|k| k.id) else {
        return not_found(format!("epoch {epoch} has no keyset at this mint"));
    };
    let (issued, redeemed) = match (mint.total_issued().await, mint.total_redeemed().await) {
        (Ok(i), Ok(r)) => (i.get(&id).map_or(0, |a| u64::from(*a)), r.get(&id).map_or(0, |a| u64::from(*a))),
        (Err(err), _) | (_, Err(err)) => return internal(err),
    };
    axum::Json(json!({
        "epoch": e.epoch,
        "keyset_id": id.to_string(),
        "signed": issued,
        "redeemed": redeemed,
        "outstanding": issued.saturating_sub(redeemed),
        "credited": e.issued,
    }))
    .into_response()
}

/// A quote request's body, read (bounded) and parsed, kept to be forwarded to cdk unchanged.
async fn json_body(req: Request, limit: usize) -> Result<(axum::http::request::Parts, axum::body::Bytes, Value), Response> {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, limit)
        .await
        .map_err(|_| cashu_error(StatusCode::PAYLOAD_TOO_LARGE, 10000, format!("request body larger than {limit} bytes")))?;
    let parsed = serde_json::from_slice(&bytes).map_err(|e| cashu_error(StatusCode::BAD_REQUEST, 10000, format!("malformed JSON: {e}")))?;
    Ok((parts, bytes, parsed))
}

/// Refuse malformed requests naming the field, unlocked quotes and quotes in a closed epoch's
/// unit with clear errors, then hand the request to cdk (whose payment processor enforces the
/// same rules) and answer its quote in the protocol's form ([`quote_on_the_wire`]).
async fn post_quote(State(state): State<HttpState>, req: Request) -> Response {
    let (parts, bytes, parsed) = match json_body(req, MAX_QUOTE_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let current = state.epochs.current().await.ok().map(|c| c.unit);
    let current_unit = current.as_deref().unwrap_or("listed at GET /v1/ehash/epochs");
    let bad = |detail: String| cashu_error(StatusCode::BAD_REQUEST, 10000, detail);
    let Some(unit) = parsed.get("unit").and_then(Value::as_str).map(str::to_ascii_lowercase) else {
        return bad(format!("unit: missing or not a string; give the current epoch's unit, {current_unit}"));
    };
    match parsed.get("pubkey") {
        None | Some(Value::Null) => {
            return cashu_error(
                StatusCode::BAD_REQUEST,
                20009,
                "ehash quotes must be NUT-20 locked: include \"pubkey\" (a public key whose secret signs the mint request)".into(),
            );
        }
        Some(pk) if pk.as_str().is_none_or(|k| cdk::nuts::PublicKey::from_hex(k).is_err()) => {
            return bad(format!(
                "pubkey: {pk} is not a public key; give the 33-byte compressed secp256k1 public key (66 hex digits) whose secret key will sign the mint request (NUT-20)"
            ));
        }
        Some(_) => {}
    }
    if let Some(a) = parsed.get("amount").filter(|a| !a.is_null())
        && a.as_u64().is_none()
    {
        return bad(format!("amount: {a} is not a whole number; give any whole number from 1 (it is informational: an ehash quote is credited share by share), or leave it out"));
    }
    if let Some(d) = parsed.get("description").filter(|d| !d.is_null())
        && !d.is_string()
    {
        return bad(format!("description: {d} is not a string; give a string or leave it out"));
    }
    if let Some(current) = &current
        && unit != *current
    {
        let all = state.epochs.all().await;
        let detail = match all.iter().find(|e| e.unit == unit) {
            Some(e) if e.state != EpochState::Active => format!(
                "unit {unit} belongs to epoch {}, which is {}; create quotes in the current epoch's unit {current}",
                e.epoch, e.state
            ),
            _ => format!("unit {unit:?} is not an ehash unit of this pool; the current epoch's unit is {current}"),
        };
        return cashu_error(StatusCode::BAD_REQUEST, 11013, detail);
    }
    quote_answer(forward(State(state), Request::from_parts(parts, Body::from(bytes))).await).await
}

/// An ehash quote, or the sat quote of a redemption, as the protocol puts it on the wire (NUT-04;
/// protocol §3): cdk stores a quote
/// without an expiry as expiry 0, which a wallet reads as a time long past, so it becomes
/// `null` (the quote never expires); and the quote's `state` is added, derived from its
/// counters as cdk's own wallet derives it: `UNPAID` before any credit, `PAID` while credit
/// waits to be minted, `ISSUED` when all of it is minted (until the next share's credit).
/// Anything that is not an ehash quote is left as it is. Returns whether `quote` was one.
pub fn quote_on_the_wire(quote: &mut Value) -> bool {
    let Some(q) = quote.as_object_mut() else { return false };
    let method = q.get("method").and_then(Value::as_str);
    // a mint quote (a melt quote has no `amount_issued`) of ours: ehash, or the sat side of a redemption
    if !matches!(method, Some(crate::mint::processor::EHASH_METHOD | ehash_protocol::epoch::REDEEM_METHOD)) || !q.contains_key("amount_issued") {
        return false;
    }
    if q.get("expiry").and_then(Value::as_u64) == Some(0) {
        q.insert("expiry".into(), Value::Null);
    }
    let paid = q.get("amount_paid").and_then(Value::as_u64).unwrap_or(0);
    let issued = q.get("amount_issued").and_then(Value::as_u64).unwrap_or(0);
    let state = if paid == 0 {
        "UNPAID"
    } else if issued >= paid {
        "ISSUED"
    } else {
        "PAID"
    };
    q.insert("state".into(), state.into());
    true
}

/// cdk's answer to a quote request, with every ehash quote in it (one, or a list) put in the
/// protocol's form by [`quote_on_the_wire`]. Errors and other answers pass unchanged.
async fn quote_answer(resp: Response) -> Response {
    if !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_MELT_BODY).await else {
        return cashu_error(StatusCode::INTERNAL_SERVER_ERROR, 0, "the mint's answer was too large to read".into());
    };
    let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let changed = match &mut answer {
        Value::Array(quotes) => quotes.iter_mut().fold(false, |any, q| quote_on_the_wire(q) | any),
        quote => quote_on_the_wire(quote),
    };
    if !changed {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let out = answer.to_string();
    parts.headers.insert(header::CONTENT_LENGTH, out.len().into());
    Response::from_parts(parts, Body::from(out))
}

/// The sat side of a redemption (NUT-04 `ehash-redeem`), answered in the protocol's form.
async fn post_redeem_sat_quote(State(state): State<HttpState>, req: Request) -> Response {
    quote_answer(forward(State(state), req).await).await
}

/// A redemption's sat quote by id, in the protocol's form.
async fn get_redeem_sat_quote(State(state): State<HttpState>, req: Request) -> Response {
    quote_answer(forward(State(state), without_path_params(req)).await).await
}

/// Redemption melt quotes: say plainly why an epoch does not redeem (cdk reports every
/// processor refusal as "unsupported unit"), then hand the request to cdk, whose processor
/// checks the same rules again when the melt happens.
async fn post_redeem_quote(State(state): State<HttpState>, req: Request) -> Response {
    let (parts, bytes, parsed) = match json_body(req, MAX_QUOTE_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let unit = parsed.get("unit").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
    let all = state.epochs.all().await;
    let Some(e) = all.iter().find(|e| e.unit == unit) else {
        return cashu_error(StatusCode::BAD_REQUEST, 11013, format!("unit {unit:?} is not an ehash unit of this pool; redeem in the unit of a redeemable epoch"));
    };
    let why = match (e.state, e.payout) {
        (EpochState::Redeemable, Some(_)) => None,
        (EpochState::Expired, _) => Some(format!("epoch {} expired at {}: its ehash no longer redeems", e.epoch, e.expires_at.unwrap_or(0))),
        (EpochState::Orphaned, _) => Some(format!("epoch {} is orphaned: its block left the chain before it matured, and it pays nothing", e.epoch)),
        (_, Some(_)) => Some(format!("epoch {} is {}: its block has not matured yet", e.epoch, e.state)),
        (_, None) => Some(format!("epoch {} is {} and pays nothing (it did not close on a block)", e.epoch, e.state)),
    };
    if let Some(detail) = why {
        return cashu_error(StatusCode::BAD_REQUEST, 11013, detail);
    }
    if let (Some(a), Some(payout), Some(issued)) = (parsed.get("ehash_amount").and_then(Value::as_u64), e.payout, e.issued)
        && ehash_protocol::epoch::redeem_sats(a, payout, issued) == 0
    {
        let min = issued.div_ceil(payout.max(1));
        return cashu_error(StatusCode::BAD_REQUEST, 11013, format!("{a} ehash of epoch {} is dust: it redeems for 0 sats; redeem at least {min}", e.epoch));
    }
    forward(State(state), Request::from_parts(parts, Body::from(bytes))).await
}

/// Redemption melts are answered with their final state, even when the wallet prefers an
/// asynchronous answer (`prefer_async` or `Prefer: respond-async`, a preference a server may
/// ignore): the melt settles inside the mint in milliseconds, and cdk's mint sends no current
/// state to a NUT-17 subscriber of a custom-method melt quote, so a wallet that took the
/// PENDING answer and subscribed after the settlement would wait for ever (cdk's own wallet
/// does exactly this).
async fn post_redeem_melt(State(state): State<HttpState>, req: Request) -> Response {
    match synchronous_melt(req).await {
        Ok((req, _)) => forward(State(state), req).await,
        Err(r) => r,
    }
}

/// A melt request with any preference for an asynchronous answer removed (cdk then answers
/// with the melt's outcome), and its quote id.
async fn synchronous_melt(req: Request) -> Result<(Request, Option<String>), Response> {
    let (mut parts, _, mut parsed) = json_body(req, MAX_MELT_BODY).await?;
    parts.headers.remove("prefer");
    if let Some(body) = parsed.as_object_mut() {
        body.remove("prefer_async");
    }
    let quote = parsed.get("quote").and_then(Value::as_str).map(str::to_owned);
    let bytes = parsed.to_string();
    parts.headers.insert(header::CONTENT_LENGTH, bytes.len().into());
    Ok((Request::from_parts(parts, Body::from(bytes)), quote))
}

/// Lightning withdrawals run inside the request gate like every Cashu request, so no rebuild
/// starts a new mint (whose saga recovery rolls back a melt set up but not yet dispatched)
/// while one is being set up and dispatched. A payment can stay in flight for a long time,
/// though, and must not hold back an epoch change: after [`WITHDRAW_ANSWER_AFTER`] the client
/// gets the quote's current state (PENDING; it checks again later, NUT-05) and the gate is
/// let go while the payment goes on. By then cdk has recorded the payment attempt, and a
/// recovering mint asks the Lightning backend about such a melt instead of rolling it back.
async fn post_withdraw(State(state): State<HttpState>, req: Request) -> Response {
    if !state.withdrawals {
        return no_withdrawals();
    }
    let (req, quote) = match synchronous_melt(req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let held = Arc::new(std::sync::Mutex::new(Some(state.mint.enter().await)));
    let release = |held: &std::sync::Mutex<Option<tokio::sync::OwnedRwLockReadGuard<()>>>| match held.lock() {
        Ok(mut g) => drop(g.take()),
        Err(poisoned) => drop(poisoned.into_inner().take()),
    };
    let router = state.mint.router();
    let mint = state.mint.mint();
    let in_task = held.clone();
    let mut served = tokio::spawn(async move {
        let r = router.oneshot(req).await;
        release(&in_task);
        r
    });
    match tokio::time::timeout(WITHDRAW_ANSWER_AFTER, &mut served).await {
        Ok(Ok(Ok(r))) => r,
        Ok(Ok(Err(never))) => match never {},
        Ok(Err(e)) => cashu_error(StatusCode::INTERNAL_SERVER_ERROR, 0, format!("the request failed: {e}")),
        Err(_) => {
            release(&held);
            let Some(id) = quote.and_then(|q| cdk_common::QuoteId::from_str(&q).ok()) else {
                return cashu_error(StatusCode::INTERNAL_SERVER_ERROR, 0, "the payment is still in flight; check the melt quote".into());
            };
            match mint.localstore().get_melt_quote(&id).await {
                Ok(Some(q)) => {
                    let mut answer = cdk::nuts::MeltQuoteBolt11Response::<cdk_common::QuoteId>::from(&q);
                    answer.state = cdk::nuts::MeltQuoteState::Pending;
                    axum::Json(answer).into_response()
                }
                _ => cashu_error(StatusCode::INTERNAL_SERVER_ERROR, 0, format!("the payment is still in flight; check melt quote {id}")),
            }
        }
    }
}

/// NUT-17 WebSocket: relayed to the mint serving now, closed when it is replaced.
async fn get_ws(State(state): State<HttpState>, upgrade: axum::extract::ws::WebSocketUpgrade) -> Response {
    let Ok(slot) = state.ws_slots.clone().try_acquire_owned() else {
        return cashu_error(StatusCode::SERVICE_UNAVAILABLE, 10000, "too many WebSocket connections at this mint; try again later or poll the quote".into());
    };
    // subscribe before taking the router: a rebuild in between closes the socket at once
    let rebuilt = state.mint.rebuilds();
    let router = state.mint.router();
    upgrade.on_upgrade(move |socket| async move {
        crate::ws::relay(socket, router, rebuilt).await;
        drop(slot);
    })
}

/// Lightning deposits: the pool mint issues sats only for redeemed ehash.
async fn post_deposit_quote() -> Response {
    cashu_error(
        StatusCode::BAD_REQUEST,
        11013,
        "this pool mint issues sats only for redeemed ehash (method ehash-redeem), never for Lightning deposits; deposit sats at a sat mint".into(),
    )
}

/// Lightning withdrawals: forwarded to cdk when the pool has a Lightning backend.
async fn post_withdraw_quote(State(state): State<HttpState>, req: Request) -> Response {
    if !state.withdrawals {
        return no_withdrawals();
    }
    forward(State(state), req).await
}

fn no_withdrawals() -> Response {
    cashu_error(
        StatusCode::BAD_REQUEST,
        11013,
        "this pool mint pays no Lightning invoices (its operator has not set mint_bridge.lightning); spend or trade the sats as ecash instead".into(),
    )
}

async fn post_close_epoch(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), state.admin_token.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "missing or wrong admin token (see admin.token in the data directory)" })))
            .into_response();
    }
    match state.epochs.close_active(CloseReason::Operator, None).await {
        Ok(Some(closed)) => {
            let current = state.epochs.current().await.ok();
            axum::Json(json!({
                "closed": { "epoch": closed.epoch, "unit": closed.unit, "issued": closed.issued, "shares": closed.shares },
                "current": current.map(|c| json!({ "epoch": c.epoch, "unit": c.unit })),
            }))
            .into_response()
        }
        Ok(None) => (StatusCode::CONFLICT, axum::Json(json!({ "error": "the epoch had closed already" }))).into_response(),
        Err(crate::Error::Busy(why)) => (StatusCode::CONFLICT, axum::Json(json!({ "error": why }))).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": e.to_string() }))).into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
