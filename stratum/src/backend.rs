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
pub struct Work<'a> {
    /// The template the job was built from.
    pub template: &'a Arc<Template>,
    /// The rebuilt header.
    pub header: Header,
    /// Its hash.
    pub hash: BlockHash,
    /// The difficulty assigned when the job was sent.
    pub difficulty: DifficultyExp,
    /// The connection's extranonce1.
    pub extranonce1: &'a [u8],
    /// The submitted extranonce2.
    pub extranonce2: &'a [u8],
    /// Submitted ntime.
    pub ntime: u32,
    /// Submitted nonce.
    pub nonce: u32,
    /// Submitted version bits (BIP310), if any.
    pub version_bits: Option<u32>,
    /// Whether the hash meets the job's network target.
    pub is_block: bool,
    /// The username the share was submitted for.
    pub username: &'a str,
}

/// The policy and effects behind a Stratum V1 server.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// What an authorized worker is bound to (e.g. an ehash quote).
    type Worker: Clone + Send + Sync + 'static;

    /// Authorize a username, or refuse it.
    async fn authorize(&self, username: &str) -> Result<Self::Worker, Refusal>;

    /// Take a validated share; returns the amount it earned (for statistics), or a refusal.
    /// The server answers `true` only after this returns `Ok`.
    async fn submit(&self, worker: &Self::Worker, work: &Work<'_>) -> Result<u64, Refusal>;

    /// Called after the answer to a share that met the network target was sent.
    async fn block_found(&self, work: &Work<'_>);

    /// A counter that changes whenever workers may need to hear something (e.g. a new epoch).
    fn notices(&self) -> watch::Receiver<u64>;

    /// The message for a worker after [`Self::notices`] changed, if it concerns it.
    async fn notice_for(&self, worker: &Self::Worker) -> Option<String>;

    /// Allocate a unique extranonce1, resuming `resume` if it is free.
    fn allocate_extranonce1(&self, resume: Option<&[u8]>) -> Option<Vec<u8>>;

    /// Release an extranonce1 when its connection closes.
    fn release_extranonce1(&self, extranonce1: &[u8]);
}
