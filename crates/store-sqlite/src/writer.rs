//! One thread owns the connection and commits the requests that wait together (group commit),
//! and each is answered only once its batch is on disk.
//!
//! The requests of a batch run one after the other in its transaction, with nothing between
//! them: a request that fails without having written anything (a replayed nonce, an error of a
//! read) leaves nothing to undo. Only when one fails after writing, or panics, is the batch
//! rolled back and run again with each request in a savepoint of its own, so that the failed
//! one's writes alone are undone. A savepoint makes SQLite copy every page a request changes
//! before changing it; in the common case the batch does without those copies.
//!
//! Getting a batch on disk is split in two. The writer thread commits it to the write-ahead log
//! (`synchronous=NORMAL`: a write, no sync) and goes straight on with the next batch, while a
//! second thread syncs the log and then answers the batches the sync covered. The log is a
//! prefix: a sync taken after a batch's commit covers it and every batch before it, and recovery
//! after a power cut keeps the log up to its last whole commit. So an answered request is as
//! durable as with `synchronous=FULL`, while the writer no longer sits idle through each sync.
//! The price: other connections may read a batch a sync's length before it is durable. Nothing
//! leaves the server on such a read alone: mail is claimed by a write, whose answer waits for a
//! sync that covers the claimed messages.
//!
//! Small reads can ride along ([`Writer::read`]): they run at the start of the next batch,
//! before its writes, and are answered at once, seeing the last commit as a reader connection
//! would.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use enroll_core::ports::CounterValue;
use enroll_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// Most requests one transaction carries; bounds the latency a batch adds to its first request.
const MAX_BATCH: usize = 256;

/// Why a committed batch's requests cannot be answered with success.
#[derive(Debug)]
pub enum CommitFailure {
    Commit(rusqlite::Error),
    Sync(std::io::Error),
}

impl std::fmt::Display for CommitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Commit(error) => write!(f, "could not commit to the SQLite database: {error}"),
            Self::Sync(error) => write!(f, "could not sync the SQLite log to disk: {error}"),
        }
    }
}

impl std::error::Error for CommitFailure {}

impl CommitFailure {
    fn to_error(self: &Arc<Self>) -> Error {
        match &**self {
            // A full disk fails the commit, not the request's statements: 503, not 500.
            Self::Commit(error) if crate::is_unavailable(error) => {
                Error::Unavailable(Box::new(self.clone()))
            }
            Self::Commit(_) => Error::internal("could not commit a batch", self.clone()),
            // After a failed sync the kernel may have dropped the log's unwritten pages, so no
            // later sync can be trusted: the store refuses writes until the server restarts.
            Self::Sync(_) => Error::Unavailable(Box::new(self.clone())),
        }
    }
}

/// A request waiting for the writer: its work, which may run twice (see the module's
/// documentation), and the caller to answer with the result of its last run.
trait Request: Send {
    /// Whether the work only reads: it runs before the batch's writes and is answered at once.
    fn reads_only(&self) -> bool;
    /// Runs the work on `connection`; `false` if its writes must be undone.
    fn run(&mut self, connection: &Connection) -> bool;
    /// Answers the caller: the result of the last run, or `failure` if the batch holding the
    /// kept result could not be made durable.
    fn answer(self: Box<Self>, failure: Option<&Arc<CommitFailure>>);
    /// Answers the caller with `error`, whatever the run gave.
    fn refuse(self: Box<Self>, error: Error);
}

struct Pending<T, F> {
    work: F,
    reads_only: bool,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Request for Pending<T, F>
where
    T: Send,
    F: Fn(&Connection) -> Result<T> + Send,
{
    fn reads_only(&self) -> bool {
        self.reads_only
    }

    fn run(&mut self, connection: &Connection) -> bool {
        let result = (self.work)(connection);
        let keep = result.is_ok();
        self.result = Some(result);
        keep
    }

    fn answer(self: Box<Self>, failure: Option<&Arc<CommitFailure>>) {
        let answer = match (self.result, failure) {
            (Some(Ok(value)), None) => Ok(value),
            (Some(Ok(_)), Some(failure)) => Err(failure.to_error()),
            (Some(Err(error)), _) => Err(error),
            (None, _) => Err(Error::internal(
                "a write request was answered before it ran",
                "the SQLite writer skipped it",
            )),
        };
        // The caller may have gone away (client disconnected); the work is done either way.
        let _ = self.reply.send(answer);
    }

    fn refuse(self: Box<Self>, error: Error) {
        let _ = self.reply.send(Err(error));
    }
}

type Job = Box<dyn Request>;

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Set once a sync of the log fails; see [`CommitFailure::to_error`].
    sync_failed: Arc<AtomicBool>,
    statistics: Arc<Statistics>,
}

/// What the writer and the sync thread have done since the start, for the metrics endpoint:
/// the batch size, how busy the writer is and what a commit and a sync cost follow from these.
#[derive(Debug, Default)]
pub struct Statistics {
    batches: AtomicU64,
    requests: AtomicU64,
    reads: AtomicU64,
    busy_micros: AtomicU64,
    commit_micros: AtomicU64,
    syncs: AtomicU64,
    sync_micros: AtomicU64,
}

impl Statistics {
    pub fn counters(&self) -> Vec<CounterValue> {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        vec![
            CounterValue::new(
                "sqlite_write_batches",
                "Transactions of the SQLite writer, each holding the write requests that waited together",
                load(&self.batches),
            ),
            CounterValue::new(
                "sqlite_write_requests",
                "Write requests run by the SQLite writer",
                load(&self.requests),
            ),
            CounterValue::new(
                "sqlite_writer_reads",
                "Reads run by the SQLite writer before the writes of its batches",
                load(&self.reads),
            ),
            CounterValue::new(
                "sqlite_writer_busy_microseconds",
                "Time the SQLite writer spent running and committing batches",
                load(&self.busy_micros),
            ),
            CounterValue::new(
                "sqlite_commit_microseconds",
                "Time the SQLite writer spent committing batches to the log",
                load(&self.commit_micros),
            ),
            CounterValue::new(
                "sqlite_log_syncs",
                "Syncs of the SQLite log to disk, each covering the batches committed before it",
                load(&self.syncs),
            ),
            CounterValue::new(
                "sqlite_log_sync_microseconds",
                "Time spent syncing the SQLite log to disk",
                load(&self.sync_micros),
            ),
        ]
    }
}

fn add_elapsed(counter: &AtomicU64, since: Instant) {
    let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
    counter.fetch_add(micros, Ordering::Relaxed);
}

impl Writer {
    /// Starts the writer thread on `connection`, and the thread that syncs `log` (the
    /// connection's write-ahead log) after each commit. Without a log (an in-memory database)
    /// a batch is answered as soon as it is committed.
    pub fn start(connection: Connection, log: Option<File>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let sync_failed = Arc::new(AtomicBool::new(false));
        let statistics = Arc::new(Statistics::default());
        let committed = match log {
            Some(log) => {
                let (committed, to_sync) = mpsc::channel::<Vec<Job>>();
                let sync_failed = sync_failed.clone();
                let statistics = statistics.clone();
                std::thread::Builder::new()
                    .name("enroll-sqlite-sync".into())
                    .spawn(move || sync_then_answer(&log, &to_sync, &sync_failed, &statistics))?;
                Some(committed)
            }
            None => None,
        };
        std::thread::Builder::new()
            .name("enroll-sqlite-writer".into())
            .spawn({
                let statistics = statistics.clone();
                move || run(&connection, &queue, committed.as_ref(), &statistics)
            })?;
        Ok(Self {
            jobs,
            sync_failed,
            statistics,
        })
    }

    pub fn statistics(&self) -> &Statistics {
        &self.statistics
    }

    /// Runs `work` in the next batch. An `Err` rolls back its writes; an `Ok` is answered once
    /// the batch is committed and on disk. `work` may run a second time, on the state as it was
    /// before its first run, if another request of its batch fails halfway.
    pub async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        self.queue(work, false).await
    }

    /// Runs `work`, which only reads, at the start of the next batch, before its writes, and
    /// answers at once: it sees the last commit, as a reader connection would. For the small
    /// reads every request makes: the writer has their pages in its cache and its locks
    /// already, where a reader connection under a steady write load re-reads every page (the
    /// log changed since its last read) and is handed to a blocking thread and back. A write
    /// by `work` is undone, and the read answered with an error.
    pub async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        self.queue(work, true).await
    }

    async fn queue<T, F>(&self, work: F, reads_only: bool) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        if !reads_only && self.sync_failed.load(Ordering::Acquire) {
            return Err(Error::Unavailable(
                "a sync of the SQLite log failed earlier; restart the server once the disk is sound"
                    .into(),
            ));
        }
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(Pending {
            work,
            reads_only,
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::Unavailable("the SQLite writer has stopped".into()))?;
        answer.await.map_err(|_| {
            Error::Unavailable("the SQLite writer dropped the request (see the log for why)".into())
        })?
    }
}

fn run(
    connection: &Connection,
    queue: &mpsc::Receiver<Job>,
    committed: Option<&mpsc::Sender<Vec<Job>>>,
    statistics: &Statistics,
) {
    while let Ok(first) = queue.recv() {
        let started = Instant::now();
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (reads, batch): (Vec<Job>, Vec<Job>) =
            batch.into_iter().partition(|job| job.reads_only());
        statistics.reads.fetch_add(
            u64::try_from(reads.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if batch.is_empty() {
            read_alone(connection, reads);
            add_elapsed(&statistics.busy_micros, started);
            continue;
        }
        let Some(batch) = run_batch(connection, reads, batch) else {
            continue;
        };
        let committing = Instant::now();
        let commit = connection.execute_batch("COMMIT");
        add_elapsed(&statistics.commit_micros, committing);
        add_elapsed(&statistics.busy_micros, started);
        if let Err(error) = commit {
            tracing::error!(%error, requests = batch.len(), "a SQLite commit failed");
            let _ = connection.execute_batch("ROLLBACK");
            fail_all(batch, CommitFailure::Commit(error));
            continue;
        }
        statistics.batches.fetch_add(1, Ordering::Relaxed);
        statistics.requests.fetch_add(
            u64::try_from(batch.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match committed {
            Some(to_sync) => {
                if let Err(mpsc::SendError(batch)) = to_sync.send(batch) {
                    let stopped =
                        std::io::Error::other("the thread that syncs the log has stopped");
                    fail_all(batch, CommitFailure::Sync(stopped));
                }
            }
            None => {
                for job in batch {
                    job.answer(None);
                }
            }
        }
    }
}

/// Runs a batch's requests in a transaction left open for the commit, and hands back the ones
/// to answer; `None` if no transaction could begin, or a read's changes could not be undone
/// (the requests are dropped, and their callers told so).
fn run_batch(connection: &Connection, reads: Vec<Job>, mut batch: Vec<Job>) -> Option<Vec<Job>> {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(
            %error,
            dropped = batch.len() + reads.len(),
            "could not begin a SQLite transaction"
        );
        return None;
    }
    if !run_reads(connection, reads) {
        tracing::error!(
            dropped = batch.len(),
            "a read's changes could not be undone"
        );
        let _ = connection.execute_batch("ROLLBACK");
        return None;
    }
    if run_together(connection, &mut batch) {
        return Some(batch);
    }
    // One request wrote and then failed: only a savepoint around each request can undo its
    // writes and keep the others'. The state is back to the batch's start, so every request
    // runs again.
    if let Err(error) = connection.execute_batch("ROLLBACK; BEGIN IMMEDIATE") {
        tracing::error!(%error, dropped = batch.len(), "could not restart a SQLite transaction");
        return None;
    }
    Some(run_apart(connection, batch))
}

/// Runs the reads of a batch that has no writes, in a transaction of their own.
fn read_alone(connection: &Connection, reads: Vec<Job>) {
    if let Err(error) = connection.execute_batch("BEGIN") {
        tracing::error!(%error, dropped = reads.len(), "could not begin a SQLite transaction");
        return;
    }
    run_reads(connection, reads);
    // Nothing to keep: a read writes nothing, and whatever one changed by mistake is undone.
    if let Err(error) = connection.execute_batch("ROLLBACK") {
        tracing::error!(%error, "could not end a SQLite read transaction");
    }
}

/// Runs each read and answers it at once: nothing it saw waits for a commit, since the
/// transaction has written nothing yet. A read never writes: the reads run in a savepoint that
/// is rolled back, and one that changed rows is answered with an error. (`PRAGMA
/// query_only` would refuse such a write up front, but setting it expires every statement the
/// connection has prepared: each batch after a read then prepared all of its statements
/// again.) A read that panics is dropped. `false` if the savepoint could not be undone: the
/// transaction must not go on to commit.
fn run_reads(connection: &Connection, reads: Vec<Job>) -> bool {
    if reads.is_empty() {
        return true;
    }
    if let Err(error) = connection.execute_batch("SAVEPOINT reads") {
        tracing::error!(%error, dropped = reads.len(), "could not open a savepoint for reads");
        return true;
    }
    let mut wrote = false;
    for mut job in reads {
        let changes = connection.total_changes();
        let ran = catch_unwind(AssertUnwindSafe(|| job.run(connection)));
        let changed = connection.total_changes() != changes;
        wrote |= changed;
        match ran {
            Ok(_) if !changed => job.answer(None),
            Ok(_) => {
                tracing::error!("a store read changed rows; its changes are undone");
                job.refuse(Error::internal(
                    "a read of the SQLite store tried to write",
                    "the writer undid its changes",
                ));
            }
            Err(_) => tracing::error!("a store read panicked"),
        }
    }
    // Undoes whatever the reads did, even what `total_changes` does not count (a schema change).
    match connection.execute_batch("ROLLBACK TO reads; RELEASE reads") {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(%error, "could not end the savepoint of the reads");
            !wrote
        }
    }
}

/// Runs every request with nothing between them; `false`, with the batch's writes still to roll
/// back, as soon as one fails after writing or panics.
fn run_together(connection: &Connection, batch: &mut [Job]) -> bool {
    batch.iter_mut().all(|job| {
        let changes = connection.total_changes();
        match catch_unwind(AssertUnwindSafe(|| job.run(connection))) {
            Ok(keep) => keep || connection.total_changes() == changes,
            Err(_) => false,
        }
    })
}

/// Runs each request in a savepoint of its own, which undoes its writes if it fails. A request
/// that panics is dropped.
fn run_apart(connection: &Connection, batch: Vec<Job>) -> Vec<Job> {
    let mut kept = Vec::with_capacity(batch.len());
    for mut job in batch {
        if let Err(error) = connection.execute_batch("SAVEPOINT request") {
            tracing::error!(%error, "could not open a savepoint; the request is dropped");
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| job.run(connection))) {
            Ok(keep) => {
                let closed = if keep {
                    connection.execute_batch("RELEASE request")
                } else {
                    connection.execute_batch("ROLLBACK TO request; RELEASE request")
                };
                if let Err(error) = closed {
                    tracing::error!(%error, "could not close a savepoint");
                }
                kept.push(job);
            }
            Err(_) => {
                tracing::error!("a store request panicked; its writes are rolled back");
                let _ = connection.execute_batch("ROLLBACK TO request; RELEASE request");
            }
        }
    }
    kept
}

fn fail_all(batch: Vec<Job>, failure: CommitFailure) {
    let failure = Arc::new(failure);
    for job in batch {
        job.answer(Some(&failure));
    }
}

/// Syncs the log once for every batch committed since the last sync, then answers them.
fn sync_then_answer(
    log: &File,
    to_sync: &mpsc::Receiver<Vec<Job>>,
    sync_failed: &AtomicBool,
    statistics: &Statistics,
) {
    let mut failure: Option<Arc<CommitFailure>> = None;
    while let Ok(first) = to_sync.recv() {
        let mut batches = vec![first];
        batches.extend(to_sync.try_iter());
        let syncing = Instant::now();
        if failure.is_none()
            && let Err(error) = log.sync_data()
        {
            tracing::error!(%error, "a sync of the SQLite log failed; writes are refused until restart");
            sync_failed.store(true, Ordering::Release);
            failure = Some(Arc::new(CommitFailure::Sync(error)));
        }
        add_elapsed(&statistics.sync_micros, syncing);
        statistics.syncs.fetch_add(1, Ordering::Relaxed);
        for job in batches.into_iter().flatten() {
            job.answer(failure.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A file whose sync fails: a pipe cannot be synced.
    fn unsyncable_log() -> File {
        let (reader, _writer) = std::io::pipe().expect("a pipe");
        File::from(OwnedFd::from(reader))
    }

    #[tokio::test]
    async fn a_failed_sync_fails_its_batch_and_refuses_every_later_write() {
        let connection = Connection::open_in_memory().expect("an in-memory database");
        let writer = Writer::start(connection, Some(unsyncable_log())).expect("the writer starts");
        let runs = Arc::new(AtomicUsize::new(0));
        let write = || {
            let runs = runs.clone();
            writer.run(move |connection| {
                runs.fetch_add(1, Ordering::SeqCst);
                connection
                    .execute_batch("CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1)")
                    .map_err(|error| Error::internal("test write", error))
            })
        };

        let committed_unsynced = write().await;
        assert!(
            matches!(&committed_unsynced, Err(Error::Unavailable(why)) if why.to_string().contains("could not sync")),
            "{committed_unsynced:?}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        let later = write().await;
        assert!(matches!(later, Err(Error::Unavailable(_))), "{later:?}");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "a later write is not run at all"
        );
        let read = writer
            .read(|connection| {
                connection
                    .query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0))
                    .map_err(|error| Error::internal("test read", error))
            })
            .await;
        assert_eq!(read.ok(), Some(1), "reads go on: they wait for no sync");
    }

    /// Holds the writer thread in a batch of its own until released, so that the requests sent
    /// meanwhile wait together and make up the next batch.
    async fn hold_the_writer(
        writer: &Writer,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = std::sync::Mutex::new(released);
        let (started, running) = oneshot::channel::<()>();
        let started = std::sync::Mutex::new(Some(started));
        let writer = writer.clone();
        let held = tokio::spawn(async move {
            writer
                .run(move |_| {
                    if let Some(started) = started.lock().expect("not poisoned").take() {
                        let _ = started.send(());
                    }
                    let _ = released.lock().expect("not poisoned").recv();
                    Ok(())
                })
                .await
                .expect("the holding request succeeds");
        });
        running.await.expect("the writer runs the holding request");
        (release, held)
    }

    /// A request of the next batch: inserts `name` into `t` unless `write` is false, then
    /// succeeds or fails; counts its runs.
    fn request(
        writer: &Writer,
        name: &'static str,
        write: bool,
        succeed: bool,
        runs: &Arc<AtomicUsize>,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let (writer, runs) = (writer.clone(), runs.clone());
        tokio::spawn(async move {
            writer
                .run(move |connection| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    if write {
                        connection
                            .execute("INSERT INTO t VALUES (?1)", [name])
                            .map_err(|error| Error::internal("test write", error))?;
                    }
                    if succeed {
                        Ok(())
                    } else {
                        Err(Error::internal("test failure", name))
                    }
                })
                .await
        })
    }

    fn counters_of(writer: &Writer) -> std::collections::HashMap<&'static str, u64> {
        writer
            .statistics()
            .counters()
            .into_iter()
            .map(|counter| (counter.name, counter.value))
            .collect()
    }

    fn select_names(connection: &Connection) -> Result<Vec<String>> {
        let mut statement = connection
            .prepare("SELECT x FROM t ORDER BY x")
            .map_err(|error| Error::internal("test read", error))?;
        statement
            .query_map([], |row| row.get(0))
            .and_then(Iterator::collect)
            .map_err(|error| Error::internal("test read", error))
    }

    async fn names_in_t(writer: &Writer) -> Vec<String> {
        writer.run(select_names).await.expect("the table reads")
    }

    async fn writer_with_table() -> Writer {
        let connection = Connection::open_in_memory().expect("an in-memory database");
        let writer = Writer::start(connection, None).expect("the writer starts");
        writer
            .run(|connection| {
                connection
                    .execute_batch("CREATE TABLE t (x TEXT PRIMARY KEY)")
                    .map_err(|error| Error::internal("test table", error))
            })
            .await
            .expect("the table is created");
        writer
    }

    /// What a held batch of requests answered, how often each ran, and the writer.
    struct HeldBatch {
        writer: Writer,
        answers: Vec<Result<()>>,
        runs: Vec<usize>,
    }

    /// Sends `requests` (name, whether it writes, whether it succeeds) while the writer is held,
    /// so that they make up one batch, and waits for their answers.
    async fn run_held_batch(requests: &[(&'static str, bool, bool)]) -> HeldBatch {
        let writer = writer_with_table().await;
        let (release, held) = hold_the_writer(&writer).await;
        let runs: Vec<_> = requests
            .iter()
            .map(|_| Arc::new(AtomicUsize::new(0)))
            .collect();
        let pending: Vec<_> = requests
            .iter()
            .zip(&runs)
            .map(|(&(name, write, succeed), runs)| request(&writer, name, write, succeed, runs))
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        release.send(()).expect("the holding request waits");
        held.await.expect("the holding request completes");
        let mut answers = Vec::new();
        for answer in pending {
            answers.push(answer.await.expect("answered"));
        }
        let runs = runs
            .iter()
            .map(|runs| runs.load(Ordering::SeqCst))
            .collect();
        HeldBatch {
            writer,
            answers,
            runs,
        }
    }

    #[tokio::test]
    async fn a_request_that_fails_after_writing_is_undone_alone() {
        let batch = run_held_batch(&[
            ("a", true, true),
            ("b", true, false),
            ("c", true, true),
            ("d", false, false),
        ])
        .await;

        let succeeded: Vec<_> = batch.answers.iter().map(Result::is_ok).collect();
        assert_eq!(succeeded, [true, false, true, false]);
        assert_eq!(names_in_t(&batch.writer).await, ["a", "c"]);
        assert_eq!(
            batch.runs,
            [2, 2, 1, 1],
            "the batch ran together up to the failure, then apart from its start"
        );
    }

    #[tokio::test]
    async fn a_request_that_fails_without_writing_costs_its_batch_nothing() {
        let batch =
            run_held_batch(&[("a", true, true), ("b", false, false), ("c", true, true)]).await;

        let succeeded: Vec<_> = batch.answers.iter().map(Result::is_ok).collect();
        assert_eq!(succeeded, [true, false, true]);
        assert_eq!(names_in_t(&batch.writer).await, ["a", "c"]);
        assert_eq!(batch.runs, [1, 1, 1], "each request ran once");
    }

    #[tokio::test]
    async fn a_panicking_request_is_dropped_and_its_batch_kept() {
        let writer = writer_with_table().await;
        let (release, held) = hold_the_writer(&writer).await;
        let runs = Arc::new(AtomicUsize::new(0));
        let kept = request(&writer, "a", true, true, &runs);
        let panicking = {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .run(|connection| -> Result<()> {
                        let _ = connection.execute("INSERT INTO t VALUES ('p')", []);
                        panic!("a request panics after writing");
                    })
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        release.send(()).expect("the holding request waits");
        held.await.expect("the holding request completes");

        assert!(kept.await.expect("answered").is_ok());
        assert!(
            matches!(
                panicking.await.expect("answered"),
                Err(Error::Unavailable(_))
            ),
            "the panicking request is dropped"
        );
        assert_eq!(names_in_t(&writer).await, ["a"]);
    }

    async fn names_read_in_t(writer: &Writer) -> Result<Vec<String>> {
        writer.read(select_names).await
    }

    #[tokio::test]
    async fn a_read_sees_the_last_commit_and_is_answered_before_its_batch_commits() {
        let writer = writer_with_table().await;
        let runs = Arc::new(AtomicUsize::new(0));
        request(&writer, "a", true, true, &runs)
            .await
            .expect("answered")
            .expect("committed");
        let (release, held) = hold_the_writer(&writer).await;
        // A write queued before the read, which holds its batch open until the read is answered
        // (or 5 s pass): the read runs first and does not wait for the batch's commit.
        let (read_answered, answered) = std::sync::mpsc::channel::<()>();
        let answered = std::sync::Mutex::new(answered);
        let write = {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .run(move |connection| {
                        connection
                            .execute("INSERT INTO t VALUES ('b')", [])
                            .map_err(|error| Error::internal("test write", error))?;
                        let waited = answered
                            .lock()
                            .expect("not poisoned")
                            .recv_timeout(std::time::Duration::from_secs(5));
                        Ok(waited.is_ok())
                    })
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let read = {
            let writer = writer.clone();
            tokio::spawn(async move { names_read_in_t(&writer).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        release.send(()).expect("the holding request waits");
        held.await.expect("the holding request completes");

        let names = read.await.expect("answered").expect("the read succeeds");
        assert_eq!(
            names,
            ["a"],
            "the read sees the last commit, not its batch's writes"
        );
        read_answered.send(()).expect("the write waits");
        assert_eq!(
            write.await.expect("answered").ok(),
            Some(true),
            "the read was answered while its batch was still open"
        );
        assert_eq!(names_in_t(&writer).await, ["a", "b"]);
        let counters = counters_of(&writer);
        assert_eq!(counters["sqlite_writer_reads"], 1);
    }

    #[tokio::test]
    async fn a_read_that_writes_is_refused_and_the_writer_goes_on_writing() {
        let writer = writer_with_table().await;
        let written = writer
            .read(|connection| {
                connection
                    .execute("INSERT INTO t VALUES ('r')", [])
                    .map_err(|error| Error::internal("test write", error))
            })
            .await;
        assert!(written.is_err(), "{written:?}");
        let runs = Arc::new(AtomicUsize::new(0));
        request(&writer, "w", true, true, &runs)
            .await
            .expect("answered")
            .expect("a write after it succeeds");
        assert_eq!(names_read_in_t(&writer).await.expect("read"), ["w"]);
    }

    #[tokio::test]
    async fn a_read_leaves_the_statements_the_writer_prepared_valid() {
        let writer = writer_with_table().await;
        // How often the cached insert had to be prepared again since it was first prepared.
        let insert = |name: &'static str| {
            writer.run(move |connection| {
                let mut statement = connection
                    .prepare_cached("INSERT INTO t VALUES (?1)")
                    .map_err(|error| Error::internal("test prepare", error))?;
                statement
                    .execute([name])
                    .map_err(|error| Error::internal("test write", error))?;
                Ok(statement.get_status(rusqlite::StatementStatus::RePrepare))
            })
        };
        assert_eq!(insert("a").await.expect("written"), 0);
        assert_eq!(names_read_in_t(&writer).await.expect("read"), ["a"]);
        assert_eq!(
            insert("b").await.expect("written"),
            0,
            "a read between two writes expired the writer's statements"
        );
    }

    #[tokio::test]
    async fn batches_are_answered_after_their_sync() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let log = File::create(directory.path().join("log")).expect("a log file");
        let connection = Connection::open_in_memory().expect("an in-memory database");
        let writer = Writer::start(connection, Some(log)).expect("the writer starts");
        let requests: Vec<_> = (0..50)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.run(move |_| Ok::<_, Error>(n)).await })
            })
            .collect();
        for (n, request) in requests.into_iter().enumerate() {
            let answer = request.await.expect("the request completes");
            assert_eq!(answer.expect("a synced answer"), n);
        }
        let counters = counters_of(&writer);
        assert_eq!(counters["sqlite_write_requests"], 50);
        let batches = counters["sqlite_write_batches"];
        assert!((1..=50).contains(&batches), "{counters:?}");
        let syncs = counters["sqlite_log_syncs"];
        assert!(
            (1..=batches).contains(&syncs),
            "a sync covers one batch or more: {counters:?}"
        );
        assert!(
            counters["sqlite_writer_busy_microseconds"] >= counters["sqlite_commit_microseconds"],
            "{counters:?}"
        );
    }
}
