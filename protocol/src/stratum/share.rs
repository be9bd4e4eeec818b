//! Stratum V1 share validation, exactly as miners hash:
//!
//! 1. `coinbase = coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2` (extranonce2 is opaque bytes);
//! 2. `root = sha256d(coinbase)`, then `root = sha256d(root ‖ branch[i])` for each branch entry,
//!    used as given (internal byte order, no reversal);
//! 3. version = job version, or with BIP310 rolling `(job & !mask) | (bits & mask)`;
//! 4. `header = LE32(version) ‖ prevhash ‖ root ‖ LE32(ntime) ‖ LE32(nbits) ‖ LE32(nonce)`, where
//!    the Stratum prevhash has each 4-byte word reversed relative to the header;
//! 5. the share is valid iff `sha256d(header)`, read as a little-endian integer, is `≤ target`.
//!
//! An ehash server appends one byte to every job's `coinb1`, the job's difficulty tag
//! ([`crate::work::DifficultyExp::tag`]), so a header commits to the difficulty of the job it
//! was mined for (protocol §4): a hash mined for an easy job is a different header under a hard
//! job's id. To validate, pass `tag ‖ extranonce1` as the submission's extranonce1.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};

use crate::error::ShareError;

/// Bytes an ehash server appends to a template's `coinb1` (the job's difficulty tag).
pub const TAG_BYTES: usize = 1;

/// The part of a job that share validation needs (the `mining.notify` fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTemplate {
    /// Previous block hash in header (internal) byte order.
    pub prev_hash: [u8; 32],
    /// Coinbase bytes before the extranonces.
    pub coinb1: Vec<u8>,
    /// Coinbase bytes after the extranonces.
    pub coinb2: Vec<u8>,
    /// Merkle branch from the coinbase to the root, internal byte order.
    pub merkle_branch: Vec<[u8; 32]>,
    /// Block version (mask bits cleared if version rolling is offered).
    pub version: u32,
    /// Compact network target.
    pub nbits: u32,
    /// Job time.
    pub ntime: u32,
}

/// What a miner submitted for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission<'a> {
    /// The session's extranonce1.
    pub extranonce1: &'a [u8],
    /// The submitted extranonce2 (opaque bytes).
    pub extranonce2: &'a [u8],
    /// Submitted ntime.
    pub ntime: u32,
    /// Submitted nonce.
    pub nonce: u32,
    /// Submitted BIP310 version bits, if any.
    pub version_bits: Option<u32>,
}

/// A share's header and hash, computed from a job and a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareHeader {
    /// The 80-byte header the miner hashed.
    pub header: Header,
    /// Its sha256d hash.
    pub hash: BlockHash,
}

impl ShareHeader {
    /// The 80-byte consensus serialization of the header.
    pub fn header_bytes(&self) -> Vec<u8> {
        bitcoin::consensus::encode::serialize(&self.header)
    }
}

/// The full coinbase transaction bytes.
pub fn coinbase(job: &JobTemplate, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
    let mut cb =
        Vec::with_capacity(job.coinb1.len() + extranonce1.len() + extranonce2.len() + job.coinb2.len());
    cb.extend_from_slice(&job.coinb1);
    cb.extend_from_slice(extranonce1);
    cb.extend_from_slice(extranonce2);
    cb.extend_from_slice(&job.coinb2);
    cb
}

/// The merkle root for a coinbase and a Stratum merkle branch (internal byte order).
pub fn merkle_root(coinbase: &[u8], branch: &[[u8; 32]]) -> [u8; 32] {
    let mut root = sha256d::Hash::hash(coinbase).to_byte_array();
    let mut buf = [0u8; 64];
    for node in branch {
        buf[..32].copy_from_slice(&root);
        buf[32..].copy_from_slice(node);
        root = sha256d::Hash::hash(&buf).to_byte_array();
    }
    root
}

/// The merkle branch for the first leaf (the coinbase) of a list of txids (internal byte order),
/// as a pool computes it for `mining.notify`. `txids` excludes the coinbase.
pub fn merkle_branch(txids: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut branch = Vec::new();
    // level holds every node but the leftmost path (which depends on the coinbase)
    let mut level: Vec<[u8; 32]> = txids.to_vec();
    while !level.is_empty() {
        branch.push(level[0]);
        let rest = &level[1..];
        let mut next = Vec::with_capacity(rest.len().div_ceil(2));
        for pair in rest.chunks(2) {
            let right = if pair.len() == 2 { pair[1] } else { pair[0] };
            let mut buf = [0u8; 64];
            buf[..32].copy_from_slice(&pair[0]);
            buf[32..].copy_from_slice(&right);
            next.push(sha256d::Hash::hash(&buf).to_byte_array());
        }
        level = next;
    }
    branch
}

/// The block version a submission produces under the negotiated `mask` (`None`: no rolling).
pub fn rolled_version(job_version: u32, mask: Option<u32>, bits: Option<u32>) -> Result<u32, ShareError> {
    match (mask, bits) {
        (_, None) => Ok(job_version),
        (None, Some(_)) => Err(ShareError::VersionRollingNotNegotiated),
        (Some(mask), Some(bits)) => {
            if bits & !mask != 0 {
                return Err(ShareError::VersionBitsOutsideMask { bits, mask });
            }
            Ok((job_version & !mask) | (bits & mask))
        }
    }
}

/// Rebuild the header a submission hashed and compute its hash.
///
/// Checks the extranonce2 size and the version bits; the caller checks ntime, the target and
/// duplicates (they need session and pool state).
pub fn share_header(
    job: &JobTemplate,
    sub: &Submission<'_>,
    extranonce2_size: usize,
    version_mask: Option<u32>,
) -> Result<ShareHeader, ShareError> {
    if sub.extranonce2.len() != extranonce2_size {
        return Err(ShareError::Extranonce2Size {
            expected: extranonce2_size,
            got: sub.extranonce2.len(),
        });
    }
    let version = rolled_version(job.version, version_mask, sub.version_bits)?;
    let cb = coinbase(job, sub.extranonce1, sub.extranonce2);
    let root = merkle_root(&cb, &job.merkle_branch);
    let header = Header {
        version: Version::from_consensus(version as i32),
        prev_blockhash: BlockHash::from_byte_array(job.prev_hash),
        merkle_root: TxMerkleNode::from_byte_array(root),
        time: sub.ntime,
        bits: CompactTarget::from_consensus(job.nbits),
        nonce: sub.nonce,
    };
    let hash = header.block_hash();
    Ok(ShareHeader { header, hash })
}

/// Convert a header-order previous hash to its Stratum form (each 4-byte word reversed).
pub fn prev_hash_to_stratum(header_order: &[u8; 32]) -> [u8; 32] {
    swap_words(header_order)
}

/// Convert a Stratum previous hash to header order (each 4-byte word reversed).
pub fn prev_hash_from_stratum(stratum: &[u8; 32]) -> [u8; 32] {
    swap_words(stratum)
}

fn swap_words(b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, i) in out.chunks_mut(4).zip(b.chunks(4)) {
        o.copy_from_slice(&[i[3], i[2], i[1], i[0]]);
    }
    out
}

#[cfg(test)]
mod tests;
