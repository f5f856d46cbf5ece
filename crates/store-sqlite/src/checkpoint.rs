//! Copies the write-ahead log back into the database from a thread of its own, so that the
//! writer's commits never wait for a checkpoint.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

const EVERY: Duration = Duration::from_millis(250);

/// Past this size the log is copied back and emptied even if the writer must wait for it.
/// PASSIVE checkpoints never reset the log while readers keep using it, so under steady load a
/// log that grew (while a full disk refused every checkpoint, say) would otherwise keep growing.
const WAL_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

/// Checkpoints until dropped.
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
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
                    let size = std::fs::metadata(&wal).map_or(0, |meta| meta.len());
                    if size > WAL_LIMIT_BYTES {
                        match connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                            row.get::<_, i64>(0)
                        }) {
                            Ok(0) => tracing::info!(size, "the WAL was copied back and emptied"),
                            Ok(_) => tracing::warn!(size, "the WAL is large and readers kept it"),
                            Err(error) => tracing::warn!(%error, size, "a WAL truncation failed"),
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
