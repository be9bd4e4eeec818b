//! How often a trade calls its mints (protocol §10). A buyer waiting for the seller's claim asks
//! the sat mint about its lock at most every [`POLL_SECS`] seconds; after a mint did not give a
//! definite answer (unreachable, rate-limited, a server error), the trade waits 1, 2, 4, then
//! [`MAX_BACKOFF_SECS`] seconds before it calls again. Kept in memory: after a restart the
//! agent tries each trade at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds between two questions about a lock that is waiting to be claimed.
pub const POLL_SECS: u64 = 2;
/// The longest wait after repeated failures.
pub const MAX_BACKOFF_SECS: u64 = 8;

#[derive(Debug, Clone, Copy)]
struct Entry {
    not_before: Instant,
    failures: u32,
}

/// When each trade may call a mint next.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    trades: Mutex<HashMap<String, Entry>>,
}

impl Pace {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        f(&mut self.trades.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether trade `id` may call a mint now.
    pub(crate) fn ready(&self, id: &str) -> bool {
        self.with(|m| m.get(id).is_none_or(|e| Instant::now() >= e.not_before))
    }

    /// Trade `id` just asked about its lock: the next question waits [`POLL_SECS`].
    pub(crate) fn polled(&self, id: &str) {
        self.with(|m| {
            let e = m.entry(id.to_owned()).or_insert(Entry { not_before: Instant::now(), failures: 0 });
            e.not_before = e.not_before.max(Instant::now() + Duration::from_secs(POLL_SECS));
        });
    }

    /// A mint gave trade `id` no definite answer: wait longer each time. Returns the wait.
    pub(crate) fn failed(&self, id: &str) -> Duration {
        self.with(|m| {
            let e = m.entry(id.to_owned()).or_insert(Entry { not_before: Instant::now(), failures: 0 });
            e.failures = e.failures.saturating_add(1);
            let wait = Duration::from_secs((1u64 << (e.failures - 1).min(8)).min(MAX_BACKOFF_SECS));
            e.not_before = Instant::now() + wait;
            wait
        })
    }

    /// Trade `id` moved on: no wait.
    pub(crate) fn moved(&self, id: &str) {
        self.with(|m| m.remove(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_up_to_the_cap_and_progress_resets() {
        let p = Pace::default();
        assert!(p.ready("t"));
        let waits: Vec<u64> = (0..6).map(|_| p.failed("t").as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        assert!(!p.ready("t") && p.ready("other"));
        p.moved("t");
        assert!(p.ready("t"));
        assert_eq!(p.failed("t").as_secs(), 1);
        p.moved("t");
        p.polled("t");
        assert!(!p.ready("t"));
    }
}
