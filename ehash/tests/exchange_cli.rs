//! `ehash exchange` as an operator runs it: help texts, a standalone exchange on a relay that
//! serves its API and stops cleanly on SIGTERM, `ehash exchange verify` against it, and the
//! error when there is no exchange to verify.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ehash_protocol::market::ExchangeInfo;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn ehash(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehash")).args(args).env_remove("EHASH_CONFIG").output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn help_texts_name_the_settings() {
    let o = ehash(&["exchange", "--help"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    for needle in ["--listen", "--data-dir", "--database-url", "--relay", "--lot", "--pool", "verify", "--exchange-key", "[exchange]"] {
        assert!(out.contains(needle), "`ehash exchange --help` mentions {needle}:\n{out}");
    }
    let o = ehash(&["exchange", "verify", "--help"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    for needle in ["--exchange", "--relay", "journal", "mismatch"] {
        assert!(out.contains(needle), "`ehash exchange verify --help` mentions {needle}:\n{out}");
    }
    let o = ehash(&["--help"]);
    assert!(text(&o).0.contains("exchange"), "{}", text(&o).0);
}

#[test]
fn verify_without_an_exchange_fails_and_says_why() {
    let o = ehash(&["--log", "error", "exchange", "verify", "--exchange", "http://127.0.0.1:9"]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "verify must fail: {out}{err}");
    assert!(err.contains("cannot verify the exchange at http://127.0.0.1:9"), "{err}");
    assert!(err.contains("is the exchange running?"), "{err}");
    assert!(err.contains("--exchange URL"), "{err}");
}

#[test]
fn bad_flags_are_named() {
    let o = ehash(&["exchange", "--pool", "not-a-key", "--listen", "127.0.0.1:0"]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}{err}");
    assert!(err.contains("--pool \"not-a-key\" is not a nostr public key"), "{err}");
}

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn spawn(args: &[String]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ehash"))
        .args(args)
        .env_remove("EHASH_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = ehash_testkit::stdout_lines(&mut child);
    Running { child, lines }
}

impl Running {
    /// The first output line starting with `prefix`.
    fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the line in time");
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exits cleanly on SIGTERM: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_standalone_exchange_serves_its_api_verifies_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (relay_addr, api) = (free_addr(), free_addr());
    let exchange_dir = dir.path().join("exchange");
    std::fs::create_dir_all(&exchange_dir).unwrap();
    // the relay accepts the exchange's trade events: give it the key the exchange will use
    let key = "6b911fd37cdf5c81d4c0adb1ab7fa822ed253ab0ad9aa18d77257c88b29b718e";
    let pubkey = nostr_sdk::prelude::Keys::parse(key).unwrap().public_key().to_hex();
    std::fs::write(exchange_dir.join("nostr.key"), key).unwrap();
    let s = |v: &str| v.to_owned();
    let relay = spawn(&[
        s("--log"),
        s("warn"),
        s("relay"),
        s("--listen"),
        relay_addr.to_string(),
        s("--data-dir"),
        dir.path().join("relay").display().to_string(),
        s("--exchange-key"),
        pubkey.clone(),
    ]);
    relay.line("relay");
    let ex = spawn(&[
        s("--log"),
        s("warn"),
        s("exchange"),
        s("--listen"),
        api.to_string(),
        s("--data-dir"),
        exchange_dir.display().to_string(),
        s("--relay"),
        format!("ws://{relay_addr}"),
        s("--lot"),
        s("16"),
    ]);
    let url = ex.line("exchange ");
    assert!(url.contains(&format!("http://{api}")), "{url}");
    let key_line = ex.line("pubkey ");
    assert!(key_line.contains(&pubkey), "the exchange uses the key in its data directory: {key_line}");

    let r = bitreq::get(format!("http://{api}/api/info")).with_timeout(10).send().unwrap();
    assert_eq!(r.status_code, 200);
    let info: ExchangeInfo = r.json().unwrap();
    assert_eq!((info.lot, info.pubkey.as_str()), (16, pubkey.as_str()));
    assert_eq!(info.relays, vec![format!("ws://{relay_addr}")]);

    let o = ehash(&["--log", "warn", "exchange", "verify", "--exchange", &format!("http://{api}")]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("markets     0 replayed, 0 journal entries"), "{out}");
    assert!(out.contains("trades      0 expected by the replay, 0 published on the relays"), "{out}");
    assert!(out.contains("OK: "), "{out}");

    ex.terminate();
    relay.terminate();
}
