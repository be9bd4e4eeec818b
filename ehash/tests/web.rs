//! The web UI in headless Chromium (Debian's chromium, driven by playwright-core from
//! `web/ui/tests/e2e.mjs`) against `ehash up`: the page loads the market, receives sats by
//! Lightning, takes the simulated seller's ask (a Rust agent) and settles the swap in the
//! browser, with both balances changing; then it sells into a bid whose buyer never locks and
//! gets its ehash back after the locktime. On the way it sends and receives a token, places,
//! edits and cancels an offer, exports its nsec, and a second browser restores the wallet from
//! the relay's NIP-60 backup with that nsec alone. It also trusts mints only when the user says
//! so: a deposit, a pasted token of an unknown mint (which the page does not contact before the
//! user looks it up) and a take at a sat mint the user stopped trusting each show the trust
//! prompt first, and nothing is published or locked before the user agrees; and an open ask's
//! ehash is reserved: a token of it is refused until the offer is cancelled. It shows what a lot
//! and the wallet's ehash are worth, and warns before selling far below that. Once the epoch it
//! bought matures it redeems the ehash for sats and pays a Lightning invoice with them. The
//! exchange's own record of both trades is checked here, independently of the page.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ehash_protocol::api::{MarketSummary, TradeView};
use ehash_protocol::events::TradeState;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The browser and the test driver's node modules, or why the test cannot run.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var("EHASH_CHROMIUM").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!("no Chromium at {} (apt-get install chromium, or set EHASH_CHROMIUM)", chromium.display()));
    }
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/ui");
    if !ui.join("node_modules/playwright-core").exists() {
        return Err(format!("web/ui has no node_modules (cd {} && npm ci)", ui.display()));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("no node on PATH".into());
    }
    Ok((chromium, ui))
}

fn get<T: serde::de::DeserializeOwned>(url: &str) -> Option<T> {
    let r = bitreq::get(url).with_timeout(10).send().ok()?;
    (r.status_code == 200).then(|| r.json().ok()).flatten()
}

/// Every trade the exchange knows, over all markets.
fn trades(exchange: SocketAddr) -> Vec<TradeView> {
    let markets: Vec<MarketSummary> = get(&format!("http://{exchange}/api/markets")).unwrap_or_default();
    markets.iter().flat_map(|m| get::<Vec<TradeView>>(&format!("http://{exchange}/api/markets/{}/trades?limit=500", m.market)).unwrap_or_default()).collect()
}

/// Wait until the exchange shows a trade that satisfies `pred` (it learns each step by polling
/// the mints).
fn wait_trade(exchange: SocketAddr, what: &str, pred: impl Fn(&TradeView) -> bool) -> TradeView {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = trades(exchange);
        if let Some(t) = all.iter().find(|t| pred(t)) {
            return t.clone();
        }
        assert!(Instant::now() < deadline, "no {what} trade at the exchange: {all:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Run one scenario of the browser test; panics with its output on failure.
fn scenario(ui: &Path, chromium: &Path, name: &str, web: SocketAddr, profile: &Path, shots: &Path, backup_of: &Path) {
    let out = Command::new("node")
        .arg("tests/e2e.mjs")
        .current_dir(ui)
        .env("WEB_URL", format!("http://{web}"))
        .env("CHROMIUM", chromium)
        .env("PROFILE", profile)
        .env("SHOTS", shots)
        .env("SCENARIO", name)
        .env("LOT", "8")
        .env("BACKUP_OF", backup_of)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success() && stdout.contains(&format!("ok {name}")), "browser scenario {name} failed (screenshots in {}):\n{stdout}\n{stderr}", shots.display());
}

/// Run one of the page's node unit test files; it prints `ok <name>` on success.
fn node_unit(file: &str, name: &str) {
    let ui = match tools() {
        Ok((_, ui)) => ui,
        Err(why) => {
            ehash_testkit::skip_or_fail::<()>(&why);
            return;
        }
    };
    let out = Command::new("node").arg(file).current_dir(&ui).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(&format!("ok {name}")), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// The page's pure money code in node (`web/ui/tests/unit.mjs`): the strict NUT-14 secret reader
/// the buyer relies on before locking sats, lock face values, amount splits.
#[test]
fn the_page_reads_htlc_secrets_as_strictly_as_a_mint() {
    node_unit("tests/unit.mjs", "unit");
}

/// What open offers reserve in the page's wallet (`web/ui/tests/reserve.mjs`): an ask its
/// ehash, a bid its sats, a trade not locked yet its side; spending it is refused, saying why.
#[test]
fn the_page_reserves_what_open_offers_need() {
    node_unit("tests/reserve.mjs", "reserve");
}

#[test]
fn a_browser_buys_ehash_from_a_rust_agent_and_gets_a_refund_when_its_buyer_vanishes() {
    let (chromium, ui) = match tools() {
        Ok(t) => t,
        Err(why) => {
            ehash_testkit::skip_or_fail::<()>(&why);
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (relay, http, stratum, proxy, status, exchange, sat_mint, web) =
        (free_addr(), free_addr(), free_addr(), free_addr(), free_addr(), free_addr(), free_addr(), free_addr());
    let mut up = Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(["--log", "warn", "up", "--data-dir"])
        .arg(dir.path().join("up"))
        .env_remove("EHASH_CONFIG")
        .env("EHASH_RELAY__LISTEN", relay.to_string())
        .env("EHASH_MINT_BRIDGE__HTTP_LISTEN", http.to_string())
        .env("EHASH_MINT_BRIDGE__STRATUM_LISTEN", stratum.to_string())
        .env("EHASH_PROXY__LISTEN", proxy.to_string())
        .env("EHASH_PROXY__STATUS_LISTEN", status.to_string())
        .env("EHASH_EXCHANGE__LISTEN", exchange.to_string())
        .env("EHASH_SAT_MINT__LISTEN", sat_mint.to_string())
        .env("EHASH_WEB__LISTEN", web.to_string())
        .env("EHASH_UP__NETWORK_DIFFICULTY_EXP", "-9")
        .env("EHASH_UP__MINT_SECS", "1")
        .env("EHASH_UP__LOT", "8")
        .env("EHASH_UP__TRADE_SECS", "2")
        .env("EHASH_UP__SIMULATE_BUYER", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let profile = dir.path().join("chromium-profile");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    let result = std::panic::catch_unwind(|| {
        // the simulated seller asks once the miner has earned a lot
        let deadline = Instant::now() + Duration::from_secs(120);
        while !get::<Vec<MarketSummary>>(&format!("http://{exchange}/api/markets")).unwrap_or_default().iter().any(|m| m.ask.is_some()) {
            assert!(Instant::now() < deadline, "the simulated seller never asked");
            std::thread::sleep(Duration::from_millis(500));
        }

        scenario(&ui, &chromium, "buy", web, &profile, &shots, &profile);
        // the exchange agrees: one settled trade, and its buyer is not the simulated seller
        let bought = wait_trade(exchange, "settled", |t| t.state == TradeState::Settled);
        assert_eq!(bought.amount, 8);
        // another browser with the same nsec restores the wallet from the relay (NIP-60)
        scenario(&ui, &chromium, "restore", web, &dir.path().join("second-profile"), &shots, &profile);

        // a buyer that bids and never runs its agent (`--no-wait`), far below the seller's asks
        let buyer = dir.path().join("buyer");
        let unit = bought.event["tags"].as_array().unwrap().iter().find(|t| t[0] == "unit").unwrap()[1].as_str().unwrap().to_owned();
        let cli = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_ehash"))
                .args(["--log", "warn"])
                .args(args)
                .env_remove("EHASH_CONFIG")
                .output()
                .unwrap();
            assert!(out.status.success(), "ehash {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        };
        let (b, mint, sats, ex) = (buyer.to_str().unwrap(), format!("http://{http}"), format!("http://{sat_mint}"), format!("http://{exchange}"));
        cli(&["wallet", "--dir", b, "--mint-url", &mint, "init"]);
        cli(&["wallet", "--dir", b, "--mint-url", &mint, "--sat-mint", &sats, "deposit", "50"]);
        cli(&["trade", "--dir", b, "--mint-url", &mint, "--exchange", &ex, "--sat-mint", &sats, "offer", "--side", "buy", "--unit", &unit, "--amount", "8", "--price", "1", "--no-wait"]);

        scenario(&ui, &chromium, "refund", web, &profile, &shots, &profile);
        let sold = wait_trade(exchange, "refunded", |t| t.price == 1 && t.state == TradeState::Refunded);
        assert_eq!(sold.blame.as_deref(), Some("buyer"), "{sold:#?}");

        // the epoch bought matures: the browser redeems its ehash and pays an invoice with the sats
        scenario(&ui, &chromium, "redeem", web, &profile, &shots, &profile);
    });
    let _ = up.kill();
    let _ = up.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
