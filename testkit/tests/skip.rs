//! A test that could not run its checks says so where the person running the suite sees it:
//! the harness captures what passing tests print, and a skipped test passes.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;

/// Stands for a suite whose service is missing; run only by the test below, as a child process.
#[test]
#[ignore = "run by a_skipped_test_says_so_in_the_runs_output"]
fn a_suite_whose_service_is_missing() {
    if std::env::var_os("EHASH_SKIP_PROBE").is_some() {
        ehash_testkit::skip_or_fail::<()>("no frobnicator on PATH");
    }
}

#[test]
fn a_skipped_test_says_so_in_the_runs_output() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "a_suite_whose_service_is_missing"])
        .env("EHASH_SKIP_PROBE", "1")
        .env_remove("EHASH_REQUIRE_EXTERNAL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("SKIPPED a_suite_whose_service_is_missing: no frobnicator on PATH (set EHASH_REQUIRE_EXTERNAL=1 to make this a failure)"),
        "the run's output names the skipped test, why and how to run it: {stderr:?}"
    );

    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "a_suite_whose_service_is_missing"])
        .env("EHASH_SKIP_PROBE", "1")
        .env("EHASH_REQUIRE_EXTERNAL", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "with EHASH_REQUIRE_EXTERNAL=1 a missing service fails the test");
    assert!(String::from_utf8_lossy(&out.stdout).contains("EHASH_REQUIRE_EXTERNAL=1 but no frobnicator on PATH"));
}
