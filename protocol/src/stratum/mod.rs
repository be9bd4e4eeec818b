//! Stratum V1: messages, share validation and the ehash username convention.

pub mod client;
pub mod messages;
pub mod share;

use crate::error::IdentError;

/// A `mining.authorize` username: `<quote-id>` or `<quote-id>.<worker>`.
///
/// The quote id names the NUT-20-locked ehash mint quote that the connection's shares credit;
/// the worker name is free text for the miner's own bookkeeping. Cashu quote ids (UUIDs or
/// base64url) never contain a dot, so the first dot separates the two.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username {
    /// The ehash quote id.
    pub quote_id: String,
    /// The worker name, if any.
    pub worker: Option<String>,
}

/// The longest worker name, in bytes (it is stored with every share).
pub const MAX_WORKER_BYTES: usize = 64;

impl Username {
    /// Parse a username.
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        let (quote, worker) = match s.split_once('.') {
            Some((q, w)) => (q, Some(w.to_owned())),
            None => (s, None),
        };
        if quote.is_empty() || quote.len() > 128 || quote.chars().any(|c| c.is_whitespace()) {
            return Err(IdentError::BadUsername(s.to_owned()));
        }
        if let Some(w) = worker.as_deref()
            && w.len() > MAX_WORKER_BYTES
        {
            return Err(IdentError::WorkerTooLong { bytes: w.len(), max: MAX_WORKER_BYTES });
        }
        Ok(Self {
            quote_id: quote.to_owned(),
            worker: worker.filter(|w| !w.is_empty()),
        })
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.worker {
            Some(w) => write!(f, "{}.{}", self.quote_id, w),
            None => f.write_str(&self.quote_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        let u = Username::parse("0190f6a1-7c1e-7cc3-9d1a-2b5e7f000001.rig7").unwrap();
        assert_eq!(u.quote_id, "0190f6a1-7c1e-7cc3-9d1a-2b5e7f000001");
        assert_eq!(u.worker.as_deref(), Some("rig7"));
        assert_eq!(Username::parse("abc").unwrap().worker, None);
        assert_eq!(Username::parse("abc.").unwrap().worker, None);
        assert!(Username::parse("").is_err());
        assert!(Username::parse(".w").is_err());
        assert!(Username::parse("a b.w").is_err());
        assert!(Username::parse(&format!("q.{}", "w".repeat(MAX_WORKER_BYTES))).is_ok());
        assert_eq!(
            Username::parse(&format!("q.{}", "w".repeat(65))).unwrap_err(),
            IdentError::WorkerTooLong { bytes: 65, max: MAX_WORKER_BYTES }
        );
    }
}
