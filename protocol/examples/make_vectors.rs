//! Writes the signed and computed vectors of protocol/vectors (`events.json`, `identifiers.json`,
//! `work.json`, `audit.json`) from fixed test keys and terms. Run once per protocol version
//! (`cargo run -p ehash-protocol --example make_vectors`); the files are then fixed data that the
//! Rust tests and the browser's hold both implementations to. Every `reads_as` is the terms an
//! event was made from, never what a parser made of it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{Hash, sha256};
use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};
use cashu::nuts::nut02::KeySetVersion;
use cashu::nuts::{CurrencyUnit, KeySet, Keys as CashuKeys, MintKeySet, Proof, Token};
use ehash_protocol::audit::{self, LogShare};
use ehash_protocol::epoch::{self, CloseReason, EpochState, EpochUnit, PoolId};
use ehash_protocol::events::epoch::{self as epoch_event, EpochAnnouncement};
use ehash_protocol::events::mint::MintAnnouncement;
use ehash_protocol::events::offer::{Offer, OfferStatus};
use ehash_protocol::events::settlement::{Body, Message};
use ehash_protocol::events::trade::{Blame, LockStatus, OfferRef, Trade, TradeState};
use ehash_protocol::market::{self, Price, SettlementTimes, Side};
use ehash_protocol::stratum::Username;
use ehash_protocol::work::{DifficultyExp, UnitSize, meets};
use nostr::event::{Event, EventBuilder, FinalizeEvent, Kind, Tag};
use nostr::key::{Keys, SecretKey};
use nostr::types::Timestamp;
use serde_json::{Value, json};

/// 2027-01-01 00:00:00 UTC: when the vectors' events are dated (cashu refuses to build a lock whose locktime has passed).
const T: u64 = 1_798_761_600;
const POOL_MINT: &str = "https://mint.pool.example";
const SAT_MINT: &str = "https://sats.example";

fn key(label: &str) -> Keys {
    let secret = sha256::Hash::hash(format!("ehash test vector key: {label}").as_bytes());
    Keys::new(SecretKey::from_slice(secret.as_byte_array()).unwrap())
}

fn key_json(k: &Keys) -> Value {
    json!({"secret": k.secret_key().to_secret_hex(), "pubkey": k.public_key().to_hex()})
}

fn sign(b: EventBuilder, k: &Keys, at: u64) -> Event {
    b.custom_created_at(Timestamp::from_secs(at)).finalize(k).unwrap()
}

fn keyset(unit: &str, seed: u8) -> KeySet {
    keyset_and_owner(unit, seed).0
}

/// A keyset and the private key of its smallest amount (which signs its owner proof).
fn keyset_and_owner(unit: &str, seed: u8) -> (KeySet, cashu::SecretKey) {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let amounts: Vec<u64> = (0..63).map(|i| 1u64 << i).collect();
    let mk = MintKeySet::generate_from_seed(&secp, &[seed; 32], &amounts, CurrencyUnit::custom(unit), "m/0'/1'".parse().unwrap(), 0, None, KeySetVersion::Version01);
    let owner = mk.keys.iter().min_by_key(|(a, _)| **a).map(|(_, k)| k.secret_key.clone()).unwrap();
    (KeySet { id: mk.id, unit: mk.unit, active: None, keys: CashuKeys::from(mk.keys), input_fee_ppk: 0, final_expiry: None }, owner)
}

fn case(name: &str, ev: &Event, reads_as: Value) -> Value {
    json!({"name": name, "event": ev, "valid": true, "reads_as": reads_as})
}

fn refused(name: &str, ev: &Value, field: &str, why: &str) -> Value {
    json!({"name": name, "event": ev, "valid": false, "refused_for": field, "why": why})
}

/// A header that meets difficulty 2^exp, found by grinding the nonce.
fn share(seed: u32, exp: i32, unit: UnitSize) -> LogShare {
    let target = DifficultyExp::new(exp).unwrap().target();
    let mut h = Header {
        version: Version::from_consensus(0x2000_0000),
        prev_blockhash: BlockHash::from_byte_array(sha256::Hash::hash(b"ehash vectors: the previous block").to_byte_array()),
        merkle_root: TxMerkleNode::from_byte_array(sha256::Hash::hash(&seed.to_be_bytes()).to_byte_array()),
        time: (T as u32) + seed,
        bits: CompactTarget::from_consensus(0x1703_a30c),
        nonce: 0,
    };
    while !meets(h.block_hash(), target) {
        h.nonce += 1;
    }
    LogShare { header: hex::encode(bitcoin::consensus::encode::serialize(&h)), difficulty_exp: exp, amount: unit.credit(DifficultyExp::new(exp).unwrap()).unwrap() }
}

fn write(dir: &Path, name: &str, v: &Value) {
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(v).unwrap() + "\n").unwrap();
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    let (pool, exchange, seller, buyer, stranger) = (key("pool"), key("exchange"), key("seller offer"), key("buyer offer"), key("stranger"));
    let mint_secret = cashu::SecretKey::from_slice(sha256::Hash::hash(b"ehash test vector key: mint").as_byte_array()).unwrap();
    let mint_pubkey = mint_secret.public_key().to_hex();
    let pool_id = PoolId::from_pubkey_hex(&pool.public_key().to_hex()).unwrap();

    // ------------------------------------------------------------------ audit (a closed epoch's share log)
    let unit_size = UnitSize::new(8).unwrap();
    let mut log: Vec<LogShare> = (0..7).map(|i| share(i, -24 + (i % 3) as i32, unit_size)).collect();
    audit::sort_log(&mut log);
    let root = audit::check_log(&log, unit_size).unwrap();
    let leaves: Vec<Value> = log.iter().enumerate().map(|(i, s)| json!({"id": s.id(i).unwrap(), "leaf": s.leaf(i).unwrap()})).collect();
    let proofs: Vec<Value> = [0usize, 3, 6].iter().map(|&i| serde_json::to_value(audit::prove(&log, i).unwrap().unwrap()).unwrap()).collect();
    let mut raised = log.clone();
    raised[3].amount *= 2;
    let mut harder = log.clone();
    harder[2].difficulty_exp += 8;
    harder[2].amount = unit_size.credit(DifficultyExp::new(harder[2].difficulty_exp).unwrap()).unwrap();
    let mut twice = log.clone();
    twice.insert(2, log[1].clone());
    let mut swapped = log.clone();
    swapped.swap(4, 5);
    let bad_log = |name: &str, shares: &[LogShare], error: &str, index: usize| json!({"name": name, "shares": shares, "error": error, "index": index});
    write(&dir, "audit", &json!({
        "description": "An epoch's share log and its commitment (protocol §12). `log` is a closed epoch's log in log order (sorted by share id, the header's block hash in display hex), credited with `unit_size` (log2 hashes per ehash); `leaves` gives each share's id and leaf; `root` is the commitment (hash and sum) that the epoch's 38180 event carries in its `log` tag (events.json, 'a redeemable epoch'); `proofs` are inclusion proofs that lead to that root; `empty_root` is the root of an epoch without shares. `bad_logs` must each fail the check with the error named (amount: credited more than its difficulty earns; not_work: its hash does not meet the claimed difficulty; order: repeated or out of order) at the share index named.",
        "unit_size": unit_size.log2(),
        "log": log,
        "leaves": leaves,
        "root": root,
        "proofs": proofs,
        "empty_root": audit::empty_root(),
        "bad_logs": [
            bad_log("a credit raised", &raised, "amount", 3),
            bad_log("a share claimed at a higher difficulty than its hash meets", &harder, "not_work", 2),
            bad_log("a share counted twice", &twice, "order", 2),
            bad_log("two shares out of order", &swapped, "order", 5),
        ],
    }));

    // ------------------------------------------------------------------ events
    let mint_ann = MintAnnouncement {
        mint_pubkey: mint_pubkey.clone(),
        urls: vec![POOL_MINT.into()],
        nuts: vec![4, 5, 7, 8, 9, 10, 11, 12, 14, 15, 17, 19, 20, 29],
        network: "signet".into(),
        metadata: Some(json!({"name": "Example pool mint"})),
    };
    let mint_ev = sign(mint_ann.to_builder(), &pool, T);
    let mint_address = format!("38172:{}:{}", pool.public_key().to_hex(), mint_pubkey);

    let closed_unit = EpochUnit::new(pool_id.clone(), 6).unit();
    let open_unit = EpochUnit::new(pool_id.clone(), 7).unit();
    let (closed_keyset, closed_owner) = keyset_and_owner(&closed_unit, 6);
    let (open_keyset, open_owner) = keyset_and_owner(&open_unit, 7);
    let redeemable = EpochAnnouncement {
        owner_proof: Some(epoch_event::owner_proof(&closed_owner, &closed_keyset.id, &pool.public_key())),
        keyset: closed_keyset,
        mint_url: POOL_MINT.into(),
        epoch: 6,
        state: EpochState::Redeemable,
        start: T - 86_400,
        end: Some(T - 60_000),
        issued: Some(root.sum),
        shares: Some(log.len() as u64),
        reason: Some(CloseReason::Block),
        block_hash: Some("0000000000000000000155e8bcd3b0d7c2b8f2e2a4f2a4d5b3c1a0e9f8d7c6b5".into()),
        log_root: Some(hex::encode(root.hash)),
        unit_log2: Some(unit_size.log2()),
        height: Some(274_105),
        payout: Some(epoch::epoch_payout(312_500_000, 20_000)),
        expires: Some(T + 30 * 86_400),
        mint_address: Some(mint_address.clone()),
        network: Some("signet".into()),
        hashprice: None,
    };
    let redeemable_ev = sign(redeemable.to_builder(), &pool, T);
    let active = EpochAnnouncement {
        owner_proof: Some(epoch_event::owner_proof(&open_owner, &open_keyset.id, &pool.public_key())),
        keyset: open_keyset,
        epoch: 7,
        state: EpochState::Active,
        start: T - 60_000,
        end: None,
        issued: None,
        shares: None,
        reason: None,
        block_hash: None,
        log_root: None,
        payout: None,
        expires: None,
        height: None,
        unit_log2: Some(32),
        hashprice: Some(epoch::hashprice(0x1703_a30c, 312_500_000, 20_000, 32)),
        ..redeemable.clone()
    };
    let active_ev = sign(active.to_builder(), &pool, T);

    let market = redeemable.keyset.id.to_string();
    let lot = 64;
    let offer = |d: &str, side: Side, amount: u64, min: u64, sats_per_lot: u64| Offer {
        id: d.into(),
        side,
        status: OfferStatus::Pending,
        market: market.clone(),
        unit: closed_unit.clone(),
        mint_url: POOL_MINT.into(),
        pool: pool.public_key(),
        sat_mints: vec![SAT_MINT.into()],
        amount,
        min,
        price: Price::new(sats_per_lot, lot).unwrap(),
        exchange: exchange.public_key(),
        expiration: T + 86_400,
        note: String::new(),
    };
    let ask = offer("5f2b9c1d0a7e4c3b", Side::Sell, 4 * lot, lot, 900);
    let ask_ev = sign(ask.to_builder(), &seller, T);
    let mut bid = offer("a8d4e6f1c2b3a495", Side::Buy, 2 * lot, 2 * lot, 950);
    bid.note = "buying epoch 6".into();
    let bid_ev = sign(bid.to_builder(), &buyer, T + 5);

    let trade_id = market::trade_id(bid_ev.id.as_bytes(), ask_ev.id.as_bytes());
    let preimage = hex::encode(sha256::Hash::hash(b"ehash test vector preimage").to_byte_array());
    let hash = sha256::Hash::hash(&hex::decode(&preimage).unwrap()).to_string();
    let times = SettlementTimes::new(T + 5, 60, 120, 120);
    let trade = Trade {
        id: trade_id.clone(),
        market: market.clone(),
        unit: closed_unit.clone(),
        mint_url: POOL_MINT.into(),
        sat_mint: SAT_MINT.into(),
        maker: OfferRef { event_id: ask_ev.id, pubkey: seller.public_key(), d: ask.id.clone() },
        taker: OfferRef { event_id: bid_ev.id, pubkey: buyer.public_key(), d: bid.id.clone() },
        maker_side: Side::Sell,
        amount: 2 * lot,
        sats: 2 * 900,
        price: ask.price,
        seq: 42,
        state: TradeState::Settled,
        times,
        hash: Some(hash.clone()),
        preimage: Some(preimage.clone()),
        ehash_lock: LockStatus::Claimed,
        sats_lock: LockStatus::Claimed,
        reason: None,
        blame: None,
    };
    let trade_ev = sign(trade.to_builder(), &exchange, T + 90);
    let failed = Trade {
        state: TradeState::Failed,
        hash: Some(hash.clone()),
        preimage: None,
        ehash_lock: LockStatus::Locked,
        sats_lock: LockStatus::None,
        reason: Some("the buyer did not lock by its deadline".into()),
        blame: Some(Blame::Buyer),
        ..trade.clone()
    };
    let failed_ev = sign(failed.to_builder(), &exchange, T + 130);

    // the seller's lock: one HTLC proof of the trade's amount at the pool mint
    let seller_lock_key = market::lock_key(&seller.public_key()).unwrap();
    let buyer_lock_key = market::lock_key(&buyer.public_key()).unwrap();
    let conditions = cashu::nuts::Conditions::new(Some(times.ehash_locktime), Some(vec![buyer_lock_key]), Some(vec![seller_lock_key]), Some(1), Some(cashu::nuts::SigFlag::SigInputs), Some(1)).unwrap();
    let spending = cashu::nuts::SpendingConditions::new_htlc_hash(&hash, Some(conditions)).unwrap();
    let secret: cashu::secret::Secret = spending.try_into().unwrap();
    let c = cashu::SecretKey::from_slice(sha256::Hash::hash(b"ehash test vector blind signature").as_byte_array()).unwrap().public_key();
    let proof = Proof::new(cashu::Amount::from(2 * lot), redeemable.keyset.id, secret, c);
    let token = Token::new(POOL_MINT.parse().unwrap(), vec![proof], None, CurrencyUnit::custom(&closed_unit)).to_string();
    let msg = |sender: &Keys, to: &Keys, body: Body, at: u64| {
        let ev = Message::new(trade_id.clone(), body).to_event(sender, &to.public_key(), times.ehash_locktime + 3600).unwrap();
        // to_event dates the message now; the vector dates it with the trade
        let b = EventBuilder::new(Kind::Custom(4190), ev.content.clone()).tags(ev.tags.iter().cloned());
        sign(b, sender, at)
    };
    let lock_msg = msg(&seller, &buyer, Body::Lock { token: token.clone() }, T + 20);
    let preimage_msg = msg(&seller, &buyer, Body::Preimage { preimage: preimage.clone() }, T + 60);
    let abort_msg = msg(&buyer, &seller, Body::Abort { reason: "the lock's locktime is not the trade's".into() }, T + 25);
    let raw_msg = |sender: &Keys, to: &Keys, plaintext: Value, p: &str| {
        let content = nostr::nips::nip44::encrypt(sender.secret_key(), &to.public_key(), plaintext.to_string(), nostr::nips::nip44::Version::V2).unwrap();
        let b = EventBuilder::new(Kind::Custom(4190), content).tag(Tag::parse(["p", p]).unwrap()).tag(Tag::expiration(Timestamp::from_secs(times.ehash_locktime + 3600)));
        sign(b, sender, T + 30)
    };

    // invalid variants: signed (unless the signature is the point), each refused for one field
    let ev_json = |e: &Event| serde_json::to_value(e).unwrap();
    let mut tampered = ev_json(&trade_ev);
    let sig = tampered["sig"].as_str().unwrap().to_owned();
    tampered["sig"] = json!(format!("{}{}", &sig[..127], if sig.ends_with('0') { '1' } else { '0' }));
    let mut edited = ev_json(&trade_ev);
    edited["tags"].as_array_mut().unwrap().iter_mut().find(|t| t[0] == "sats").unwrap()[1] = json!("1");
    let retag = |e: &Event, name: &str, values: &[&str], by: &Keys| {
        let mut tags: Vec<Tag> = e.tags.iter().cloned().collect();
        let mut parts = vec![name];
        parts.extend_from_slice(values);
        let new = Tag::parse(parts).unwrap();
        match tags.iter().position(|t| t.as_slice()[0] == name) {
            Some(i) => tags[i] = new,
            None => tags.push(new),
        }
        ev_json(&sign(EventBuilder::new(e.kind, e.content.clone()).tags(tags), by, e.created_at.as_secs()))
    };
    let mut other_keys = redeemable.clone();
    other_keys.keyset.keys = keyset(&closed_unit, 9).keys;
    let swapped_keys = ev_json(&sign(other_keys.to_builder(), &pool, T));
    let wrong_sats = (trade.sats + 1).to_string();
    let late_deadline = (times.sats_locktime + 1).to_string();
    let buyer_by = times.buyer_lock_by.to_string();
    let events = json!({
        "description": "Real signed events of every ehash kind (protocol §5, §9, §10), made from the test keys in `keys` (secret keys included: these keys are public test data, never use them). A case with `valid: true` verifies (NIP-01 id and BIP-340 signature) and reads as `reads_as`, the terms the event was made from, field for field (the JSON form of protocol::events::{mint::MintAnnouncement, epoch::EpochAnnouncement, offer::Offer, trade::Trade, settlement::Message}; `reads_as.address` and `reads_as.trade_id` are derived values a reader must compute alike). A case with `valid: false` must be refused: `refused_for` names the field (the tag name, `content`, or `id`/`sig` for an event that does not verify) and `why` says what is wrong. Kind 4190 cases carry `recipient` (the key in `keys` that reads the NIP-44 content). Readers: the Rust crate reads every kind; the browser reads 38180 (checkEpoch), 38191 (parseTrade), 4190 (readMessage) and builds 38190 (offerTemplate: the same terms, key and created_at give the same event id), and runs every case of those kinds.",
        "keys": {"pool": key_json(&pool), "exchange": key_json(&exchange), "seller_offer": key_json(&seller), "buyer_offer": key_json(&buyer), "stranger": key_json(&stranger), "mint": {"secret": mint_secret.to_secret_hex(), "pubkey": mint_pubkey}},
        "cases": [
            case("a pool's mint announcement (NIP-87 38172)", &mint_ev, serde_json::to_value(&mint_ann).unwrap()),
            case("the open epoch (38180, active)", &active_ev, serde_json::to_value(&active).unwrap()),
            case("a redeemable epoch (38180), committing to the share log of audit.json", &redeemable_ev, serde_json::to_value(&redeemable).unwrap()),
            case("an ask: sell 256 ehash of epoch 6 at 900 sat per 64 (38190)", &ask_ev, { let mut v = serde_json::to_value(&ask).unwrap(); v["address"] = json!(ask.address(&seller.public_key())); v }),
            case("a bid with a note (38190)", &bid_ev, { let mut v = serde_json::to_value(&bid).unwrap(); v["address"] = json!(bid.address(&buyer.public_key())); v }),
            case("the bid taking the ask, settled (38191)", &trade_ev, { let mut v = serde_json::to_value(&trade).unwrap(); v["trade_id"] = json!(trade_id); v }),
            case("the same trade failed, blamed on the buyer (38191)", &failed_ev, serde_json::to_value(&failed).unwrap()),
            json!({"name": "the seller's lock, to the buyer (4190)", "event": lock_msg, "recipient": "buyer_offer", "valid": true, "reads_as": Message::new(trade_id.clone(), Body::Lock { token: token.clone() })}),
            json!({"name": "the preimage, to the buyer (4190)", "event": preimage_msg, "recipient": "buyer_offer", "valid": true, "reads_as": Message::new(trade_id.clone(), Body::Preimage { preimage: preimage.clone() })}),
            json!({"name": "an abort, to the seller (4190)", "event": abort_msg, "recipient": "seller_offer", "valid": true, "reads_as": Message::new(trade_id.clone(), Body::Abort { reason: "the lock's locktime is not the trade's".into() })}),
            refused("a trade whose signature was altered", &tampered, "sig", "the BIP-340 signature does not verify"),
            refused("a trade whose tags were edited after signing", &edited, "id", "the id is not the hash of the event"),
            refused("an epoch whose keys are not its keyset id's", &swapped_keys, "content", "the NUT-02 id of the keys in the content is not `d`"),
            refused("an epoch whose d is not its keyset id", &retag(&redeemable_ev, "d", &["00ad268c4d1f5826"], &pool), "d", "`d` must be the content's keyset id"),
            refused("the pool's epoch copied and re-signed by another key", &ev_json(&sign(redeemable.to_builder(), &stranger, T + 1)), "owner", "the owner proof is the keyset's signature of the pool's key, not of the signer's"),
            refused("an epoch whose owner proof is not a signature", &retag(&redeemable_ev, "owner", &["00"], &pool), "owner", "the owner proof is a 64-byte BIP-340 signature in hex"),
            refused("an active epoch with an end", &retag(&active_ev, "end", &[&T.to_string()], &pool), "end", "an active epoch has no end"),
            refused("a trade id that is not 32 hex digits", &retag(&trade_ev, "d", &["trade-1"], &exchange), "d", "a trade id is 32 hex characters"),
            refused("a trade whose sats are not its amount at its price", &retag(&trade_ev, "sats", &[&wrong_sats], &exchange), "sats", "sats = amount / lot × sats per lot"),
            refused("a trade whose buyer deadline is after the sats locktime", &retag(&trade_ev, "deadline", &[&buyer_by, &late_deadline], &exchange), "locktime", "seller_lock_by ≤ buyer_lock_by < sats locktime < ehash locktime"),
            refused("an offer whose minimum is above its amount", &retag(&ask_ev, "min", &[&(8 * lot).to_string()], &seller), "min", "min is between one lot and the amount"),
            refused("an offer that is neither buy nor sell", &retag(&ask_ev, "k", &["swap"], &seller), "k", "k is buy or sell"),
            refused("an offer without an expiration", &{ let mut tags: Vec<Tag> = ask_ev.tags.iter().filter(|t| t.as_slice()[0] != "expiration").cloned().collect(); tags.retain(|t| t.as_slice()[0] != "expires_at"); ev_json(&sign(EventBuilder::new(ask_ev.kind, "").tags(tags), &seller, T)) }, "expiration", "offers must expire (NIP-40)"),
            refused("a mint announcement whose d is not a public key", &retag(&mint_ev, "d", &["mint"], &pool), "d", "d is the mint's 33-byte public key in hex"),
            json!({"name": "a message addressed to another key (4190)", "event": raw_msg(&seller, &buyer, json!({"v":1,"trade":trade_id,"type":"preimage","preimage":preimage}), &stranger.public_key().to_hex()), "recipient": "buyer_offer", "valid": false, "refused_for": "p", "why": "the p tag names the recipient"}),
            json!({"name": "a message of version 2 (4190)", "event": raw_msg(&seller, &buyer, json!({"v":2,"trade":trade_id,"type":"preimage","preimage":preimage}), &buyer.public_key().to_hex()), "recipient": "buyer_offer", "valid": false, "refused_for": "content", "why": "this version of the protocol speaks message version 1"}),
            json!({"name": "a message whose trade id is not 32 hex digits (4190)", "event": raw_msg(&seller, &buyer, json!({"v":1,"trade":"trade-1","type":"preimage","preimage":preimage}), &buyer.public_key().to_hex()), "recipient": "buyer_offer", "valid": false, "refused_for": "trade", "why": "a trade id is 32 hex characters"}),
            json!({"name": "a lock message whose token is not cashuB (4190)", "event": raw_msg(&seller, &buyer, json!({"v":1,"trade":trade_id,"type":"lock","token":"cashuAeyJ0b2tlbiI6W119"}), &buyer.public_key().to_hex()), "recipient": "buyer_offer", "valid": false, "refused_for": "token", "why": "a lock is a cashuB (NUT-00 V4) token"}),
            json!({"name": "a preimage that is not 32 bytes (4190)", "event": raw_msg(&seller, &buyer, json!({"v":1,"trade":trade_id,"type":"preimage","preimage":"abcd"}), &buyer.public_key().to_hex()), "recipient": "buyer_offer", "valid": false, "refused_for": "preimage", "why": "a preimage is 32 bytes of hex"}),
        ],
    });
    write(&dir, "events", &events);

    // ------------------------------------------------------------------ identifiers
    let units: Vec<Value> = ["hash_3f9a1c2e_7", "HASH_3F9A1C2E_12", "hash_pool_1", "hash_0123456789abcdef_4294967295", &closed_unit, "hash_3f9a1c2e_07", "hash_3f9a1c2e_0", "hash_3f9a1c2e_", "hash__7", "hash_0123456789abcdefa_1", "hash_3f9a-1c2e_7", "sat", "hash_3f9a1c2e_4294967296"]
        .iter()
        .map(|u| match EpochUnit::parse(u) {
            Ok(e) => json!({"unit": u, "valid": true, "pool": e.pool.as_str(), "epoch": e.epoch}),
            Err(_) => json!({"unit": u, "valid": false}),
        })
        .collect();
    let long_worker = "w".repeat(64);
    let too_long_worker = "w".repeat(65);
    let long_quote = "q".repeat(128);
    let too_long_quote = "q".repeat(129);
    let usernames: Vec<Value> = [
        "0190f6a1-7c1e-7cc3-9d1a-2b5e7f000001.rig7".to_owned(),
        "0190f6a1-7c1e-7cc3-9d1a-2b5e7f000001".into(),
        "0190f6a1-7c1e-7cc3-9d1a-2b5e7f000001.".into(),
        "q.rack.3.left".into(),
        format!("q.{long_worker}"),
        long_quote,
        String::new(),
        ".rig7".into(),
        "a b.rig7".into(),
        format!("q.{too_long_worker}"),
        too_long_quote,
    ]
    .iter()
    .map(|u| match Username::parse(u) {
        Ok(p) => json!({"username": u, "valid": true, "quote_id": p.quote_id, "worker": p.worker}),
        Err(_) => json!({"username": u, "valid": false}),
    })
    .collect();
    let trade_ids: Vec<Value> = [(bid_ev.id, ask_ev.id), (ask_ev.id, bid_ev.id), (trade_ev.id, failed_ev.id)]
        .iter()
        .map(|(taker, maker)| json!({"taker_event_id": taker.to_hex(), "maker_event_id": maker.to_hex(), "trade_id": market::trade_id(taker.as_bytes(), maker.as_bytes())}))
        .collect();
    let lock_keys: Vec<Value> = [&seller, &buyer, &pool].iter().map(|k| json!({"nostr_pubkey": k.public_key().to_hex(), "lock_key": market::lock_key(&k.public_key()).unwrap().to_hex()})).collect();
    write(&dir, "identifiers", &json!({
        "description": "Identifiers (protocol §2, §4, §9). `units`: epoch unit names `hash_<pool-id>_<epoch>` (read case-insensitively; pool id 1–16 of [0-9a-z]; epoch decimal from 1 without leading zeros, at most 2^32−1), with what each reads as. `usernames`: Stratum `mining.authorize` usernames `<quote-id>[.<worker>]` (split at the first dot; quote id 1–128 bytes without whitespace; worker at most 64 bytes, an empty worker is none). `trade_ids`: the trade id of a match, the first 16 bytes of sha256(taker offer event id ‖ maker offer event id) in hex. `lock_keys`: the Cashu lock key of an offer key, 02 ‖ its x-only nostr public key (as NIP-61).",
        "units": units,
        "usernames": usernames,
        "trade_ids": trade_ids,
        "lock_keys": lock_keys,
    }));

    // ------------------------------------------------------------------ work and amounts
    let difficulties: Vec<Value> = [-32, -24, -1, 0, 1, 10, 32, 192]
        .iter()
        .map(|&e| {
            let d = DifficultyExp::new(e).unwrap();
            json!({"exp": e, "set_difficulty": ehash_protocol::stratum::messages::set_difficulty(d), "target": hex::encode(d.target().to_be_bytes()), "compact": format!("{:08x}", d.compact().to_consensus())})
        })
        .collect();
    let bad_exps = [-33, 193];
    let credits: Vec<Value> = [(32, 0), (32, 5), (32, -1), (8, -24), (8, -22), (0, -32), (40, 7)]
        .iter()
        .map(|&(u, e)| {
            let c = UnitSize::new(u).unwrap().credit(DifficultyExp::new(e).unwrap());
            json!({"unit_size": u, "exp": e, "credit": c.ok()})
        })
        .collect();
    let payouts: Vec<Value> = [(312_500_000u64, 20_000u32), (312_500_000, 0), (625_000_001, 1), (5_000_000_000, 1_000_000)]
        .iter()
        .map(|&(r, f)| json!({"reward": r, "fee_ppm": f, "payout": epoch::epoch_payout(r, f)}))
        .collect();
    let redemptions: Vec<Value> = [(128u64, 306_250_000u64, 1_024u64), (1, 306_250_000, 1_024), (3, 10, 7), (u64::MAX / 2, u64::MAX / 3, u64::MAX / 2), (0, 5, 9), (5, 100, 0)]
        .iter()
        .map(|&(a, p, i)| json!({"amount": a, "payout": p, "issued": i, "sats": epoch::redeem_sats(a, p, i)}))
        .collect();
    let hashprices: Vec<Value> = [(0x1703_a30cu32, 312_500_000u64, 20_000u32, 32u32), (0x207f_ffff, 5_000_000_000, 0, 32), (0x1703_a30c, 312_500_000, 20_000, 40)]
        .iter()
        .map(|&(n, v, f, u)| json!({"nbits": format!("{n:08x}"), "coinbase_value": v, "fee_ppm": f, "unit_size": u, "sats_per_ehash": epoch::hashprice(n, v, f, u)}))
        .collect();
    write(&dir, "work", &json!({
        "description": "Work and amounts (protocol §1, §2). `difficulties`: a share difficulty 2^exp, the `mining.set_difficulty` notification that assigns it (the difficulty as an exact JSON number), its target DIFF1 / 2^exp as 32 bytes big-endian hex, and its compact form (nbits, hex); `bad_exps` are outside [-32, 192]. `credits`: what a share of difficulty 2^exp earns with units of 2^unit_size hashes, 2^(32 + exp − unit_size) ehash, or null where that is less than one unit. `payouts`: an epoch's payout, reward − floor(reward × fee_ppm / 10^6). `redemptions`: floor(amount × payout / issued) sats, with a 128-bit product. `hashprices`: the expected sats per ehash of an open epoch, payout(coinbase_value, fee_ppm) × 2^unit_size × (T + 1) / 2^256 with T the target of nbits (a hash finds a block with probability (T + 1) / 2^256), a float: compare within a relative 1e-9. `redemptions` with issued = 0 pay 0.",
        "difficulties": difficulties,
        "bad_exps": bad_exps,
        "credits": credits,
        "payouts": payouts,
        "redemptions": redemptions,
        "hashprices": hashprices,
    }));
}
