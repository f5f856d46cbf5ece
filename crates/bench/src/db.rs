//! Databases: one seeded template per store, and a fresh copy of it for every measured row,
//! so that no row runs on what an earlier one wrote.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use enroll_core::ports::Store;
use sqlx::Connection as _;

use crate::seed::{self, Seeded};
use crate::server::{remove_dir, temp_dir};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// A seeded database that copies are made of.
pub struct Template {
    pub kind: StoreKind,
    pub seeded: Seeded,
    /// How long seeding took.
    pub seeding: Duration,
    location: Location,
    /// SQLite only: a copy taken before the seeding's emails were settled (the mail scenario's
    /// outbox).
    pub queued: Option<PathBuf>,
    /// Emails queued in that copy.
    pub queued_emails: usize,
    dir: PathBuf,
}

enum Location {
    Sqlite { file: PathBuf },
    Postgres { admin_url: String, name: String },
}

/// A copy of a template, for one row.
pub struct Instance {
    pub data_dir: PathBuf,
    pub database_url: String,
    drop_database: Option<(String, String)>,
}

impl Instance {
    /// An empty SQLite database in `data_dir` (the server creates it on first start).
    pub fn empty(data_dir: PathBuf) -> Self {
        Self {
            database_url: format!("sqlite://{}", data_dir.join("enroll.db").display()),
            data_dir,
            drop_database: None,
        }
    }

    /// Removes the copy.
    pub async fn remove(self) {
        remove_dir(&self.data_dir);
        if let Some((admin_url, name)) = &self.drop_database {
            let _ = drop_database(admin_url, name).await;
        }
    }

    /// The SQLite file of the copy, if it is SQLite.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        self.database_url
            .strip_prefix("sqlite://")
            .map(PathBuf::from)
    }
}

/// Copies a file and flushes the copy to the disk, so that the server's first `fsync` does not
/// pay for writing the copy (which would show as a slow first start).
fn copy_synced(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| format!("could not copy {}", from.display()))?;
    std::fs::File::open(to)?.sync_all()?;
    Ok(())
}

/// `VACUUM INTO`: a consistent, compact copy of an SQLite database.
fn sqlite_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(to);
    let connection = rusqlite::Connection::open(from)?;
    connection.busy_timeout(Duration::from_secs(30))?;
    connection.execute("VACUUM INTO ?1", [to.to_string_lossy()])?;
    Ok(())
}

impl Template {
    /// Seeds a template on SQLite, and keeps a copy of it with the seeding's emails queued.
    pub async fn sqlite(users: usize, accounts: usize) -> anyhow::Result<Self> {
        let dir = temp_dir("sqlite-template")?;
        let file = dir.join("enroll.db");
        let started = Instant::now();
        let store: Arc<dyn Store> = Arc::new(enroll_store_sqlite::SqliteStore::open(&file).await?);
        let seeded = seed::seed(store.clone(), users, accounts).await?;
        let queued = dir.join("queued.db");
        sqlite_copy(&file, &queued)?;
        let queued_emails = seed::settle_outbox(store.clone()).await?;
        drop(store);
        let template = dir.join("template.db");
        sqlite_copy(&file, &template)?;
        Ok(Self {
            kind: StoreKind::Sqlite,
            seeded,
            seeding: started.elapsed(),
            location: Location::Sqlite { file: template },
            queued: Some(queued),
            queued_emails,
            dir,
        })
    }

    /// Seeds a template database on the PostgreSQL server of `admin_url`.
    pub async fn postgres(admin_url: &str, users: usize, accounts: usize) -> anyhow::Result<Self> {
        let name = format!("enroll_bench_{}_template", std::process::id());
        let url = create_database(admin_url, &name, None).await?;
        let started = Instant::now();
        let store = Arc::new(enroll_store_postgres::PostgresStore::connect(&url, 16).await?);
        let seeded = seed::seed(store.clone(), users, accounts).await?;
        seed::settle_outbox(store.clone()).await?;
        store.close().await;
        drop(store);
        Ok(Self {
            kind: StoreKind::Postgres,
            seeded,
            seeding: started.elapsed(),
            location: Location::Postgres {
                admin_url: admin_url.to_owned(),
                name,
            },
            queued: None,
            queued_emails: 0,
            dir: temp_dir("postgres-template")?,
        })
    }

    /// A fresh copy for one row.
    pub async fn instance(&self, label: &str) -> anyhow::Result<Instance> {
        let data_dir = temp_dir(&format!("{}-{label}", self.kind.label()))?;
        match &self.location {
            Location::Sqlite { file } => {
                let copy = data_dir.join("enroll.db");
                copy_synced(file, &copy)?;
                Ok(Instance {
                    database_url: format!("sqlite://{}", copy.display()),
                    data_dir,
                    drop_database: None,
                })
            }
            Location::Postgres { admin_url, name } => {
                let copy = format!(
                    "enroll_bench_{}_{}",
                    std::process::id(),
                    label
                        .chars()
                        .filter(char::is_ascii_alphanumeric)
                        .collect::<String>()
                        .to_ascii_lowercase()
                );
                let database_url = create_database(admin_url, &copy, Some(name)).await?;
                Ok(Instance {
                    data_dir,
                    database_url,
                    drop_database: Some((admin_url.clone(), copy)),
                })
            }
        }
    }

    /// A copy of the SQLite database with the seeding's emails still queued.
    pub fn queued_instance(&self, label: &str) -> anyhow::Result<Option<Instance>> {
        let Some(queued) = &self.queued else {
            return Ok(None);
        };
        let data_dir = temp_dir(&format!("{}-{label}", self.kind.label()))?;
        let copy = data_dir.join("enroll.db");
        copy_synced(queued, &copy)?;
        Ok(Some(Instance {
            database_url: format!("sqlite://{}", copy.display()),
            data_dir,
            drop_database: None,
        }))
    }

    /// Removes the template.
    pub async fn remove(self) {
        remove_dir(&self.dir);
        if let Location::Postgres { admin_url, name } = &self.location {
            let _ = drop_database(admin_url, name).await;
        }
    }
}

fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let (base, _) = admin_url
        .rsplit_once('/')
        .context("a PostgreSQL URL with a database name")?;
    Ok(format!("{base}/{name}"))
}

/// Creates (afresh) a database, empty or as a copy of `template`; returns its URL.
async fn create_database(
    admin_url: &str,
    name: &str,
    template: Option<&str>,
) -> anyhow::Result<String> {
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("could not connect to {admin_url}"))?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    match template {
        None => {
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut admin)
                .await?;
        }
        Some(template) => {
            // A template may have no other session while it is copied.
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(template)
            .execute(&mut admin)
            .await?;
            sqlx::query(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .execute(&mut admin)
            .await?;
        }
    }
    admin.close().await?;
    database_url(admin_url, name)
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

/// Drops every database this process created (`enroll_bench_<pid>_…`).
pub async fn drop_own_databases(admin_url: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)")
            .bind(format!("enroll_bench_{}_", std::process::id()))
            .fetch_all(&mut admin)
            .await?;
    admin.close().await?;
    for name in names {
        drop_database(admin_url, &name).await?;
    }
    Ok(())
}

/// Whether a PostgreSQL server answers at `admin_url`.
pub async fn postgres_reachable(admin_url: &str) -> anyhow::Result<()> {
    let connection = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::PgConnection::connect(admin_url),
    )
    .await
    .context("timed out")??;
    connection.close().await?;
    Ok(())
}
