//! The epoch share log and its commitment (protocol §12): a Merkle **sum** tree over the shares
//! credited in an epoch, so anyone holding the log can check that every credit is real work at
//! the right amount, that the credits add up to the issued total the pool announced, and that
//! the log is the one the pool committed to; and a miner holding one share and its inclusion
//! proof can check that it was counted.
//!
//! - A leaf is one credited share: its 80-byte header, its difficulty exponent (the target it
//!   was credited at) and the credited amount. Leaves are ordered by share id (the header's
//!   block hash, display hex), ascending, so the order does not depend on the pool's storage.
//! - `leaf = sha256("ehash/log/leaf" ‖ header ‖ difficulty_exp (i32 BE) ‖ amount (u64 BE))`,
//!   with sum `amount`.
//! - `node = sha256("ehash/log/node" ‖ left ‖ left sum (u64 BE) ‖ right ‖ right sum (u64 BE))`,
//!   with sum `left sum + right sum`; a last node without a partner moves up unchanged.
//! - The empty log's root is `sha256("ehash/log/empty")` with sum 0.
//! - The log is served in pages of at most [`LOG_PAGE_MAX`] shares, in log order: a page names
//!   the id of its last share as `next` when more may follow (`?after=<next>`).
//! - A pool builds the tree once, when the epoch closes ([`LogBuilder`], streaming), and keeps
//!   its nodes at [`BLOCK_LEVEL`]: an inclusion proof then needs only the block of
//!   `2^BLOCK_LEVEL` shares around the share ([`prove_in_block`]).

use bitcoin::block::Header;
use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::{Hash, sha256};
use serde::{Deserialize, Serialize};

use crate::work::{DifficultyExp, UnitSize, meets};

/// The most shares one page of a served log holds (and the default page size).
pub const LOG_PAGE_MAX: u32 = 10_000;

/// One credited share as the log serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogShare {
    /// The 80-byte block header, hex.
    pub header: String,
    /// The difficulty exponent the share was credited at (its target is `DIFF1 / 2^exp`).
    pub difficulty_exp: i32,
    /// The ehash credited for it.
    pub amount: u64,
}

/// A node of the tree: hash and the sum of the amounts under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumNode {
    /// The node hash, hex in JSON.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
    /// Sum of the amounts below.
    pub sum: u64,
}

/// Why a log does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// A share's header is not 80 bytes of hex.
    #[error("share {index}: header: {reason}")]
    Header {
        /// Position in the log.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A share whose hash does not meet the target it was credited at.
    #[error("share {index} ({id}): its hash does not meet the target of difficulty 2^{difficulty_exp}")]
    NotWork {
        /// Position.
        index: usize,
        /// Share id (block hash).
        id: String,
        /// Claimed difficulty exponent.
        difficulty_exp: i32,
    },
    /// A share credited with another amount than its difficulty earns.
    #[error("share {index} ({id}): credited {got}, its difficulty earns {want}")]
    Amount {
        /// Position.
        index: usize,
        /// Share id.
        id: String,
        /// Credited.
        got: u64,
        /// Earned.
        want: u64,
    },
    /// A share twice, or out of order.
    #[error("share {index} ({id}): out of order or repeated (the log is sorted by share id)")]
    Order {
        /// Position.
        index: usize,
        /// Share id.
        id: String,
    },
    /// The amounts overflow.
    #[error("the credited amounts overflow 64 bits")]
    Overflow,
}

impl LogShare {
    /// The parsed header.
    pub fn parse_header(&self, index: usize) -> Result<Header, AuditError> {
        let bytes = hex::decode(&self.header).map_err(|e| AuditError::Header { index, reason: e.to_string() })?;
        if bytes.len() != 80 {
            return Err(AuditError::Header { index, reason: format!("{} bytes, not 80", bytes.len()) });
        }
        deserialize(&bytes).map_err(|e| AuditError::Header { index, reason: e.to_string() })
    }

    /// The share id: the header's block hash (display hex).
    pub fn id(&self, index: usize) -> Result<String, AuditError> {
        Ok(self.parse_header(index)?.block_hash().to_string())
    }

    /// The leaf of this share.
    pub fn leaf(&self, index: usize) -> Result<SumNode, AuditError> {
        let header = hex::decode(&self.header).map_err(|e| AuditError::Header { index, reason: e.to_string() })?;
        let mut data = b"ehash/log/leaf".to_vec();
        data.extend_from_slice(&header);
        data.extend_from_slice(&self.difficulty_exp.to_be_bytes());
        data.extend_from_slice(&self.amount.to_be_bytes());
        Ok(SumNode { hash: sha256::Hash::hash(&data).to_byte_array(), sum: self.amount })
    }

    /// Check the share itself: real work at its difficulty, credited what that difficulty earns
    /// with the pool's unit size.
    pub fn check(&self, index: usize, unit: UnitSize) -> Result<(), AuditError> {
        let header = self.parse_header(index)?;
        let id = header.block_hash().to_string();
        let difficulty = DifficultyExp::new(self.difficulty_exp).map_err(|_| AuditError::NotWork { index, id: id.clone(), difficulty_exp: self.difficulty_exp })?;
        if !meets(header.block_hash(), difficulty.target()) {
            return Err(AuditError::NotWork { index, id, difficulty_exp: self.difficulty_exp });
        }
        let want = unit.credit(difficulty).map_err(|_| AuditError::Amount { index, id: id.clone(), got: self.amount, want: 0 })?;
        if want != self.amount {
            return Err(AuditError::Amount { index, id, got: self.amount, want });
        }
        Ok(())
    }
}

fn node(l: &SumNode, r: &SumNode) -> Result<SumNode, AuditError> {
    let mut data = b"ehash/log/node".to_vec();
    data.extend_from_slice(&l.hash);
    data.extend_from_slice(&l.sum.to_be_bytes());
    data.extend_from_slice(&r.hash);
    data.extend_from_slice(&r.sum.to_be_bytes());
    Ok(SumNode { hash: sha256::Hash::hash(&data).to_byte_array(), sum: l.sum.checked_add(r.sum).ok_or(AuditError::Overflow)? })
}

/// The root of the empty log.
pub fn empty_root() -> SumNode {
    SumNode { hash: sha256::Hash::hash(b"ehash/log/empty").to_byte_array(), sum: 0 }
}

/// Every level of the tree over `leaves`, bottom first.
fn levels(leaves: Vec<SumNode>) -> Result<Vec<Vec<SumNode>>, AuditError> {
    let mut out = vec![leaves];
    while out.last().is_some_and(|l| l.len() > 1) {
        let prev = out.last().map(Vec::as_slice).unwrap_or_default();
        let next = prev.chunks(2).map(|c| if let [l, r] = c { node(l, r) } else { Ok(c[0]) }).collect::<Result<Vec<_>, _>>()?;
        out.push(next);
    }
    Ok(out)
}

/// Sort shares into log order (by share id); shares whose header does not parse keep their place at the end.
pub fn sort_log(shares: &mut [LogShare]) {
    shares.sort_by_cached_key(|s| s.id(0).unwrap_or_else(|_| "~".repeat(64)));
}

/// The root of a log (which must be in log order: see [`check_log`]).
pub fn root(shares: &[LogShare]) -> Result<SumNode, AuditError> {
    if shares.is_empty() {
        return Ok(empty_root());
    }
    let leaves = shares.iter().enumerate().map(|(i, s)| s.leaf(i)).collect::<Result<Vec<_>, _>>()?;
    let lv = levels(leaves)?;
    Ok(lv.last().and_then(|l| l.first()).copied().unwrap_or_else(empty_root))
}

/// Check every share (work, amount) and the order; returns the root. The first problem found
/// is returned (an auditor reporting every problem calls [`LogShare::check`] per share).
pub fn check_log(shares: &[LogShare], unit: UnitSize) -> Result<SumNode, AuditError> {
    let mut last: Option<String> = None;
    for (i, s) in shares.iter().enumerate() {
        s.check(i, unit)?;
        let id = s.id(i)?;
        if last.as_ref().is_some_and(|l| *l >= id) {
            return Err(AuditError::Order { index: i, id });
        }
        last = Some(id);
    }
    root(shares)
}

/// The tree level whose nodes a pool keeps for proofs: blocks of `2^BLOCK_LEVEL` shares.
pub const BLOCK_LEVEL: u32 = 10;

/// Builds the tree of a log streamed in log order, in memory proportional to its height plus
/// the nodes kept at the block level.
#[derive(Debug, Clone)]
pub struct LogBuilder {
    block_level: u32,
    /// Complete subtrees not yet paired, with their levels, lowest last.
    stack: Vec<(u32, SumNode)>,
    /// The roots of the complete blocks so far.
    blocks: Vec<SumNode>,
    count: usize,
}

/// A built log: its root and its nodes at the block level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltLog {
    /// The root (the commitment).
    pub root: SumNode,
    /// How many shares the log holds.
    pub count: usize,
    /// The tree's nodes at the block level, in order: one per block of `2^block_level` shares
    /// (the last block may hold fewer).
    pub blocks: Vec<SumNode>,
}

impl LogBuilder {
    /// A builder keeping the nodes at `block_level` ([`BLOCK_LEVEL`] for a pool).
    pub fn new(block_level: u32) -> Self {
        Self { block_level, stack: vec![], blocks: vec![], count: 0 }
    }

    /// Add the next share of the log (log order; the caller checks the order).
    pub fn push(&mut self, share: &LogShare) -> Result<(), AuditError> {
        let leaf = share.leaf(self.count)?;
        self.count += 1;
        if self.block_level == 0 {
            self.blocks.push(leaf);
        }
        let mut n = (0u32, leaf);
        while let Some(&(level, left)) = self.stack.last() {
            if level != n.0 {
                break;
            }
            self.stack.pop();
            n = (level + 1, node(&left, &n.1)?);
            if n.0 == self.block_level {
                self.blocks.push(n.1);
            }
        }
        self.stack.push(n);
        Ok(())
    }

    /// The root and the block-level nodes. Unpaired subtrees combine from the right, a node
    /// without a partner moving up unchanged, exactly as [`root`] builds the tree.
    pub fn finish(mut self) -> Result<BuiltLog, AuditError> {
        let mut acc: Option<SumNode> = None;
        // the last block, if partial: its root moves up to the block level unchanged
        while let Some(&(level, left)) = self.stack.last() {
            if level >= self.block_level {
                break;
            }
            self.stack.pop();
            acc = Some(match acc {
                None => left,
                Some(right) => node(&left, &right)?,
            });
        }
        if let Some(partial) = acc {
            self.blocks.push(partial);
        }
        while let Some((_, left)) = self.stack.pop() {
            acc = Some(match acc {
                None => left,
                Some(right) => node(&left, &right)?,
            });
        }
        Ok(BuiltLog { root: acc.unwrap_or_else(empty_root), count: self.count, blocks: self.blocks })
    }
}

/// The proof for the share at `index` of a log of `count` shares, from the block of shares
/// holding it (`block`: the shares at `[b·2^level, (b+1)·2^level)`, in log order) and the
/// log's block-level nodes.
pub fn prove_in_block(block: &[LogShare], index: usize, count: usize, block_level: u32, blocks: &[SumNode]) -> Result<Option<InclusionProof>, AuditError> {
    let size = 1usize << block_level;
    let (b, within) = (index / size, index % size);
    let Some(share) = block.get(within) else { return Ok(None) };
    if index >= count || blocks.len() != count.div_ceil(size) {
        return Ok(None);
    }
    let leaves = block.iter().enumerate().map(|(i, s)| s.leaf(b * size + i)).collect::<Result<Vec<_>, _>>()?;
    let mut siblings = path(levels(leaves)?, within);
    siblings.extend(path(levels(blocks.to_vec())?, b));
    Ok(Some(InclusionProof { share: share.clone(), index, count, siblings }))
}

/// The siblings of node `i` from the bottom of `levels` up (levels where it has no partner
/// are skipped).
fn path(levels: Vec<Vec<SumNode>>, mut i: usize) -> Vec<SumNode> {
    let mut siblings = vec![];
    for level in &levels[..levels.len().saturating_sub(1)] {
        if let Some(n) = level.get(i ^ 1) {
            siblings.push(*n);
        }
        i /= 2;
    }
    siblings
}

/// A share's inclusion proof: the siblings from its leaf up to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The share.
    pub share: LogShare,
    /// Its position in the log.
    pub index: usize,
    /// How many shares the log holds.
    pub count: usize,
    /// Sibling nodes, leaf level first (levels where the node had no partner are skipped).
    pub siblings: Vec<SumNode>,
}

/// The proof that `shares[index]` is in the log.
pub fn prove(shares: &[LogShare], index: usize) -> Result<Option<InclusionProof>, AuditError> {
    let Some(share) = shares.get(index) else { return Ok(None) };
    let leaves = shares.iter().enumerate().map(|(i, s)| s.leaf(i)).collect::<Result<Vec<_>, _>>()?;
    let siblings = path(levels(leaves)?, index);
    Ok(Some(InclusionProof { share: share.clone(), index, count: shares.len(), siblings }))
}

impl InclusionProof {
    /// The root this proof leads to (compare it with the announced one).
    pub fn root(&self) -> Result<SumNode, AuditError> {
        let mut n = self.share.leaf(self.index)?;
        let (mut i, mut width) = (self.index, self.count);
        let mut sibs = self.siblings.iter();
        while width > 1 {
            let has_partner = (i ^ 1) < width;
            if has_partner {
                let s = sibs.next().ok_or(AuditError::Order { index: self.index, id: "proof too short".into() })?;
                n = if i % 2 == 0 { node(&n, s)? } else { node(s, &n)? };
            }
            i /= 2;
            width = width.div_ceil(2);
        }
        if sibs.next().is_some() {
            return Err(AuditError::Order { index: self.index, id: "proof too long".into() });
        }
        Ok(n)
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into().map_err(|_| serde::de::Error::custom("a node hash is 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::block::Version;
    use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};

    /// A header meeting difficulty 2^exp (found by grinding the nonce).
    fn share(seed: u32, exp: i32, unit: UnitSize) -> LogShare {
        let target = DifficultyExp::new(exp).unwrap().target();
        let mut h = Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::from_byte_array([seed as u8; 32]),
            time: 1_700_000_000 + seed,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        };
        while !meets(h.block_hash(), target) {
            h.nonce += 1;
        }
        let amount = unit.credit(DifficultyExp::new(exp).unwrap()).unwrap();
        LogShare { header: hex::encode(bitcoin::consensus::encode::serialize(&h)), difficulty_exp: exp, amount }
    }

    fn log(n: u32, unit: UnitSize) -> Vec<LogShare> {
        let mut v: Vec<_> = (0..n).map(|i| share(i, -24 + (i % 3) as i32, unit)).collect();
        sort_log(&mut v);
        v
    }

    #[test]
    fn the_root_sums_the_credits_and_every_share_proves_its_place() {
        let unit = UnitSize::new(4).unwrap();
        for n in [0u32, 1, 2, 3, 5, 8, 13] {
            let l = log(n, unit);
            let r = check_log(&l, unit).unwrap();
            assert_eq!(r.sum, l.iter().map(|s| s.amount).sum::<u64>());
            for i in 0..l.len() {
                let p = prove(&l, i).unwrap().unwrap();
                let json = serde_json::to_string(&p).unwrap();
                let p: InclusionProof = serde_json::from_str(&json).unwrap();
                assert_eq!(p.root().unwrap(), r, "n={n} i={i}");
            }
        }
        assert_eq!(root(&[]).unwrap(), empty_root());
    }

    #[test]
    fn the_streamed_tree_and_block_proofs_equal_the_whole_tree() {
        let unit = UnitSize::new(4).unwrap();
        let all = log(40, unit);
        for level in [0u32, 1, 2, 3] {
            let size = 1usize << level;
            for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 40] {
                let l = &all[..n];
                let mut b = LogBuilder::new(level);
                for s in l {
                    b.push(s).unwrap();
                }
                let built = b.finish().unwrap();
                assert_eq!(built.root, root(l).unwrap(), "level {level}, {n} shares");
                assert_eq!(built.count, n);
                assert_eq!(built.blocks.len(), n.div_ceil(size), "level {level}, {n} shares");
                // the block-level nodes are the tree's: built up they give the root
                if n > 0 {
                    let top = levels(built.blocks.clone()).unwrap();
                    assert_eq!(top.last().unwrap()[0], built.root);
                }
                for i in 0..n {
                    let first = i / size * size;
                    let block = &l[first..(first + size).min(n)];
                    let p = prove_in_block(block, i, n, level, &built.blocks).unwrap().unwrap();
                    assert_eq!(p, prove(l, i).unwrap().unwrap(), "level {level}, {n} shares, share {i}");
                }
            }
        }
    }

    #[test]
    fn any_change_to_the_log_changes_the_root_or_fails_the_check() {
        let unit = UnitSize::new(4).unwrap();
        let l = log(7, unit);
        let r = check_log(&l, unit).unwrap();
        // a credit raised: the share no longer earns it
        let mut t = l.clone();
        t[3].amount *= 2;
        assert!(matches!(check_log(&t, unit), Err(AuditError::Amount { index: 3, .. })));
        assert_ne!(root(&t).unwrap(), r);
        // a share claimed at a higher difficulty than its work
        let mut t = l.clone();
        t[2].difficulty_exp += 8;
        t[2].amount = unit.credit(DifficultyExp::new(t[2].difficulty_exp).unwrap()).unwrap();
        assert!(matches!(check_log(&t, unit), Err(AuditError::NotWork { index: 2, .. })));
        // a share counted twice, or dropped
        let mut t = l.clone();
        t.insert(1, l[1].clone());
        assert!(matches!(check_log(&t, unit), Err(AuditError::Order { index: 2, .. })));
        let mut t = l.clone();
        t.remove(4);
        assert_ne!(check_log(&t, unit).unwrap(), r);
        // a proof for a share that is not in the log does not lead to the root
        let mut p = prove(&l, 0).unwrap().unwrap();
        p.share = share(99, -24, unit);
        assert_ne!(p.root().unwrap(), r);
        // a sibling's sum lowered to hide credit is caught by the root
        let mut p = prove(&l, 0).unwrap().unwrap();
        p.siblings[0].sum -= 1;
        assert_ne!(p.root().unwrap(), r);
    }
}
