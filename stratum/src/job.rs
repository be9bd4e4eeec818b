//! Where jobs come from: the [`JobSource`] trait and the template type it publishes.

use std::sync::Arc;

use async_trait::async_trait;
use bitcoin::block::Header;
use bitcoin::{Block, Transaction, Witness};
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
    /// The block's transactions after the coinbase, in order (empty where the source does not
    /// assemble whole blocks, e.g. a proxy's upstream pool or the devnet).
    pub transactions: Arc<[Transaction]>,
    /// What the coinbase pays in all (sats; subsidy plus fees), 0 where the source does not say.
    pub coinbase_value: u64,
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
    /// Its template's transactions after the coinbase.
    pub transactions: Arc<[Transaction]>,
}

impl FoundBlock {
    /// The whole block: header, coinbase, the template's transactions. A coinbase with a
    /// BIP141 witness commitment output gets the witness reserved value (32 zero bytes) the
    /// commitment was computed with.
    pub fn block(&self) -> Result<Block, JobSourceError> {
        let mut coinbase: Transaction = bitcoin::consensus::encode::deserialize(&self.coinbase)
            .map_err(|e| JobSourceError(format!("the found block's coinbase does not parse: {e}")))?;
        let commits = coinbase.output.iter().any(|o| o.script_pubkey.as_bytes().starts_with(&WITNESS_COMMITMENT_PREFIX));
        if commits && let Some(input) = coinbase.input.first_mut() {
            input.witness = Witness::from_slice(&[[0u8; 32]]);
        }
        let mut txdata = Vec::with_capacity(1 + self.transactions.len());
        txdata.push(coinbase);
        txdata.extend(self.transactions.iter().cloned());
        Ok(Block { header: self.header, txdata })
    }
}

/// The start of a BIP141 witness commitment output script: `OP_RETURN`, a 36-byte push, `aa21a9ed`.
pub const WITNESS_COMMITMENT_PREFIX: [u8; 6] = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];

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
