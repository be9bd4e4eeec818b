//! # ehash-testkit
//!
//! Real external services for tests. [`postgres::PgCluster`] starts a throwaway PostgreSQL
//! cluster with `initdb` and `postgres` in a temporary directory; [`market::Market`] starts a
//! relay, a pool mint-bridge and a sat mint; [`front::Front`] stands before a mint and makes it
//! rate-limit, fail or stall on chosen requests; [`gate::Gate`] cuts one client's connection to a
//! server.
//!
//! Tests that need a service the machine lacks skip with a message, unless
//! `EHASH_REQUIRE_EXTERNAL=1` is set (as `.ci/run` does), in which case they fail.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod front;
pub mod gate;
pub mod market;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;

/// Whether missing external services must fail tests instead of skipping them.
pub fn external_required() -> bool {
    std::env::var("EHASH_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1")
}

/// Skip (say why and return `None`) or, when services are required, panic.
pub fn skip_or_fail<T>(why: &str) -> Option<T> {
    if external_required() {
        panic!("EHASH_REQUIRE_EXTERNAL=1 but {why}");
    }
    skipped(&format!("{why} (set EHASH_REQUIRE_EXTERNAL=1 to make this a failure)"));
    None
}

/// Say that the running test did not run its checks, and why, where the person running the
/// suite sees it. The test harness captures `eprintln!` of passing tests (a skipped test passes),
/// so this writes to the process's standard error directly, naming the test (the harness names
/// each test's thread after it).
pub fn skipped(why: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// The lines a child process (spawned with `stdout(Stdio::piped())`) prints, read by a thread.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    lines
}
