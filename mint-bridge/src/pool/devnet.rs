//! A devnet job source: synthetic templates with a real coinbase (BIP34 height, the extranonce
//! space, an output paying the pool), real merkle branches over synthetic transactions, and a
//! configurable network target, so blocks are found at a chosen rate. Found blocks extend the
//! devnet chain: the next template builds on the found block's hash. The chain starts from a
//! genesis derived from the pool's key, or from the last block the ledger says it accepted, so
//! it goes on across restarts (and a block handed over again after a crash extends it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::BlockHash;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::{ScriptBuf, XOnlyPublicKey};
use ehash_protocol::stratum::share::{JobTemplate, merkle_branch};
use ehash_protocol::work::DifficultyExp;
use rand::RngCore;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use ehash_stratum::{BlockOutcome, FoundBlock, JobSource, JobSourceError, Template};
use super::{Depth, PoolSource};
use crate::config::DevnetConfig;
use crate::error::{Error, Result};

/// Block version of devnet templates (BIP9 top bits; rolling bits clear).
pub const DEVNET_VERSION: u32 = 0x2000_0000;

struct Tip {
    prev_hash: [u8; 32],
    height: u32,
    next_id: u64,
    /// Blocks of this chain, with their heights (a block handed over again is a duplicate).
    found: HashMap<BlockHash, u32>,
}

/// The devnet job source.
pub struct DevnetJobSource {
    config: DevnetConfig,
    nbits: u32,
    payout: ScriptBuf,
    extranonce_len: usize,
    tip: Mutex<Tip>,
    tx: watch::Sender<Arc<Template>>,
}

impl std::fmt::Debug for DevnetJobSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevnetJobSource").field("nbits", &self.nbits).finish_non_exhaustive()
    }
}

impl DevnetJobSource {
    /// A source whose coinbase pays a P2TR output of `pool_key` and reserves
    /// `extranonce_len` (= tag + extranonce1 + extranonce2) bytes, building on the highest of
    /// `chain` (the blocks the ledger says were accepted, with their heights), else on the pool's
    /// genesis. Spawns the ntime refresh task, which stops with `cancel`.
    pub fn start(
        config: DevnetConfig,
        pool_key: XOnlyPublicKey,
        extranonce_len: usize,
        chain: Vec<(BlockHash, u32)>,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>> {
        if extranonce_len == 0 || extranonce_len > 64 {
            return Err(Error::Config(format!("extranonce space of {extranonce_len} bytes (1..=64)")));
        }
        let nbits = DifficultyExp::new(config.network_difficulty_exp)?.compact().to_consensus();
        let secp = bitcoin::secp256k1::Secp256k1::verification_only();
        let payout = ScriptBuf::new_p2tr(&secp, pool_key, None);
        let tip = chain.iter().max_by_key(|(_, h)| *h).copied();
        let (prev_hash, height) = match tip {
            Some((hash, height)) => (hash.to_byte_array(), height.saturating_add(1)),
            None => {
                let mut seed = b"ehash/devnet/genesis".to_vec();
                seed.extend_from_slice(&pool_key.serialize());
                (sha256::Hash::hash(&seed).to_byte_array(), config.start_height)
            }
        };
        let mut tip = Tip { prev_hash, height, next_id: 1, found: chain.into_iter().collect() };
        let first = make_template(&config, nbits, &payout, extranonce_len, &mut tip, true);
        let (tx, _) = watch::channel(Arc::new(first));
        let source = Arc::new(Self { config, nbits, payout, extranonce_len, tip: Mutex::new(tip), tx });
        let refresher = source.clone();
        tokio::spawn(async move {
            let period = Duration::from_secs(refresher.config.job_refresh_secs.max(1));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(period) => refresher.publish(false).await,
                }
            }
        });
        Ok(source)
    }

    async fn publish(&self, clean: bool) {
        let mut tip = self.tip.lock().await;
        let t = make_template(&self.config, self.nbits, &self.payout, self.extranonce_len, &mut tip, clean);
        self.tx.send_replace(Arc::new(t));
    }
}

#[async_trait]
impl JobSource for DevnetJobSource {
    fn templates(&self) -> watch::Receiver<Arc<Template>> {
        self.tx.subscribe()
    }

    async fn submit_block(&self, block: &FoundBlock) -> Result<BlockOutcome, JobSourceError> {
        let hash = block.header.block_hash();
        {
            let mut tip = self.tip.lock().await;
            if tip.found.contains_key(&hash) {
                return Ok(BlockOutcome::Duplicate);
            }
            if tip.height != block.height || tip.prev_hash != block.header.prev_blockhash.to_byte_array() {
                return Ok(BlockOutcome::Rejected(format!("stale: block at height {} does not build on the devnet tip (next height {})", block.height, tip.height)));
            }
            if !bitcoin::Target::from_compact(block.header.bits).is_met_by(hash) {
                return Ok(BlockOutcome::Rejected("high-hash: the block does not meet its target".into()));
            }
            tip.found.insert(hash, block.height);
            tip.prev_hash = hash.to_byte_array();
            tip.height += 1;
        }
        tracing::info!(height = block.height, %hash, "devnet block found");
        self.publish(true).await;
        Ok(BlockOutcome::Accepted)
    }
}

#[async_trait]
impl PoolSource for DevnetJobSource {
    async fn depth(&self, hash: &BlockHash) -> Result<Depth, JobSourceError> {
        // the devnet never reorganizes: its blocks are all on its one chain
        let tip = self.tip.lock().await;
        let height = tip.found.get(hash).ok_or_else(|| JobSourceError(format!("block {hash} is not on the devnet chain")))?;
        Ok(Depth::Confirmations(tip.height.saturating_sub(*height)))
    }

    fn network(&self) -> &'static str {
        "regtest"
    }
}

fn make_template(config: &DevnetConfig, nbits: u32, payout: &ScriptBuf, extranonce_len: usize, tip: &mut Tip, clean: bool) -> Template {
    let (coinb1, coinb2) = coinbase_parts(tip.height, extranonce_len, config.block_reward_sat, payout);
    let txids: Vec<[u8; 32]> = (0..config.tx_count)
        .map(|_| {
            let mut t = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut t);
            t
        })
        .collect();
    let ntime = u32::try_from(cdk::util::unix_time()).unwrap_or(u32::MAX);
    let id = tip.next_id;
    tip.next_id += 1;
    Template {
        id,
        source_job_id: format!("{id:x}"),
        height: tip.height,
        job: JobTemplate {
            prev_hash: tip.prev_hash,
            coinb1,
            coinb2,
            merkle_branch: merkle_branch(&txids),
            version: DEVNET_VERSION,
            nbits,
            ntime,
        },
        clean,
        difficulty_range: None,
        transactions: Arc::from([]),
        coinbase_value: config.block_reward_sat,
    }
}

/// Split a legacy-serialized coinbase around its extranonce space.
///
/// `coinb1 = version ‖ 1 input ‖ null outpoint ‖ scriptSig length ‖ BIP34 height ‖ push(extranonce_len)`,
/// `coinb2 = push("/ehash/") ‖ sequence ‖ 1 output (reward → payout) ‖ locktime`.
pub fn coinbase_parts(height: u32, extranonce_len: usize, reward: u64, payout: &ScriptBuf) -> (Vec<u8>, Vec<u8>) {
    let height_push = Builder::new().push_int(i64::from(height)).into_script();
    let tag = PushBytesBuf::try_from(b"/ehash/".to_vec()).unwrap_or_default();
    let tag_push = Builder::new().push_slice(tag).into_script();
    let script_sig_len = height_push.len() + 1 + extranonce_len + tag_push.len();
    let mut coinb1 = Vec::new();
    coinb1.extend_from_slice(&1u32.to_le_bytes());
    coinb1.push(1);
    coinb1.extend_from_slice(&[0u8; 32]);
    coinb1.extend_from_slice(&u32::MAX.to_le_bytes());
    coinb1.push(script_sig_len as u8); // at most 100 bytes: a one-byte compact size
    coinb1.extend_from_slice(height_push.as_bytes());
    coinb1.push(extranonce_len as u8); // direct push opcode (1..=75)
    let mut coinb2 = Vec::new();
    coinb2.extend_from_slice(tag_push.as_bytes());
    coinb2.extend_from_slice(&u32::MAX.to_le_bytes());
    coinb2.push(1);
    coinb2.extend_from_slice(&reward.to_le_bytes());
    coinb2.push(payout.len() as u8);
    coinb2.extend_from_slice(payout.as_bytes());
    coinb2.extend_from_slice(&0u32.to_le_bytes());
    (coinb1, coinb2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::consensus::encode::deserialize;

    #[test]
    fn coinbase_is_a_real_transaction_paying_the_pool() {
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let (_, pk) = secp.generate_keypair(&mut rand::rngs::OsRng);
        let xonly = pk.x_only_public_key().0;
        let payout = ScriptBuf::new_p2tr(&secp, xonly, None);
        let (c1, c2) = coinbase_parts(840_000, 12, 312_500_000, &payout);
        let mut full = c1.clone();
        full.extend_from_slice(&[0xab; 12]);
        full.extend_from_slice(&c2);
        let tx: bitcoin::Transaction = deserialize(&full).unwrap();
        assert!(tx.is_coinbase());
        assert_eq!(tx.output.len(), 1);
        assert_eq!(tx.output[0].value.to_sat(), 312_500_000);
        assert_eq!(tx.output[0].script_pubkey, payout);
        assert!(tx.output[0].script_pubkey.is_p2tr());
        let sig = tx.input[0].script_sig.as_bytes();
        // BIP34: the script starts with the height
        assert_eq!(&sig[..4], &[0x03, 0x40, 0xd1, 0x0c]);
        assert!(sig.windows(12).any(|w| w == [0xab; 12]));
        assert!(sig.len() <= 100);
    }
}
