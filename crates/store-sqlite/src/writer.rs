//! One thread owns the connection and commits the requests that wait together (group commit):
//! each request runs in its own savepoint, and each is answered only after its batch's commit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;

use enroll_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// Most requests one transaction carries; bounds the latency a batch adds to its first request.
const MAX_BATCH: usize = 256;

type CommitError = Option<Arc<rusqlite::Error>>;
type Completion = Box<dyn FnOnce(CommitError) + Send>;
/// Runs a request inside its savepoint: whether to keep its writes, and how to answer it.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `connection`.
    pub fn start(connection: Connection) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("enroll-sqlite-writer".into())
            .spawn(move || run(&connection, &queue))?;
        Ok(Self { jobs })
    }

    /// Runs `work` in the next batch. An `Err` rolls back its writes; an `Ok` is answered once
    /// the batch is committed.
    pub async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |connection| {
            let result = work(connection);
            let keep = result.is_ok();
            let complete: Completion = Box::new(move |commit_error| {
                let answer = match (result, commit_error) {
                    (Ok(value), None) => Ok(value),
                    // A full disk fails the commit, not the request's statements: 503, not 500.
                    (Ok(_), Some(error)) if crate::is_unavailable(&error) => {
                        Err(Error::Unavailable(Box::new(error)))
                    }
                    (Ok(_), Some(error)) => Err(Error::internal(
                        "could not commit to the SQLite database",
                        error,
                    )),
                    (Err(error), _) => Err(error),
                };
                // The caller may have gone away (client disconnected); the work is done either way.
                let _ = reply.send(answer);
            });
            (keep, complete)
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::Unavailable("the SQLite writer has stopped".into()))?;
        answer.await.map_err(|_| {
            Error::Unavailable("the SQLite writer dropped the request (see the log for why)".into())
        })?
    }
}

fn run(connection: &Connection, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(%error, dropped = batch.len(), "could not begin a SQLite transaction");
            continue;
        }
        let mut completions = Vec::with_capacity(batch.len());
        for job in batch {
            if let Err(error) = connection.execute_batch("SAVEPOINT request") {
                tracing::error!(%error, "could not open a savepoint; the request is dropped");
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| job(connection))) {
                Ok((keep, complete)) => {
                    let closed = if keep {
                        connection.execute_batch("RELEASE request")
                    } else {
                        connection.execute_batch("ROLLBACK TO request; RELEASE request")
                    };
                    if let Err(error) = closed {
                        tracing::error!(%error, "could not close a savepoint");
                    }
                    completions.push(complete);
                }
                Err(_) => {
                    tracing::error!("a store request panicked; its writes are rolled back");
                    let _ = connection.execute_batch("ROLLBACK TO request; RELEASE request");
                }
            }
        }
        let commit_error = connection.execute_batch("COMMIT").err().map(Arc::new);
        if let Some(error) = &commit_error {
            tracing::error!(%error, requests = completions.len(), "a SQLite commit failed");
            let _ = connection.execute_batch("ROLLBACK");
        }
        for complete in completions {
            complete(commit_error.clone());
        }
    }
}
