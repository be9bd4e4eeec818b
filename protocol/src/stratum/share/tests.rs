//! Golden vectors (research/stratum.md §4): real chain headers, a real pool job with a real
//! share (Bitaxe ESP-Miner's unit test), and shares produced by real cpuminer 2.5.1.

use super::*;
use crate::work::DifficultyExp;
use bitcoin::Target;

fn h32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn genesis_job(prev_stratum: &str, version: u32, nbits: u32, ntime: u32, branch: Vec<[u8; 32]>) -> JobTemplate {
    JobTemplate {
        prev_hash: prev_hash_from_stratum(&h32(prev_stratum)),
        coinb1: hex::decode("01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d").unwrap(),
        coinb2: hex::decode("696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000").unwrap(),
        merkle_branch: branch,
        version,
        nbits,
        ntime,
    }
}

#[test]
fn genesis_block_as_a_stratum_job() {
    let job = genesis_job(&"00".repeat(32), 1, 0x1d00ffff, 0x495fab29, vec![]);
    let en1 = hex::decode("01044554").unwrap();
    let en2 = hex::decode("68652054").unwrap();
    let sub = Submission { extranonce1: &en1, extranonce2: &en2, ntime: 0x495fab29, nonce: 0x7c2bac1d, version_bits: None };
    let share = share_header(&job, &sub, 4, None).unwrap();
    assert_eq!(
        hex::encode(share.header_bytes()),
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
    );
    assert_eq!(share.hash.to_string(), "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f");
    assert_eq!(share.hash, bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin).block_hash());
    // it is a block at its own nBits
    assert!(Target::from_compact(share.header.bits).is_met_by(share.hash));
}

#[test]
fn block_125552_prevhash_word_swap_and_header() {
    let stratum = h32("ab02cd818b9e567ee21793cddef299feb29ad444a41b85b8000008a300000000");
    let header_order = prev_hash_from_stratum(&stratum);
    assert_eq!(hex::encode(header_order), "81cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000");
    assert_eq!(prev_hash_to_stratum(&header_order), stratum);
    let header = Header {
        version: Version::from_consensus(1),
        prev_blockhash: BlockHash::from_byte_array(header_order),
        merkle_root: "2b12fcf1b09288fcaff797d71e950e71ae42b91e8bdb2304758dfcffc2b620e3".parse().unwrap(),
        time: 0x4dd7f5c7,
        bits: CompactTarget::from_consensus(0x1a44b9f2),
        nonce: 0x9546a142,
    };
    assert_eq!(
        hex::encode(bitcoin::consensus::encode::serialize(&header)),
        "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695"
    );
    assert_eq!(header.block_hash().to_string(), "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d");
}

#[test]
fn real_pool_job_with_13_level_branch_from_esp_miner() {
    // Bitaxe ESP-Miner components/stratum/test/test_mining.c, "Test nonce diff checking 2".
    let coinbase = hex::decode("01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4b0389130cfabe6d6d5cbab26a2599e92916edec5657a94a0708ddb970f5c45b5d12905085617eff8e010000000000000031650707758de07b010000000000001cfd7038212f736c7573682f000000000379ad0c2a000000001976a9147c154ed1dc59609e3d26abb2df2ea3d587cd8c4188ac00000000000000002c6a4c2952534b424c4f434b3ae725d3994b811572c1f345deb98b56b465ef8e153ecbbd27fa37bf1b005161380000000000000000266a24aa21a9ed63b06a7946b190a3fda1d76165b25c9b883bcc6621b040773050ee2a1bb18f1800000000").unwrap();
    let branch: Vec<[u8; 32]> = [
        "2b77d9e413e8121cd7a17ff46029591051d0922bd90b2b2a38811af1cb57a2b2",
        "5c8874cef00f3a233939516950e160949ef327891c9090467cead995441d22c5",
        "2d91ff8e19ac5fa69a40081f26c5852d366d608b04d2efe0d5b65d111d0d8074",
        "0ae96f609ad2264112a0b2dfb65624bedbcea3b036a59c0173394bba3a74e887",
        "e62172e63973d69574a82828aeb5711fc5ff97946db10fc7ec32830b24df7bde",
        "adb49456453aab49549a9eb46bb26787fb538e0a5f656992275194c04651ec97",
        "a7bc56d04d2672a8683892d6c8d376c73d250a4871fdf6f57019bcc737d6d2c2",
        "d94eceb8182b4f418cd071e93ec2a8993a0898d4c93bc33d9302f60dbbd0ed10",
        "5ad7788b8c66f8f50d332b88a80077ce10e54281ca472b4ed9bbbbcb6cf99083",
        "9f9d784b33df1b3ed3edb4211afc0dc1909af9758c6f8267e469f5148ed04809",
        "48fd17affa76b23e6fb2257df30374da839d6cb264656a82e34b350722b05123",
        "c4f5ab01913fc186d550c1a28f3f3e9ffaca2016b961a6a751f8cca0089df924",
        "cff737e1d00176dd6bbfa73071adbb370f227cfb5fba186562e4060fcec877e1",
    ]
    .iter()
    .map(|s| h32(s))
    .collect();
    assert_eq!(
        hex::encode(merkle_root(&coinbase, &branch)),
        "5bdc1968499c3393873edf8e07a1c3a50a97fc3a9d1a376bbf77087dd63778eb"
    );
    // The whole coinbase as coinb1 with empty extranonces reproduces the same share.
    let job = JobTemplate {
        prev_hash: prev_hash_from_stratum(&h32("0c859545a3498373a57452fac22eb7113df2a465000543520000000000000000")),
        coinb1: coinbase,
        coinb2: vec![],
        merkle_branch: branch,
        version: 0x20000004,
        nbits: 0x1705ae3a,
        ntime: 0x647025b5,
    };
    let sub = Submission { extranonce1: &[], extranonce2: &[], ntime: 0x647025b5, nonce: 0x0a029ed1, version_bits: None };
    let share = share_header(&job, &sub, 0, None).unwrap();
    assert_eq!(
        hex::encode(share.header_bytes()),
        "040000204595850c738349a3fa5274a511b72ec265a4f23d5243050000000000000000005bdc1968499c3393873edf8e07a1c3a50a97fc3a9d1a376bbf77087dd63778ebb52570643aae0517d19e020a"
    );
    assert_eq!(share.hash.to_string(), "00000000005fe144efbc66241c0094b8fdc2702b7729226fdfed70ca8094c0b5");
    assert_eq!(crate::work::achieved_difficulty(share.hash) as u64, 683);
    // meets difficulty 512 (2^9), not 1024 (2^10)
    assert!(DifficultyExp::new(9).unwrap().target().is_met_by(share.hash));
    assert!(!DifficultyExp::new(10).unwrap().target().is_met_by(share.hash));
}

fn cpuminer_job() -> JobTemplate {
    genesis_job(
        "ab02cd818b9e567ee21793cddef299feb29ad444a41b85b8000008a300000000",
        0x20000000,
        0x1a44b9f2,
        0x4dd7f5c7,
        vec![[0x3b; 32]],
    )
}

#[test]
fn shares_produced_by_real_cpuminer() {
    let job = cpuminer_job();
    let en1 = hex::decode("f000000f").unwrap();
    let en2 = hex::decode("00000000").unwrap();
    let target = DifficultyExp::floor_of(0.001).unwrap().target(); // 2^-10 ≥ the 0.001 the miner had
    let vectors = [
        ("f95a4a00", "000001a88b45c03815bc636c465cb782f30c2434405e8a620fa11adadf7a03bc"),
        ("6ace8300", "000001bdf67190a3830a3371622463a9b3a7b32b0c979f943dafa8d2c357bbe8"),
        ("e152b000", "0000032d5fab4d626debc9960a0e9bcbc626803f22333006d4a87e323176c350"),
        ("3babd800", "000003b211e07d240b51f93986ce116e2f3eb1c380468c23d1f70bbd98e3a55b"),
        ("ed814101", "0000018476c823238874c56820b4ffc500a974cafc1193430291e125e9158ed7"),
    ];
    for (nonce, hash) in vectors {
        let nonce = u32::from_str_radix(nonce, 16).unwrap();
        let sub = Submission { extranonce1: &en1, extranonce2: &en2, ntime: 0x4dd7f5c7, nonce, version_bits: None };
        let share = share_header(&job, &sub, 4, None).unwrap();
        assert_eq!(share.hash.to_string(), hash);
        assert!(target.is_met_by(share.hash));
    }
    let sub = Submission { extranonce1: &en1, extranonce2: &en2, ntime: 0x4dd7f5c7, nonce: 0x004a5af9u32.swap_bytes(), version_bits: None };
    assert_eq!(
        hex::encode(share_header(&job, &sub, 4, None).unwrap().header_bytes()),
        "0000002081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a3080000000000004b5291ceaf5ed5dc823ef5bd1e88fad15a055ce63d862e68cb362415a23a2b8ec7f5d74df2b9441a004a5af9"
    );
}

#[test]
fn any_mutation_of_a_real_share_fails() {
    let job = cpuminer_job();
    let en1 = hex::decode("f000000f").unwrap();
    let target = DifficultyExp::new(-10).unwrap().target();
    let good_en2 = [0u8; 4];
    let mutations: [(&[u8], u32, u32); 3] = [
        (&[1, 0, 0, 0], 0x4dd7f5c7, 0xf95a4a00),
        (&good_en2, 0x4dd7f5c8, 0xf95a4a00),
        (&good_en2, 0x4dd7f5c7, 0xf95a4a01),
    ];
    for (en2, ntime, nonce) in mutations {
        let sub = Submission { extranonce1: &en1, extranonce2: en2, ntime, nonce, version_bits: None };
        let share = share_header(&job, &sub, 4, None).unwrap();
        assert!(!target.is_met_by(share.hash), "mutated share must fail: {en2:?} {ntime:x} {nonce:x}");
    }
}

#[test]
fn extranonce2_size_and_version_rolling_are_enforced() {
    let job = cpuminer_job();
    let en1 = [0u8; 4];
    let sub = Submission { extranonce1: &en1, extranonce2: &[0; 3], ntime: 0, nonce: 0, version_bits: None };
    assert_eq!(
        share_header(&job, &sub, 4, None).unwrap_err(),
        ShareError::Extranonce2Size { expected: 4, got: 3 }
    );
    let sub = Submission { extranonce1: &en1, extranonce2: &[0; 4], ntime: 0, nonce: 0, version_bits: Some(0x2000) };
    assert_eq!(share_header(&job, &sub, 4, None).unwrap_err(), ShareError::VersionRollingNotNegotiated);
    assert_eq!(
        share_header(&job, &sub, 4, Some(0x1000)).unwrap_err(),
        ShareError::VersionBitsOutsideMask { bits: 0x2000, mask: 0x1000 }
    );
    let share = share_header(&job, &sub, 4, Some(0x1fffe000)).unwrap();
    assert_eq!(share.header.version.to_consensus() as u32, 0x20002000);
    // ESP-Miner sends rolled ^ job_version; with mask bits clear in the job both readings agree.
    assert_eq!(rolled_version(0x20000000, Some(0x1fffe000), Some(0x20002000 ^ 0x20000000)).unwrap(), 0x20002000);
}

#[test]
fn merkle_branch_matches_a_full_tree() {
    use bitcoin::hashes::Hash as _;
    for n in 0..9usize {
        let coinbase = b"coinbase".to_vec();
        let txids: Vec<[u8; 32]> = (0..n).map(|i| [i as u8 + 1; 32]).collect();
        let branch = merkle_branch(&txids);
        let root = merkle_root(&coinbase, &branch);
        let mut leaves = vec![bitcoin::Txid::from_byte_array(sha256d::Hash::hash(&coinbase).to_byte_array())];
        leaves.extend(txids.iter().map(|t| bitcoin::Txid::from_byte_array(*t)));
        let full: bitcoin::Txid = bitcoin::merkle_tree::calculate_root(leaves.into_iter()).unwrap();
        assert_eq!(root, full.to_byte_array(), "{n} transactions");
    }
}
