//! Stratum V2 over real TCP against a real mint-bridge: a client written here with the SRI crates
//! (Noise initiator with the pool's authority key) opens a standard channel for a real quote,
//! grinds shares against the channel's target, and every accepted share is credited once; bad
//! inputs get the spec's error codes and credit nothing.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use binary_sv2::{Str0255, U256};
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Target, TxMerkleNode};
use common::*;
use common_messages_sv2::{Protocol, SetupConnection};
use ehash_mint_bridge::MintBridge;
use ehash_protocol::work::DifficultyExp;
use ehash_stratum::sv2::noise::{self, Frame, FrameReader, FrameWriter, NoiseError};
use ehash_stratum::sv2::{MAX_FRAME_PAYLOAD, VERSION_ROLLING_MASK};
use mining_sv2::*;

struct Client {
    r: FrameReader,
    w: FrameWriter,
}

#[derive(Debug, Clone)]
struct Job {
    id: u32,
    version: u32,
    merkle_root: [u8; 32],
    prev_hash: [u8; 32],
    ntime: u32,
    nbits: u32,
}

impl Job {
    fn hash(&self, nonce: u32, version: u32) -> BlockHash {
        Header {
            version: Version::from_consensus(version as i32),
            prev_blockhash: BlockHash::from_byte_array(self.prev_hash),
            merkle_root: TxMerkleNode::from_byte_array(self.merkle_root),
            time: self.ntime,
            bits: CompactTarget::from_consensus(self.nbits),
            nonce,
        }
        .block_hash()
    }

    /// The first nonce from `start` whose hash meets (or, with `meet` false, misses) `target`.
    fn solve(&self, target: &Target, start: u32, version: u32, meet: bool) -> u32 {
        (start..).find(|n| target.is_met_by(self.hash(*n, version)) == meet).unwrap()
    }
}

async fn sv2_bridge(dir: &std::path::Path) -> MintBridge {
    start(dir, |c| c.sv2_listen = Some("127.0.0.1:0".parse().unwrap())).await
}

impl Client {
    async fn connect(addr: SocketAddr, authority: &str) -> Result<Self, NoiseError> {
        let key: key_utils::Secp256k1PublicKey = authority.parse().unwrap();
        let initiator = noise_sv2::Initiator::from_raw_k(key.into_bytes()).unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (r, w) = noise::connect(tcp, initiator, Duration::from_secs(5), 1 << 20).await?;
        Ok(Self { r, w })
    }

    async fn to(bridge: &MintBridge) -> Self {
        let mut c = Self::connect(bridge.sv2_addr().unwrap(), &bridge.sv2_authority_key().unwrap()).await.unwrap();
        c.setup().await;
        c
    }

    async fn recv(&mut self) -> Result<Frame, NoiseError> {
        tokio::time::timeout(Duration::from_secs(10), self.r.read()).await.expect("a frame within 10 s")
    }

    async fn setup(&mut self) {
        let m = SetupConnection {
            protocol: Protocol::MiningProtocol,
            min_version: 2,
            max_version: 2,
            flags: 0,
            endpoint_host: Str0255::try_from("127.0.0.1").unwrap(),
            endpoint_port: 0,
            vendor: Str0255::try_from("ehash-test").unwrap(),
            hardware_version: Str0255::try_from("").unwrap(),
            firmware: Str0255::try_from("").unwrap(),
            device_id: Str0255::try_from("t").unwrap(),
        };
        self.w.write(m, common_messages_sv2::MESSAGE_TYPE_SETUP_CONNECTION, false).await.unwrap();
        let f = self.recv().await.unwrap();
        assert_eq!(f.msg_type, common_messages_sv2::MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS);
    }

    /// Open a standard channel: its id and target, or the error code.
    async fn open(&mut self, user: &str) -> Result<(u32, [u8; 32]), String> {
        let max = [0xffu8; 32];
        let m = OpenStandardMiningChannel {
            request_id: 7,
            user_identity: Str0255::try_from(user).unwrap(),
            nominal_hash_rate: 1e6,
            max_target: U256::from(&max),
        };
        self.w.write(m, MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL, false).await.unwrap();
        let mut f = self.recv().await.unwrap();
        match f.msg_type {
            MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL_SUCCESS => {
                let ok: OpenStandardMiningChannelSuccess = binary_sv2::from_bytes(&mut f.payload).unwrap();
                assert_eq!(ok.request_id, 7);
                Ok((ok.channel_id, ok.target.to_array()))
            }
            MESSAGE_TYPE_OPEN_MINING_CHANNEL_ERROR => {
                let e: OpenMiningChannelError = binary_sv2::from_bytes(&mut f.payload).unwrap();
                Err(String::from_utf8(e.error_code.as_bytes().to_vec()).unwrap())
            }
            t => panic!("unexpected message {t:#x}"),
        }
    }

    /// Read until a job is active on a known previous hash.
    async fn job(&mut self) -> Job {
        let mut jobs: Vec<Job> = vec![];
        loop {
            let mut f = self.recv().await.unwrap();
            match f.msg_type {
                MESSAGE_TYPE_NEW_MINING_JOB => {
                    let j: NewMiningJob = binary_sv2::from_bytes(&mut f.payload).unwrap();
                    let job = Job {
                        id: j.job_id,
                        version: j.version,
                        merkle_root: j.merkle_root.to_array(),
                        prev_hash: [0; 32],
                        ntime: j.min_ntime.as_ref().copied().unwrap_or(0),
                        nbits: 0,
                    };
                    if j.min_ntime.as_ref().is_some()
                        && let Some(last) = jobs.last()
                    {
                        return Job { prev_hash: last.prev_hash, nbits: last.nbits, ..job };
                    }
                    jobs.push(job);
                }
                MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH => {
                    let p: SetNewPrevHash = binary_sv2::from_bytes(&mut f.payload).unwrap();
                    let mut job = jobs.iter().find(|j| j.id == p.job_id).cloned().expect("SetNewPrevHash names a sent job");
                    job.prev_hash = p.prev_hash.to_array();
                    job.ntime = p.min_ntime;
                    job.nbits = p.nbits;
                    return job;
                }
                MESSAGE_TYPE_SET_TARGET => {}
                t => panic!("unexpected message {t:#x} while waiting for a job"),
            }
        }
    }

    /// Submit a share: `Ok(credited)` or the error code.
    async fn submit(&mut self, channel_id: u32, seq: u32, job: &Job, nonce: u32, version: u32) -> Result<u64, String> {
        let m = SubmitSharesStandard { channel_id, sequence_number: seq, job_id: job.id, nonce, ntime: job.ntime, version };
        self.w.write(m, MESSAGE_TYPE_SUBMIT_SHARES_STANDARD, true).await.unwrap();
        self.answer(channel_id, seq).await
    }

    async fn answer(&mut self, channel_id: u32, seq: u32) -> Result<u64, String> {
        let mut f = self.recv().await.unwrap();
        match f.msg_type {
            MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS => {
                let ok: SubmitSharesSuccess = binary_sv2::from_bytes(&mut f.payload).unwrap();
                assert_eq!((ok.channel_id, ok.last_sequence_number), (channel_id, seq));
                Ok(ok.new_shares_sum)
            }
            MESSAGE_TYPE_SUBMIT_SHARES_ERROR => {
                let e: SubmitSharesError = binary_sv2::from_bytes(&mut f.payload).unwrap();
                assert_eq!((e.channel_id, e.sequence_number), (channel_id, seq));
                Err(String::from_utf8(e.error_code.as_bytes().to_vec()).unwrap())
            }
            t => panic!("unexpected message {t:#x} while waiting for a share's answer"),
        }
    }
}

/// An extended job: the client builds the coinbase and the merkle root.
#[derive(Debug, Clone)]
struct ExtJob {
    id: u32,
    version: u32,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    path: Vec<[u8; 32]>,
    prev_hash: [u8; 32],
    ntime: u32,
    nbits: u32,
}

impl ExtJob {
    /// The header job for one extranonce: `prefix ‖ extranonce_prefix ‖ extranonce ‖ suffix`.
    fn with_extranonce(&self, extranonce_prefix: &[u8], extranonce: &[u8]) -> Job {
        use bitcoin::hashes::sha256d;
        let coinbase = [&self.prefix[..], extranonce_prefix, extranonce, &self.suffix[..]].concat();
        let mut root = sha256d::Hash::hash(&coinbase).to_byte_array();
        for b in &self.path {
            root = sha256d::Hash::hash(&[&root[..], &b[..]].concat()).to_byte_array();
        }
        Job { id: self.id, version: self.version, merkle_root: root, prev_hash: self.prev_hash, ntime: self.ntime, nbits: self.nbits }
    }
}

impl Client {
    /// Open an extended channel: id, target, extranonce size and prefix.
    async fn open_extended(&mut self, user: &str, min_extranonce_size: u16) -> Result<(u32, [u8; 32], usize, Vec<u8>), String> {
        let m = OpenExtendedMiningChannel {
            request_id: 11,
            user_identity: Str0255::try_from(user).unwrap(),
            nominal_hash_rate: 1e6,
            max_target: U256::from(&[0xff; 32]),
            min_extranonce_size,
        };
        self.w.write(m, MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL, false).await.unwrap();
        let mut f = self.recv().await.unwrap();
        match f.msg_type {
            MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS => {
                let ok: OpenExtendedMiningChannelSuccess = binary_sv2::from_bytes(&mut f.payload).unwrap();
                assert_eq!(ok.request_id, 11);
                Ok((ok.channel_id, ok.target.to_array(), usize::from(ok.extranonce_size), ok.extranonce_prefix.as_bytes().to_vec()))
            }
            MESSAGE_TYPE_OPEN_MINING_CHANNEL_ERROR => {
                let e: OpenMiningChannelError = binary_sv2::from_bytes(&mut f.payload).unwrap();
                Err(String::from_utf8(e.error_code.as_bytes().to_vec()).unwrap())
            }
            t => panic!("unexpected message {t:#x}"),
        }
    }

    /// The first extended job and its `SetNewPrevHash`.
    async fn extended_job(&mut self) -> ExtJob {
        let mut f = self.recv().await.unwrap();
        assert_eq!(f.msg_type, MESSAGE_TYPE_NEW_EXTENDED_MINING_JOB);
        let j: NewExtendedMiningJob = binary_sv2::from_bytes(&mut f.payload).unwrap();
        assert!(j.min_ntime.as_ref().is_none(), "a future job first");
        assert!(j.version_rolling_allowed);
        let mut job = ExtJob {
            id: j.job_id,
            version: j.version,
            prefix: j.coinbase_tx_prefix.as_bytes().to_vec(),
            suffix: j.coinbase_tx_suffix.as_bytes().to_vec(),
            path: j.merkle_path.into_inner().iter().map(|h| h.to_array()).collect(),
            prev_hash: [0; 32],
            ntime: 0,
            nbits: 0,
        };
        let mut f = self.recv().await.unwrap();
        assert_eq!(f.msg_type, MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH);
        let p: SetNewPrevHash = binary_sv2::from_bytes(&mut f.payload).unwrap();
        assert_eq!(p.job_id, job.id);
        job.prev_hash = p.prev_hash.to_array();
        job.ntime = p.min_ntime;
        job.nbits = p.nbits;
        job
    }

    async fn submit_extended(&mut self, channel_id: u32, seq: u32, job: &Job, nonce: u32, extranonce: &[u8]) -> Result<u64, String> {
        let m = SubmitSharesExtended {
            channel_id,
            sequence_number: seq,
            job_id: job.id,
            nonce,
            ntime: job.ntime,
            version: job.version,
            extranonce: binary_sv2::B032::try_from(extranonce).unwrap(),
        };
        self.w.write(m, MESSAGE_TYPE_SUBMIT_SHARES_EXTENDED, true).await.unwrap();
        self.answer(channel_id, seq).await
    }
}

fn share_target() -> Target {
    DifficultyExp::new(DIFF_EXP).unwrap().target()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv2_standard_channel_shares_are_credited_once() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = sv2_bridge(dir.path()).await;
    let key = bridge.sv2_authority_key().unwrap();
    assert!(key.parse::<key_utils::Secp256k1PublicKey>().is_ok(), "the printed key is what clients take: {key}");
    // the key is kept in the data dir, readable by its owner only
    let path = dir.path().join(ehash_keyfile::SV2_AUTHORITY_KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let w = wallet(dir.path(), &bridge, 1).await;
    let unit = current_unit(&bridge).await;
    let quote = w.create_quote(&unit).await.unwrap();
    let mut c = Client::to(&bridge).await;
    let (channel, target) = c.open(&format!("{quote}.rig1")).await.unwrap();
    assert_eq!(Target::from_le_bytes(target), share_target(), "the channel's target is the configured difficulty's");
    let job = c.job().await;
    let t = share_target();
    let mut nonce = 0;
    for seq in 1..=3 {
        nonce = job.solve(&t, nonce, job.version, true);
        assert_eq!(c.submit(channel, seq, &job, nonce, job.version).await, Ok(CREDIT));
        nonce += 1;
    }
    // version rolling within BIP320's bits is valid work; outside them it is refused
    let rolled = job.version | 0x0000_4000;
    assert_eq!(rolled & !VERSION_ROLLING_MASK, job.version & !VERSION_ROLLING_MASK);
    let n = job.solve(&t, 0, rolled, true);
    assert_eq!(c.submit(channel, 4, &job, n, rolled).await, Ok(CREDIT));
    let outside = job.version ^ 0x0000_0001;
    let n2 = job.solve(&t, 0, outside, true);
    assert_eq!(c.submit(channel, 5, &job, n2, outside).await, Err("version-rolling-not-allowed".into()));
    // the same share again is a duplicate
    assert_eq!(c.submit(channel, 6, &job, n, rolled).await, Err("duplicate-share".into()));
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (4 * CREDIT, 4), "each accepted share credited once");
    assert_eq!(w.mint_credited(&unit, &quote).await.unwrap(), 4 * CREDIT);
    let stats = bridge.sv2_stats().unwrap();
    assert_eq!((stats.accepted, stats.credited), (4, 4 * CREDIT));
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv2_bad_shares_get_their_error_and_credit_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = sv2_bridge(dir.path()).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let mut c = Client::to(&bridge).await;
    // unknown quotes are not authorized
    assert_eq!(c.open("0190f6a1-7c1e-7cc3-9d1a-2b5e7f000001.w").await, Err("unknown-user".into()));
    assert_eq!(c.open("not-a-quote").await, Err("unknown-user".into()));
    let (channel, _) = c.open(&format!("{quote}.w")).await.unwrap();
    let job = c.job().await;
    let t = share_target();
    let good = job.solve(&t, 0, job.version, true);
    let bad = job.solve(&t, 0, job.version, false);
    assert_eq!(c.submit(channel + 100, 1, &job, good, job.version).await, Err("invalid-channel-id".into()));
    let unknown = Job { id: job.id + 1000, ..job.clone() };
    assert_eq!(c.submit(channel, 2, &unknown, good, job.version).await, Err("invalid-job-id".into()));
    assert_eq!(c.submit(channel, 3, &job, bad, job.version).await, Err("difficulty-too-low".into()));
    // an extended share for a standard channel
    let m = SubmitSharesExtended {
        channel_id: channel,
        sequence_number: 9,
        job_id: job.id,
        nonce: good,
        ntime: job.ntime,
        version: job.version,
        extranonce: binary_sv2::B032::try_from(&[0u8; 8][..]).unwrap(),
    };
    c.w.write(m, MESSAGE_TYPE_SUBMIT_SHARES_EXTENDED, true).await.unwrap();
    assert_eq!(c.answer(channel, 9).await, Err("invalid-channel-id".into()));
    // a message type the pool does not serve is ignored; the connection keeps working
    c.w.write_raw(0x7f, 0, &[1, 2, 3]).await.unwrap();
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (0, 0), "nothing credited");
    assert_eq!(c.submit(channel, 4, &job, good, job.version).await, Ok(CREDIT));
    assert_eq!(c.submit(channel, 5, &job, good, job.version).await, Err("duplicate-share".into()));
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (CREDIT, 1));
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv2_a_client_with_the_wrong_authority_key_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = sv2_bridge(dir.path()).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let other = ehash_stratum::AuthorityKey::from_secret([7; 32]).unwrap().public_key();
    assert_ne!(other, bridge.sv2_authority_key().unwrap());
    let r = Client::connect(bridge.sv2_addr().unwrap(), &other).await;
    assert!(matches!(r, Err(NoiseError::Handshake(_))), "the pool's certificate does not verify against another key");
    // nothing of that connection stays, nothing is credited
    wait_until("the failed connection is gone", Duration::from_secs(5), || async { bridge.sv2_stats().unwrap().connections == 0 }).await;
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (0, 0));
    assert_eq!(bridge.sv2_stats().unwrap().accepted, 0);
    // the right key works
    let mut c = Client::to(&bridge).await;
    assert!(c.open(&format!("{quote}.w")).await.is_ok());
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv2_a_frame_over_the_cap_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = sv2_bridge(dir.path()).await;
    let mut c = Client::to(&bridge).await;
    // exactly the cap is fine (an unserved type: ignored)
    c.w.write_raw(0x7f, 0, &vec![0; MAX_FRAME_PAYLOAD]).await.unwrap();
    assert_eq!(c.open("not-a-quote").await, Err("unknown-user".into()), "the connection still answers");
    c.w.write_raw(MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL, 0, &vec![0; MAX_FRAME_PAYLOAD + 1]).await.unwrap();
    let r = c.recv().await;
    assert!(matches!(r, Err(NoiseError::Closed(_))), "closed, not answered: {r:?}");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv2_a_new_epoch_closes_the_channel_and_stops_its_credit() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = sv2_bridge(dir.path()).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let mut c = Client::to(&bridge).await;
    let (channel, _) = c.open(&format!("{quote}.w")).await.unwrap();
    let job = c.job().await;
    let t = share_target();
    let n1 = job.solve(&t, 0, job.version, true);
    assert_eq!(c.submit(channel, 1, &job, n1, job.version).await, Ok(CREDIT));
    let token = ehash_keyfile::read_admin_token(dir.path()).unwrap();
    let url = format!("{}/admin/epoch/close", bridge.mint_url());
    let resp = bitreq::post(url.as_str()).with_header("Authorization", format!("Bearer {token}")).send_async().await.unwrap();
    assert_eq!(resp.status_code, 200);
    let mut f = c.recv().await.unwrap();
    assert_eq!(f.msg_type, MESSAGE_TYPE_CLOSE_CHANNEL);
    let close: CloseChannel = binary_sv2::from_bytes(&mut f.payload).unwrap();
    let reason = String::from_utf8(close.reason_code.as_bytes().to_vec()).unwrap();
    assert_eq!(close.channel_id, channel);
    assert!(reason.starts_with("ehash-epoch-ended: ehash epoch 2 started"), "{reason}");
    let n2 = job.solve(&t, n1 + 1, job.version, true);
    assert_eq!(c.submit(channel, 2, &job, n2, job.version).await, Err("invalid-channel-id".into()));
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (CREDIT, 1));
    // a quote of the new epoch opens a channel on the same connection
    let q2 = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    assert!(c.open(&format!("{q2}.w")).await.is_ok());
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv2_a_share_that_is_a_block_closes_the_epoch_like_a_v1_one() {
    use ehash_protocol::epoch::CloseReason;
    let dir = tempfile::tempdir().unwrap();
    // every share meets the network target: each accepted share is a block
    let bridge = start(dir.path(), |c| {
        c.sv2_listen = Some("127.0.0.1:0".parse().unwrap());
        c.devnet.network_difficulty_exp = DIFF_EXP;
    })
    .await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let mut c = Client::to(&bridge).await;
    let (channel, _) = c.open(&format!("{quote}.w")).await.unwrap();
    let job = c.job().await;
    let n = job.solve(&share_target(), 0, job.version, true);
    let m = SubmitSharesStandard { channel_id: channel, sequence_number: 1, job_id: job.id, nonce: n, ntime: job.ntime, version: job.version };
    c.w.write(m, MESSAGE_TYPE_SUBMIT_SHARES_STANDARD, true).await.unwrap();
    // the block makes a new tip and a new epoch: the pool's news may come before the answer;
    // the channel is told the epoch ended and is closed
    let (mut accepted, mut closed) = (false, false);
    while !(accepted && closed) {
        let mut f = c.recv().await.unwrap();
        match f.msg_type {
            MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS => {
                let ok: SubmitSharesSuccess = binary_sv2::from_bytes(&mut f.payload).unwrap();
                assert_eq!((ok.last_sequence_number, ok.new_shares_sum), (1, CREDIT));
                accepted = true;
            }
            MESSAGE_TYPE_CLOSE_CHANNEL => closed = true,
            MESSAGE_TYPE_NEW_MINING_JOB | MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH => {}
            t => panic!("unexpected message {t:#x}"),
        }
    }
    wait_until("epoch 2", Duration::from_secs(10), || async { bridge.epochs().all().await.len() == 2 }).await;
    let e1 = bridge.epochs().all().await.remove(0);
    assert_eq!((e1.close_reason, e1.issued, e1.shares), (Some(CloseReason::Block), Some(CREDIT), Some(1)));
    assert_eq!(e1.block_hash.as_deref(), Some(job.hash(n, job.version).to_string().as_str()), "the block is the share's header");
    // a channel for a quote of epoch 2 mines on the new tip
    let q2 = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let (ch2, _) = c.open(&format!("{q2}.w")).await.unwrap();
    let job2 = c.job().await;
    assert_ne!(job2.prev_hash, job.prev_hash);
    assert_ne!(ch2, channel);
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv2_extended_channel_shares_with_the_clients_extranonce_are_credited_once() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = sv2_bridge(dir.path()).await;
    let w = wallet(dir.path(), &bridge, 1).await;
    let quote = w.create_quote(&current_unit(&bridge).await).await.unwrap();
    let mut c = Client::to(&bridge).await;
    assert_eq!(c.open_extended(&format!("{quote}.x"), 9).await, Err("min-extranonce-size-too-large".into()));
    let (channel, target, size, prefix) = c.open_extended(&format!("{quote}.x"), 4).await.unwrap();
    assert_eq!(Target::from_le_bytes(target), share_target());
    assert_eq!((size, prefix.len()), (8, 4), "extranonce2 is the client's, extranonce1 the prefix");
    let ext = c.extended_job().await;
    let t = share_target();
    for (seq, en) in [(1u32, [1u8; 8]), (2, [2u8; 8])] {
        let job = ext.with_extranonce(&prefix, &en);
        let n = job.solve(&t, 0, job.version, true);
        assert_eq!(c.submit_extended(channel, seq, &job, n, &en).await, Ok(CREDIT));
    }
    // the same extranonce and nonce again: a duplicate
    let job = ext.with_extranonce(&prefix, &[1u8; 8]);
    let n = job.solve(&t, 0, job.version, true);
    assert_eq!(c.submit_extended(channel, 3, &job, n, &[1u8; 8]).await, Err("duplicate-share".into()));
    // a wrong extranonce size; a standard share on an extended channel; a share whose coinbase
    // is not the one the extranonce makes
    assert_eq!(c.submit_extended(channel, 4, &job, n, &[1u8; 7]).await, Err("bad-extranonce-size".into()));
    assert_eq!(c.submit(channel, 5, &job, n, job.version).await, Err("invalid-channel-id".into()));
    let bad = ext.with_extranonce(&prefix, &[3u8; 8]).solve(&t, 0, job.version, true);
    let other = ext.with_extranonce(&prefix, &[3u8; 8]);
    assert!(!t.is_met_by(ext.with_extranonce(&prefix, &[4u8; 8]).hash(bad, job.version)), "the nonce solves only its own extranonce");
    assert_eq!(c.submit_extended(channel, 6, &other, bad, &[4u8; 8]).await, Err("difficulty-too-low".into()));
    assert_eq!(bridge.epochs().ledger().quote_totals(&quote).await.unwrap(), (2 * CREDIT, 2));
    assert_eq!(w.mint_credited(&current_unit(&bridge).await, &quote).await.unwrap(), 2 * CREDIT);
    bridge.shutdown().await;
}
