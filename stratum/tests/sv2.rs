//! The SV2 server over real TCP with a backend that records what it credits and a job source the
//! test drives: new work on the same tip, a new tip making older jobs stale, channels refused.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use binary_sv2::{Str0255, U256};
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Target, TxMerkleNode};
use common_messages_sv2::{Protocol, SetupConnection};
use ehash_protocol::stratum::messages::ErrorCode;
use ehash_protocol::stratum::share::JobTemplate;
use ehash_protocol::work::DifficultyExp;
use ehash_stratum::sv2::noise::{self, Frame, FrameReader, FrameWriter, NoiseError};
use ehash_stratum::{AuthorityKey, Backend, Config, Difficulty, Refusal, Sv2Server, Template, Work};
use mining_sv2::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const DIFF_EXP: i32 = -18;

struct Recorder {
    credited: Mutex<Vec<(String, BlockHash)>>,
    next_en1: AtomicU32,
    /// Kept: a closed notice channel ends every connection, as on V1.
    notices: watch::Sender<u64>,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Self { credited: Mutex::new(vec![]), next_en1: AtomicU32::new(0), notices: watch::channel(0).0 })
    }
}

#[async_trait]
impl Backend for Recorder {
    type Worker = String;

    async fn authorize(&self, username: &str) -> Result<String, Refusal> {
        if username.starts_with("good.") { Ok(username.to_owned()) } else { Err(Refusal::new(ErrorCode::Unauthorized, "unknown quote")) }
    }

    async fn submit(&self, worker: &String, work: &Work) -> Result<u64, Refusal> {
        let mut c = self.credited.lock().unwrap();
        if c.iter().any(|(_, h)| *h == work.hash) {
            return Err(Refusal::new(ErrorCode::DuplicateShare, "duplicate share"));
        }
        // the header the server rebuilt is the one that was hashed
        assert_eq!(work.header.block_hash(), work.hash);
        c.push((worker.clone(), work.hash));
        Ok(1)
    }

    fn notices(&self) -> watch::Receiver<u64> {
        self.notices.subscribe()
    }

    async fn notice_for(&self, _: &String) -> Option<String> {
        None
    }

    fn allocate_extranonce1(&self, _: Option<&[u8]>) -> Option<Vec<u8>> {
        Some(self.next_en1.fetch_add(1, Ordering::Relaxed).to_be_bytes().to_vec())
    }

    fn release_extranonce1(&self, _: &[u8]) {}
}

fn template(id: u64, prev: u8, ntime: u32, clean: bool) -> Arc<Template> {
    Arc::new(Template {
        id,
        source_job_id: id.to_string(),
        height: 100,
        job: JobTemplate {
            prev_hash: [prev; 32],
            coinb1: vec![1, 2, 3, 4],
            coinb2: vec![5, 6, 7],
            merkle_branch: vec![[9; 32], [8; 32]],
            version: 0x2000_0000,
            nbits: 0x1d00_ffff,
            ntime,
        },
        clean,
        difficulty_range: None,
        transactions: Arc::from(Vec::new()),
        coinbase_value: 0,
    })
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

fn target(exp: i32) -> Target {
    DifficultyExp::new(exp).unwrap().target()
}

impl Job {
    fn meets(&self, target: &Target, nonce: u32) -> bool {
        let h = Header {
            version: Version::from_consensus(self.version as i32),
            prev_blockhash: BlockHash::from_byte_array(self.prev_hash),
            merkle_root: TxMerkleNode::from_byte_array(self.merkle_root),
            time: self.ntime,
            bits: CompactTarget::from_consensus(self.nbits),
            nonce,
        };
        target.is_met_by(h.block_hash())
    }

    /// The first nonce from `start` that meets the difficulty 2^DIFF_EXP.
    fn solve(&self, start: u32) -> u32 {
        let t = target(DIFF_EXP);
        (start..).find(|n| self.meets(&t, *n)).unwrap()
    }
}

struct Client {
    r: FrameReader,
    w: FrameWriter,
    prev: Option<([u8; 32], u32)>,
}

impl Client {
    async fn connect(server: &Sv2Server, key: &AuthorityKey) -> Self {
        let initiator = noise_sv2::Initiator::from_raw_k(key.public_bytes()).unwrap();
        let tcp = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
        let (r, w) = noise::connect(tcp, initiator, Duration::from_secs(5), 1 << 20).await.unwrap();
        let mut c = Self { r, w, prev: None };
        let m = SetupConnection {
            protocol: Protocol::MiningProtocol,
            min_version: 2,
            max_version: 2,
            flags: 0,
            endpoint_host: Str0255::try_from("x").unwrap(),
            endpoint_port: 0,
            vendor: Str0255::try_from("x").unwrap(),
            hardware_version: Str0255::try_from("").unwrap(),
            firmware: Str0255::try_from("").unwrap(),
            device_id: Str0255::try_from("").unwrap(),
        };
        c.w.write(m, common_messages_sv2::MESSAGE_TYPE_SETUP_CONNECTION, false).await.unwrap();
        assert_eq!(c.recv().await.unwrap().msg_type, common_messages_sv2::MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS);
        c
    }

    async fn recv(&mut self) -> Result<Frame, NoiseError> {
        tokio::time::timeout(Duration::from_secs(10), self.r.read()).await.expect("a frame within 10 s")
    }

    async fn open(&mut self, user: &str) -> Result<u32, String> {
        let m = OpenStandardMiningChannel { request_id: 1, user_identity: Str0255::try_from(user).unwrap(), nominal_hash_rate: 1.0, max_target: U256::from(&[0xff; 32]) };
        self.w.write(m, MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL, false).await.unwrap();
        let mut f = self.recv().await.unwrap();
        if f.msg_type == MESSAGE_TYPE_OPEN_MINING_CHANNEL_ERROR {
            let e: OpenMiningChannelError = binary_sv2::from_bytes(&mut f.payload).unwrap();
            return Err(String::from_utf8(e.error_code.as_bytes().to_vec()).unwrap());
        }
        assert_eq!(f.msg_type, MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL_SUCCESS);
        let ok: OpenStandardMiningChannelSuccess = binary_sv2::from_bytes(&mut f.payload).unwrap();
        Ok(ok.channel_id)
    }

    /// The next active job: a job with `min_ntime`, or a future job and its `SetNewPrevHash`.
    async fn job(&mut self) -> (Job, bool) {
        let mut future: Vec<Job> = vec![];
        loop {
            let mut f = self.recv().await.unwrap();
            match f.msg_type {
                MESSAGE_TYPE_NEW_MINING_JOB => {
                    let j: NewMiningJob = binary_sv2::from_bytes(&mut f.payload).unwrap();
                    let (prev, nbits) = self.prev.unwrap_or(([0; 32], 0));
                    let job = Job { id: j.job_id, version: j.version, merkle_root: j.merkle_root.to_array(), prev_hash: prev, ntime: 0, nbits };
                    match j.min_ntime.as_ref() {
                        Some(t) => return (Job { ntime: *t, ..job }, false),
                        None => future.push(job),
                    }
                }
                MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH => {
                    let p: SetNewPrevHash = binary_sv2::from_bytes(&mut f.payload).unwrap();
                    self.prev = Some((p.prev_hash.to_array(), p.nbits));
                    let job = future.iter().find(|j| j.id == p.job_id).cloned().unwrap();
                    return (Job { prev_hash: p.prev_hash.to_array(), ntime: p.min_ntime, nbits: p.nbits, ..job }, true);
                }
                t => panic!("unexpected message {t:#x}"),
            }
        }
    }

    async fn submit(&mut self, channel_id: u32, seq: u32, job: &Job, nonce: u32) -> Result<u64, String> {
        let m = SubmitSharesStandard { channel_id, sequence_number: seq, job_id: job.id, nonce, ntime: job.ntime, version: job.version };
        self.w.write(m, MESSAGE_TYPE_SUBMIT_SHARES_STANDARD, true).await.unwrap();
        let mut f = self.recv().await.unwrap();
        match f.msg_type {
            MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS => {
                let ok: SubmitSharesSuccess = binary_sv2::from_bytes(&mut f.payload).unwrap();
                assert_eq!(ok.last_sequence_number, seq);
                Ok(ok.new_shares_sum)
            }
            MESSAGE_TYPE_SUBMIT_SHARES_ERROR => {
                let e: SubmitSharesError = binary_sv2::from_bytes(&mut f.payload).unwrap();
                assert_eq!(e.sequence_number, seq);
                Err(String::from_utf8(e.error_code.as_bytes().to_vec()).unwrap())
            }
            t => panic!("unexpected message {t:#x}"),
        }
    }
}

async fn server(backend: Arc<Recorder>, templates: watch::Receiver<Arc<Template>>) -> (Sv2Server, AuthorityKey, CancellationToken) {
    server_within(backend, templates, DIFF_EXP).await
}

/// A server starting at 2^DIFF_EXP, vardiff up to 2^max_exp.
async fn server_within(backend: Arc<Recorder>, templates: watch::Receiver<Arc<Template>>, max_exp: i32) -> (Sv2Server, AuthorityKey, CancellationToken) {
    let key = AuthorityKey::from_secret([3; 32]).unwrap();
    let d = DifficultyExp::new(DIFF_EXP).unwrap();
    let max = DifficultyExp::new(max_exp).unwrap();
    let config = Config { retarget_secs: 3600, ..Config::default() };
    let cancel = CancellationToken::new();
    let s = Sv2Server::start("127.0.0.1:0".parse().unwrap(), key.clone(), config, Difficulty { initial: d, min: d, max }, backend, templates, cancel.clone())
        .await
        .unwrap();
    (s, key, cancel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_work_and_a_new_tip_reach_the_channel_and_old_tip_shares_are_stale() {
    let backend = Recorder::new();
    let (tx, rx) = watch::channel(template(1, 0xaa, 1_700_000_000, true));
    let (server, key, cancel) = server(backend.clone(), rx).await;
    let mut c = Client::connect(&server, &key).await;
    assert_eq!(c.open("bad").await, Err("unknown-user".into()));
    let ch = c.open("good.w").await.unwrap();
    let (j1, tip) = c.job().await;
    assert!(tip, "the first job is a future job activated by SetNewPrevHash");
    assert_eq!(j1.prev_hash, [0xaa; 32]);
    assert_eq!(c.submit(ch, 1, &j1, j1.solve(0)).await, Ok(1));

    // new work on the same tip: a job active at once; the older job stays valid
    tx.send(template(2, 0xaa, 1_700_000_030, false)).unwrap();
    let (j2, tip) = c.job().await;
    assert!(!tip);
    assert_eq!(j2.ntime, 1_700_000_030);
    assert_ne!(j2.id, j1.id);
    assert_eq!(c.submit(ch, 2, &j2, j2.solve(0)).await, Ok(1));
    let n = j1.solve(j1.solve(0) + 1);
    assert_eq!(c.submit(ch, 3, &j1, n).await, Ok(1));

    // a new tip: a future job and SetNewPrevHash; shares of the old tip are stale
    tx.send(template(3, 0xbb, 1_700_000_060, true)).unwrap();
    let (j3, tip) = c.job().await;
    assert!(tip);
    assert_eq!(j3.prev_hash, [0xbb; 32]);
    let n = j2.solve(j2.solve(0) + 1);
    assert_eq!(c.submit(ch, 4, &j2, n).await, Err("stale-share".into()));
    assert_eq!(c.submit(ch, 5, &j3, j3.solve(0)).await, Ok(1));
    assert_eq!(c.submit(ch, 6, &j3, j3.solve(0)).await, Err("duplicate-share".into()));

    let credited = backend.credited.lock().unwrap().clone();
    assert_eq!(credited.len(), 4, "each accepted share credited once, nothing else: {credited:?}");
    assert!(credited.iter().all(|(w, _)| w == "good.w"));
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_channels_on_one_connection_mine_different_work() {
    let backend = Recorder::new();
    let (_tx, rx) = watch::channel(template(1, 0xaa, 1_700_000_000, true));
    let (server, key, cancel) = server(backend.clone(), rx).await;
    let mut c = Client::connect(&server, &key).await;
    let a = c.open("good.a").await.unwrap();
    let (ja, _) = c.job().await;
    let b = c.open("good.b").await.unwrap();
    let (jb, _) = c.job().await;
    assert_ne!(a, b);
    assert_ne!(ja.merkle_root, jb.merkle_root, "each channel has its own extranonce");
    assert_eq!(c.submit(a, 1, &ja, ja.solve(0)).await, Ok(1));
    assert_eq!(c.submit(b, 2, &jb, jb.solve(0)).await, Ok(1));
    // a's job under b's channel is not b's work
    let r = c.submit(b, 3, &Job { id: jb.id, ..ja.clone() }, ja.solve(ja.solve(0) + 1)).await;
    assert_eq!(r, Err("difficulty-too-low".into()), "the server rebuilds b's header, which the nonce does not solve (at 2^-18 it could, rarely)");
    let credited = backend.credited.lock().unwrap().clone();
    assert_eq!(credited.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(), vec!["good.a", "good.b"]);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_channel_gets_a_harder_target_and_a_job_committing_to_it() {
    let backend = Recorder::new();
    let (_tx, rx) = watch::channel(template(1, 0xaa, 1_700_000_000, true));
    let (server, key, cancel) = server_within(backend.clone(), rx, DIFF_EXP + 2).await;
    let mut c = Client::connect(&server, &key).await;
    let ch = c.open("good.w").await.unwrap();
    let (j1, _) = c.job().await;
    // 16 shares far faster than one per 10 s: vardiff raises the difficulty at once
    let mut n = 0;
    for seq in 1..=16 {
        n = j1.solve(n);
        assert_eq!(c.submit(ch, seq, &j1, n).await, Ok(1));
        n += 1;
    }
    let mut f = c.recv().await.unwrap();
    assert_eq!(f.msg_type, MESSAGE_TYPE_SET_TARGET);
    let st: SetTarget = binary_sv2::from_bytes(&mut f.payload).unwrap();
    assert_eq!((st.channel_id, Target::from_le_bytes(st.maximum_target.to_array())), (ch, target(DIFF_EXP + 2)));
    let (j2, tip) = c.job().await;
    assert!(!tip, "same tip: the new job is active at once");
    assert_ne!(j2.merkle_root, j1.merkle_root, "the coinbase commits to the new difficulty");
    // the new job is held to the new target; the old job to its own
    let (easy, hard) = (target(DIFF_EXP), target(DIFF_EXP + 2));
    let weak = (0..).find(|n| j2.meets(&easy, *n) && !j2.meets(&hard, *n)).unwrap();
    assert_eq!(c.submit(ch, 17, &j2, weak).await, Err("difficulty-too-low".into()));
    let strong = (0..).find(|n| j2.meets(&hard, *n)).unwrap();
    assert_eq!(c.submit(ch, 18, &j2, strong).await, Ok(1));
    assert_eq!(c.submit(ch, 19, &j1, j1.solve(n)).await, Ok(1));
    assert_eq!(backend.credited.lock().unwrap().len(), 18);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_handshake_is_dropped_and_the_server_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Recorder::new();
    let (_tx, rx) = watch::channel(template(1, 0xaa, 1_700_000_000, true));
    let (server, key, cancel) = server(backend.clone(), rx).await;
    // a plain-text Stratum V1 line instead of a Noise handshake
    let mut raw = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    raw.write_all(b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n").await.unwrap();
    raw.shutdown().await.unwrap();
    let mut buf = vec![];
    let read = tokio::time::timeout(Duration::from_secs(15), raw.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(_))), "the server closes it");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.stats().connections > 0 {
        assert!(tokio::time::Instant::now() < deadline, "no session is left behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = Client::connect(&server, &key).await;
    assert!(c.open("good.w").await.is_ok());
    assert!(backend.credited.lock().unwrap().is_empty());
    cancel.cancel();
}
