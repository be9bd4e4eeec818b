//! A throwaway PostgreSQL cluster: `initdb` into a temp dir, `postgres` on a free loopback port,
//! killed and deleted on drop. When run as root, the server runs as the `postgres` user via
//! `runuser` (PostgreSQL refuses to run as root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster.
#[derive(Debug)]
pub struct PgCluster {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn find_bin(name: &str) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()));
    from_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
            .filter(|p| p.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn as_server_user(bin: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

impl PgCluster {
    /// Start a cluster (without fsync: tests need no durability across a power cut), or skip
    /// (see [`crate::skip_or_fail`]) if PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        Self::launch(false)
    }

    /// Start a cluster that syncs every commit to disk as a production one does (benchmarks).
    pub fn start_durable() -> Option<Self> {
        Self::launch(true)
    }

    fn launch(fsync: bool) -> Option<Self> {
        let (Some(initdb), Some(postgres)) = (find_bin("initdb"), find_bin("postgres")) else {
            return crate::skip_or_fail("PostgreSQL (initdb, postgres) is not installed");
        };
        let root = is_root();
        let dir = tempfile::Builder::new().prefix("ehash-pg").tempdir().ok()?;
        let data = dir.path().join("data");
        if root {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().is_ok_and(|s| s.success());
            if !ok {
                return crate::skip_or_fail("running as root, and the temp dir cannot be given to the postgres user");
            }
        }
        let out = as_server_user(&initdb, root)
            .args(["-A", "trust", "-U", "ehash", "-N", "-E", "UTF8", "--locale=C", "-D"])
            .arg(&data)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => return crate::skip_or_fail(&format!("initdb failed: {}", String::from_utf8_lossy(&o.stderr))),
            Err(e) => return crate::skip_or_fail(&format!("cannot run initdb: {e}")),
        }
        let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = as_server_user(&postgres, root)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", if fsync { "fsync=on" } else { "fsync=off" }, "-c", "max_connections=100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => return crate::skip_or_fail(&format!("cannot start postgres: {e}")),
        };
        let cluster = Self { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return crate::skip_or_fail("postgres did not start listening within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // accepting TCP is not yet accepting logins; give the startup a moment
        std::thread::sleep(Duration::from_millis(300));
        Some(cluster)
    }

    /// A connection URL for the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://ehash@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
