//! Nostr announcements over real WebSockets: a client subscribed to the relay sees the mint
//! announcement, the epoch announcement and its state change when a block is found; a relay
//! that is down gets everything when it returns; relays that refuse or swallow events never
//! stop the pool.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use common::*;
use ehash_protocol::epoch::EpochState;
use ehash_protocol::events::{EpochAnnouncement, KIND_EPOCH_ANNOUNCEMENT, KIND_MINT_ANNOUNCEMENT, MintAnnouncement};
use nostr_sdk::prelude::*;

async fn client(url: &str) -> Client {
    let c = Client::default();
    c.add_relay(url).await.unwrap();
    c.connect().and_wait(Duration::from_secs(5)).await;
    c
}

async fn fetch(c: &Client, pool: PublicKey, kind: u16) -> Vec<Event> {
    c.fetch_events(Filter::new().author(pool).kind(Kind::Custom(kind)))
        .timeout(Duration::from_secs(5))
        .await
        .map(|s| s.into_iter().collect())
        .unwrap_or_default()
}

/// Our relay, accepting announcements from `pool`.
fn relay_config(dir: &std::path::Path, listen: SocketAddr, pool: &Keys) -> ehash_relay::Config {
    ehash_relay::Config {
        data_dir: dir.to_path_buf(),
        listen,
        map_size: 64 << 20,
        pool_keys: vec![pool.public_key().to_hex()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nostr_client_sees_the_mint_its_epochs_and_a_block_closing_one() {
    let dir = tempfile::tempdir().unwrap();
    let pool_keys = Keys::generate();
    let relay = ehash_relay::Relay::start(&relay_config(&dir.path().join("relay"), "127.0.0.1:0".parse().unwrap(), &pool_keys)).await.unwrap();
    let relay_url = relay.url().to_owned();
    let bridge = start(&dir.path().join("pool"), |c| {
        c.nostr_secret_key = Some(pool_keys.secret_key().to_secret_hex());
        c.relays = vec![relay_url.clone()];
        c.devnet.network_difficulty_exp = DIFF_EXP;
    })
    .await;
    let pool = PublicKey::parse(&bridge.epochs().announcer().public_key().to_hex()).unwrap();
    let watcher = client(&relay_url).await;

    // live subscription, opened before the block
    let mut notes = watcher.notifications();
    watcher.subscribe(Filter::new().author(pool).kind(Kind::Custom(KIND_EPOCH_ANNOUNCEMENT))).await.unwrap();

    wait_until("the mint and epoch announcements", Duration::from_secs(30), || async {
        !fetch(&watcher, pool, KIND_MINT_ANNOUNCEMENT).await.is_empty() && !fetch(&watcher, pool, KIND_EPOCH_ANNOUNCEMENT).await.is_empty()
    })
    .await;
    let mint = MintAnnouncement::parse(&fetch(&watcher, pool, KIND_MINT_ANNOUNCEMENT).await[0]).unwrap();
    assert_eq!(mint.urls, vec![bridge.mint_url().to_owned()]);
    assert_eq!(mint.network, "regtest");
    let info = bridge.mint().mint().mint_info().await.unwrap();
    assert_eq!(Some(mint.mint_pubkey.clone()), info.pubkey.map(|p| p.to_hex()));
    let epoch1 = EpochAnnouncement::parse(&fetch(&watcher, pool, KIND_EPOCH_ANNOUNCEMENT).await[0]).unwrap();
    assert_eq!((epoch1.epoch, epoch1.state, epoch1.keyset.unit.to_string()), (1, EpochState::Active, "hash_test_1".into()));
    // the content is the mint's real keyset: a wallet can check DLEQ proofs with it
    let served = bridge.mint().mint().keyset_pubkeys(&epoch1.keyset.id).unwrap().keysets.remove(0);
    assert_eq!(served.keys, epoch1.keyset.keys);
    // the keyset names the pool as its owner (`parse` checked the proof against the author)
    assert!(epoch1.owner_proof.is_some(), "the announcement carries the keyset's owner proof");

    // a block closes epoch 1
    let w = wallet(dir.path(), &bridge, 1).await;
    let q = w.create_quote("hash_test_1").await.unwrap();
    let user = format!("{q}.w");
    let (mut c, job) = miner(&bridge, &user).await;
    submit_valid(&mut c, &user, &job, 1).await;

    // the live subscription sees the closed state and the new epoch
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let n = tokio::time::timeout(left, notes.next()).await.expect("live epoch updates").unwrap();
        if let ClientNotification::Event { event, .. } = n {
            if event.kind != Kind::Custom(KIND_EPOCH_ANNOUNCEMENT) {
                continue;
            }
            let a = EpochAnnouncement::parse(&event).unwrap();
            match (a.epoch, a.state) {
                (1, EpochState::Closed) => {
                    assert_eq!((a.issued, a.shares), (Some(CREDIT), Some(1)));
                    assert!(a.block_hash.is_some());
                    assert!(event.created_at.as_secs() > 0);
                    seen.insert(1);
                }
                (2, EpochState::Active) => {
                    seen.insert(2);
                }
                _ => {}
            }
        }
    }
    // the relay keeps only the newest version of epoch 1, with a strictly newer created_at
    let all = fetch(&watcher, pool, KIND_EPOCH_ANNOUNCEMENT).await;
    let e1: Vec<_> = all.iter().filter(|e| EpochAnnouncement::parse(e).unwrap().epoch == 1).collect();
    assert_eq!(e1.len(), 1);
    assert_eq!(EpochAnnouncement::parse(e1[0]).unwrap().state, EpochState::Closed);
    watcher.shutdown().await;
    bridge.shutdown().await;
    relay.shutdown();
}

/// A write policy that refuses epoch announcements.
#[derive(Debug)]
struct RefuseEpochs;

impl WritePolicy for RefuseEpochs {
    fn admit_event<'a>(&'a self, event: &'a Event, _addr: &'a SocketAddr) -> Pin<Box<dyn Future<Output = WritePolicyResult> + Send + 'a>> {
        Box::pin(async move {
            if event.kind == Kind::Custom(KIND_EPOCH_ANNOUNCEMENT) {
                WritePolicyResult::reject(MachineReadablePrefix::Blocked, "no epochs here")
            } else {
                WritePolicyResult::Accept
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_that_are_down_refuse_or_swallow_events_never_stop_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    // a relay that is down now: reserve a port, start it later
    let spare = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let late_addr = spare.local_addr().unwrap();
    drop(spare);
    let late_url = format!("ws://{late_addr}");
    // a relay that refuses epoch announcements
    let refusing = LocalRelay::builder().write_policy(RefuseEpochs).build();
    refusing.run().await.unwrap();
    let refusing_url = refusing.url().await.to_string();
    // a "relay" that accepts TCP and never answers
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("ws://{}", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });

    let pool_keys = Keys::generate();
    let bridge = start(&dir.path().join("pool"), |c| {
        c.nostr_secret_key = Some(pool_keys.secret_key().to_secret_hex());
        c.relays = vec![late_url.clone(), refusing_url.clone(), hole_url.clone()];
    })
    .await;
    let pool = PublicKey::parse(&bridge.epochs().announcer().public_key().to_hex()).unwrap();

    // the pool credits shares regardless
    let w = wallet(dir.path(), &bridge, 1).await;
    let q = w.create_quote("hash_test_1").await.unwrap();
    let user = format!("{q}.w");
    let (mut c, job) = miner(&bridge, &user).await;
    for i in 0..3 {
        submit_valid(&mut c, &user, &job, i).await;
    }
    assert_eq!(w.mint_credited("hash_test_1", &q).await.unwrap(), 3 * CREDIT);

    // the refusing relay got the mint announcement and none of the epochs
    let watcher = client(&refusing_url).await;
    wait_until("the mint announcement on the refusing relay", Duration::from_secs(30), || async {
        !fetch(&watcher, pool, KIND_MINT_ANNOUNCEMENT).await.is_empty()
    })
    .await;
    assert!(fetch(&watcher, pool, KIND_EPOCH_ANNOUNCEMENT).await.is_empty());
    watcher.shutdown().await;

    // the late relay comes up and receives everything
    let late = ehash_relay::Relay::start(&relay_config(&dir.path().join("late"), late_addr, &pool_keys)).await.unwrap();
    let watcher = client(late.url()).await;
    wait_until("announcements on the relay that came back", Duration::from_secs(90), || async {
        !fetch(&watcher, pool, KIND_MINT_ANNOUNCEMENT).await.is_empty() && !fetch(&watcher, pool, KIND_EPOCH_ANNOUNCEMENT).await.is_empty()
    })
    .await;
    watcher.shutdown().await;
    bridge.shutdown().await;
    late.shutdown();
    refusing.shutdown();
}
