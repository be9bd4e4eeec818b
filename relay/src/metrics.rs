//! Prometheus metrics, rendered in the text exposition format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the query-latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The relay's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    connections: AtomicI64,
    connections_total: AtomicU64,
    connections_refused: Mutex<BTreeMap<&'static str, u64>>,
    events_accepted: AtomicU64,
    events_rejected: Mutex<BTreeMap<String, u64>>,
    reqs: AtomicU64,
    slow_consumers: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_refused(&self, reason: &'static str) {
        if let Ok(mut m) = self.connections_refused.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// Open connections now.
    pub fn open_connections(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub(crate) fn event_accepted(&self) {
        self.events_accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a refused event by the machine-readable prefix of its reason (`blocked`, `invalid`, …).
    pub(crate) fn event_rejected(&self, message: &str) {
        let reason = message.split(':').next().unwrap_or("").trim();
        let reason = if reason.is_empty() || reason.len() > 32 || reason.contains(' ') { "other" } else { reason };
        if let Ok(mut m) = self.events_rejected.lock() {
            *m.entry(reason.to_owned()).or_default() += 1;
        }
    }

    /// Refused events with this reason so far.
    pub fn rejected(&self, reason: &str) -> u64 {
        self.events_rejected.lock().map(|m| m.get(reason).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Accepted events so far.
    pub fn accepted(&self) -> u64 {
        self.events_accepted.load(Ordering::Relaxed)
    }

    pub(crate) fn req(&self) {
        self.reqs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }

    /// Record the time from a REQ to its EOSE.
    pub(crate) fn query_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# HELP ehash_relay_connections Open WebSocket connections.\n# TYPE ehash_relay_connections gauge");
        let _ = writeln!(o, "ehash_relay_connections {}", self.connections.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP ehash_relay_connections_total Connections accepted since start.\n# TYPE ehash_relay_connections_total counter");
        let _ = writeln!(o, "ehash_relay_connections_total {}", self.connections_total.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP ehash_relay_connections_refused_total Connections refused, by reason.\n# TYPE ehash_relay_connections_refused_total counter");
        if let Ok(m) = self.connections_refused.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(o, "ehash_relay_connections_refused_total{{reason=\"{reason}\"}} {n}");
            }
        }
        let _ = writeln!(o, "# HELP ehash_relay_events_total Events received, by outcome and reason.\n# TYPE ehash_relay_events_total counter");
        let _ = writeln!(o, "ehash_relay_events_total{{outcome=\"accepted\"}} {}", self.events_accepted.load(Ordering::Relaxed));
        if let Ok(m) = self.events_rejected.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(o, "ehash_relay_events_total{{outcome=\"rejected\",reason=\"{reason}\"}} {n}");
            }
        }
        let _ = writeln!(o, "# HELP ehash_relay_reqs_total REQ messages.\n# TYPE ehash_relay_reqs_total counter");
        let _ = writeln!(o, "ehash_relay_reqs_total {}", self.reqs.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP ehash_relay_slow_consumers_total Clients disconnected for not reading.\n# TYPE ehash_relay_slow_consumers_total counter");
        let _ = writeln!(o, "ehash_relay_slow_consumers_total {}", self.slow_consumers.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP ehash_relay_query_seconds Time from REQ to EOSE.\n# TYPE ehash_relay_query_seconds histogram");
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(o, "ehash_relay_query_seconds_bucket{{le=\"{bound}\"}} {}", bucket.load(Ordering::Relaxed));
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(o, "ehash_relay_query_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(o, "ehash_relay_query_seconds_sum {}", self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(o, "ehash_relay_query_seconds_count {count}");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.connection_opened();
        m.event_accepted();
        m.event_rejected("blocked: kind 1 is not accepted");
        m.event_rejected("invalid: d: missing tag");
        m.event_rejected("weird message without prefix");
        m.query_latency(Duration::from_millis(3));
        let t = m.render();
        assert!(t.contains("ehash_relay_connections 1\n"));
        assert!(t.contains("ehash_relay_events_total{outcome=\"rejected\",reason=\"blocked\"} 1"));
        assert!(t.contains("ehash_relay_events_total{outcome=\"rejected\",reason=\"other\"} 1"));
        assert!(t.contains("ehash_relay_query_seconds_bucket{le=\"0.005\"} 1"));
        assert!(t.contains("ehash_relay_query_seconds_bucket{le=\"0.002\"} 0"));
        assert!(t.contains("ehash_relay_query_seconds_count 1"));
    }
}
