//! The swap primitives against a real pool mint and a real sat mint (with input fees), both over
//! HTTP: a cross-mint HTLC swap settles; every bad lock is refused naming what is wrong; a lock
//! is refundable only after its locktime; a swap sent twice (a crash between sending and
//! recording) yields the same proofs.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cdk::mint_url::MintUrl;
use cdk::nuts::{CurrencyUnit, Proofs, SecretKey, Token};
use cdk::wallet::Wallet;
use ehash_testkit::market::{CREDIT, Market};
use ehash_wallet::durable::{self, SwapError};
use ehash_wallet::htlc::{self, LockError, LockTerms, Spend};
use ehash_wallet::MinerWallet;

const SAT_FEE_PPK: u64 = 100;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn lock(w: &Wallet, seed: u8, net: u64, hash: &str, locktime: u64, receiver: &SecretKey, maker: &SecretKey) -> (String, Proofs) {
    let cond = htlc::conditions(hash, locktime, receiver.public_key(), maker.public_key()).unwrap();
    let swap = durable::prepare_lock(w, &[seed; 64], net, &cond).await.unwrap();
    let proofs = durable::execute(w, &swap).await.unwrap();
    let locked = durable::finish(w, &swap, proofs).await.unwrap();
    let token = Token::new(w.mint_url.clone(), locked.clone(), None, w.unit.clone()).to_string();
    (token, locked)
}

async fn redeem(w: &Wallet, seed: u8, inputs: Proofs) -> Result<u64, SwapError> {
    let swap = durable::prepare_redeem(w, &[seed; 64], inputs).await?;
    let proofs = durable::execute(w, &swap).await?;
    durable::finish(w, &swap, proofs.clone()).await?;
    Ok(proofs.iter().map(|p| p.amount.to_u64()).sum())
}

async fn terms_for(w: &Wallet, hash: Option<String>, locktime: u64, receiver: &SecretKey, maker: &SecretKey, amount: u64) -> LockTerms {
    let ks = w.active_keyset().await.unwrap();
    LockTerms {
        mint_url: w.mint_url.clone(),
        unit: w.unit.clone(),
        keysets: HashMap::from([(ks.id, (ks.keys.clone(), ks.input_fee_ppk))]),
        hash,
        locktime,
        receiver: receiver.public_key(),
        maker: maker.public_key(),
        amount,
    }
}

async fn balance(w: &Wallet) -> u64 {
    w.total_balance().await.unwrap().to_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_mint_htlc_swap_settles_and_every_bad_lock_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let seller = MinerWallet::open(&dir.path().join("seller.sqlite"), m.pool.mint_url(), [1; 64]).await.unwrap();
    let buyer = MinerWallet::open(&dir.path().join("buyer.sqlite"), m.pool.mint_url(), [2; 64]).await.unwrap();
    let unit = m.earn(&seller, 10).await;
    m.fund(&buyer, 1000).await;
    let (s_ehash, s_sats) = (seller.wallet(&unit).await.unwrap(), seller.wallet_at(&m.sat_url, "sat").await.unwrap());
    let (b_ehash, b_sats) = (buyer.wallet(&unit).await.unwrap(), buyer.wallet_at(&m.sat_url, "sat").await.unwrap());
    let (s_key, b_key) = (SecretKey::generate(), SecretKey::generate());
    let preimage = htlc::new_preimage();
    let hash = htlc::hash_of(&preimage).unwrap();
    let (t1, t2) = (now() + 600, now() + 300);

    // 1. the seller locks 16 ehash for the buyer
    let (s_token, s_lock) = lock(&s_ehash, 1, 16, &hash, t1, &b_key, &s_key).await;
    assert_eq!(balance(&s_ehash).await, 10 * CREDIT - 16, "the pool mint charges no fee");

    // 2. the buyer checks it, and every variation of the terms is refused by name
    let good = terms_for(&b_ehash, None, t1, &b_key, &s_key, 16).await;
    let v = htlc::verify_lock(&s_token, &good, b_ehash.mint_connector().as_ref()).await.unwrap();
    assert_eq!((v.hash.as_str(), v.total, v.fee), (hash.as_str(), 16, 0));
    let conn = b_ehash.mint_connector();
    let check = |t: LockTerms| {
        let (token, conn) = (s_token.clone(), conn.clone());
        async move { htlc::verify_lock(&token, &t, conn.as_ref()).await.unwrap_err() }
    };
    assert!(matches!(check(LockTerms { amount: 17, ..good.clone() }).await, LockError::Amount { net: 16, want: 17, .. }));
    assert!(matches!(check(LockTerms { locktime: t1 + 1, ..good.clone() }).await, LockError::Locktime { .. }));
    assert!(matches!(check(LockTerms { receiver: s_key.public_key(), ..good.clone() }).await, LockError::Receiver { .. }));
    assert!(matches!(check(LockTerms { maker: b_key.public_key(), ..good.clone() }).await, LockError::Refund { .. }));
    assert!(matches!(check(LockTerms { hash: Some(htlc::hash_of(&htlc::new_preimage()).unwrap()), ..good.clone() }).await, LockError::Hash { .. }));
    assert!(matches!(check(LockTerms { unit: CurrencyUnit::Sat, ..good.clone() }).await, LockError::Unit { .. }));
    assert!(matches!(check(LockTerms { mint_url: MintUrl::from_str(&m.sat_url).unwrap(), ..good.clone() }).await, LockError::Mint { .. }));
    assert!(matches!(check(LockTerms { keysets: HashMap::new(), ..good.clone() }).await, LockError::Keyset(_)));
    let mut forged = Token::from_str(&s_token).unwrap();
    if let Token::TokenV4(t) = &mut forged {
        let d = t.token[0].proofs[0].dleq.as_mut().unwrap();
        std::mem::swap(&mut d.e, &mut d.s);
    }
    let e = htlc::verify_lock(&forged.to_string(), &good, conn.as_ref()).await.unwrap_err();
    assert!(matches!(e, LockError::Dleq { .. }), "{e}");
    assert!(e.is_fault());
    // a plain (unlocked) token is not a lock
    let plain = seller.send(&unit, 4, None).await.unwrap();
    assert!(matches!(htlc::verify_lock(&plain, &good, conn.as_ref()).await.unwrap_err(), LockError::NotHtlc(_)));

    // 3. the buyer locks 5 sats for the seller, adding the seller's redemption fee
    let (b_token, b_lock) = lock(&b_sats, 2, 5, &hash, t2, &s_key, &b_key).await;
    let sats_terms = terms_for(&s_sats, Some(hash.clone()), t2, &s_key, &b_key, 5).await;
    let v = htlc::verify_lock(&b_token, &sats_terms, s_sats.mint_connector().as_ref()).await.unwrap();
    assert_eq!((v.total - v.fee, v.fee), (5, 1), "the lock nets the seller 5 after the sat mint's fee");
    assert!(balance(&b_sats).await <= 1000 - v.total, "the buyer paid the lock and its own swap fee");

    // claiming without the receiver's key, or with a wrong preimage, is refused and loses nothing
    let wrong_key = htlc::claim_witness(&b_lock, &preimage, &b_key).unwrap();
    let e = redeem(&s_sats, 1, wrong_key).await;
    assert!(matches!(e, Err(SwapError::Refused(_))), "{e:?}");
    let wrong_preimage = htlc::claim_witness(&b_lock, &htlc::new_preimage(), &s_key).unwrap();
    assert!(redeem(&s_sats, 1, wrong_preimage).await.is_err());

    // 4. the seller claims the sats, revealing the preimage at the sat mint
    assert_eq!(redeem(&s_sats, 1, htlc::claim_witness(&b_lock, &preimage, &s_key).unwrap()).await.unwrap(), 5);
    assert_eq!(balance(&s_sats).await, 5);

    // 5. the buyer reads the preimage from NUT-07 and claims the ehash
    let states = htlc::check_states(b_sats.mint_connector().as_ref(), &b_lock).await.unwrap();
    let Spend::Claimed(learned) = htlc::spend_of(&states, &hash) else { panic!("the sat lock was claimed") };
    assert_eq!(learned, preimage);
    assert_eq!(redeem(&b_ehash, 2, htlc::claim_witness(&s_lock, &learned, &b_key).unwrap()).await.unwrap(), 16);
    assert_eq!(balance(&b_ehash).await, 16);
    let states = htlc::check_states(s_ehash.mint_connector().as_ref(), &s_lock).await.unwrap();
    assert_eq!(htlc::spend_of(&states, &hash), Spend::Claimed(preimage.clone()));
    // a spent lock no longer verifies
    assert!(matches!(htlc::verify_lock(&s_token, &good, conn.as_ref()).await.unwrap_err(), LockError::Spent(_)));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_refunds_only_after_its_locktime_and_a_repeated_swap_gives_the_same_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), SAT_FEE_PPK).await;
    let buyer = MinerWallet::open(&dir.path().join("buyer.sqlite"), m.pool.mint_url(), [3; 64]).await.unwrap();
    m.fund(&buyer, 200).await;
    let sats = buyer.wallet_at(&m.sat_url, "sat").await.unwrap();
    let (maker, receiver) = (SecretKey::generate(), SecretKey::generate());
    let hash = htlc::hash_of(&htlc::new_preimage()).unwrap();

    // more than the balance: refused before anything is sent or reserved
    let cond = htlc::conditions(&hash, now() + 60, receiver.public_key(), maker.public_key()).unwrap();
    let e = durable::prepare_lock(&sats, &[3; 64], 500, &cond).await.unwrap_err();
    assert!(matches!(&e, SwapError::Refused(m) if m.contains("insufficient")), "{e}");
    assert_eq!(balance(&sats).await, 200);

    // a lock sent twice (as after a crash before its result was recorded): the same proofs
    let locktime = now() + 3;
    let cond = htlc::conditions(&hash, locktime, receiver.public_key(), maker.public_key()).unwrap();
    let swap = durable::prepare_lock(&sats, &[3; 64], 20, &cond).await.unwrap();
    let first = durable::execute(&sats, &swap).await.unwrap();
    let again = durable::execute(&sats, &swap).await.unwrap();
    assert_eq!(first, again);
    let locked = durable::finish(&sats, &swap, again).await.unwrap();
    durable::finish(&sats, &swap, first).await.unwrap();
    let after_lock = balance(&sats).await;
    let face: u64 = locked.iter().map(|p| p.amount.to_u64()).sum();
    assert!(after_lock < 200 - face + 1, "the lock left the wallet once: {after_lock}");

    // before the locktime the refund path is closed; nothing is lost
    let refund = htlc::refund_witness(&locked, &maker, false).unwrap();
    assert!(matches!(redeem(&sats, 3, refund.clone()).await, Err(SwapError::Refused(_))));
    assert_eq!(balance(&sats).await, after_lock);
    // a refund signed by another key never works
    while now() <= locktime + 1 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(redeem(&sats, 3, htlc::refund_witness(&locked, &receiver, false).unwrap()).await.is_err());
    // after it, the maker takes it back (paying the input fee), revealing no preimage; the
    // witness for mints that refuse an empty preimage (a dummy one) works as well
    let mut by_size = refund.clone();
    by_size.sort_by_key(|p| std::cmp::Reverse(p.amount));
    let (first, rest) = (by_size[..1].to_vec(), by_size[1..].to_vec());
    let dummy = htlc::refund_witness(&rest, &maker, true).unwrap();
    assert!(!rest.is_empty(), "the lock is split into several proofs");
    let fee_first = htlc::input_fee(1, SAT_FEE_PPK);
    let fee_rest = htlc::input_fee(rest.len() as u64, SAT_FEE_PPK);
    let got = redeem(&sats, 3, first).await.unwrap() + redeem(&sats, 3, dummy).await.unwrap();
    assert_eq!(got, face - fee_first - fee_rest);
    let fee = fee_first + fee_rest;
    assert_eq!(balance(&sats).await, after_lock + face - fee);
    let states = htlc::check_states(sats.mint_connector().as_ref(), &locked).await.unwrap();
    assert_eq!(htlc::spend_of(&states, &hash), Spend::Refunded);
    // the receiver can no longer claim it
    let late = htlc::claim_witness(&locked, "00".repeat(32).as_str(), &receiver).unwrap();
    assert!(redeem(&sats, 3, late).await.is_err());
    m.shutdown().await;
}
