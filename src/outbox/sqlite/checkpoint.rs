//! Background checkpoints. A checkpoint copies pages from the write-ahead log into the
//! database file. When the writer runs it at commit (SQLite's default), every commit behind
//! it waits. This thread runs passive checkpoints, which never block the writer, on its own
//! connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// Time between passive checkpoints.
const INTERVAL: Duration = Duration::from_millis(100);

/// Stops the checkpoint thread when dropped.
pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(super) fn start(path: PathBuf) -> Checkpointer {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let spawned = thread::Builder::new()
        .name("herald-checkpoint".into())
        .spawn(move || {
            let mut connection = None;
            while !stopped.load(Ordering::Relaxed) {
                thread::sleep(INTERVAL);
                if connection.is_none() {
                    connection = super::open_connection(&path).ok();
                }
                let Some(open) = connection.as_ref() else {
                    continue;
                };
                // A failure (disk full, file not writable) closes the connection; the writer's
                // own automatic checkpoint bounds the log meanwhile.
                if let Err(error) = open.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::debug!(%error, "Checkpoint failed");
                    connection = None;
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "Cannot start the checkpoint thread; the writer checkpoints itself");
    }
    Checkpointer { stop }
}
