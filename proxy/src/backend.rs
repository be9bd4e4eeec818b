//! The proxy's backend for its downstream Stratum server: local workers, every share forwarded
//! upstream (a miner's job is never easier than the pool's), each forwarded share logged for the
//! audit with the credit its assigned difficulty earns.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ehash_protocol::stratum::messages::ErrorCode;
use ehash_protocol::work::UnitSize;
use ehash_stratum::{Backend, Refusal, Work};
use tokio::sync::watch;

use crate::audit::LoggedShare;
use crate::earn::Earner;
use crate::upstream::{MINER_ID_BYTES, Upstream, upstream_target};

/// Counters of forwarding.
#[derive(Debug, Default)]
pub struct Forwarding {
    /// Shares the pool accepted.
    pub forwarded: AtomicU64,
}

/// The proxy's backend.
pub struct ProxyBackend {
    upstream: Upstream,
    earner: Arc<Earner>,
    forwarding: Arc<Forwarding>,
    miner_ids: Mutex<(u16, HashSet<u16>)>,
    notices: watch::Sender<u64>,
}

impl std::fmt::Debug for ProxyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBackend").finish_non_exhaustive()
    }
}

impl ProxyBackend {
    /// A backend forwarding through `upstream`.
    pub fn new(upstream: Upstream, earner: Arc<Earner>, forwarding: Arc<Forwarding>) -> Self {
        Self { upstream, earner, forwarding, miner_ids: Mutex::new((1, HashSet::new())), notices: watch::channel(0).0 }
    }
}

#[async_trait]
impl Backend for ProxyBackend {
    type Worker = String;

    async fn authorize(&self, username: &str) -> Result<String, Refusal> {
        let name = username.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(Refusal::new(ErrorCode::Unauthorized, "worker name must be 1 to 128 characters"));
        }
        Ok(name.to_owned())
    }

    async fn submit(&self, worker: &String, work: &Work) -> Result<u64, Refusal> {
        let Some(job) = self.upstream.job(&work.template.source_job_id) else {
            return Err(Refusal::new(ErrorCode::JobNotFound, "stale job: the pool replaced it or the connection to the pool was renewed"));
        };
        let Some(target) = upstream_target(job.difficulty) else {
            return Err(Refusal::new(ErrorCode::Unavailable, "the pool sent an unusable difficulty"));
        };
        if !target.is_met_by(work.hash) {
            // cannot happen while a miner's job is never easier than the pool's; answering `true`
            // for a share the pool would not credit would short the miner
            return Err(Refusal::new(ErrorCode::JobNotFound, "stale job: the pool raised its difficulty; take the new job"));
        }
        // the pool's extranonce2: our job's difficulty tag, the miner's id, the miner's extranonce2
        let mut extranonce2 = vec![work.tag];
        extranonce2.extend_from_slice(&work.extranonce1);
        extranonce2.extend_from_slice(&work.extranonce2);
        let version = work.header.version.to_consensus() as u32;
        self.upstream.submit(&job.job_id, &extranonce2, work.ntime, work.nonce, work.version_bits, version).await?;
        self.forwarding.forwarded.fetch_add(1, Ordering::Relaxed);
        // the pool owes the work of the difficulty this proxy assigned the miner (which the
        // share's coinbase declares), not whatever the pool's job said
        let (quote_id, unit, unit_log2) = self.earner.current().await;
        let expected = UnitSize::new(unit_log2).and_then(|u| u.credit(work.difficulty)).unwrap_or(0);
        let logged = LoggedShare { share_id: work.hash.to_string(), quote_id, unit, expected, worker: worker.clone() };
        if let Err(e) = self.earner.audit().record(&logged).await {
            tracing::warn!(error = %e, "could not log an accepted share for the audit");
        }
        Ok(expected)
    }

    fn notices(&self) -> watch::Receiver<u64> {
        self.notices.subscribe()
    }

    async fn notice_for(&self, _worker: &String) -> Option<String> {
        None
    }

    fn allocate_extranonce1(&self, resume: Option<&[u8]>) -> Option<Vec<u8>> {
        let mut ids = self.miner_ids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = resume.and_then(|r| <[u8; MINER_ID_BYTES]>::try_from(r).ok()).map(u16::from_be_bytes)
            && ids.1.insert(r) {
                return Some(r.to_be_bytes().to_vec());
            }
        for _ in 0..=u16::MAX {
            let v = ids.0;
            ids.0 = ids.0.wrapping_add(1);
            if ids.1.insert(v) {
                return Some(v.to_be_bytes().to_vec());
            }
        }
        None
    }

    fn release_extranonce1(&self, extranonce1: &[u8]) {
        if let Ok(b) = <[u8; MINER_ID_BYTES]>::try_from(extranonce1) {
            self.miner_ids.lock().unwrap_or_else(|p| p.into_inner()).1.remove(&u16::from_be_bytes(b));
        }
    }
}
