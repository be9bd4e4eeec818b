//! The mints and the wallet as other Cashu software sees them, against a real local market
//! (relay, pool mint-bridge, sat mint), with @cashu/cashu-ts from `web/ui/node_modules` run in
//! node as the independent client:
//!
//! - both mints advertise the NUT-17 subscriptions they serve, cashu-ts reads them as supported,
//!   and its `proof_state` subscription delivers;
//! - the pool's NIP-87 announcement lists exactly the NUTs cashu-ts reads in `/v1/info`;
//! - `ehash wallet receive --relay` takes a token cashu-ts stripped of its DLEQ proofs (NUT-12
//!   makes them optional) and refuses one whose DLEQ proof is wrong;
//! - a miner mining straight to the pool gets its Stratum username from `ehash wallet quote`,
//!   mints its credit with `ehash wallet mint`, and after an epoch change is told, by the pool
//!   and the wallet, how to go on; the new username is authorized on the same connection; a
//!   quote made elsewhere is imported with its key (`ehash wallet quote --import`) and minted.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use cdk::nuts::Token;
use cdk::wallet::{ReceiveOptions, SendOptions};
use ehash_protocol::epoch::CloseReason;
use ehash_protocol::events::{KIND_MINT_ANNOUNCEMENT, MintAnnouncement};
use ehash_sim_miner::client::{response_error, solve};
use ehash_sim_miner::Sv1Client;
use ehash_testkit::market::{CREDIT, Market};
use ehash_wallet::MinerWallet;
use ehash_wallet::announced::AnnouncedKeysets;
use nostr_sdk::prelude::{Client, Filter, Kind};
use serde_json::{Value, json};

/// `web/ui`, where @cashu/cashu-ts is installed, or why the test cannot run.
fn web_ui() -> Result<PathBuf, String> {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/ui");
    if !ui.join("node_modules/@cashu/cashu-ts").exists() {
        return Err(format!("web/ui has no node_modules (cd {} && npm ci)", ui.display()));
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(ui),
        _ => Err("no node on PATH".into()),
    }
}

/// Run a node module script in `web/ui` with `env`; its trimmed output. `None`: skipped.
fn node(script: &str, env: &[(&str, &str)]) -> Option<String> {
    let ui = match web_ui() {
        Ok(ui) => ui,
        Err(why) => return ehash_testkit::skip_or_fail(&why),
    };
    // node 20 has WebSocket (which cashu-ts subscribes with) behind a flag; later ones by default
    let probe = Command::new("node").args(["-e", "process.stdout.write(typeof WebSocket)"]).output().unwrap();
    let mut args = vec![];
    if String::from_utf8_lossy(&probe.stdout) != "function" {
        args.push("--experimental-websocket");
    }
    args.extend(["--input-type=module", "-e", script]);
    let out = Command::new("node").args(&args).current_dir(&ui).envs(env.iter().copied()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "node script failed:\n{stdout}\n{stderr}");
    Some(stdout.trim().to_owned())
}

/// How cashu-ts sees each mint (`tests/node/mints.mjs`): `(url, token of spent proofs)`.
fn cashu_ts_view(mints: &[(&str, Option<&str>)]) -> Option<Vec<Value>> {
    let arg = Value::Array(mints.iter().map(|(url, token)| json!({ "url": url, "token": token })).collect()).to_string();
    let out = node(include_str!("node/mints.mjs"), &[("MINTS", &arg)])?;
    Some(serde_json::from_str(&out).unwrap())
}

/// Run `ehash wallet` on `dir` at the pool's mint; (success, stdout + stderr).
fn wallet(m: &Market, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["--log", "warn", "wallet", "--dir", dir.to_str().unwrap(), "--mint-url", m.pool.mint_url()])
        .args(args)
        .env_remove("EHASH_CONFIG")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn ok(m: &Market, dir: &Path, args: &[&str]) -> String {
    let (passed, out) = wallet(m, dir, args);
    assert!(passed, "ehash wallet {args:?}:\n{out}");
    out
}

/// The Stratum username `ehash wallet quote` printed.
fn username(out: &str) -> String {
    out.lines().find_map(|l| l.strip_prefix("Stratum username: ")).unwrap_or_else(|| panic!("no username in:\n{out}")).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_mints_advertise_the_websocket_subscriptions_they_serve() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let a = MinerWallet::open(&dir.path().join("a.sqlite"), m.pool.mint_url(), [1; 64]).await.unwrap();
    let b = MinerWallet::open(&dir.path().join("b.sqlite"), m.pool.mint_url(), [2; 64]).await.unwrap();
    // a token at each mint whose proofs are spent (received by b), for cashu-ts to subscribe to
    let unit = m.earn(&a, 2).await;
    let ehash_token = a.send(&unit, CREDIT, None).await.unwrap();
    b.receive(&ehash_token, vec![], None).await.unwrap();
    m.fund(&a, 100).await;
    let sat_token = a.wallet_at(&m.sat_url, "sat").await.unwrap().prepare_send(cdk::Amount::from(10u64), SendOptions::default()).await.unwrap().confirm(None).await.unwrap().to_string();
    b.wallet_at(&m.sat_url, "sat").await.unwrap().receive(&sat_token, ReceiveOptions::default()).await.unwrap();

    let Some(seen) = cashu_ts_view(&[(m.pool.mint_url(), Some(&ehash_token)), (&m.sat_url, Some(&sat_token))]) else { return };
    let (pool, sats) = (&seen[0], &seen[1]);
    for mint in [pool, sats] {
        assert!(mint["nuts"].as_array().unwrap().contains(&json!(17)), "cashu-ts finds no NUT-17 at {mint}");
        let states = mint["states"].as_array().unwrap();
        assert!(!states.is_empty() && states.iter().all(|s| s == "SPENT"), "proof_state over the WebSocket: {mint}");
    }
    let ws = pool["websocket"].as_array().unwrap();
    assert!(ws.contains(&json!({"method": "ehash", "unit": unit, "commands": ["ehash_mint_quote", "proof_state"]})), "{ws:?}");
    assert!(ws.contains(&json!({"method": "ehash-redeem", "unit": unit, "commands": ["ehash-redeem_melt_quote", "proof_state"]})), "{ws:?}");
    // the pool pays Lightning withdrawals of sats but takes no deposits
    assert!(ws.contains(&json!({"method": "bolt11", "unit": "sat", "commands": ["bolt11_melt_quote", "proof_state"]})), "{ws:?}");
    assert_eq!(sats["websocket"], json!([{"method": "bolt11", "unit": "sat", "commands": ["bolt11_mint_quote", "bolt11_melt_quote", "proof_state"]}]));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mint_announcement_lists_the_nuts_the_mint_info_advertises() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let client = Client::default();
    client.add_relay(m.relay.url()).await.unwrap();
    client.connect().and_wait(Duration::from_secs(5)).await;
    let filter = Filter::new().author(m.pool_keys.public_key()).kind(Kind::Custom(KIND_MINT_ANNOUNCEMENT));
    let mut announced = None;
    for _ in 0..100 {
        if let Some(ev) = client.fetch_events(filter.clone()).timeout(Duration::from_secs(5)).await.unwrap().into_iter().next() {
            announced = Some(MintAnnouncement::parse(&ev).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.shutdown().await;
    let announced = announced.expect("the pool announces its mint");
    let Some(seen) = cashu_ts_view(&[(m.pool.mint_url(), None)]) else { return };
    let advertised: Vec<u16> = serde_json::from_value(seen[0]["nuts"].clone()).unwrap();
    assert_eq!(announced.nuts, advertised, "the 38172 nuts tag against /v1/info as cashu-ts reads it");
    for nut in [4, 5, 7, 12, 17, 20, 29] {
        assert!(advertised.contains(&nut), "NUT-{nut} is served: {advertised:?}");
    }
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_dleq_proofs_is_received_and_a_wrong_dleq_proof_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let miner = MinerWallet::open(&dir.path().join("miner.sqlite"), m.pool.mint_url(), [5; 64]).await.unwrap();
    let unit = m.earn(&miner, 2).await;
    let cli = dir.path().join("cli");
    ok(&m, &cli, &["init"]);
    // the epoch's keyset is announced on the relay before the wallet checks tokens against it
    let relays = [m.relay.url().to_owned()];
    for _ in 0..100 {
        if !AnnouncedKeysets::fetch(&relays, &m.pool_keys.public_key().to_hex(), m.pool.mint_url()).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let relay = m.relay.url();

    // a DLEQ proof that is there and wrong: refused, nothing received
    let mut bad = Token::from_str(&miner.send(&unit, CREDIT, None).await.unwrap()).unwrap();
    if let Token::TokenV4(v4) = &mut bad {
        let dleq = v4.token[0].proofs[0].dleq.as_mut().unwrap();
        std::mem::swap(&mut dleq.e, &mut dleq.s);
    }
    let (passed, out) = wallet(&m, &cli, &["--relay", relay, "receive", &bad.to_string()]);
    assert!(!passed && out.contains("nothing was received"), "{out}");

    // a token cashu-ts re-encoded without DLEQ proofs: received (the swap proves the signatures)
    let token = miner.send(&unit, CREDIT, None).await.unwrap();
    let Some(stripped) = node(include_str!("node/strip_dleq.mjs"), &[("TOKEN", &token), ("MINT", m.pool.mint_url())]) else { return };
    let out = ok(&m, &cli, &["--relay", relay, "receive", &stripped]);
    assert!(out.contains(&format!("received {CREDIT} {unit}")), "{out}");
    let out = ok(&m, &cli, &["balance"]);
    assert!(out.contains(&format!("{CREDIT} {unit}")), "{out}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_mining_straight_to_the_pool_mints_with_the_wallets_quote_and_follows_an_epoch_change() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let cli = dir.path().join("cli");
    ok(&m, &cli, &["init"]);
    let unit1 = m.unit().await;
    let out = ok(&m, &cli, &["quote", "--worker", "rig7"]);
    assert!(out.contains(&unit1), "{out}");
    let user1 = username(&out);
    assert!(user1.ends_with(".rig7"), "{user1}");
    // asked again, the same quote
    assert_eq!(username(&ok(&m, &cli, &["quote", "--worker", "rig7"])), user1);

    // a Stratum miner mines two shares with it, straight at the pool
    let mut c = Sv1Client::connect(m.pool.stratum_addr()).await.unwrap();
    c.subscribe("test-miner/1.0").await.unwrap();
    assert_eq!(c.authorize(&user1).await.unwrap()["result"], true);
    let job = c.wait_job(Duration::from_secs(10)).await.unwrap();
    for seed in [1, 2] {
        let (en2, nonce) = solve(&c, &job, seed);
        assert_eq!(c.submit(&user1, &job.id, &en2, job.ntime, nonce, None).await.unwrap()["result"], true);
    }
    let out = ok(&m, &cli, &["mint"]);
    assert!(out.contains(&format!("minted {}", 2 * CREDIT)), "{out}");

    // the epoch closes: the old username earns nothing more, and the pool says what to do
    m.pool.epochs().close_active(CloseReason::Operator, None).await.unwrap();
    let unit2 = m.unit().await;
    let (en2, nonce) = solve(&c, &job, 3);
    let r = c.submit(&user1, &job.id, &en2, job.ntime, nonce, None).await.unwrap();
    let (code, message) = response_error(&r).unwrap_or_else(|| panic!("{r}"));
    assert_eq!(code, 26, "{r}");
    assert!(message.contains(&unit2) && message.contains("ehash wallet quote"), "{message}");
    assert!(c.messages.iter().any(|t| t.contains(&unit2) && t.contains("ehash wallet quote") && t.contains("this connection")), "{:?}", c.messages);
    // so does the wallet
    let out = ok(&m, &cli, &["mint"]);
    assert!(out.contains(&unit2) && out.contains("ehash wallet quote"), "{out}");

    // the new username, authorized on the same connection: no reconnect
    let out = ok(&m, &cli, &["quote", "--worker", "rig7"]);
    assert!(out.contains(&unit2), "{out}");
    let user2 = username(&out);
    assert_ne!(user2, user1);
    assert_eq!(c.authorize(&user2).await.unwrap()["result"], true);
    let job = c.jobs.last().unwrap().clone();
    let (en2, nonce) = solve(&c, &job, 4);
    assert_eq!(c.submit(&user2, &job.id, &en2, job.ntime, nonce, None).await.unwrap()["result"], true);
    let out = ok(&m, &cli, &["mint"]);
    assert!(out.contains(&format!("minted {CREDIT}")) && !out.contains("ehash wallet quote"), "{out}");
    let out = ok(&m, &cli, &["balance"]);
    assert!(out.contains(&format!("{} {unit1}", 2 * CREDIT)) && out.contains(&format!("{CREDIT} {unit2}")), "{out}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_made_elsewhere_is_imported_with_its_key_and_minted() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), 0).await;
    let cli = dir.path().join("cli");
    ok(&m, &cli, &["init"]);
    let unit = m.unit().await;
    // the miner made its quote by hand and mines two shares to it
    let sk = cdk::nuts::SecretKey::generate();
    let body = json!({"unit": unit, "amount": 1, "pubkey": sk.public_key().to_hex()}).to_string();
    let resp = bitreq::post(format!("{}/v1/mint/quote/ehash", m.pool.mint_url().trim_end_matches('/')))
        .with_header("content-type", "application/json")
        .with_body(body)
        .send_async()
        .await
        .unwrap();
    let id = serde_json::from_str::<Value>(resp.as_str().unwrap()).unwrap()["quote"].as_str().unwrap().to_owned();
    let accepted = ehash_sim_miner::client::submit_shares(m.pool.stratum_addr(), &format!("{id}.rig"), 2, 11).await.unwrap();
    assert_eq!(accepted, 2);
    // not the wallet's quote yet: nothing to mint
    assert!(ok(&m, &cli, &["mint"]).contains("minted 0"));
    // a key that does not lock it is refused, naming the key that does
    let other = cdk::nuts::SecretKey::generate().to_secret_hex();
    let (passed, out) = wallet(&m, &cli, &["quote", "--import", &id, "--key", &other]);
    assert!(!passed && out.contains(&sk.public_key().to_hex()), "{out}");
    let out = ok(&m, &cli, &["quote", "--import", &id, "--key", &sk.to_secret_hex()]);
    assert_eq!(username(&out), format!("{id}.rig1"));
    let out = ok(&m, &cli, &["mint"]);
    assert!(out.contains(&format!("minted {}", 2 * CREDIT)), "{out}");
    let (passed, out) = wallet(&m, &cli, &["quote", "--import", &id, "--key", &sk.to_secret_hex()]);
    assert!(!passed && out.contains("already in this wallet"), "{out}");
    m.shutdown().await;
}
