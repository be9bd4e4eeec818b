//! One client connection: the client's WebSocket on one side, a session of nostr-sdk's local
//! relay on the other (over an in-memory stream), and the market's rules in between.
//!
//! The bridge answers NIP-42 `AUTH` itself, checking the `relay` tag against the configured
//! public URL (the relay may sit behind a TLS reverse proxy on another host name); serves
//! NIP-60 wallet events only to their authenticated author and gift wraps only to their
//! authenticated recipient; refuses oversize and malformed messages with a NOTICE; cuts clients
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

/// A token bucket refilled continuously to `per_minute`.
struct Bucket {
    tokens: f64,
    per_minute: f64,
    last: Instant,
}

impl Bucket {
    fn new(per_minute: u32) -> Self {
        Self { tokens: f64::from(per_minute), per_minute: f64::from(per_minute), last: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_minute / 60.0).min(self.per_minute);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
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
    let mut event_budget = Bucket::new(limits.events_per_minute);
    let mut message_budget = Bucket::new(limits.messages_per_minute);

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
                if matches!(frame, Some(Ok(_))) && !message_budget.take() {
                    let text = notice(&format!("rate-limited: more than {} messages a minute; disconnecting", limits.messages_per_minute));
                    let _ = client_tx.send(ClientFrame::Text(Utf8Bytes::from(text))).await;
                    break;
                }
                match frame {
                    Some(Ok(ClientFrame::Text(text))) => {
                        if text.len() > max_message {
                            to_client.push(notice(&format!("invalid: message of {} bytes exceeds the limit of {max_message}", text.len())));
                            continue;
                        }
                        match on_client_text(&mut s, &shared, text.as_str()) {
                            Verdict::Forward { event: Some(id) } => {
                                if !event_budget.take() {
                                    shared.metrics.event_rejected("rate-limited");
                                    to_client.push(ok(&id, false, &format!("rate-limited: more than {} events a minute", limits.events_per_minute)));
                                    continue;
                                }
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
                            Verdict::Forward { event: None } => {
                                if sinks[0].send(InnerFrame::Text(text.as_str().into())).await.is_err() {
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
    /// Pass it to the local relay (`event`: the id, for an EVENT).
    Forward { event: Option<String> },
    Reply(Vec<String>),
}

fn on_client_text(s: &mut Session, shared: &Shared, text: &str) -> Verdict {
    let msg = match ClientMessage::from_json(text) {
        Ok(m) => m,
        Err(e) => return Verdict::Reply(vec![notice(&format!("invalid: not a NIP-01 client message ({e})"))]),
    };
    match msg {
        ClientMessage::Auth(event) => Verdict::Reply(vec![authenticate(s, shared, &event)]),
        ClientMessage::Req { subscription_id, filters } => {
            let sub = subscription_id.to_string();
            if let Err(reason) = check_protected(s, filters.iter().map(|f| f.as_ref())) {
                return Verdict::Reply(vec![closed(&sub, &reason), auth_challenge(&s.challenge)]);
            }
            shared.metrics.req();
            s.reqs.insert(sub, Instant::now());
            Verdict::Forward { event: None }
        }
        ClientMessage::Count { subscription_id, filter } => {
            if let Err(reason) = check_protected(s, std::iter::once(filter.as_ref())) {
                return Verdict::Reply(vec![closed(subscription_id.as_str(), &reason)]);
            }
            Verdict::Forward { event: None }
        }
        ClientMessage::Event(e) => Verdict::Forward { event: Some(e.id.to_hex()) },
        _ => Verdict::Forward { event: None },
    }
}

/// NIP-42 against the public URL.
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
    if !same_relay_url(relay_tag, &shared.public_url) {
        return ok(&id, false, &format!("invalid: relay tag {relay_tag:?} is not this relay ({})", shared.public_url));
    }
    s.authed.insert(event.pubkey);
    ok(&id, true, "")
}

/// URLs equal up to case of scheme and host and a trailing slash.
pub(crate) fn same_relay_url(a: &str, b: &str) -> bool {
    let norm = |u: &str| u.trim().trim_end_matches('/').to_ascii_lowercase();
    !a.is_empty() && norm(a) == norm(b)
}

/// Protected kinds may only be asked for by their authenticated owner or recipient.
fn check_protected<'f>(s: &Session, filters: impl Iterator<Item = &'f Filter>) -> Result<(), String> {
    for f in filters {
        let Some(kinds) = &f.kinds else { continue };
        for kind in kinds.iter().map(|k| k.as_u16()).filter(|k| is_protected(*k)) {
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
