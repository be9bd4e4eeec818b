//! The pool mint's Lightning backend survives epoch changes: every rebuilt mint instance listens
//! to the backend's payment events, so cdk never warns that it cannot open their stream (the
//! fake backend handed its stream out once, and every later mint instance retried and warned,
//! which `ehash up` showed about once a second).
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ehash_lightning::Lightning;
use ehash_protocol::epoch::CloseReason;

/// Everything logged at WARN and above, for the whole test binary (its only test).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_changes_keep_the_lightning_event_stream_without_warnings() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt().with_env_filter("warn").with_ansi(false).with_writer(move || writer.clone()).init();
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(dir.path(), |c| c.lightning = Some(Lightning::Fake)).await;
    for _ in 0..3 {
        bridge.epochs().close_active(CloseReason::Operator, None).await.unwrap();
    }
    assert_eq!(bridge.epochs().all().await.len(), 4, "three epoch changes, three rebuilt mint instances");
    // cdk retries a stream it could not open after 250 ms, 500 ms, 1 s, ...
    tokio::time::sleep(Duration::from_secs(2)).await;
    bridge.shutdown().await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.contains("Could not open stream"), "{logs}");
    assert!(!logs.contains("No channel receiver"), "{logs}");
}
