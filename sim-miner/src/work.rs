//! Header assembly and hashing, written independently of the pool's validator (plain byte
//! layout and the `sha2` crate), so tests that use this miner check the pool against a second
//! implementation.

use sha2::{Digest, Sha256};

/// A job as received in `mining.notify`, plus the difficulty in force for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// prevhash as sent (Stratum word order).
    pub prevhash: [u8; 32],
    /// coinb1.
    pub coinb1: Vec<u8>,
    /// coinb2.
    pub coinb2: Vec<u8>,
    /// Merkle branch.
    pub branch: Vec<[u8; 32]>,
    /// Version.
    pub version: u32,
    /// nBits.
    pub nbits: u32,
    /// ntime.
    pub ntime: u32,
    /// clean_jobs flag.
    pub clean: bool,
    /// Share difficulty that applies to this job (the last `mining.set_difficulty` before it).
    pub difficulty: f64,
}

/// Double SHA-256.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let first = Sha256::digest(data);
    Sha256::digest(first).into()
}

/// The 80-byte header a miner hashes for a job and a nonce choice.
pub fn header(job: &Job, en1: &[u8], en2: &[u8], ntime: u32, nonce: u32, version: u32) -> [u8; 80] {
    let mut coinbase = Vec::with_capacity(job.coinb1.len() + en1.len() + en2.len() + job.coinb2.len());
    coinbase.extend_from_slice(&job.coinb1);
    coinbase.extend_from_slice(en1);
    coinbase.extend_from_slice(en2);
    coinbase.extend_from_slice(&job.coinb2);
    let mut root = sha256d(&coinbase);
    for node in &job.branch {
        let mut buf = [0u8; 64];
        buf[..32].copy_from_slice(&root);
        buf[32..].copy_from_slice(node);
        root = sha256d(&buf);
    }
    let mut h = [0u8; 80];
    h[0..4].copy_from_slice(&version.to_le_bytes());
    for i in 0..8 {
        // Stratum sends each 4-byte word of the header's prevhash byte-reversed.
        let w = &job.prevhash[i * 4..i * 4 + 4];
        h[4 + i * 4..8 + i * 4].copy_from_slice(&[w[3], w[2], w[1], w[0]]);
    }
    h[36..68].copy_from_slice(&root);
    h[68..72].copy_from_slice(&ntime.to_le_bytes());
    h[72..76].copy_from_slice(&job.nbits.to_le_bytes());
    h[76..80].copy_from_slice(&nonce.to_le_bytes());
    h
}

/// The share target for a difficulty, big-endian: `0xFFFF·2^208 / difficulty`.
pub fn target_for(difficulty: f64) -> [u8; 32] {
    let mut out = [0u8; 32];
    if !(difficulty.is_finite() && difficulty > 0.0) {
        return out;
    }
    // t = 65535/d · 2^208 = m · 2^k with m < 2^53
    let t = 65535.0 / difficulty;
    let exp = t.log2().floor() as i32;
    let shift = 52 - exp; // m = t · 2^shift has 53 bits
    let m = (t * 2f64.powi(shift)).floor() as u64;
    let k = 208 - shift; // target = m · 2^k
    for bit in 0..64 {
        if m >> bit & 1 == 1 {
            let pos = bit + k;
            if (0..256).contains(&pos) {
                let byte = 31 - (pos / 8) as usize;
                out[byte] |= 1 << (pos % 8);
            } else if pos >= 256 {
                return [0xff; 32];
            }
        }
    }
    out
}

/// Whether a header hash (as returned by [`sha256d`], little-endian) is at or below a
/// big-endian target.
pub fn meets(hash: &[u8; 32], target_be: &[u8; 32]) -> bool {
    let mut be = *hash;
    be.reverse();
    be <= *target_be
}

/// The display (big-endian hex) form of a header hash.
pub fn display_hash(hash: &[u8; 32]) -> String {
    let mut be = *hash;
    be.reverse();
    hex::encode(be)
}

/// Search nonces `start..start+count` for a header meeting `target`; returns `(nonce, hash)`.
#[allow(clippy::too_many_arguments)] // the header fields a miner varies, in the order it varies them
pub fn grind(job: &Job, en1: &[u8], en2: &[u8], ntime: u32, version: u32, target: &[u8; 32], start: u32, count: u32) -> Option<(u32, [u8; 32])> {
    let mut h = header(job, en1, en2, ntime, start, version);
    for i in 0..count {
        let nonce = start.wrapping_add(i);
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        let hash = sha256d(&h);
        if meets(&hash, target) {
            return Some((nonce, hash));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_from_stratum_parts() {
        let job = Job {
            id: "g".into(),
            prevhash: [0; 32],
            coinb1: hex::decode("01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d").unwrap(),
            coinb2: hex::decode("696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000").unwrap(),
            branch: vec![],
            version: 1,
            nbits: 0x1d00ffff,
            ntime: 0x495fab29,
            clean: true,
            difficulty: 1.0,
        };
        let en1 = hex::decode("01044554").unwrap();
        let en2 = hex::decode("68652054").unwrap();
        let h = header(&job, &en1, &en2, 0x495fab29, 0x7c2bac1d, 1);
        let hash = sha256d(&h);
        assert_eq!(display_hash(&hash), "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f");
        assert!(meets(&hash, &target_for(1.0)));
        assert!(meets(&hash, &target_for(2536.0)));
        assert!(!meets(&hash, &target_for(2537.0)));
    }

    #[test]
    fn targets() {
        assert_eq!(hex::encode(target_for(1.0)), format!("00000000ffff{}", "0".repeat(52)));
        assert_eq!(hex::encode(&target_for(2f64.powi(-10))[..6]), "000003fffc00");
        assert_eq!(hex::encode(&target_for(32.0)[..8]), "0000000007fff800");
    }
}
