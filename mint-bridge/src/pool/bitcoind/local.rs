//! A Bitcoin Core node this process starts for itself, on regtest or on a custom signet whose
//! challenge is `OP_TRUE` (anyone may sign a block): for `ehash up --chain` and for tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::rpc::{Rpc, RpcAuth};
use crate::config::BitcoindConfig;
use crate::error::{Error, Result};

/// The environment variable naming the `bitcoind` binary (else it is looked up on `PATH`).
pub const BITCOIND_ENV: &str = "EHASH_BITCOIND";

/// The `bitcoind` binary: `$EHASH_BITCOIND`, else `bitcoind` on `PATH`.
pub fn find_bitcoind() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(BITCOIND_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("bitcoind")).find(|p| p.is_file())
}

/// A running node, stopped when dropped.
#[derive(Debug)]
pub struct LocalNode {
    child: Option<Child>,
    binary: PathBuf,
    datadir: PathBuf,
    chain: String,
    rpc_port: u16,
    cookie: PathBuf,
}

impl LocalNode {
    /// Start `binary` on `chain` (`regtest`, or `signet` for an OP_TRUE custom signet) with its
    /// data in `datadir`, RPC on a free loopback port; returns once it answers RPC.
    pub async fn start(binary: &Path, datadir: &Path, chain: &str) -> Result<Self> {
        if chain != "regtest" && chain != "signet" {
            return Err(Error::Config(format!("a local node runs regtest or signet, not {chain}")));
        }
        let rpc_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::Node(format!("no free port for bitcoind's RPC: {e}")))?
            .port();
        let mut node = Self {
            child: None,
            binary: binary.to_path_buf(),
            datadir: datadir.to_path_buf(),
            chain: chain.to_owned(),
            rpc_port,
            cookie: datadir.join("rpc.cookie"),
        };
        node.spawn().await?;
        Ok(node)
    }

    async fn spawn(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.datadir).map_err(|source| Error::DataDir { path: self.datadir.clone(), source })?;
        let mut cmd = Command::new(&self.binary);
        if self.chain == "signet" {
            cmd.args(["-signet", "-signetchallenge=51"]);
        } else {
            cmd.arg("-regtest");
        }
        cmd.arg(format!("-datadir={}", self.datadir.display()))
            .arg(format!("-rpcport={}", self.rpc_port))
            .arg(format!("-rpccookiefile={}", self.cookie.display()))
            .args(["-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", "-server=1", "-listen=0", "-connect=0", "-dnsseed=0", "-printtoconsole=0", "-rpcthreads=8"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // its own process group: a Ctrl-C meant for us does not stop it before we do
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| Error::Node(format!("cannot run {}: {e}; set {BITCOIND_ENV} to a bitcoind binary", self.binary.display())))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(Error::Node(format!("bitcoind exited ({status}) at start: {}", err.trim())));
            }
            if self.rpc().call::<Value>("getblockchaininfo", json!([])).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Node("bitcoind did not answer RPC within 60 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stop the node (`stop` over RPC, then wait for the process).
    pub async fn stop(&mut self) {
        let _ = self.rpc().call::<Value>("stop", json!([])).await;
        if let Some(mut child) = self.child.take() {
            for _ in 0..300 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the stopped node again on the same data and port.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await;
        self.spawn().await
    }

    /// A client of its RPC.
    pub fn rpc(&self) -> Rpc {
        Rpc::new(self.rpc_url(), RpcAuth::Cookie(self.cookie.clone()), 30)
    }

    /// Its RPC URL.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// A job source configuration mining on it, paying `payout_address`.
    pub fn job_source(&self, payout_address: &str) -> BitcoindConfig {
        BitcoindConfig {
            rpc_url: self.rpc_url(),
            cookie_file: Some(self.cookie.clone()),
            chain: self.chain.clone(),
            payout_address: payout_address.to_owned(),
            ..BitcoindConfig::default()
        }
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
