//! Copies the write-ahead log back into the database from a thread of its own, so that most
//! of that work runs beside the writer's commits instead of inside them.
//!
//! A copy made here never completes under steady load (the writer appends while it runs), and
//! the log restarts from its beginning only after a complete one. So the writer finishes the
//! copy itself once the log passes [`WRITER_CHECKPOINT_FRAMES`]: by then this thread has copied
//! nearly all of it, and the writer's share is the last few frames. A log reused from its start
//! costs the writer less than one that grows, which the file system must extend page by page.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

const EVERY: Duration = Duration::from_millis(50);

/// Frames past which the writer completes a checkpoint between two commits (SQLite's
/// `wal_autocheckpoint`, run by the committing connection).
pub const WRITER_CHECKPOINT_FRAMES: u32 = 4_096;

/// The size a restarted log is cut back to (SQLite's `journal_size_limit`), so that a log
/// that grew, while a full disk refused every checkpoint say, gives its space back.
pub const WAL_LIMIT_BYTES: i64 = 32 * 1024 * 1024;

/// Checkpoints until dropped.
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(5))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("enroll-sqlite-checkpoint".into())
            .spawn(move || {
                // Wakes every interval until the store, holding the sender, is gone.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    // PASSIVE never blocks the writer; what it cannot copy now waits for the next turn.
                    if let Err(error) =
                        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(%error, "a WAL checkpoint failed");
                    }
                }
            });
        if let Err(error) = spawned {
            return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(error)));
        }
        Ok(Self { _stop: stop })
    }
}
