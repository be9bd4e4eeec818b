//! A TCP gate before a server (a relay, a mint): while open it passes bytes both ways; closed, it
//! cuts every connection and refuses new ones, as a network that went away. For the one fault a
//! test cannot make with the real server alone: one client losing it while others keep it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The gate: listens on a loopback port of its own until dropped.
#[derive(Debug)]
pub struct Gate {
    addr: SocketAddr,
    open: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    /// Listen on a free loopback port and pass connections to `upstream` (`host:port`), open.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let open = Arc::new(watch::Sender::new(true));
        let o = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                if *o.borrow() {
                    tokio::spawn(pass(conn, upstream, o.subscribe()));
                }
            }
        });
        Self { addr, open, task }
    }

    /// The gate's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cut every connection and refuse new ones.
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Let connections through again.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pass bytes between `conn` and `upstream` until either side ends or the gate closes.
async fn pass(mut conn: TcpStream, upstream: SocketAddr, mut open: watch::Receiver<bool>) {
    let Ok(mut up) = TcpStream::connect(upstream).await else { return };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut conn, &mut up) => {}
        _ = open.wait_for(|o| !*o) => {}
    }
}
