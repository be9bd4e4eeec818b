//! Where jobs come from: the [`JobSource`] trait and the template type it publishes.

use std::sync::Arc;

use async_trait::async_trait;
use bitcoin::block::Header;
use ehash_protocol::stratum::share::JobTemplate;
use ehash_protocol::work::DifficultyExp;
use tokio::sync::watch;

/// A block template, ready to hand to miners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Unique id of this template within the source.
    pub id: u64,
    /// The source's own name for the job (e.g. the upstream pool's job id, for a proxy).
    pub source_job_id: String,
    /// Height of the block this template builds.
    pub height: u32,
    /// The `mining.notify` fields.
    pub job: JobTemplate,
    /// True when the chain tip changed: work on older templates is stale.
    pub clean: bool,
    /// The share difficulties jobs on this template may be sent with, lowest and highest
    /// (a proxy's pool credits only these); `None`: whatever the server's vardiff picks.
    pub difficulty_range: Option<(DifficultyExp, DifficultyExp)>,
}

/// A block found by a share, as the pool hands it to its job source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBlock {
    /// The height of the block.
    pub height: u32,
    /// Its header.
    pub header: Header,
    /// Its coinbase transaction (legacy serialization).
    pub coinbase: Vec<u8>,
}

/// What the network said of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Taken: it extends the chain.
    Accepted,
    /// The network had it already (a block handed over again after a restart).
    Duplicate,
    /// Refused, with the reason.
    Rejected(String),
}

/// A job source failure.
#[derive(Debug, thiserror::Error)]
#[error("job source: {0}")]
pub struct JobSourceError(pub String);

/// A source of block templates, e.g. a devnet generator or a node's `getblocktemplate`.
///
/// The coinbase of every template reserves exactly `1 + extranonce1 + extranonce2` bytes between
/// `coinb1` and `coinb2`, with the sizes the source was created for: the first is the job's
/// difficulty tag ([`ehash_protocol::stratum::share::TAG_BYTES`]), which the server writes.
#[async_trait]
pub trait JobSource: Send + Sync + 'static {
    /// The current template; the receiver sees every new one.
    fn templates(&self) -> watch::Receiver<Arc<Template>>;

    /// A share met the network target: hand the block to the network and say what it answered.
    /// Handing the same block over again is harmless ([`BlockOutcome::Duplicate`]). On a new
    /// tip the source publishes a clean template.
    async fn submit_block(&self, block: &FoundBlock) -> Result<BlockOutcome, JobSourceError>;
}
