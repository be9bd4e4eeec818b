//! What a Stratum V1 server does with work: the [`Backend`] trait.
//!
//! The server handles the protocol (subscribe, authorize, configure, vardiff, jobs, exact share
//! validation); a backend decides who may mine (authorize), what an accepted share is worth and
//! where it goes (submit), and what happens when a share is a block. The pool credits ehash; the
//! proxy forwards upstream.

use std::sync::Arc;

use async_trait::async_trait;
use bitcoin::BlockHash;
use bitcoin::block::Header;
use ehash_protocol::stratum::messages::ErrorCode;
use ehash_protocol::work::DifficultyExp;
use tokio::sync::watch;

use crate::job::Template;

/// A refusal sent to the miner as `[code, message, null]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The SV1 error code.
    pub code: ErrorCode,
    /// What happened and what to do.
    pub message: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// A share that passed validation: the job it was for and everything the miner submitted.
#[derive(Debug, Clone)]
pub struct Work {
    /// The template the job was built from.
    pub template: Arc<Template>,
    /// The rebuilt header.
    pub header: Header,
    /// Its hash.
    pub hash: BlockHash,
    /// The difficulty the share is credited at: the job's, or the one the miner declared
    /// (`ehash-share-difficulty`), which is never below the job's.
    pub difficulty: DifficultyExp,
    /// The job's difficulty tag, the coinbase byte between `coinb1` and extranonce1
    /// (protocol §4): every job's coinbase commits to the difficulty it was sent with.
    pub tag: u8,
    /// The connection's extranonce1.
    pub extranonce1: Vec<u8>,
    /// The submitted extranonce2.
    pub extranonce2: Vec<u8>,
    /// Submitted ntime.
    pub ntime: u32,
    /// Submitted nonce.
    pub nonce: u32,
    /// Submitted version bits (BIP310), if any.
    pub version_bits: Option<u32>,
    /// Whether the hash meets the job's network target.
    pub is_block: bool,
    /// Whether the hash meets the share's target. Only a block may miss it: it still goes to the
    /// network, but earns nothing (the backend refuses it with error 23).
    pub meets_target: bool,
    /// The username the share was submitted for.
    pub username: String,
}

impl Work {
    /// The share's full coinbase transaction (legacy serialization):
    /// `coinb1 ‖ tag ‖ extranonce1 ‖ extranonce2 ‖ coinb2`.
    pub fn coinbase(&self) -> Vec<u8> {
        let job = &self.template.job;
        let mut cb = Vec::with_capacity(job.coinb1.len() + 1 + self.extranonce1.len() + self.extranonce2.len() + job.coinb2.len());
        cb.extend_from_slice(&job.coinb1);
        cb.push(self.tag);
        cb.extend_from_slice(&self.extranonce1);
        cb.extend_from_slice(&self.extranonce2);
        cb.extend_from_slice(&job.coinb2);
        cb
    }
}

/// The policy and effects behind a Stratum V1 server.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// What an authorized worker is bound to (e.g. an ehash quote).
    type Worker: Clone + Send + Sync + 'static;

    /// Authorize a username, or refuse it.
    async fn authorize(&self, username: &str) -> Result<Self::Worker, Refusal>;

    /// Take a validated share; returns the amount it earned (for statistics), or a refusal.
    /// The server answers `true` only after this returns `Ok`. A share that is a block
    /// (`work.is_block`) is the backend's to hand to the network, before anything that can wait.
    /// A connection may have many submissions in flight at once; their answers go out in order.
    async fn submit(&self, worker: &Self::Worker, work: &Work) -> Result<u64, Refusal>;

    /// A counter that changes whenever workers may need to hear something (e.g. a new epoch).
    fn notices(&self) -> watch::Receiver<u64>;

    /// The message for a worker after [`Self::notices`] changed, if it concerns it.
    async fn notice_for(&self, worker: &Self::Worker) -> Option<String>;

    /// Allocate a unique extranonce1, resuming `resume` if it is free.
    fn allocate_extranonce1(&self, resume: Option<&[u8]>) -> Option<Vec<u8>>;

    /// Release an extranonce1 when its connection closes.
    fn release_extranonce1(&self, extranonce1: &[u8]);
}
