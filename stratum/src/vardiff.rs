//! Per-connection variable difficulty in powers of two.
//!
//! Every `retarget` interval the observed share rate is compared with the target rate; the
//! difficulty moves by as many doublings (or halvings) as the rate is off by whole factors of
//! two, within `[min, max]`. Integer arithmetic only.

use std::time::{Duration, Instant};

use ehash_protocol::work::DifficultyExp;

/// Vardiff state of one connection.
#[derive(Debug, Clone)]
pub struct Vardiff {
    current: DifficultyExp,
    min: DifficultyExp,
    max: DifficultyExp,
    target_share: Duration,
    retarget: Duration,
    window_start: Instant,
    shares: u64,
    /// Whether any share was accepted yet.
    accepted_any: bool,
}

impl Vardiff {
    /// Start at `initial`, clamped to `[min, max]`.
    pub fn new(initial: DifficultyExp, min: DifficultyExp, max: DifficultyExp, target_share: Duration, retarget: Duration, now: Instant) -> Self {
        let current = initial.clamp(min, max);
        Self { current, min, max, target_share: target_share.max(Duration::from_millis(1)), retarget, window_start: now, shares: 0, accepted_any: false }
    }

    /// The difficulty in force.
    pub fn current(&self) -> DifficultyExp {
        self.current
    }

    /// A miner's `mining.suggest_difficulty`, within `[min, max]`: it becomes the floor if it
    /// is above it. Before the first accepted share it sets the difficulty (a small miner may ask
    /// for easy work at once); after that it can only raise it, so a miner cannot undo what
    /// vardiff measured and flood the pool with easy shares by asking again.
    pub fn suggest(&mut self, d: DifficultyExp, now: Instant) -> DifficultyExp {
        let d = d.clamp(self.min, self.max);
        self.min = self.min.max(d);
        if self.accepted_any {
            self.current = self.current.max(d);
        } else {
            self.current = d;
            self.window_start = now;
            self.shares = 0;
        }
        self.current
    }

    /// Keep the difficulty within `[lo, hi]` (e.g. what the job's source credits), without
    /// restarting the measurement.
    pub fn confine(&mut self, lo: DifficultyExp, hi: DifficultyExp) -> DifficultyExp {
        self.current = self.current.clamp(lo, hi.max(lo));
        self.current
    }

    /// Raise the floor (e.g. BIP310 `minimum-difficulty`).
    pub fn raise_min(&mut self, d: DifficultyExp) {
        self.min = d.clamp(self.min, self.max);
        self.current = self.current.max(self.min);
    }

    /// Count an accepted share; returns a new difficulty when it should change.
    pub fn on_share(&mut self, now: Instant) -> Option<DifficultyExp> {
        self.shares += 1;
        self.accepted_any = true;
        self.retarget(now)
    }

    /// Re-evaluate (also called on a timer, so silent miners get easier work).
    pub fn retarget(&mut self, now: Instant) -> Option<DifficultyExp> {
        let elapsed = now.saturating_duration_since(self.window_start);
        let expected_ms = self.target_share.as_millis().max(1);
        // a burst of shares far above the target rate retargets early
        let early = self.shares >= 16 && (elapsed.as_millis() * 4) < self.shares as u128 * expected_ms;
        if elapsed < self.retarget && !early {
            return None;
        }
        let elapsed_ms = elapsed.as_millis().max(1);
        // shares expected in the window at the target rate, scaled by 1000 for precision
        let expected = elapsed_ms * 1000 / expected_ms;
        let observed = u128::from(self.shares) * 1000;
        let mut steps: i32 = 0;
        let (mut lo, mut hi) = (observed, expected.max(1));
        while lo >= hi * 2 && steps < 16 {
            lo /= 2;
            steps += 1;
        }
        while lo * 2 <= hi && steps > -16 {
            hi /= 2;
            steps -= 1;
        }
        self.window_start = now;
        self.shares = 0;
        if steps == 0 {
            return None;
        }
        let target = DifficultyExp::new(self.current.exp().saturating_add(steps)).unwrap_or(if steps > 0 { self.max } else { self.min });
        let next = target.clamp(self.min, self.max);
        if next == self.current {
            return None;
        }
        self.current = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(e: i32) -> DifficultyExp {
        DifficultyExp::new(e).unwrap()
    }

    #[test]
    fn fast_miners_get_harder_work_and_silent_ones_easier() {
        let t0 = Instant::now();
        let mut v = Vardiff::new(d(0), d(-4), d(20), Duration::from_secs(10), Duration::from_secs(60), t0);
        // one share every 1.25 s at a 10 s target: 8x too fast
        let mut changes = vec![];
        for i in 1..=48u64 {
            if let Some(n) = v.on_share(t0 + Duration::from_millis(i * 1250)) {
                changes.push(n);
            }
        }
        assert!(!changes.is_empty());
        assert!(v.current() >= d(2), "{:?}", v.current());
        // then nothing for a long time: easier, down to the floor at most
        let later = t0 + Duration::from_secs(660);
        let before = v.current();
        assert!(v.retarget(later).unwrap() < before);
        for k in 1..20 {
            v.retarget(later + Duration::from_secs(600 * k));
        }
        assert_eq!(v.current(), d(-4));
    }

    #[test]
    fn suggestions_set_the_start_and_then_only_raise() {
        let t0 = Instant::now();
        let mut v = Vardiff::new(d(10), d(-20), d(20), Duration::from_secs(10), Duration::from_secs(60), t0);
        assert_eq!(v.suggest(d(-30), t0), d(-20), "never below the pool's minimum");
        assert_eq!(v.suggest(d(-5), t0), d(-5), "before any share a miner picks its start");
        v.on_share(t0);
        assert_eq!(v.suggest(d(-10), t0), d(-5), "after a share a suggestion cannot lower it");
        assert_eq!(v.suggest(d(3), t0), d(3));
        // the suggestion is a floor vardiff keeps
        for k in 1..20 {
            v.retarget(t0 + Duration::from_secs(600 * k));
        }
        assert_eq!(v.current(), d(3));
        assert_eq!(v.confine(d(5), d(8)), d(5));
        assert_eq!(v.confine(d(-1), d(1)), d(1));
    }

    #[test]
    fn on_target_rate_keeps_difficulty() {
        let t0 = Instant::now();
        let mut v = Vardiff::new(d(5), d(0), d(20), Duration::from_secs(10), Duration::from_secs(60), t0);
        for i in 1..=6 {
            v.on_share(t0 + Duration::from_secs(i * 10 - 1));
        }
        assert_eq!(v.retarget(t0 + Duration::from_secs(60)), None);
        assert_eq!(v.current(), d(5));
    }
}
