//! The store conformance suite on SQLite: a fresh database file per test.

use std::sync::Arc;

use enroll_core::ports::Store;
use enroll_store_sqlite::SqliteStore;

async fn fresh_store() -> Arc<dyn Store> {
    // Leaked on purpose: the directory must outlive the store's writer thread.
    let dir = Box::leak(Box::new(
        tempfile::tempdir().expect("a temporary directory"),
    ));
    Arc::new(
        SqliteStore::open(&dir.path().join("enroll.db"))
            .await
            .expect("the store opens"),
    )
}

enroll_testkit::conformance_suite!(fresh_store);
