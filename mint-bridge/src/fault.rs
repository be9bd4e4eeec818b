//! Fault points for crash tests: `EHASH_TEST_FAULT=<name>` makes the process abort (as a
//! `kill -9` would stop it) when it reaches the point of that name. Unset, a point does nothing.

use std::sync::OnceLock;

/// Abort here if `EHASH_TEST_FAULT` names this point.
pub(crate) fn point(name: &str) {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    if FAULT.get_or_init(|| std::env::var("EHASH_TEST_FAULT").ok()).as_deref() == Some(name) {
        eprintln!("EHASH_TEST_FAULT: aborting at {name}");
        std::process::abort();
    }
}
