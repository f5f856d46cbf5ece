//! Read-only connections for the queries that change nothing, so that they run beside the
//! writer thread instead of taking turns on it: WAL lets readers see the last commit while the
//! writer works on the next one, and a reply is only sent after its commit, so a read that
//! follows a reply sees what the reply said.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use enroll_core::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

/// Queries at once; each holds a blocking thread while it runs.
const READERS: usize = 4;

#[derive(Clone)]
pub struct Readers {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    pub fn new(path: &Path) -> Self {
        Self {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(READERS),
            }),
        }
    }

    /// Runs `query` on an idle connection, opening one if none is.
    pub async fn run<T, F>(&self, context: &'static str, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _permit = self
            .shared
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("the SQLite readers are closed".into()))?;
        let shared = self.shared.clone();
        let idle = shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let (connection, result) = tokio::task::spawn_blocking(move || {
            let connection = match idle {
                Some(connection) => connection,
                None => match open(&shared.path) {
                    Ok(connection) => connection,
                    Err(error) => return (None, Err(error)),
                },
            };
            let result = query(&connection);
            (Some(connection), result)
        })
        .await
        .map_err(|error| Error::internal("a SQLite read panicked", error))?;
        if let Some(connection) = connection {
            self.shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
        result.map_err(crate::db_error(context))
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.set_prepared_statement_cache_capacity(64);
    // The operating system caches the file; a small cache of its own per reader keeps the
    // hot index pages without multiplying the memory by the readers.
    connection.pragma_update(None, "cache_size", -2_048)?;
    Ok(connection)
}
