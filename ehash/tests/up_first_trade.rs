//! `ehash up` as a newcomer first runs it, on a busy two-core machine: with its own settings (lot,
//! block rate, trade pace) the simulated miner earns a lot, the simulated seller offers it, the
//! simulated buyer takes it and the swap settles within the first minute, while two threads keep
//! the cores busy; the price is within 5 % of what the lot is worth. Its standard error stays quiet meanwhile: no library's info lines and no
//! warning that needs no action.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ehash_protocol::api::{MarketSummary, TradeView};
use ehash_protocol::events::TradeState;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn get<T: serde::de::DeserializeOwned>(url: &str) -> Option<T> {
    let r = bitreq::get(url).with_timeout(5).send().ok()?;
    if r.status_code != 200 {
        return None;
    }
    r.json().ok()
}

/// The first settled trade on the exchange and its market, if there is one.
fn settled(exchange: SocketAddr) -> Option<(TradeView, MarketSummary)> {
    let markets: Vec<MarketSummary> = get(&format!("http://{exchange}/api/markets"))?;
    markets.into_iter().find_map(|m| {
        let trades: Vec<TradeView> = get(&format!("http://{exchange}/api/markets/{}/trades", m.market))?;
        trades.into_iter().find(|t| t.state == TradeState::Settled).map(|t| (t, m))
    })
}

#[test]
fn on_a_busy_two_core_machine_up_settles_its_first_trade_within_a_minute() {
    let busy = Arc::new(AtomicBool::new(true));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let busy = busy.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while busy.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let exchange = free_addr();
    let started = Instant::now();
    // the settings of a first run, on free ports: no --log, no [up] keys
    let mut up = Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["up", "--data-dir"])
        .arg(dir.path())
        .env_remove("EHASH_CONFIG")
        .env_remove("RUST_LOG")
        .env("EHASH_RELAY__LISTEN", free_addr().to_string())
        .env("EHASH_MINT_BRIDGE__HTTP_LISTEN", free_addr().to_string())
        .env("EHASH_MINT_BRIDGE__STRATUM_LISTEN", free_addr().to_string())
        .env("EHASH_PROXY__LISTEN", free_addr().to_string())
        .env("EHASH_PROXY__STATUS_LISTEN", free_addr().to_string())
        .env("EHASH_EXCHANGE__LISTEN", exchange.to_string())
        .env("EHASH_SAT_MINT__LISTEN", free_addr().to_string())
        .env("EHASH_WEB__LISTEN", free_addr().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let (pipe, stderr) = (up.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                stderr.lock().unwrap().push(line);
            }
        })
    };

    let deadline = started + Duration::from_secs(60);
    let trade = loop {
        if let Some(t) = settled(exchange) {
            break Some(t);
        }
        if Instant::now() >= deadline || up.try_wait().unwrap().is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let took = started.elapsed();
    busy.store(false, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let _ = up.kill();
    let _ = up.wait();
    reader.join().unwrap();
    let stderr = stderr.lock().unwrap().join("\n");
    let (trade, market) = trade.unwrap_or_else(|| panic!("no settled trade within 60 s of starting `ehash up` on a busy machine; its stderr:\n{stderr}"));
    assert_eq!(trade.amount % 128, 0, "whole lots of 128: {trade:?}");
    println!("first trade settled {took:?} after the start: {} ehash for {} sat; a lot is worth {:?} sat", trade.amount, trade.sats, market.value);
    // the simulated traders priced the lot around what it is worth (within 5 %), a few hundred sats
    let value = market.value.expect("the market of a trade has a value");
    assert!(trade.price * 100 >= value * 95 && trade.price * 100 <= value * 105, "price {} for a lot worth {value}", trade.price);
    assert!((100..10_000).contains(&value), "a lot of the devnet is worth a readable number of sats: {value}");

    // quiet: our own lines and warnings that need action, nothing else
    for noise in ["INFO", "Could not open stream", "SLOW QUERY", "slow statement"] {
        assert!(!stderr.contains(noise), "`ehash up` printed {noise:?} on stderr:\n{stderr}");
    }
}
