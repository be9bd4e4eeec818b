//! `ehash up` as a newcomer first runs it, on a busy two-core machine: with its own settings (lot,
//! block rate, trade pace) the simulated miner earns a lot, the simulated seller offers it, the
//! simulated buyer takes it and the swap settles within the first minute, while two threads keep
//! the cores busy; the price is within 5 % of what the lot was worth when it was traded. Its standard error stays quiet meanwhile: no library's info lines and no
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

/// When a market's value was read: (unix seconds, market, value).
type Seen = Vec<(u64, String, Option<u64>)>;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The first settled trade on the exchange and its market, if there is one; every market's value
/// read on the way is added to `seen`.
fn settled(exchange: SocketAddr, seen: &mut Seen) -> Option<(TradeView, MarketSummary)> {
    let markets: Vec<MarketSummary> = get(&format!("http://{exchange}/api/markets"))?;
    let at = now();
    seen.extend(markets.iter().map(|m| (at, m.market.clone(), m.value)));
    markets.into_iter().find_map(|m| {
        let trades: Vec<TradeView> = get(&format!("http://{exchange}/api/markets/{}/trades", m.market))?;
        trades.into_iter().find(|t| t.state == TradeState::Settled).map(|t| (t, m))
    })
}

/// The values `market` had from the last read before `matched_at` (the value its traders saw
/// when they priced the trade) onwards: a block found while the trade settles moves the value.
fn values_around(seen: &Seen, market: &str, matched_at: u64) -> Vec<u64> {
    let of_market: Vec<_> = seen.iter().filter(|(_, m, _)| m == market).collect();
    let first = of_market.iter().rposition(|(t, _, _)| *t < matched_at).unwrap_or(0);
    of_market[first..].iter().filter_map(|(_, _, v)| *v).collect()
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
    let mut seen = Seen::new();
    let trade = loop {
        if let Some(t) = settled(exchange, &mut seen) {
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
    // the simulated traders priced the lot around what it was worth when they traded (within 5 %),
    // a few hundred sats
    let values = values_around(&seen, &market.market, trade.matched_at);
    assert!(!values.is_empty(), "the market of a trade has a value: {market:?}");
    assert!(
        values.iter().any(|&v| trade.price * 100 >= v * 95 && trade.price * 100 <= v * 105),
        "price {} for a lot worth {values:?} while it was traded",
        trade.price
    );
    for v in values {
        assert!((100..10_000).contains(&v), "a lot of the devnet is worth a readable number of sats: {v}");
    }

    // quiet: our own lines and warnings that need action, nothing else
    for noise in ["INFO", "Could not open stream", "SLOW QUERY", "slow statement"] {
        assert!(!stderr.contains(noise), "`ehash up` printed {noise:?} on stderr:\n{stderr}");
    }
}
