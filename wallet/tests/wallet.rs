//! The miner's wallet against a real mint-bridge and relay: send and receive (DLEQ checked against
//! the pool's nostr announcements), every bad token refused with the balance unchanged, history,
//! restore from seed, and NIP-60 backup restored with the nostr key alone.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use cdk::nuts::{SecretKey, Token};
use ehash_mint_bridge::MintBridge;
use ehash_wallet::announced::AnnouncedKeysets;
use ehash_wallet::{Error, MinerWallet, seed};
use nostr_sdk::prelude::Keys;

const CREDIT: u64 = 4;

async fn pool(dir: &Path, relays: Vec<String>, keys: &Keys) -> MintBridge {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let mut c = ehash_mint_bridge::Config {
        data_dir: dir.to_path_buf(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        stratum_listen: "127.0.0.1:0".parse().unwrap(),
        pool_id: Some("w".into()),
        unit_log2_hashes: 12,
        relays,
        nostr_secret_key: Some(keys.secret_key().to_secret_hex()),
        ..Default::default()
    };
    c.stratum.initial_difficulty_exp = -18;
    c.stratum.min_difficulty_exp = -18;
    c.stratum.max_difficulty_exp = -18;
    c.devnet.network_difficulty_exp = 60;
    MintBridge::start(c).await.unwrap()
}

async fn relay(dir: &Path, pool_keys: &Keys) -> ehash_relay::Relay {
    ehash_relay::Relay::start(&ehash_relay::Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        map_size: 64 << 20,
        pool_keys: vec![pool_keys.public_key().to_hex()],
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn wallet(path: &Path, bridge: &MintBridge, seed_byte: u8) -> MinerWallet {
    MinerWallet::open(path, bridge.mint_url(), [seed_byte; 64]).await.unwrap()
}

/// Earn `n` shares' worth into `w` through the pool's Stratum endpoint.
async fn earn(bridge: &MintBridge, w: &MinerWallet, n: u64) -> String {
    let unit = bridge.epochs().current().await.unwrap().unit;
    let quote = w.quote_for(&unit).await.unwrap();
    let got = ehash_sim_miner::client::submit_shares(bridge.stratum_addr(), &format!("{quote}.w"), n, rand_seed()).await.unwrap();
    assert_eq!(got, n);
    assert_eq!(w.mint_all_credited().await.unwrap(), n * CREDIT);
    unit
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

async fn balance(w: &MinerWallet, unit: &str) -> u64 {
    w.balances().await.unwrap().get(unit).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_receive_check_dleq_against_the_announced_keyset_and_refuse_bad_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let pool_keys = Keys::generate();
    let r = relay(&dir.path().join("relay"), &pool_keys).await;
    let bridge = pool(&dir.path().join("pool"), vec![r.url().to_owned()], &pool_keys).await;
    let alice = wallet(&dir.path().join("alice.sqlite"), &bridge, 1).await;
    let bob = wallet(&dir.path().join("bob.sqlite"), &bridge, 2).await;
    let unit = earn(&bridge, &alice, 5).await;

    // the pool's announcements reach the relay; Bob verifies against them
    let mut announced = AnnouncedKeysets::default();
    for _ in 0..100 {
        announced = AnnouncedKeysets::fetch(&[r.url().to_owned()], &pool_keys.public_key().to_hex(), bridge.mint_url()).await.unwrap();
        if !announced.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(announced.len(), 1);

    let token = alice.send(&unit, 8, None).await.unwrap();
    assert!(token.starts_with("cashuB"));
    assert_eq!(bob.receive(&token, vec![], Some(&announced)).await.unwrap(), (unit.clone(), 8));
    assert_eq!((balance(&alice, &unit).await, balance(&bob, &unit).await), (5 * CREDIT - 8, 8));

    // the same token again: already spent, nothing changes
    assert!(matches!(bob.receive(&token, vec![], Some(&announced)).await, Err(Error::AlreadySpent)));
    assert_eq!(balance(&bob, &unit).await, 8);
    // garbage
    assert!(matches!(bob.receive("cashuBnonsense", vec![], None).await, Err(Error::InvalidToken(_))));
    // a proof whose DLEQ does not verify against the announced key
    let good = alice.send(&unit, 4, None).await.unwrap();
    let mut t = Token::from_str(&good).unwrap();
    if let Token::TokenV4(v4) = &mut t {
        let dleq = v4.token[0].proofs[0].dleq.as_mut().unwrap();
        std::mem::swap(&mut dleq.e, &mut dleq.s);
    }
    let err = bob.receive(&t.to_string(), vec![], Some(&announced)).await.unwrap_err();
    assert!(matches!(err, Error::BadDleq { .. }), "{err}");
    assert_eq!(balance(&bob, &unit).await, 8);
    // the untampered token is still good
    assert_eq!(bob.receive(&good, vec![], Some(&announced)).await.unwrap().1, 4);
    // P2PK-locked to Bob's key: useless without it
    let sk = SecretKey::generate();
    let locked = alice.send(&unit, 2, Some(sk.public_key())).await.unwrap();
    assert!(bob.receive(&locked, vec![], None).await.is_err());
    assert_eq!(bob.receive(&locked, vec![sk], None).await.unwrap().1, 2);
    // more than the balance
    assert!(matches!(alice.send(&unit, 1000, None).await, Err(Error::Insufficient { .. })));
    // a token from another mint
    let other_dir = tempfile::tempdir().unwrap();
    let other = pool(other_dir.path(), vec![], &Keys::generate()).await;
    let stranger = wallet(&other_dir.path().join("s.sqlite"), &other, 3).await;
    let other_unit = earn(&other, &stranger, 1).await;
    let foreign = stranger.send(&other_unit, 4, None).await.unwrap();
    assert!(matches!(bob.receive(&foreign, vec![], None).await, Err(Error::ForeignMint { .. })));
    assert_eq!(balance(&bob, &unit).await, 14);

    let history = bob.history().await.unwrap();
    for amount in [8, 4, 2] {
        assert!(history.iter().any(|h| h.1 == "Incoming" && h.2 == amount), "{history:?}");
    }
    other.shutdown().await;
    bridge.shutdown().await;
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_words_restore_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = pool(&dir.path().join("pool"), vec![], &Keys::generate()).await;
    let (words, created) = seed::load_or_create(&dir.path().join("w1")).unwrap();
    assert!(created);
    let w = MinerWallet::open(&dir.path().join("w1/wallet.sqlite"), bridge.mint_url(), seed::seed_of(&words)).await.unwrap();
    let unit1 = earn(&bridge, &w, 3).await;
    bridge.epochs().close_active(ehash_protocol::epoch::CloseReason::Operator, None).await.unwrap();
    let unit2 = earn(&bridge, &w, 2).await;
    let spent = w.send(&unit1, 4, None).await.unwrap();
    let _ = spent;
    // a fresh machine with only the words
    let restored = MinerWallet::open(&dir.path().join("fresh.sqlite"), bridge.mint_url(), seed::seed_of(&words)).await.unwrap();
    let got = restored.restore_from_seed().await.unwrap();
    assert_eq!(got.get(&unit2), Some(&(2 * CREDIT)));
    // the restore sees what is unspent: the token sent but not yet claimed is still unspent
    assert_eq!(got.get(&unit1), Some(&(3 * CREDIT)));
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nip60_backup_restores_the_full_balance_from_the_nostr_key_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pool_keys = Keys::generate();
    let r = relay(&dir.path().join("relay"), &pool_keys).await;
    let relays = vec![r.url().to_owned()];
    let bridge = pool(&dir.path().join("pool"), relays.clone(), &pool_keys).await;
    let user = Keys::generate();
    let w = wallet(&dir.path().join("w.sqlite"), &bridge, 7).await;
    let unit = earn(&bridge, &w, 4).await;
    let report = w.backup_nip60(&user, &relays, dir.path()).await.unwrap();
    assert_eq!(report.published, vec![unit.clone()]);
    assert!(w.backup_nip60(&user, &relays, dir.path()).await.unwrap().published.is_empty(), "nothing changed");
    // spend some, back up again: the old token event is replaced
    let gone = w.send(&unit, 4, None).await.unwrap();
    let other = wallet(&dir.path().join("o.sqlite"), &bridge, 8).await;
    other.receive(&gone, vec![], None).await.unwrap();
    assert_eq!(w.backup_nip60(&user, &relays, dir.path()).await.unwrap().published, vec![unit.clone()]);

    // a relay that is down: the backup fails and can be retried
    let down = vec!["ws://127.0.0.1:9".to_owned()];
    earn(&bridge, &w, 1).await;
    assert!(w.backup_nip60(&user, &down, dir.path()).await.is_err());
    assert_eq!(w.backup_nip60(&user, &relays, dir.path()).await.unwrap().published, vec![unit.clone()]);

    // a fresh machine: a different seed, only the nostr key
    let fresh = wallet(&dir.path().join("fresh.sqlite"), &bridge, 9).await;
    let got = fresh.restore_nip60(&user, &relays).await.unwrap();
    assert_eq!(got.get(&unit), Some(&(5 * CREDIT - 4)));
    assert_eq!(balance(&fresh, &unit).await, 5 * CREDIT - 4);
    bridge.shutdown().await;
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_of_several_quotes_mint_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = pool(&dir.path().join("pool"), vec![], &Keys::generate()).await;
    let w = wallet(&dir.path().join("w.sqlite"), &bridge, 5).await;
    let unit = bridge.epochs().current().await.unwrap().unit;
    let (q1, q2) = (w.create_quote(&unit).await.unwrap(), w.create_quote(&unit).await.unwrap());
    for (q, n) in [(&q1, 2u64), (&q2, 3u64)] {
        let got = ehash_sim_miner::client::submit_shares(bridge.stratum_addr(), &format!("{q}.w"), n, rand_seed()).await.unwrap();
        assert_eq!(got, n);
    }
    assert_eq!(w.mint_all_credited().await.unwrap(), 5 * CREDIT);
    assert_eq!(w.mint_all_credited().await.unwrap(), 0, "nothing minted twice");
    assert_eq!(balance(&w, &unit).await, 5 * CREDIT);
    bridge.shutdown().await;
}
