//! Copies the write-ahead log back into the database from a thread of its own, so that most
//! of that work runs beside the writer's commits instead of inside them.
//!
//! A copy made here never completes under steady load (the writer appends while it runs), and
//! the log restarts from its beginning only after a complete one. So the writer finishes the
//! copy itself once the log passes [`WRITER_CHECKPOINT_FRAMES`]: by then this thread has copied
//! nearly all of it, and the writer's share is the last few frames. A log reused from its start
//! costs the writer less than one that grows, which the file system must extend page by page.
//!
//! While the log grows this thread copies every few milliseconds, so that the writer's share
//! (the frames since the last copy, and the sync of the database file that completes it) stays
//! small; an idle log is looked at less often.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Between two copies while the writer appends.
const WHILE_WRITING: Duration = Duration::from_millis(5);
/// Between two looks at a log that has not grown.
const WHILE_IDLE: Duration = Duration::from_millis(50);

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
                let mut interval = WHILE_IDLE;
                let mut last_log_frames = None;
                // Wakes every interval until the store, holding the sender, is gone.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    // PASSIVE never blocks the writer; what it cannot copy now waits for the next turn.
                    let started = Instant::now();
                    match connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                        Ok(Pass {
                            busy: row.get::<_, i64>(0)? != 0,
                            log_frames: row.get(1)?,
                            copied_frames: row.get(2)?,
                        })
                    }) {
                        Ok(pass) => {
                            interval = pass.next_interval(last_log_frames, started.elapsed());
                            last_log_frames = Some(pass.log_frames);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "a WAL checkpoint failed");
                            interval = WHILE_IDLE;
                        }
                    }
                }
            });
        if let Err(error) = spawned {
            return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(error)));
        }
        Ok(Self { _stop: stop })
    }
}

/// What a copy found, as `PRAGMA wal_checkpoint` tells it.
struct Pass {
    /// Another connection held the log (the writer completing a copy).
    busy: bool,
    log_frames: i64,
    /// Of the log's frames, those now in the database file.
    copied_frames: i64,
}

impl Pass {
    /// How long to wait before the next copy, given the log's length at the last one and how
    /// long this one took: only a log copied through that has not changed since is idle. On a
    /// slow disk, where a copy's syncs take longer than the interval, copies take at most half
    /// the time, so that the syncs that answer requests are not kept waiting behind them.
    fn next_interval(&self, last_log_frames: Option<i64>, took: Duration) -> Duration {
        let idle = !self.busy
            && self.copied_frames == self.log_frames
            && last_log_frames == Some(self.log_frames);
        if idle {
            WHILE_IDLE
        } else {
            WHILE_WRITING.max(took)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(busy: bool, log_frames: i64, copied_frames: i64) -> Pass {
        Pass {
            busy,
            log_frames,
            copied_frames,
        }
    }

    #[test]
    fn a_log_being_written_is_copied_often_and_an_idle_one_seldom() {
        let quick = Duration::from_micros(300);
        assert_eq!(pass(false, 0, 0).next_interval(None, quick), WHILE_WRITING);
        assert_eq!(
            pass(false, 480, 480).next_interval(Some(120), quick),
            WHILE_WRITING
        );
        // The writer restarted the log from its beginning since the last copy.
        assert_eq!(
            pass(false, 60, 60).next_interval(Some(4_100), quick),
            WHILE_WRITING
        );
        // A reader kept part of the log from being copied.
        assert_eq!(
            pass(false, 480, 400).next_interval(Some(480), quick),
            WHILE_WRITING
        );
        // The writer was completing a copy of its own.
        assert_eq!(
            pass(true, -1, -1).next_interval(Some(-1), quick),
            WHILE_WRITING
        );
        assert_eq!(
            pass(false, 480, 480).next_interval(Some(480), quick),
            WHILE_IDLE
        );
        assert_eq!(pass(false, 0, 0).next_interval(Some(0), quick), WHILE_IDLE);
    }

    #[test]
    fn copies_that_take_long_are_spaced_as_far_apart_as_they_take() {
        let slow = Duration::from_millis(12);
        assert_eq!(pass(false, 900, 900).next_interval(Some(480), slow), slow);
        assert_eq!(
            pass(false, 900, 900).next_interval(Some(900), slow),
            WHILE_IDLE
        );
    }
}
