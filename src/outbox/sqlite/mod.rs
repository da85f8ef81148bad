//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, written by one thread that
//! commits many operations in one transaction (group commit), so concurrent webhooks share an
//! fsync.

mod checkpoint;
mod ops;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::Connection;

use super::{
    AttemptReport, Change, ClaimRequest, Claimed, CommitOutcome, DeliveryDetail, DeliveryState,
    DeliverySummary, Intake, ListFilter, PurgeReport, Store, StoreError,
};
use writer::Writer;

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "herald.sqlite3";

/// How long a caller waits for the writer before the operation counts as failed.
const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite outbox.
pub struct SqliteStore {
    writer: Writer,
    _checkpointer: checkpoint::Checkpointer,
    instance_id: String,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and starts its writer thread.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            StoreError::Unavailable(format!(
                "cannot create the data directory {}: {error}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let connection = open_connection(&path)?;
        let instance_id = ops::prepare_schema(&connection).map_err(unavailable)?;
        let writer = Writer::start(path.clone(), connection, DEFAULT_OPERATION_TIMEOUT)?;
        Ok(SqliteStore {
            writer,
            _checkpointer: checkpoint::start(path.clone()),
            instance_id,
            path,
        })
    }

    /// Returns the random id fixed when the database was created, which is part of every
    /// e-mail `Message-ID`.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

/// Opens a connection with the settings every herald connection uses. The writer checkpoints
/// by itself only when the log passes 16,384 pages (64 MiB), a bound for when the
/// checkpoint thread falls behind or fails.
pub(super) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(|error| {
        StoreError::Unavailable(format!("cannot open {}: {error}", path.display()))
    })?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -4096;
             PRAGMA wal_autocheckpoint = 1000;",
        )
        .map_err(unavailable)?;
    Ok(connection)
}

fn unavailable(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, intake: Intake) -> Result<CommitOutcome, StoreError> {
        // Serialize on the caller's task: under load the writer thread is the bottleneck.
        let prepared = ops::PreparedIntake::new(intake)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        self.writer
            .run(move |connection| ops::commit(connection, &prepared))
            .await
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.writer
            .run(move |connection| ops::claim(connection, &request))
            .await
    }

    async fn finish(&self, report: AttemptReport) -> Result<(), StoreError> {
        self.writer
            .run(move |connection| ops::finish(connection, &report))
            .await
    }

    async fn release(&self, id: i64, lease_token: i64) -> Result<(), StoreError> {
        self.writer
            .run(move |connection| ops::release(connection, id, lease_token))
            .await
    }

    async fn next_due(&self, channels: Vec<String>) -> Result<Option<Timestamp>, StoreError> {
        self.writer
            .run(move |connection| ops::next_due(connection, &channels))
            .await
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<DeliverySummary>, StoreError> {
        self.writer
            .run(move |connection| ops::list(connection, &filter))
            .await
    }

    async fn delivery(&self, id: i64) -> Result<Option<DeliveryDetail>, StoreError> {
        self.writer
            .run(move |connection| ops::delivery(connection, id))
            .await
    }

    async fn retry(&self, id: i64, now: Timestamp) -> Result<Change, StoreError> {
        self.writer
            .run(move |connection| ops::retry(connection, id, now))
            .await
    }

    async fn cancel(&self, id: i64, now: Timestamp, reason: String) -> Result<Change, StoreError> {
        self.writer
            .run(move |connection| ops::cancel(connection, id, now, &reason))
            .await
    }

    async fn purge(&self, now: Timestamp, before: Timestamp) -> Result<PurgeReport, StoreError> {
        self.writer
            .run(move |connection| ops::purge(connection, now, before))
            .await
    }

    async fn probe(&self) -> Result<(), StoreError> {
        self.writer.run(ops::probe).await
    }

    async fn counts(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError> {
        self.writer.run(ops::counts).await
    }
}
