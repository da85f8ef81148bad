//! The writer thread. Callers send operations over a channel. The thread runs all that are
//! waiting (up to `MAX_BATCH`) in one transaction, each inside its own savepoint. It commits
//! once and only then replies to each caller.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::outbox::StoreError;

/// Operations committed together at most.
const MAX_BATCH: usize = 512;

/// Operations waiting for the writer at most; callers wait for room beyond that.
const QUEUE_CAPACITY: usize = 8_192;

/// Replies to one caller once the batch's commit result is known.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Outcome of one operation inside the batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ran {
    Ok,
    /// The operation failed on its own (a constraint, bad data); its savepoint is rolled
    /// back and the rest of the batch commits.
    Failed,
    /// The database failed (I/O error, disk full, read-only file): the whole batch is rolled
    /// back and the connection reopened.
    Broken,
}

/// One queued operation.
trait Job: Send {
    /// Runs the operation; returns how it ended and how to reply after the commit.
    fn run(self: Box<Self>, connection: &Connection) -> (Ran, Reply);
    /// Replies with an error without running the operation.
    fn fail(self: Box<Self>, message: String);
}

struct Operation<F, T> {
    operation: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for Operation<F, T>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
{
    fn run(self: Box<Self>, connection: &Connection) -> (Ran, Reply) {
        let Operation { operation, reply } = *self;
        let result = operation(connection);
        let ran = match &result {
            Ok(_) => Ran::Ok,
            Err(error) if breaks_connection(error) => Ran::Broken,
            Err(_) => Ran::Failed,
        };
        let send_reply: Reply = Box::new(move |commit| {
            let answer = match (result, commit) {
                (Ok(value), Ok(())) => Ok(value),
                (Ok(_), Err(commit_error)) => Err(StoreError::Unavailable(commit_error)),
                (Err(error), _) => Err(classify(error)),
            };
            let _ = reply.send(answer);
        });
        (ran, send_reply)
    }

    fn fail(self: Box<Self>, message: String) {
        let _ = self.reply.send(Err(StoreError::Unavailable(message)));
    }
}

pub(super) struct Writer {
    sender: mpsc::Sender<Box<dyn Job>>,
    timeout: Duration,
}

impl Writer {
    pub fn start(
        path: PathBuf,
        connection: Connection,
        timeout: Duration,
    ) -> Result<Writer, StoreError> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        thread::Builder::new()
            .name("herald-sqlite".into())
            .spawn(move || writer_loop(path, connection, receiver))
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start the store thread: {error}"))
            })?;
        Ok(Writer { sender, timeout })
    }

    /// Runs `operation` in the next batch and returns its result once the batch is committed.
    pub async fn run<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Operation { operation, reply });
        let work = async {
            self.sender
                .send(job)
                .await
                .map_err(|_| StoreError::Unavailable("the store thread has stopped".into()))?;
            answer.await.map_err(|_| {
                StoreError::Unavailable("the store thread stopped before replying".into())
            })?
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }
}

/// Errors after which neither the transaction nor the connection can be trusted.
fn breaks_connection(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    match error {
        rusqlite::Error::SqliteFailure(failure, _) => matches!(
            failure.code,
            ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::FileLockingProtocolFailed
        ),
        _ => false,
    }
}

fn classify(error: rusqlite::Error) -> StoreError {
    match error {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(error.to_string())
        }
        rusqlite::Error::ToSqlConversionFailure(inner) => StoreError::Corrupt(inner.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn writer_loop(path: PathBuf, connection: Connection, mut receiver: mpsc::Receiver<Box<dyn Job>>) {
    let mut connection = Some(connection);
    while let Some(first) = receiver.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }

        // A failed commit (disk full, I/O error) can leave the connection unusable, so the
        // next batch opens a new one. Until that works, every batch fails fast.
        if connection.is_none() {
            match super::open_connection(&path) {
                Ok(reopened) => {
                    tracing::info!(path = %path.display(), "Store connection reopened");
                    connection = Some(reopened);
                }
                Err(error) => {
                    let message = error.to_string();
                    for job in batch {
                        job.fail(message.clone());
                    }
                    continue;
                }
            }
        }
        let Some(open) = connection.as_ref() else {
            continue;
        };
        if let Err(message) = run_batch(open, batch) {
            tracing::error!(error = %message, "Store transaction failed; the batch was rolled back");
            connection = None;
        }
    }
}

/// Runs a batch in one transaction. When the transaction cannot begin, a savepoint fails or
/// the commit fails, every caller gets the error and nothing of the batch is kept.
fn run_batch(connection: &Connection, batch: Vec<Box<dyn Job>>) -> Result<(), String> {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        let message = error.to_string();
        for job in batch {
            job.fail(message.clone());
        }
        return Err(message);
    }

    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    let mut failure = None;
    for job in jobs.by_ref() {
        if let Err(error) = run_cached(connection, "SAVEPOINT op") {
            failure = Some((error.to_string(), None));
            break;
        }
        let (ran, reply) = job.run(connection);
        if ran == Ran::Broken {
            let message = "the database failed during the operation; the batch was rolled back";
            failure = Some((message.to_string(), Some(reply)));
            break;
        }
        let end = if ran == Ran::Ok {
            run_cached(connection, "RELEASE op")
        } else {
            run_cached(connection, "ROLLBACK TO op")
                .and_then(|()| run_cached(connection, "RELEASE op"))
        };
        if let Err(error) = end {
            failure = Some((error.to_string(), Some(reply)));
            break;
        }
        replies.push(reply);
    }

    let outcome = match failure {
        None => connection
            .execute_batch("COMMIT")
            .map_err(|error| error.to_string()),
        Some((message, reply)) => {
            replies.extend(reply);
            for job in jobs {
                job.fail(message.clone());
            }
            Err(message)
        }
    };
    if outcome.is_err() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply(outcome.clone());
    }
    outcome
}

/// Runs a statement without parameters from the connection's statement cache, so that the
/// per-operation savepoints are not parsed again for every operation.
fn run_cached(connection: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    connection.prepare_cached(sql)?.execute([]).map(|_| ())
}
