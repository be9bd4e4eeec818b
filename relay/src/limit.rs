//! Rate budgets: token buckets that refill continuously, kept per client address so that a
//! client that reconnects does not get a fresh allowance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket holding at most `per_minute` tokens and refilled continuously at
/// `per_minute` a minute: a client may burst up to a minute's allowance, then keep any steady
/// pace below the rate for ever.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    per_minute: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(per_minute: u32, now: Instant) -> Self {
        Self { tokens: f64::from(per_minute), per_minute: f64::from(per_minute), last: now }
    }

    /// Take one token at `now`, if there is one.
    pub fn take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_minute / 60.0).min(self.per_minute);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has been idle long enough to be full again at `now`.
    fn refilled_by(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= Duration::from_secs(60)
    }
}

/// What a client spends.
#[derive(Debug, Clone, Copy)]
pub enum Spend {
    /// An EVENT.
    Event,
    /// A REQ, COUNT or NEG-OPEN.
    Query,
}

#[derive(Debug)]
struct Budget {
    events: Bucket,
    queries: Bucket,
}

/// The event and query budgets of every client address seen in the last minute.
#[derive(Debug)]
pub struct Budgets {
    events_per_minute: u32,
    queries_per_minute: u32,
    by_ip: Mutex<HashMap<IpAddr, Budget>>,
}

impl Budgets {
    /// Budgets of `events_per_minute` EVENTs and `queries_per_minute` queries per address.
    pub fn new(events_per_minute: u32, queries_per_minute: u32) -> Self {
        Self { events_per_minute, queries_per_minute, by_ip: Mutex::new(HashMap::new()) }
    }

    /// Spend one token of `ip`'s budget at `now`; `false` if it is used up.
    pub fn take_at(&self, ip: IpAddr, spend: Spend, now: Instant) -> bool {
        let mut m = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        let b = m.entry(ip).or_insert_with(|| Budget {
            events: Bucket::new(self.events_per_minute, now),
            queries: Bucket::new(self.queries_per_minute, now),
        });
        match spend {
            Spend::Event => b.events.take_at(now),
            Spend::Query => b.queries.take_at(now),
        }
    }

    /// Spend one token of `ip`'s budget now.
    pub fn take(&self, ip: IpAddr, spend: Spend) -> bool {
        self.take_at(ip, spend, Instant::now())
    }

    /// Forget addresses whose buckets have refilled (a forgotten address starts full, which is
    /// what it would be anyway).
    pub fn prune_at(&self, now: Instant) {
        let mut m = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, b| !(b.events.refilled_by(now) && b.queries.refilled_by(now)));
    }

    /// Addresses currently tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.by_ip.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_client_below_the_rate_is_never_refused() {
        // 10 a second against 600 a minute, for ten minutes
        let t0 = Instant::now();
        let mut b = Bucket::new(600, t0);
        let refused = (0..6000).filter(|i| !b.take_at(t0 + Duration::from_millis(100) * *i)).count();
        assert_eq!(refused, 0);
    }

    #[test]
    fn a_burst_spends_the_minute_then_refills_continuously() {
        let t0 = Instant::now();
        let mut b = Bucket::new(60, t0);
        assert_eq!((0..100).filter(|_| b.take_at(t0)).count(), 60, "a minute's allowance at once");
        // one token a second, even when asked every quarter second
        let later: usize = (1..=40).filter(|i| b.take_at(t0 + Duration::from_millis(250) * *i)).count();
        assert_eq!(later, 10);
        // idle time does not store more than a minute's allowance
        let t1 = t0 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| b.take_at(t1)).count(), 60);
    }

    #[test]
    fn budgets_belong_to_the_address_and_outlive_its_connections() {
        let t0 = Instant::now();
        let budgets = Budgets::new(5, 5);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert_eq!((0..10).filter(|_| budgets.take_at(a, Spend::Event, t0)).count(), 5);
        assert!(!budgets.take_at(a, Spend::Event, t0), "spent, whatever connection asks");
        assert!(budgets.take_at(a, Spend::Query, t0), "queries have their own budget");
        assert!(budgets.take_at(b, Spend::Event, t0), "another address has its own");
        budgets.prune_at(t0 + Duration::from_secs(30));
        assert_eq!(budgets.tracked(), 2, "not forgotten before it refills");
        budgets.prune_at(t0 + Duration::from_secs(61));
        assert_eq!(budgets.tracked(), 0);
    }
}
