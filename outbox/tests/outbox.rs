//! The outbox over SQLite and a real PostgreSQL cluster, delivering to a real relay over
//! WebSocket, including a relay that only comes up after the events were queued.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ehash_outbox::{MAX_EVENT_JSON_BYTES, Outbox};
use nostr_sdk::prelude::*;
use sqlx::any::AnyPoolOptions;
use tokio_util::sync::CancellationToken;

const APP_DATA: u16 = 30078;

async fn sqlite(dir: &std::path::Path) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new().max_connections(2).connect(&format!("sqlite://{}?mode=rwc", dir.join("o.sqlite").display())).await.unwrap()
}

async fn conformance(outbox: Outbox) {
    let keys = Keys::generate();
    let address = format!("{APP_DATA}:{}:x", keys.public_key().to_hex());
    let v1 = outbox
        .publish_addressable(&address, EventBuilder::new(Kind::Custom(APP_DATA), "one").tag(Tag::identifier("x")), &keys)
        .await
        .unwrap();
    // the same content again: nothing new is signed
    let same = outbox
        .publish_addressable(&address, EventBuilder::new(Kind::Custom(APP_DATA), "one").tag(Tag::identifier("x")), &keys)
        .await
        .unwrap();
    assert_eq!(same.id, v1.id);
    // a new version within the same second still gets a later created_at
    let v2 = outbox
        .publish_addressable(&address, EventBuilder::new(Kind::Custom(APP_DATA), "two").tag(Tag::identifier("x")), &keys)
        .await
        .unwrap();
    assert!(v2.created_at > v1.created_at);
    v2.verify().unwrap();
    assert_eq!(outbox.get(&address).await.unwrap().unwrap().event_id, v2.id.to_hex());
    // regular events are kept by id
    let note = EventBuilder::new(Kind::TextNote, "hello").finalize(&keys).unwrap();
    outbox.queue(&note).await.unwrap();
    assert_eq!(outbox.all().await.unwrap().len(), 2);
    // delivery bookkeeping: only the current version counts as delivered
    assert_eq!(outbox.undelivered("ws://r", 10).await.unwrap().len(), 2);
    outbox.mark_delivered(&address, "ws://r", &v1.id.to_hex()).await.unwrap();
    assert_eq!(outbox.undelivered("ws://r", 10).await.unwrap().len(), 2);
    outbox.mark_delivered(&address, "ws://r", &v2.id.to_hex()).await.unwrap();
    let left = outbox.undelivered("ws://r", 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event_id, note.id.to_hex());
    // oversized events are refused and nothing is stored
    let huge = EventBuilder::new(Kind::TextNote, "x".repeat(MAX_EVENT_JSON_BYTES)).finalize(&keys).unwrap();
    assert!(outbox.queue(&huge).await.is_err());
    assert_eq!(outbox.all().await.unwrap().len(), 2);
}

#[tokio::test]
async fn outbox_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Outbox::open(sqlite(dir.path()).await).await.unwrap()).await;
    // reopening keeps everything
    assert_eq!(Outbox::open(sqlite(dir.path()).await).await.unwrap().all().await.unwrap().len(), 2);
}

#[tokio::test]
async fn outbox_on_postgres() {
    let Some(pg) = ehash_testkit::postgres::PgCluster::start() else { return };
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new().max_connections(2).connect(&pg.url()).await.unwrap();
    conformance(Outbox::open(pool).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_while_the_relay_is_down_are_delivered_when_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(sqlite(dir.path()).await).await.unwrap();
    let keys = Keys::generate();
    // the relay behind a closed gate is down (a port reserved and freed could be taken meanwhile)
    let relay = ehash_relay::Relay::start(&ehash_relay::Config {
        data_dir: dir.path().join("relay"),
        listen: "127.0.0.1:0".parse().unwrap(),
        map_size: 64 << 20,
        extra_kinds: vec![1],
        ..Default::default()
    })
    .await
    .unwrap();
    let relay_addr: std::net::SocketAddr = relay.url().trim_start_matches("ws://").trim_end_matches('/').parse().unwrap();
    let gate = ehash_testkit::gate::Gate::start(relay_addr).await;
    gate.close();
    let url = format!("ws://{}", gate.addr());
    let note = EventBuilder::new(Kind::TextNote, "queued while down").finalize(&keys).unwrap();
    outbox.queue(&note).await.unwrap();
    let cancel = CancellationToken::new();
    let task = outbox.spawn_delivery(vec![url.clone()], cancel.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let client = Client::default();
    client.add_relay(relay.url()).await.unwrap();
    client.connect().await;
    let got = client.fetch_events(Filter::new().id(note.id)).timeout(Duration::from_secs(2)).await.unwrap();
    assert!(got.is_empty(), "nothing passes a closed gate");
    gate.open();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = client.fetch_events(Filter::new().id(note.id)).timeout(Duration::from_secs(2)).await.unwrap();
        if got.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the queued event never reached the relay");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cancel.cancel();
    task.await.unwrap();
    client.shutdown().await;
    relay.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_cut_off_from_its_relay_is_behind_until_it_has_read_what_was_sent_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let relay = ehash_relay::Relay::start(&ehash_relay::Config {
        data_dir: dir.path().join("relay"),
        listen: "127.0.0.1:0".parse().unwrap(),
        map_size: 64 << 20,
        extra_kinds: vec![1],
        ..Default::default()
    })
    .await
    .unwrap();
    let relay_addr: std::net::SocketAddr = relay.url().trim_start_matches("ws://").trim_end_matches('/').parse().unwrap();
    let gate = ehash_testkit::gate::Gate::start(relay_addr).await;
    let keys = Keys::generate();
    let cancel = CancellationToken::new();
    let filter = Filter::new().kind(Kind::TextNote).author(keys.public_key());
    let (watcher, mut events) = ehash_outbox::watch::watch(vec![format!("ws://{}", gate.addr())], vec![filter], Duration::from_secs(600), cancel.clone());
    let mut state = watcher.caught_up_changes();
    let wait_for = |state: &mut tokio::sync::watch::Receiver<bool>, want: bool| {
        let mut state = state.clone();
        async move { tokio::time::timeout(Duration::from_secs(20), state.wait_for(|v| *v == want)).await.is_ok() }
    };
    assert!(wait_for(&mut state, true).await, "caught up once connected");

    gate.close();
    assert!(wait_for(&mut state, false).await, "behind while the relay is away");
    // sent while the watcher is away (the catch-up fetch is ten minutes off)
    let client = Client::default();
    client.add_relay(relay.url()).await.unwrap();
    client.connect().await;
    let note = EventBuilder::new(Kind::TextNote, "sent while you were away").finalize(&keys).unwrap();
    client.send_event(&note).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!*state.borrow(), "still behind");

    gate.open();
    let got = tokio::time::timeout(Duration::from_secs(30), events.recv()).await.expect("the note arrives after the reconnection").unwrap();
    assert_eq!(got.id, note.id);
    assert!(wait_for(&mut state, true).await, "caught up again");
    cancel.cancel();
    client.shutdown().await;
    relay.shutdown();
}
