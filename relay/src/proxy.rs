//! One client connection: the client's WebSocket on one side, a session of nostr-sdk's local
//! relay on the other (over an in-memory stream), and the market's rules in between.
//!
//! The bridge answers NIP-42 `AUTH` itself, checking the `relay` tag against the configured
//! public URLs (the relay may sit behind a TLS reverse proxy on another host name); stores
//! NIP-70 protected events itself, from their authenticated author only (the local relay's
//! sessions never see the client's AUTH); serves NIP-60 wallet events only to their
//! authenticated author and gift wraps only to their authenticated recipient, in REQ, COUNT and
//! NEG-OPEN alike; spends each client address's event and query budgets; answers an oversize
//! event with `OK false "invalid: …"` when its id can be read (a NOTICE otherwise); cuts clients
//! that stop reading; and measures accepted/rejected events and REQ→EOSE latency.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as ClientFrame, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use nostr_sdk::prelude::*;
use rand::RngCore;
use serde_json::Value;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as InnerFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::limit::{Bucket, Spend};
use crate::policy::{OWNER_ONLY_KINDS, RECIPIENT_ONLY_KINDS};
use crate::server::Shared;

/// Bytes buffered between the bridge and a local relay session.
const PIPE_BYTES: usize = 256 * 1024;
/// Most local-relay sessions one client's EVENTs are spread over.
pub(crate) const EVENT_SESSIONS: usize = 8;

struct Session {
    challenge: String,
    authed: HashSet<PublicKey>,
    reqs: HashMap<String, Instant>,
}

fn notice(text: &str) -> String {
    serde_json::json!(["NOTICE", text]).to_string()
}

fn closed(sub: &str, text: &str) -> String {
    serde_json::json!(["CLOSED", sub, text]).to_string()
}

fn ok(id: &str, accepted: bool, text: &str) -> String {
    serde_json::json!(["OK", id, accepted, text]).to_string()
}

fn auth_challenge(challenge: &str) -> String {
    serde_json::json!(["AUTH", challenge]).to_string()
}

fn is_protected(kind: u16) -> bool {
    OWNER_ONLY_KINDS.contains(&kind) || RECIPIENT_ONLY_KINDS.contains(&kind)
}

type InnerSink = futures::stream::SplitSink<WebSocketStream<tokio::io::DuplexStream>, InnerFrame>;
type InnerStream = futures::stream::SplitStream<WebSocketStream<tokio::io::DuplexStream>>;

/// Open one session of the local relay over an in-memory stream.
async fn open_inner(shared: &Arc<Shared>, addr: SocketAddr, tasks: &mut Vec<tokio::task::JoinHandle<()>>) -> (InnerSink, InnerStream) {
    let (pipe_ours, pipe_relay) = tokio::io::duplex(PIPE_BYTES);
    let relay = shared.relay.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = relay.take_connection(pipe_relay, addr).await {
            tracing::debug!(%addr, error = %e, "relay session ended");
        }
    }));
    let max = shared.config.limits.max_message_bytes * 4;
    let config = WebSocketConfig::default().max_message_size(Some(max)).max_frame_size(Some(max));
    WebSocketStream::from_raw_socket(pipe_ours, Role::Client, Some(config)).await.split()
}

/// Serve one upgraded client connection until either side closes.
///
/// REQs, CLOSEs and everything stateful go to one local-relay session; EVENTs are spread over up
/// to [`EVENT_SESSIONS`] sessions, so one client's events are verified and stored in parallel
/// (each session waits for its own durable write before taking the next).
pub(crate) async fn serve(client: WebSocket, addr: SocketAddr, shared: Arc<Shared>) {
    let mut tasks = vec![];
    let (primary, primary_rx) = open_inner(&shared, addr, &mut tasks).await;
    let mut sinks: Vec<InnerSink> = vec![primary];
    let mut inner_rx = futures::stream::SelectAll::new();
    inner_rx.push(primary_rx);
    let mut next_event = 0usize;
    let (mut client_tx, mut client_rx) = client.split();
    let mut challenge = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut challenge);
    let mut s = Session { challenge: hex::encode(challenge), authed: HashSet::new(), reqs: HashMap::new() };
    let limits = &shared.config.limits;
    let slow = Duration::from_secs(limits.slow_consumer_secs.max(1));
    let max_message = limits.max_message_bytes;
    let mut message_budget = Bucket::new(limits.messages_per_minute, Instant::now());

    let mut to_client: Vec<String> = vec![auth_challenge(&s.challenge)];
    'conn: loop {
        for line in to_client.drain(..) {
            match tokio::time::timeout(slow, client_tx.send(ClientFrame::Text(Utf8Bytes::from(line)))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break 'conn,
                Err(_) => {
                    shared.metrics.slow_consumer();
                    tracing::info!(%addr, "client stopped reading; disconnecting");
                    break 'conn;
                }
            }
        }
        tokio::select! {
            frame = client_rx.next() => {
                if matches!(frame, Some(Ok(_))) && !message_budget.take_at(Instant::now()) {
                    let text = notice(&format!("rate-limited: more than {} messages a minute; disconnecting", limits.messages_per_minute));
                    let _ = client_tx.send(ClientFrame::Text(Utf8Bytes::from(text))).await;
                    break;
                }
                match frame {
                    Some(Ok(ClientFrame::Text(text))) => {
                        if text.len() > max_message {
                            let why = format!("invalid: message of {} bytes exceeds the limit of {max_message}", text.len());
                            match event_id_of(text.as_str()) {
                                Some(id) => {
                                    shared.metrics.event_rejected("invalid");
                                    to_client.push(ok(&id, false, &why));
                                }
                                None => to_client.push(notice(&why)),
                            }
                            continue;
                        }
                        let verdict = on_client_text(&mut s, &shared, addr, text.as_str());
                        if let Verdict::Event(id) | Verdict::Protected(id, _) = &verdict
                            && !shared.budgets.take(addr.ip(), Spend::Event) {
                                shared.metrics.event_rejected("rate-limited");
                                to_client.push(ok(id, false, &format!("rate-limited: more than {} events a minute from your address", limits.events_per_minute)));
                                continue;
                            }
                        match verdict {
                            Verdict::Event(_) => {
                                if sinks.len() < EVENT_SESSIONS && next_event >= sinks.len() {
                                    let (tx, rx) = open_inner(&shared, addr, &mut tasks).await;
                                    sinks.push(tx);
                                    inner_rx.push(rx);
                                }
                                let i = next_event % sinks.len();
                                next_event = (next_event + 1) % EVENT_SESSIONS;
                                if sinks[i].send(InnerFrame::Text(text.as_str().into())).await.is_err() {
                                    break;
                                }
                            }
                            Verdict::Protected(_, event) => to_client.extend(publish_protected(&s, &shared, addr, *event).await),
                            Verdict::Forward(rewritten) => {
                                let line = rewritten.unwrap_or_else(|| text.as_str().to_owned());
                                if sinks[0].send(InnerFrame::Text(line.into())).await.is_err() {
                                    break;
                                }
                            }
                            Verdict::Reply(lines) => to_client.extend(lines),
                        }
                    }
                    Some(Ok(ClientFrame::Binary(_))) => to_client.push(notice("invalid: binary messages are not supported; send JSON text")),
                    Some(Ok(ClientFrame::Ping(_) | ClientFrame::Pong(_))) => {}
                    Some(Ok(ClientFrame::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(%addr, error = %e, "client frame error");
                        let _ = client_tx.send(ClientFrame::Text(Utf8Bytes::from(notice(&format!("invalid: {e}"))))).await;
                        break;
                    }
                }
            },
            frame = inner_rx.next() => match frame {
                Some(Ok(InnerFrame::Text(text))) => {
                    if let Some(line) = on_relay_text(&mut s, &shared, text.as_str()) {
                        to_client.push(line);
                    }
                }
                Some(Ok(InnerFrame::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = client_tx.send(ClientFrame::Close(None)).await;
    for mut sink in sinks {
        let _ = sink.close().await;
    }
    for t in tasks {
        t.abort();
    }
}

enum Verdict {
    /// An EVENT for the local relay (its id).
    Event(String),
    /// A NIP-70 protected EVENT, stored by the bridge itself (its id, the event).
    Protected(String, Box<Event>),
    /// Pass it to the local relay: as received, or rewritten (filters narrowed to what the
    /// client may read).
    Forward(Option<String>),
    Reply(Vec<String>),
}

/// The id of an EVENT message too large to handle, if it can be read.
fn event_id_of(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    let (verb, ev): (String, IdOnly) = serde_json::from_str(text).ok()?;
    (verb == "EVENT" && EventId::from_hex(&ev.id).is_ok()).then_some(ev.id)
}

fn on_client_text(s: &mut Session, shared: &Shared, addr: SocketAddr, text: &str) -> Verdict {
    let msg = match ClientMessage::from_json(text) {
        Ok(m) => m,
        Err(e) => return Verdict::Reply(vec![notice(&format!("invalid: not a NIP-01 client message ({e})"))]),
    };
    let limits = &shared.config.limits;
    let over_budget = |what: &str| {
        (!shared.budgets.take(addr.ip(), Spend::Query))
            .then(|| format!("rate-limited: more than {} {what} a minute from your address", limits.reqs_per_minute))
    };
    match msg {
        ClientMessage::Auth(event) => Verdict::Reply(vec![authenticate(s, shared, &event)]),
        ClientMessage::Req { subscription_id, filters } => {
            let sub = subscription_id.to_string();
            if filters.len() > limits.max_filters {
                let why = format!("invalid: REQ has {} filters; this relay accepts at most {}", filters.len(), limits.max_filters);
                return Verdict::Reply(vec![closed(&sub, &why)]);
            }
            if let Some(why) = over_budget("REQs") {
                return Verdict::Reply(vec![closed(&sub, &why)]);
            }
            let mut filters: Vec<Filter> = filters.into_iter().map(|f| f.into_owned()).collect();
            for f in &mut filters {
                if let Err(reason) = readable(s, &shared.kinds, f) {
                    return Verdict::Reply(vec![closed(&sub, &reason), auth_challenge(&s.challenge)]);
                }
            }
            shared.metrics.req();
            s.reqs.insert(sub.clone(), Instant::now());
            Verdict::Forward(Some(ClientMessage::req(SubscriptionId::new(sub), filters).as_json()))
        }
        ClientMessage::Count { subscription_id, filter } => {
            let sub = subscription_id.to_string();
            if let Some(why) = over_budget("REQs") {
                return Verdict::Reply(vec![closed(&sub, &why)]);
            }
            let mut filter = filter.into_owned();
            if let Err(reason) = readable(s, &shared.kinds, &mut filter) {
                return Verdict::Reply(vec![closed(&sub, &reason), auth_challenge(&s.challenge)]);
            }
            Verdict::Forward(Some(ClientMessage::count(SubscriptionId::new(sub), filter).as_json()))
        }
        ClientMessage::NegOpen { subscription_id, filter, initial_message } => {
            let sub = subscription_id.to_string();
            let neg_err = |why: &str| serde_json::json!(["NEG-ERR", sub, why]).to_string();
            if let Some(why) = over_budget("REQs") {
                return Verdict::Reply(vec![neg_err(&why)]);
            }
            let mut filter = filter.into_owned();
            if let Err(reason) = readable(s, &shared.kinds, &mut filter) {
                return Verdict::Reply(vec![neg_err(&reason), auth_challenge(&s.challenge)]);
            }
            Verdict::Forward(Some(serde_json::json!(["NEG-OPEN", sub, filter, initial_message]).to_string()))
        }
        ClientMessage::Event(e) => {
            let id = e.id.to_hex();
            let size = text.len().saturating_sub(r#"["EVENT",]"#.len());
            if size > limits.max_event_bytes {
                shared.metrics.event_rejected("invalid");
                let why = format!("invalid: event of {size} bytes exceeds the limit of {}", limits.max_event_bytes);
                return Verdict::Reply(vec![ok(&id, false, &why)]);
            }
            if e.is_protected() { Verdict::Protected(id, Box::new(e.into_owned())) } else { Verdict::Event(id) }
        }
        _ => Verdict::Forward(None),
    }
}

/// Store a NIP-70 protected event: only from its authenticated author, through the same write
/// policy and store as every other event.
async fn publish_protected(s: &Session, shared: &Shared, addr: SocketAddr, event: Event) -> Vec<String> {
    let id = event.id.to_hex();
    let refuse = |prefix: &str, text: &str| {
        shared.metrics.event_rejected(prefix);
        ok(&id, false, &format!("{prefix}: {text}"))
    };
    if s.authed.is_empty() {
        let why = refuse("auth-required", "this event is protected (NIP-70); send AUTH as its author first");
        return vec![auth_challenge(&s.challenge), why];
    }
    if !s.authed.contains(&event.pubkey) {
        return vec![refuse("restricted", "a protected event (NIP-70) is accepted only from its author; AUTH with the author's key")];
    }
    if event.verify().is_err() {
        return vec![refuse("invalid", "bad id or signature")];
    }
    if event.is_expired() {
        return vec![refuse("invalid", "the event has expired (NIP-40)")];
    }
    if let WritePolicyResult::Reject { prefix, message, status } = shared.write.admit_event(&event, &addr).await {
        if !status {
            shared.metrics.event_rejected(&prefix.to_string());
        }
        return vec![ok(&id, status, &format!("{prefix}: {message}"))];
    }
    let line = match shared.relay.add_event(event).await {
        Ok(SaveEventStatus::Success) => {
            shared.metrics.event_accepted();
            ok(&id, true, "")
        }
        Ok(SaveEventStatus::Rejected(RejectedReason::Duplicate)) => ok(&id, true, "duplicate: already have this event"),
        Ok(SaveEventStatus::Rejected(RejectedReason::Replaced)) => refuse("duplicate", "a newer version of this replaceable event is stored"),
        Ok(SaveEventStatus::Rejected(RejectedReason::Deleted)) => refuse("blocked", "this event was deleted (NIP-09)"),
        Ok(SaveEventStatus::Rejected(reason)) => refuse("blocked", &format!("not stored ({reason:?})")),
        Err(e) => {
            tracing::warn!(error = %e, "cannot store a protected event");
            refuse("error", "could not store the event; try again")
        }
    };
    vec![line]
}

/// NIP-42 against the public URLs.
fn authenticate(s: &mut Session, shared: &Shared, event: &Event) -> String {
    let id = event.id.to_hex();
    if event.kind != Kind::Authentication {
        return ok(&id, false, "invalid: AUTH needs a kind 22242 event");
    }
    if event.verify().is_err() {
        return ok(&id, false, "invalid: bad id or signature");
    }
    let age = Timestamp::now().as_secs().abs_diff(event.created_at.as_secs());
    if age > 600 {
        return ok(&id, false, "invalid: AUTH event created_at is more than 10 minutes off");
    }
    if event.tags.challenge().as_deref() != Some(s.challenge.as_str()) {
        return ok(&id, false, "invalid: wrong or missing challenge");
    }
    let relay_tag = event
        .tags
        .iter()
        .find(|t| t.kind() == "relay")
        .and_then(|t| t.content())
        .unwrap_or("");
    if !shared.auth_urls.iter().any(|u| same_relay_url(relay_tag, u)) {
        let names = shared.auth_urls.join(", ");
        return ok(&id, false, &format!("invalid: relay tag {relay_tag:?} is not this relay ({names}); the operator lists more names in public_urls"));
    }
    s.authed.insert(event.pubkey);
    ok(&id, true, "")
}

/// URLs equal up to case of scheme and host and a trailing slash.
pub(crate) fn same_relay_url(a: &str, b: &str) -> bool {
    let norm = |u: &str| u.trim().trim_end_matches('/').to_ascii_lowercase();
    !a.is_empty() && norm(a) == norm(b)
}

/// May this session name protected `kind` in filter `f`?
fn may_ask(s: &Session, f: &Filter, kind: u16) -> Result<(), String> {
    if !is_protected(kind) {
        return Ok(());
    }
    if s.authed.is_empty() {
        return Err(format!("auth-required: kind {kind} is served only to its authenticated owner; send AUTH"));
    }
    if OWNER_ONLY_KINDS.contains(&kind) {
        let ok = f.authors.as_ref().is_some_and(|a| !a.is_empty() && a.iter().all(|p| s.authed.contains(p)));
        if !ok {
            return Err(format!("restricted: kind {kind} is served only to its author; filter by your own authors"));
        }
    } else {
        let p = SingleLetterTag::LOWERCASE_P;
        let ok = f
            .generic_tags
            .get(&p)
            .is_some_and(|v| !v.is_empty() && v.iter().all(|x| PublicKey::from_hex(x).is_ok_and(|pk| s.authed.contains(&pk))));
        if !ok {
            return Err(format!("restricted: kind {kind} is served only to its recipient; filter #p by your own key"));
        }
    }
    Ok(())
}

/// The read rules, the same for REQ, COUNT and NEG-OPEN: a filter naming a protected kind must
/// be one the session may ask for (else the reason); a filter naming no kinds is narrowed to the
/// stored kinds this session may read, so counts and negentropy ids never include others'
/// protected events.
fn readable(s: &Session, stored: &HashSet<u16>, f: &mut Filter) -> Result<(), String> {
    match &f.kinds {
        Some(kinds) if !kinds.is_empty() => {
            for k in kinds {
                may_ask(s, f, k.as_u16())?;
            }
        }
        _ => {
            let mut kinds: Vec<u16> = stored.iter().copied().filter(|k| may_ask(s, f, *k).is_ok()).collect();
            kinds.sort_unstable();
            f.kinds = Some(kinds.into_iter().map(Kind::from).collect());
        }
    }
    Ok(())
}

/// Handle a message from the local relay; returns the line to send to the client, if any.
fn on_relay_text(s: &mut Session, shared: &Shared, text: &str) -> Option<String> {
    let head = text.get(..12).unwrap_or(text);
    if head.starts_with("[\"EVENT\"") {
        // Only protected kinds need a look; everything else goes through untouched.
        if let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(text) {
            let ev = parts.get(2)?;
            let kind = ev.get("kind").and_then(Value::as_u64).unwrap_or(0) as u16;
            if is_protected(kind) && !may_see(s, kind, ev) {
                return None;
            }
        }
    } else if head.starts_with("[\"EOSE\"") {
        if let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(text)
            && let Some(started) = parts.get(1).and_then(Value::as_str).and_then(|sub| s.reqs.remove(sub)) {
                shared.metrics.query_latency(started.elapsed());
            }
    } else if head.starts_with("[\"OK\"") {
        if let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(text) {
            match parts.get(2).and_then(Value::as_bool) {
                Some(true) => shared.metrics.event_accepted(),
                Some(false) => shared.metrics.event_rejected(parts.get(3).and_then(Value::as_str).unwrap_or("")),
                None => {}
            }
        }
    } else if head.starts_with("[\"CLOSED\"")
        && let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(text)
            && let Some(sub) = parts.get(1).and_then(Value::as_str) {
                s.reqs.remove(sub);
            }
    Some(text.to_owned())
}

fn may_see(s: &Session, kind: u16, ev: &Value) -> bool {
    let key = |v: &Value| v.as_str().and_then(|h| PublicKey::from_hex(h).ok());
    if OWNER_ONLY_KINDS.contains(&kind) {
        return ev.get("pubkey").and_then(key).is_some_and(|pk| s.authed.contains(&pk));
    }
    ev.get("tags").and_then(Value::as_array).is_some_and(|tags| {
        tags.iter().any(|t| {
            t.get(0).and_then(Value::as_str) == Some("p") && t.get(1).and_then(key).is_some_and(|pk| s.authed.contains(&pk))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_compare_loosely() {
        assert!(same_relay_url("wss://Relay.Example.com/", "wss://relay.example.com"));
        assert!(!same_relay_url("wss://relay.example.com", "ws://127.0.0.1:7777"));
        assert!(!same_relay_url("", "ws://x"));
    }
}
