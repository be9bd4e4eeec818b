//! The relay over real WebSockets: NIP-11, health and metrics on the relay URL; the market
//! policy; NIP-42 through a host name other than the bind address, and every configured name;
//! NIP-70; protected events hidden from REQ, COUNT and NIP-77 sync alike (also as nostr-tools
//! sees it); an OK with the fitting prefix for every refused event; event and query budgets per
//! client address; bad input of every kind; and persistence across restarts.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use ehash_protocol::events::{KIND_EPOCH_ANNOUNCEMENT, KIND_MINT_ANNOUNCEMENT, KIND_TRADE, MintAnnouncement};
use ehash_relay::{Config, Relay};
use futures::{SinkExt, StreamExt};
use nostr_sdk::prelude::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn config(dir: &std::path::Path, pool: &Keys) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        map_size: 64 << 20,
        pool_keys: vec![pool.public_key().to_bech32().unwrap()],
        ..Default::default()
    }
}

/// A raw WebSocket client, to send exactly what a hostile or broken client would.
async fn raw(addr: SocketAddr, host: &str) -> Ws {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{host}:{}/", addr.port()), tcp).await.unwrap();
    ws
}

async fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Next JSON message, skipping the relay's AUTH challenge.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message").expect("open").unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v[0] != "AUTH" {
                return v;
            }
        }
    }
}

async fn challenge(ws: &mut Ws) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v[0] == "AUTH" {
                return v[1].as_str().unwrap().to_owned();
            }
        }
    }
}

/// Publish and wait for the OK of this event (skipping messages of live subscriptions).
async fn publish(ws: &mut Ws, ev: &Event) -> (bool, String) {
    send(ws, &json!(["EVENT", ev])).await;
    loop {
        let ok = next(ws).await;
        if ok[0] == "OK" && ok[1] == ev.id.to_hex() {
            return (ok[2].as_bool().unwrap(), ok[3].as_str().unwrap_or("").to_owned());
        }
    }
}

async fn req(ws: &mut Ws, sub: &str, filter: Value) -> Result<Vec<Value>, String> {
    send(ws, &json!(["REQ", sub, filter])).await;
    let mut out = vec![];
    loop {
        let m = next(ws).await;
        match m[0].as_str().unwrap() {
            "EVENT" if m[1] == sub => out.push(m[2].clone()),
            "EOSE" if m[1] == sub => {
                send(ws, &json!(["CLOSE", sub])).await;
                return Ok(out);
            }
            "CLOSED" if m[1] == sub => return Err(m[2].as_str().unwrap().to_owned()),
            "NOTICE" => return Err(m[1].as_str().unwrap().to_owned()),
            _ => {}
        }
    }
}

/// A NIP-42 AUTH event.
fn auth_event(challenge: &str, relay: &str, keys: &Keys) -> Event {
    EventBuilder::new(Kind::Authentication, "")
        .tag(Tag::custom("relay", [relay]))
        .tag(Tag::custom("challenge", [challenge]))
        .finalize(keys)
        .unwrap()
}

fn mint_announcement(url: &str) -> MintAnnouncement {
    MintAnnouncement { mint_pubkey: format!("02{}", "ab".repeat(32)), urls: vec![url.into()], nuts: vec![1, 4], network: "regtest".into(), metadata: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nip11_health_and_metrics_share_the_relay_port() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&config(dir.path(), &Keys::generate())).await.unwrap();
    let http = format!("http://{}", relay.local_addr());
    let doc = tokio::task::spawn_blocking({
        let http = http.clone();
        move || std::process::Command::new("curl").args(["-s", "-H", "Accept: application/nostr+json", &http]).output()
    })
    .await
    .unwrap();
    let body = match doc {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap(),
        _ => {
            // no curl: speak HTTP/1.1 by hand
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(relay.local_addr()).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: application/nostr+json\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.unwrap();
            buf.split("\r\n\r\n").nth(1).unwrap().to_owned()
        }
    };
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["name"], "ehash relay");
    assert!(doc["supported_nips"].as_array().unwrap().contains(&json!(42)));
    assert_eq!(doc["limitation"]["max_subscriptions"], 64);

    let mut ws = raw(relay.local_addr(), "127.0.0.1").await;
    let keys = Keys::generate();
    let profile = EventBuilder::new(Kind::Metadata, "{}").finalize(&keys).unwrap();
    assert!(publish(&mut ws, &profile).await.0);
    let note = EventBuilder::new(Kind::TextNote, "hi").finalize(&keys).unwrap();
    assert!(!publish(&mut ws, &note).await.0);
    req(&mut ws, "s", json!({"kinds": [0]})).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(relay.local_addr()).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(text.contains("ehash_relay_connections 1"), "{text}");
    assert!(text.contains("ehash_relay_events_total{outcome=\"accepted\"} 1"), "{text}");
    assert!(text.contains("ehash_relay_events_total{outcome=\"rejected\",reason=\"blocked\"} 1"), "{text}");
    assert!(text.contains("ehash_relay_query_seconds_count 1"), "{text}");
    let mut s = tokio::net::TcpStream::connect(relay.local_addr()).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("ok"), "{text}");
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_policy_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Keys::generate();
    let relay = Relay::start(&config(dir.path(), &pool)).await.unwrap();
    let mut ws = raw(relay.local_addr(), "127.0.0.1").await;
    let stranger = Keys::generate();

    // kinds outside the allow-list
    let (ok, why) = publish(&mut ws, &EventBuilder::new(Kind::TextNote, "x").finalize(&stranger).unwrap()).await;
    assert!(!ok && why.starts_with("blocked:"), "{why}");
    // a forged pool announcement from another key
    let ann = mint_announcement("http://127.0.0.1:3338");
    let (ok, why) = publish(&mut ws, &ann.to_builder().finalize(&stranger).unwrap()).await;
    assert!(!ok && why.starts_with("restricted:") && why.contains("pool_keys"), "{why}");
    // the pool's own announcement
    assert!(publish(&mut ws, &ann.to_builder().finalize(&pool).unwrap()).await.0);
    // a malformed one from the pool: the reason names the field
    let bad = EventBuilder::new(Kind::Custom(KIND_MINT_ANNOUNCEMENT), "")
        .tag(Tag::identifier(format!("02{}", "cd".repeat(32))))
        .tag(Tag::custom("n", ["regtest"]))
        .finalize(&pool)
        .unwrap();
    let (ok, why) = publish(&mut ws, &bad).await;
    assert_eq!((ok, why.as_str()), (false, "invalid: u: missing tag"));
    let bad = EventBuilder::new(Kind::Custom(KIND_EPOCH_ANNOUNCEMENT), "not json").tag(Tag::identifier("01ab")).finalize(&pool).unwrap();
    let (ok, why) = publish(&mut ws, &bad).await;
    assert!(!ok && why.starts_with("invalid: content:"), "{why}");
    // trade events only from exchange keys
    let trade = EventBuilder::new(Kind::Custom(KIND_TRADE), "").tag(Tag::identifier("t1")).finalize(&stranger).unwrap();
    let (ok, why) = publish(&mut ws, &trade).await;
    assert!(!ok && why.contains("exchange_keys"), "{why}");
    // NIP-40: an event that already expired is refused
    let expired = EventBuilder::new(Kind::Metadata, "{}").tag(Tag::expiration(Timestamp::now() - 60u64)).finalize(&stranger).unwrap();
    assert!(!publish(&mut ws, &expired).await.0);
    // NIP-09: a deleted event is no longer served
    let profile = EventBuilder::new(Kind::Custom(10002), "").finalize(&stranger).unwrap();
    assert!(publish(&mut ws, &profile).await.0);
    let del = EventDeletionRequest::new().id(profile.id).into_event_builder().finalize(&stranger).unwrap();
    assert!(publish(&mut ws, &del).await.0);
    let left = req(&mut ws, "d", json!({"ids": [profile.id.to_hex()]})).await.unwrap();
    assert!(left.is_empty());
    // only what was accepted is served
    let served = req(&mut ws, "m", json!({"kinds": [KIND_MINT_ANNOUNCEMENT]})).await.unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0]["pubkey"], pool.public_key().to_hex());
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_events_are_purged_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &Keys::generate());
    c.expiry_sweep_secs = 1;
    let relay = Relay::start(&c).await.unwrap();
    let mut ws = raw(relay.local_addr(), "127.0.0.1").await;
    let k = Keys::generate();
    let short = EventBuilder::new(Kind::Metadata, "{}").tag(Tag::expiration(Timestamp::now() + 2u64)).finalize(&k).unwrap();
    let keep = EventBuilder::new(Kind::Custom(10002), "").finalize(&k).unwrap();
    assert!(publish(&mut ws, &short).await.0);
    assert!(publish(&mut ws, &keep).await.0);
    let db = relay.database();
    assert!(db.event_by_id(&short.id).await.unwrap().is_some());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while db.event_by_id(&short.id).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "expired event still on disk");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(db.event_by_id(&keep.id).await.unwrap().is_some(), "only expired events are purged");
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_events_and_gift_wraps_reach_only_their_owner_through_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    // bound to 127.0.0.1, reached as localhost: the public URL is what AUTH must name
    let spare = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = spare.local_addr().unwrap();
    drop(spare);
    let mut c = config(dir.path(), &Keys::generate());
    c.listen = addr;
    c.public_url = Some(format!("ws://localhost:{}", addr.port()));
    let relay = Relay::start(&c).await.unwrap();
    assert_eq!(relay.url(), format!("ws://localhost:{}", addr.port()));

    let alice = Keys::generate();
    let bob = Keys::generate();
    let wallet = EventBuilder::new(Kind::Custom(17375), "encrypted").finalize(&alice).unwrap();
    let wrap = EventBuilder::new(Kind::GiftWrap, "sealed").tag(Tag::public_key(bob.public_key())).finalize(&Keys::generate()).unwrap();
    let mut ws = raw(addr, "localhost").await;
    assert!(publish(&mut ws, &wallet).await.0);
    assert!(publish(&mut ws, &wrap).await.0);

    // unauthenticated: asking for them is refused, and a catch-all REQ does not leak them
    let err = req(&mut ws, "w", json!({"kinds": [17375], "authors": [alice.public_key().to_hex()]})).await.unwrap_err();
    assert!(err.starts_with("auth-required:"), "{err}");
    let all = req(&mut ws, "all", json!({})).await.unwrap();
    assert!(all.iter().all(|e| e["kind"] != 17375 && e["kind"] != 1059), "{all:?}");

    // an AUTH naming another relay is refused
    let mut ws2 = raw(addr, "localhost").await;
    let ch = challenge(&mut ws2).await;
    let wrong = auth_event(&ch, &format!("ws://relay.example.com:{}", addr.port()), &alice);
    send(&mut ws2, &json!(["AUTH", wrong])).await;
    let ok = next(&mut ws2).await;
    assert_eq!(ok[2], false, "{ok}");
    assert!(ok[3].as_str().unwrap().contains("not this relay"), "{ok}");
    // the right one is accepted; Bob still cannot read Alice's wallet
    let bob_auth = auth_event(&ch, relay.url(), &bob);
    send(&mut ws2, &json!(["AUTH", bob_auth])).await;
    assert_eq!(next(&mut ws2).await[2], true);
    let err = req(&mut ws2, "w", json!({"kinds": [17375], "authors": [alice.public_key().to_hex()]})).await.unwrap_err();
    assert!(err.starts_with("restricted:"), "{err}");
    // but Bob gets the gift wrap addressed to him
    let mine = req(&mut ws2, "g", json!({"kinds": [1059], "#p": [bob.public_key().to_hex()]})).await.unwrap();
    assert_eq!(mine.len(), 1);

    // a standard nostr client authenticates with its signer through the public URL
    let client = Client::builder().authenticator(SignerAuthenticator::new(alice.clone())).build();
    client.add_relay(relay.url()).await.unwrap();
    client.connect().and_wait(Duration::from_secs(5)).await;
    let got = client
        .fetch_events(Filter::new().kind(Kind::Custom(17375)).author(alice.public_key()))
        .timeout(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "Alice reads her own wallet after AUTH");
    client.shutdown().await;
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_reason_and_others_keep_being_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &Keys::generate());
    c.limits.max_message_bytes = 16 * 1024;
    c.limits.max_event_bytes = 8 * 1024;
    c.limits.max_filter_values = 100;
    c.limits.max_subscriptions = 4;
    c.limits.max_subid_length = 32;
    c.limits.slow_consumer_secs = 1;
    // the flood below comes from the same address as the polite client; its budget is not the point here
    c.limits.events_per_minute = 100_000;
    let relay = Relay::start(&c).await.unwrap();
    let addr = relay.local_addr();
    let k = Keys::generate();
    let mut ws = raw(addr, "127.0.0.1").await;

    // garbage and binary frames: NOTICE, connection stays
    ws.send(Message::Text("this is not json".into())).await.unwrap();
    let n = next(&mut ws).await;
    assert!(n[0] == "NOTICE" && n[1].as_str().unwrap().starts_with("invalid:"), "{n}");
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next(&mut ws).await[0], "NOTICE");
    // oversize message: NOTICE, connection stays
    ws.send(Message::Text(format!("[\"EVENT\",{{\"content\":\"{}\"}}]", "x".repeat(20_000)).into())).await.unwrap();
    let n = next(&mut ws).await;
    assert!(n[1].as_str().unwrap().contains("exceeds the limit"), "{n}");
    // oversize event
    let big = EventBuilder::new(Kind::Metadata, "y".repeat(10_000)).finalize(&k).unwrap();
    let (ok, why) = publish(&mut ws, &big).await;
    assert!(!ok && why.starts_with("invalid:") && why.contains("8192"), "{why}");
    // invalid signature, wrong id
    let good = EventBuilder::new(Kind::Metadata, "{}").finalize(&k).unwrap();
    let mut v = serde_json::to_value(&good).unwrap();
    v["sig"] = json!("00".repeat(64));
    send(&mut ws, &json!(["EVENT", v])).await;
    let ok = next(&mut ws).await;
    assert_eq!(ok[2], false, "{ok}");
    let mut v = serde_json::to_value(&good).unwrap();
    v["content"] = json!("{\"tampered\":true}");
    send(&mut ws, &json!(["EVENT", v])).await;
    let ok = next(&mut ws).await;
    assert_eq!(ok[2], false, "{ok}");
    // absurd filters
    let authors: Vec<String> = (0..500).map(|_| Keys::generate().public_key().to_hex()).collect();
    let err = req(&mut ws, "a", json!({"authors": authors})).await.unwrap_err();
    assert!(err.starts_with("invalid:"), "{err}");
    let err = req(&mut ws, &"s".repeat(100), json!({})).await.unwrap_err();
    assert!(!err.is_empty());
    for i in 0..4 {
        send(&mut ws, &json!(["REQ", format!("open{i}"), {"kinds": [0]}])).await;
        loop {
            let m = next(&mut ws).await;
            if m[0] == "EOSE" {
                break;
            }
        }
    }
    let err = req(&mut ws, "one-too-many", json!({"kinds": [0]})).await.unwrap_err();
    assert!(!err.is_empty(), "subscription cap");
    // the connection is still usable
    assert!(publish(&mut ws, &good).await.0);

    // a client that subscribes to everything and never reads, while the relay is flooded
    let mut sink = raw(addr, "127.0.0.1").await;
    send(&mut sink, &json!(["REQ", "firehose", {}])).await;
    // an abrupt disconnect mid-frame
    let mut abrupt = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut abrupt, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n").await.unwrap();
    drop(abrupt);
    let flood = tokio::spawn(async move {
        let mut conns = vec![];
        for _ in 0..4 {
            conns.push(raw(addr, "127.0.0.1").await);
        }
        let big = "z".repeat(4000);
        for round in 0..150 {
            for (i, c) in conns.iter_mut().enumerate() {
                let keys = Keys::generate();
                let ev = EventBuilder::new(Kind::Metadata, format!("{{\"about\":\"{big}{round}{i}\"}}")).finalize(&keys).unwrap();
                if c.send(Message::Text(json!(["EVENT", ev]).to_string().into())).await.is_err() {
                    return;
                }
            }
        }
    });
    // a well-behaved client keeps being served meanwhile
    let mut polite = raw(addr, "127.0.0.1").await;
    for i in 0..20 {
        let ev = EventBuilder::new(Kind::Custom(10002), format!("{i}")).finalize(&Keys::generate()).unwrap();
        assert!(publish(&mut polite, &ev).await.0);
        req(&mut polite, &format!("q{i}"), json!({"ids": [ev.id.to_hex()]})).await.unwrap();
    }
    flood.await.unwrap();
    // the reader that never read was cut off
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !relay.metrics().render().contains("ehash_relay_slow_consumers_total 1") {
        assert!(tokio::time::Instant::now() < deadline, "slow consumer not disconnected:\n{}", relay.metrics().render());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(sink);
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_and_rates_hold_and_polite_clients_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &Keys::generate());
    c.limits.max_connections_per_ip = 3;
    c.limits.events_per_minute = 20;
    c.limits.messages_per_minute = 60;
    let relay = Relay::start(&c).await.unwrap();
    let addr = relay.local_addr();
    let mut held = vec![];
    for _ in 0..3 {
        held.push(raw(addr, "127.0.0.1").await);
    }
    // the fourth from the same IP is refused before the upgrade
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{}/", addr.port()), tcp).await;
    assert!(refused.is_err(), "per-IP cap");
    assert!(relay.metrics().render().contains("reason=\"per_ip\"} 1"));
    // event rate: beyond the budget, events are refused with rate-limited
    let mut rates = vec![];
    for i in 0..25 {
        let ev = EventBuilder::new(Kind::Metadata, format!("{{\"i\":{i}}}")).finalize(&Keys::generate()).unwrap();
        rates.push(publish(&mut held[0], &ev).await);
    }
    assert!(rates.iter().any(|(ok, why)| !ok && why.starts_with("rate-limited")), "{rates:?}");
    // message flood: the connection is cut
    let flooder = &mut held[1];
    let mut cut = false;
    for _ in 0..500 {
        if flooder.send(Message::Text("[\"CLOSE\",\"x\"]".into())).await.is_err() {
            cut = true;
            break;
        }
    }
    if !cut {
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(_)) = flooder.next().await {}
        })
        .await;
        assert!(end.is_ok(), "a message flood must end the connection");
    }
    // the third connection is still served (its events share the address's spent budget)
    req(&mut held[2], "still", json!({"kinds": [0]})).await.unwrap();
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Keys::generate();
    let relay = Relay::start(&config(dir.path(), &pool)).await.unwrap();
    let mut ws = raw(relay.local_addr(), "127.0.0.1").await;
    let ev = mint_announcement("http://m").to_builder().finalize(&pool).unwrap();
    assert!(publish(&mut ws, &ev).await.0);
    drop(ws);
    relay.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let relay = Relay::start(&config(dir.path(), &pool)).await.unwrap();
    let mut ws = raw(relay.local_addr(), "127.0.0.1").await;
    let got = req(&mut ws, "r", json!({"ids": [ev.id.to_hex()]})).await.unwrap();
    assert_eq!(got.len(), 1);
    relay.shutdown();
}

/// A NIP-77 sync by nostr-sdk's client: the ids the relay offers to a client that has nothing.
async fn negentropy_ids(url: &str, filter: Filter) -> std::collections::HashSet<EventId> {
    let client = Client::default();
    client.add_relay(url).await.unwrap();
    client.connect().and_wait(Duration::from_secs(5)).await;
    let opts = SyncOptions::default().direction(SyncDirection::Down).dry_run();
    let out = client.sync(filter).opts(opts).await.unwrap();
    client.shutdown().await;
    out.value.remote.into_keys().collect()
}

async fn count(ws: &mut Ws, sub: &str, filter: Value) -> Result<u64, String> {
    send(ws, &json!(["COUNT", sub, filter])).await;
    loop {
        let m = next(ws).await;
        match m[0].as_str().unwrap() {
            "COUNT" if m[1] == sub => return Ok(m[2]["count"].as_u64().unwrap()),
            "CLOSED" if m[1] == sub => return Err(m[2].as_str().unwrap().to_owned()),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_and_negentropy_reveal_no_protected_event_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&config(dir.path(), &Keys::generate())).await.unwrap();
    let alice = Keys::generate();
    let bob = Keys::generate();
    let profile = EventBuilder::new(Kind::Metadata, "{}").finalize(&alice).unwrap();
    let wallet = EventBuilder::new(Kind::Custom(17375), "encrypted").finalize(&alice).unwrap();
    let wrap = EventBuilder::new(Kind::GiftWrap, "sealed").tag(Tag::public_key(bob.public_key())).finalize(&Keys::generate()).unwrap();
    let mut ws = raw(relay.local_addr(), "127.0.0.1").await;
    for ev in [&profile, &wallet, &wrap] {
        assert!(publish(&mut ws, ev).await.0);
    }

    // a stranger counting by author sees the profile only, and by id learns nothing of the wrap
    assert_eq!(count(&mut ws, "a", json!({"authors": [alice.public_key().to_hex()]})).await, Ok(1));
    assert_eq!(count(&mut ws, "w", json!({"ids": [wrap.id.to_hex()]})).await, Ok(0));
    assert_eq!(count(&mut ws, "all", json!({})).await, Ok(1));
    let err = count(&mut ws, "k", json!({"kinds": [17375], "authors": [alice.public_key().to_hex()]})).await.unwrap_err();
    assert!(err.starts_with("auth-required:"), "{err}");
    // NIP-77: a sync of everything offers only what the client may read
    let ids = negentropy_ids(relay.url(), Filter::new()).await;
    assert_eq!(ids, [profile.id].into_iter().collect(), "negentropy ids");

    // Alice, authenticated, counts her own wallet
    let mut mine = raw(relay.local_addr(), "127.0.0.1").await;
    let ch = challenge(&mut mine).await;
    send(&mut mine, &json!(["AUTH", auth_event(&ch, relay.url(), &alice)])).await;
    assert_eq!(next(&mut mine).await[2], true);
    assert_eq!(count(&mut mine, "a", json!({"authors": [alice.public_key().to_hex()]})).await, Ok(2));
    assert_eq!(count(&mut mine, "w", json!({"ids": [wrap.id.to_hex()]})).await, Ok(0), "the wrap is Bob's");
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_events_are_taken_from_their_authenticated_author() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&config(dir.path(), &Keys::generate())).await.unwrap();
    let alice = Keys::generate();
    let protected = |keys: &Keys| EventBuilder::new(Kind::Custom(10002), "").tag(Tag::protected()).finalize(keys).unwrap();
    let mut ws = raw(relay.local_addr(), "127.0.0.1").await;
    let ch = challenge(&mut ws).await;
    let ev = protected(&alice);
    let (ok, why) = publish(&mut ws, &ev).await;
    assert!(!ok && why.starts_with("auth-required:"), "{why}");

    send(&mut ws, &json!(["AUTH", auth_event(&ch, relay.url(), &alice)])).await;
    assert_eq!(next(&mut ws).await[2], true);
    assert_eq!(publish(&mut ws, &ev).await, (true, String::new()), "NIP-70: accepted from its authenticated author");
    let (ok, why) = publish(&mut ws, &protected(&Keys::generate())).await;
    assert!(!ok && why.starts_with("restricted:"), "{why}");
    // stored and served like any other event
    let got = req(&mut ws, "p", json!({"ids": [ev.id.to_hex()]})).await.unwrap();
    assert_eq!(got.len(), 1);

    // a standard client signing AUTH with its key publishes one too
    let client = Client::builder().authenticator(SignerAuthenticator::new(alice.clone())).build();
    client.add_relay(relay.url()).await.unwrap();
    client.connect().and_wait(Duration::from_secs(5)).await;
    let later = EventBuilder::new(Kind::Custom(10050), "").tag(Tag::protected()).finalize(&alice).unwrap();
    let out = client.send_event(&later).await.unwrap();
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    client.shutdown().await;
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_gets_an_ok_or_closed_with_the_fitting_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &Keys::generate());
    c.limits.max_message_bytes = 16 * 1024;
    c.limits.max_event_bytes = 8 * 1024;
    let relay = Relay::start(&c).await.unwrap();
    let k = Keys::generate();
    let mut ws = raw(relay.local_addr(), "127.0.0.1").await;

    // an event larger than a whole message still gets its OK
    let huge = EventBuilder::new(Kind::Metadata, "y".repeat(20_000)).finalize(&k).unwrap();
    let (ok, why) = publish(&mut ws, &huge).await;
    assert!(!ok && why.starts_with("invalid:"), "{why}");
    // a replaceable event older than the stored one
    let now = Timestamp::now();
    let newer = EventBuilder::new(Kind::Metadata, "{\"name\":\"new\"}").custom_created_at(now).finalize(&k).unwrap();
    let older = EventBuilder::new(Kind::Metadata, "{\"name\":\"old\"}").custom_created_at(now - 60u64).finalize(&k).unwrap();
    assert!(publish(&mut ws, &newer).await.0);
    let (ok, why) = publish(&mut ws, &older).await;
    assert!(!ok && why.starts_with("duplicate:"), "{why}");
    // an event dated a year ahead
    let future = EventBuilder::new(Kind::Custom(10002), "").custom_created_at(now + 365 * 86_400u64).finalize(&k).unwrap();
    let (ok, why) = publish(&mut ws, &future).await;
    assert!(!ok && why.starts_with("invalid:") && why.contains("future"), "{why}");
    let soon = EventBuilder::new(Kind::Custom(10002), "").custom_created_at(now + 60u64).finalize(&k).unwrap();
    assert!(publish(&mut ws, &soon).await.0, "a minute of clock skew is fine");
    // too many filters is a malformed request, not a rate
    let filters: Vec<Value> = (0..17).map(|i| json!({"kinds": [0], "limit": i})).collect();
    let mut msg = vec![json!("REQ"), json!("many")];
    msg.extend(filters);
    send(&mut ws, &Value::Array(msg)).await;
    let closed = next(&mut ws).await;
    assert!(closed[0] == "CLOSED" && closed[2].as_str().unwrap().starts_with("invalid:"), "{closed}");

    // NIP-11 states the limits it enforces, and no placeholder
    let doc = http_get(relay.local_addr(), "/", "application/nostr+json").await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["limitation"]["created_at_upper_limit"], 900);
    assert!(doc["limitation"].get("max_content_length").is_none(), "{doc}");
    assert!(!doc.to_string().contains("example.invalid"), "{doc}");
    relay.shutdown();
}

async fn http_get(addr: SocketAddr, path: &str, accept: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf.split("\r\n\r\n").nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_belong_to_the_address_and_refill_continuously() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &Keys::generate());
    c.limits.events_per_minute = 20;
    c.limits.reqs_per_minute = 120;
    let relay = Relay::start(&c).await.unwrap();
    let addr = relay.local_addr();
    let publish_some = |n: usize| async move {
        let mut ws = raw(addr, "127.0.0.1").await;
        let mut accepted = 0;
        for i in 0..n {
            let ev = EventBuilder::new(Kind::Metadata, format!("{{\"i\":{i}}}")).finalize(&Keys::generate()).unwrap();
            if publish(&mut ws, &ev).await.0 {
                accepted += 1;
            }
        }
        accepted
    };
    let first = publish_some(25).await;
    assert!((20..=22).contains(&first), "one connection gets the budget: {first}");
    // reconnecting does not refill it
    let again = publish_some(10).await;
    assert!(again <= 2, "a reconnecting client got a fresh allowance: {again} accepted");

    // queries: spend the burst, then a steady pace below the rate is served
    let mut ws = raw(addr, "127.0.0.1").await;
    for i in 0..200 {
        send(&mut ws, &json!(["COUNT", format!("b{i}"), {"kinds": [0]}])).await;
    }
    let (mut burst, mut answers) = (0, 0);
    while answers < 200 {
        let m = next(&mut ws).await;
        match m[0].as_str().unwrap() {
            "COUNT" => burst += 1,
            "CLOSED" => assert!(m[2].as_str().unwrap().starts_with("rate-limited:"), "{m}"),
            _ => continue,
        }
        answers += 1;
    }
    assert!((120..=150).contains(&burst), "a minute's worth at once: {burst}");
    let mut steady = 0;
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(600)).await; // 1.2 tokens at 2 a second
        match req(&mut ws, &format!("s{i}"), json!({"kinds": [0], "limit": 1})).await {
            Ok(_) => steady += 1,
            Err(e) => assert!(e.starts_with("rate-limited:"), "{e}"),
        }
    }
    assert!(steady >= 8, "a client below the rate is served: {steady} of 10");
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_accepts_every_name_of_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &Keys::generate());
    c.public_urls = vec!["wss://relay.example.com".into()];
    let relay = Relay::start(&c).await.unwrap();
    let port = relay.local_addr().port();
    assert_eq!(relay.url(), format!("ws://127.0.0.1:{port}"));
    let k = Keys::generate();
    for name in [format!("ws://localhost:{port}"), format!("ws://127.0.0.1:{port}/"), "wss://relay.example.com".into()] {
        let mut ws = raw(relay.local_addr(), "localhost").await;
        let ch = challenge(&mut ws).await;
        send(&mut ws, &json!(["AUTH", auth_event(&ch, &name, &k)])).await;
        let ok = next(&mut ws).await;
        assert_eq!(ok[2], true, "{name}: {ok}");
    }
    let mut ws = raw(relay.local_addr(), "localhost").await;
    let ch = challenge(&mut ws).await;
    send(&mut ws, &json!(["AUTH", auth_event(&ch, "wss://elsewhere.example", &k)])).await;
    let ok = next(&mut ws).await;
    assert!(ok[2] == false && ok[3].as_str().unwrap().contains("public_urls"), "{ok}");
    relay.shutdown();
}

/// Where nostr-tools is (web/ui's node_modules) and a node with WebSocket, or why not.
fn nostr_tools() -> Result<std::path::PathBuf, String> {
    let ui = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/ui");
    if !ui.join("node_modules/nostr-tools").exists() {
        return Err(format!("web/ui has no node_modules (cd {} && npm ci)", ui.display()));
    }
    match std::process::Command::new("node").args(["--experimental-websocket", "-e", "if (typeof WebSocket !== 'function') process.exit(1)"]).status() {
        Ok(s) if s.success() => Ok(ui),
        _ => Err("no node on PATH with WebSocket (node 20.10 or later)".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nostr_tools_counts_no_wallet_of_others_and_publishes_protected_events_after_auth() {
    let ui = match nostr_tools() {
        Ok(ui) => ui,
        Err(why) => return ehash_testkit::skip_or_fail(&why).unwrap_or(()),
    };
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&config(dir.path(), &Keys::generate())).await.unwrap();
    let alice = Keys::generate();
    let mut ws = raw(relay.local_addr(), "127.0.0.1").await;
    for ev in [
        EventBuilder::new(Kind::Metadata, "{}").finalize(&alice).unwrap(),
        EventBuilder::new(Kind::Custom(17375), "encrypted").finalize(&alice).unwrap(),
    ] {
        assert!(publish(&mut ws, &ev).await.0);
    }
    // as a module read from the command line, so that imports resolve in web/ui
    let out = tokio::process::Command::new("node")
        .args(["--experimental-websocket", "--no-warnings", "--input-type=module", "-e", include_str!("js/nostr_tools.mjs")])
        .env("RELAY_URL", relay.url())
        .env("ALICE_SECRET", alice.secret_key().to_secret_hex())
        .current_dir(&ui)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(got["strangerCountByAuthor"], 1, "a stranger counts the profile only: {got}");
    assert_eq!(got["publishProtected"], "", "NIP-70 after AUTH: {got}");
    assert_eq!(got["ownerCountByAuthor"], 3, "profile, wallet and the protected event: {got}");
    relay.shutdown();
}
