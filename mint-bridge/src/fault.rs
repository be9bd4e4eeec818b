//! Fault points for tests of faults that cannot be made otherwise: `EHASH_TEST_FAULT=<name>`
//! makes the process abort (as a `kill -9` would stop it) when it reaches the point of that
//! name, or turns on the fault of that name. Unset, nothing happens.

use std::sync::OnceLock;

/// Whether `EHASH_TEST_FAULT` names this fault.
pub(crate) fn active(name: &str) -> bool {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    FAULT.get_or_init(|| std::env::var("EHASH_TEST_FAULT").ok()).as_deref() == Some(name)
}

/// Abort here if `EHASH_TEST_FAULT` names this point.
pub(crate) fn point(name: &str) {
    if active(name) {
        eprintln!("EHASH_TEST_FAULT: aborting at {name}");
        std::process::abort();
    }
}
