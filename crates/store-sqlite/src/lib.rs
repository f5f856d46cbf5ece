//! The embedded store: one SQLite file in WAL mode.
//!
//! Every write runs on one writer thread ([`writer`]), which commits the requests waiting
//! at that moment in one transaction, undoes a failed one's writes alone, and answers each only
//! once the commit is synced to disk: durable replies at a fraction of the cost of one commit
//! per request. Queries that write nothing run beside it on read-only connections ([`readers`]).

mod checkpoint;
mod current_codes;
mod effects;
mod readers;
mod rows;
mod writer;

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use enroll_core::clock::Timestamp;
use enroll_core::code::{CodePurpose, CodeState};
use enroll_core::credential::{Credential, PublicKey};
use enroll_core::email::EmailAddress;
use enroll_core::ids::{AppId, CodeId, MessageId, OrgId, TokenId, UserId};
use enroll_core::model::{
    AccessToken, App, AttemptOutcome, CapturedMail, ClaimedMessage, CodeRecord, DeliveryOutcome,
    Event, Locale, MailTemplate, MessageSummary, Org, Permission, RetiredSecret, SingleUse, User,
};
use enroll_core::nonce::Nonce;
use enroll_core::password::PasswordHash;
use enroll_core::ports::{Directory, Inbox, MessageFilter, Outbox, Registrations, TokenKey};
use enroll_core::rules::{
    self, CodeIssued, CodeVerified, CompleteLogin, CompleteLoginState, CreateServiceAccount,
    CreateUser, CreateUserState, CredentialRegistered, EmailUpdated, IssueCode, IssueCodeState,
    LoginAttempt, LoginRecorded, LoginState, PasswordResetRequested, RegisterCredential,
    RegisterCredentialState, RequestPasswordReset, RequestPasswordResetState, ResetPassword,
    SendRecord, ServiceAccountCreated, SignUp, SignUpState, SignedUp, UpdateEmail,
    UpdateEmailState, UserCreated, UserKey, VerifyCode, VerifyCodeState,
};
use enroll_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};

use crate::checkpoint::Checkpointer;
use crate::readers::Readers;
use crate::writer::Writer;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_credentials.sql"),
    include_str!("../migrations/0003_email_verification.sql"),
    include_str!("../migrations/0004_password_accounts.sql"),
    include_str!("../migrations/0005_send_windows.sql"),
    include_str!("../migrations/0006_app_secret_rotation.sql"),
    include_str!("../migrations/0007_clustered_records.sql"),
    include_str!("../migrations/0008_fewer_pages_per_send.sql"),
    include_str!("../migrations/0009_codes_clustered_by_user.sql"),
    include_str!("../migrations/0010_newest_code_is_current.sql"),
    include_str!("../migrations/0011_events_in_order.sql"),
    include_str!("../migrations/0012_messages_chained_by_user.sql"),
    include_str!("../migrations/0013_current_codes_in_user_rows.sql"),
];

/// The due messages, oldest first, each with its code's state and expiry. A message's code is
/// read from its user's row if it is still the user's current one; one the user has replaced
/// since is superseded, whatever state it was left in, and is not looked up (migration 0013).
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT m.id, m.org_id, COALESCE(o.name, ''), m.user_id, m.template, m.locale, m.recipient, \
                m.sealed, m.attempts + 1, \
                CASE WHEN m.code_id IS NOT NULL THEN COALESCE({}, 'superseded') END, {}, m.created_at \
         FROM outbox m LEFT JOIN orgs o ON o.id = m.org_id LEFT JOIN users u ON u.id = m.user_id \
         WHERE m.state IN ('queued', 'sending') \
           AND ((m.state = 'queued' AND m.next_attempt_at <= ?1) \
            OR (m.state = 'sending' AND m.lease_until <= ?1)) \
         ORDER BY m.next_attempt_at LIMIT ?2",
        current_codes::of_message("state"),
        current_codes::of_message("expires_at")
    )
});

/// The SQLite store. Cheap to clone; every clone feeds the same writer thread.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    /// Connections for the queries that write nothing; `None` for in-memory databases, which
    /// only the writer's connection can see.
    readers: Option<Readers>,
    /// `None` for in-memory databases, which have no log to checkpoint.
    _checkpointer: Option<Arc<Checkpointer>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

/// Errors of the disk or of contention, which pass: the request may be tried again later.
pub(crate) fn is_unavailable(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(code, _)
    if matches!(
        code.code,
        rusqlite::ErrorCode::DatabaseBusy
            | rusqlite::ErrorCode::DatabaseLocked
            | rusqlite::ErrorCode::DiskFull
            | rusqlite::ErrorCode::CannotOpen
            | rusqlite::ErrorCode::SystemIoFailure
    ))
}

pub(crate) fn db_error(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |error| {
        if is_unavailable(&error) {
            Error::Unavailable(Box::new(error))
        } else {
            Error::internal(context, error)
        }
    }
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(code, _)
        if code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let connection = Connection::open(path).map_err(|error| {
            Error::internal(
                format!("could not open the SQLite database at {}", path.display()),
                error,
            )
        })?;
        let mut store = Self::start(connection)?;
        store.readers = Some(Readers::new(path));
        // After `start`, so the schema and the WAL mode exist when it first runs.
        store._checkpointer = Some(Arc::new(
            Checkpointer::start(path)
                .map_err(db_error("could not start the SQLite checkpointer"))?,
        ));
        Ok(store)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self> {
        let connection = Connection::open_in_memory()
            .map_err(|error| Error::internal("could not open an in-memory database", error))?;
        Self::start(connection)
    }

    fn start(connection: Connection) -> Result<Self> {
        configure(&connection).map_err(db_error("could not configure the SQLite connection"))?;
        migrate(&connection)?;
        let log = write_ahead_log(&connection)?;
        if log.is_some() {
            // The writer's own thread syncs the log after each commit (see `writer`).
            connection
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(db_error("could not configure the SQLite connection"))?;
        }
        let writer = Writer::start(connection, log)
            .map_err(|error| Error::internal("could not start the SQLite writer thread", error))?;
        Ok(Self {
            writer,
            readers: None,
            _checkpointer: None,
        })
    }

    /// Runs `work`, which may write, on the writer thread; it may run twice (see [`writer`]).
    async fn write<T, F>(&self, context: &'static str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.writer
            .run(move |connection| work(connection).map_err(db_error(context)))
            .await
    }

    /// Runs `query`, a small read that every request of some kind makes, on the writer before
    /// its next batch's writes (see [`Writer::read`]).
    async fn look_up<T, F>(&self, context: &'static str, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.writer
            .read(move |connection| query(connection).map_err(db_error(context)))
            .await
    }

    /// Runs `query`, which writes nothing, on a reader connection beside the writer.
    async fn read<T, F>(&self, context: &'static str, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        match &self.readers {
            Some(readers) => readers.run(context, query).await,
            None => self.write(context, query).await,
        }
    }
}

/// The write-ahead log of a database on disk, opened to be synced; `None` in memory.
fn write_ahead_log(connection: &Connection) -> Result<Option<std::fs::File>> {
    let Some(database) = connection.path().filter(|path| !path.is_empty()) else {
        return Ok(None);
    };
    let path = format!("{database}-wal");
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map(Some)
        .map_err(|error| Error::internal(format!("could not open the SQLite log {path}"), error))
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.set_prepared_statement_cache_capacity(64);
    // WAL lets readers of other processes (the CLI) work beside the server; FULL makes each
    // commit durable before anyone is answered. The writer thread's connection drops to NORMAL
    // once a thread of its own syncs the log after each commit (see `writer`).
    connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    // The writer thread is the only one using this connection: its page cache keeps the hot
    // pages of the indexes it writes (16 MiB: the operating system caches the rest of the
    // file, and the server's whole resident set stays within 64 MiB under load), and
    // statement and savepoint journals need not touch the disk.
    connection.pragma_update(None, "cache_size", -16_384)?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    // The checkpointer thread (see `checkpoint`) copies the log back as it grows; the writer
    // copies what is left past this many frames, between two of its commits, so the copy
    // completes and the next commit writes the log from its start again instead of growing it.
    connection.pragma_update(
        None,
        "wal_autocheckpoint",
        checkpoint::WRITER_CHECKPOINT_FRAMES,
    )?;
    connection.pragma_update(None, "journal_size_limit", checkpoint::WAL_LIMIT_BYTES)?;
    Ok(())
}

fn migrate(connection: &Connection) -> Result<()> {
    let applied: usize = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db_error("could not read the SQLite schema version"))?;
    if applied > MIGRATIONS.len() {
        // A newer build changed the tables in ways this one does not know: its writes would
        // fail, or worse, succeed half-understood.
        return Err(Error::internal(
            "could not open the SQLite database",
            format!(
                "its schema is version {applied}, newer than this build's {}: \
                 it was written by a newer enroll; run that version or newer",
                MIGRATIONS.len()
            ),
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        connection
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
                index + 1
            ))
            .map_err(db_error("could not migrate the SQLite database"))?;
    }
    Ok(())
}

fn org_by_id(connection: &Connection, id: &OrgId) -> rusqlite::Result<Option<Org>> {
    connection
        .prepare_cached(&format!(
            "SELECT {} FROM orgs WHERE id = ?1",
            rows::ORG_COLUMNS
        ))?
        .query_row([id.as_str()], rows::org)
        .optional()
}

fn user_by_username(
    connection: &Connection,
    org: &OrgId,
    username: &EmailAddress,
) -> rusqlite::Result<Option<User>> {
    connection
        .prepare_cached(&format!(
            "SELECT {} FROM users WHERE org_id = ?1 AND username = ?2",
            rows::USER_COLUMNS
        ))?
        .query_row([org.as_str(), username.as_str()], rows::user)
        .optional()
}

fn user_by_id(connection: &Connection, id: &UserId) -> rusqlite::Result<Option<User>> {
    connection
        .prepare_cached(&format!(
            "SELECT {} FROM users WHERE id = ?1",
            rows::USER_COLUMNS
        ))?
        .query_row([id.as_str()], rows::user)
        .optional()
}

/// The entries of the user `?1`'s past codes, newest first, as far as the code `?2` (all of
/// them if `?2` is null): each names the one before it, the user's row the newest
/// (migration 0013).
const PAST_CODES: &str = "WITH RECURSIVE chain(entry) AS ( \
         SELECT last_past_code FROM users WHERE id = ?1 \
         UNION ALL \
         SELECT past.previous FROM past_codes past JOIN chain ON past.entry = chain.entry \
         WHERE past.id IS NOT ?2)";

/// A code by its id: the current one of its user and purpose, or one it replaced, found
/// walking the user's past codes back from the newest (migration 0013).
fn code_by_id(connection: &Connection, id: &CodeId) -> rusqlite::Result<Option<CodeRecord>> {
    let Some((user, purpose)) = connection
        .prepare_cached("SELECT user_id, purpose FROM code_ids WHERE id = ?1")?
        .query_row([id.as_str()], |row| {
            Ok((
                UserId::from_trusted(row.get(0)?),
                rows::code_purpose(row, 1)?,
            ))
        })
        .optional()?
    else {
        return Ok(None);
    };
    if let Some(current) = latest_code(connection, &user, purpose)?.filter(|code| code.id == *id) {
        return Ok(Some(current));
    }
    connection
        .prepare_cached(&format!(
            "{PAST_CODES} SELECT {} FROM past_codes WHERE entry IN chain AND id = ?2",
            rows::CODE_COLUMNS
        ))?
        .query_row([user.as_str(), id.as_str()], rows::code)
        .optional()
}

fn credentials_of(connection: &Connection, user: &UserId) -> rusqlite::Result<Vec<Credential>> {
    connection
        .prepare_cached(&format!(
            "SELECT {} FROM credentials WHERE user_id = ?1 ORDER BY created_at, rowid",
            rows::CREDENTIAL_COLUMNS
        ))?
        .query_map([user.as_str()], rows::credential)?
        .collect()
}

fn active_code(
    connection: &Connection,
    user: &UserId,
    purpose: CodePurpose,
) -> rusqlite::Result<Option<CodeRecord>> {
    Ok(latest_code(connection, user, purpose)?.filter(|code| code.state == CodeState::Active))
}

/// The newest code of the purpose, active or not: the one the user's row holds (migration
/// 0013), as the schema keeps an active code the newest of its purpose (migration 0010).
fn latest_code(
    connection: &Connection,
    user: &UserId,
    purpose: CodePurpose,
) -> rusqlite::Result<Option<CodeRecord>> {
    connection
        .prepare_cached(&current_codes::statements(purpose).select)?
        .query_row([user.as_str()], rows::code)
        .optional()
}

fn sends(
    connection: &Connection,
    subject: &str,
    purpose: CodePurpose,
) -> rusqlite::Result<Option<SendRecord>> {
    connection
        .prepare_cached(
            "SELECT until, window_started_at, sends FROM cooldowns \
             WHERE subject = ?1 AND purpose = ?2",
        )?
        .query_row([subject, purpose.as_str()], |row| {
            Ok(SendRecord {
                cooldown_until: rows::timestamp(row, 0)?,
                window_started_at: rows::timestamp(row, 1)?,
                sends: row.get(2)?,
            })
        })
        .optional()
}

fn login_failures(
    connection: &Connection,
    subject: &str,
) -> rusqlite::Result<Option<(u32, Timestamp)>> {
    connection
        .prepare_cached("SELECT failures, window_ends_at FROM login_failures WHERE subject = ?1")?
        .query_row([subject], |row| Ok((row.get(0)?, rows::timestamp(row, 1)?)))
        .optional()
}

#[async_trait]
impl Directory for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.write("could not query the SQLite database", |connection| {
            connection.query_row("SELECT 1", [], |_| Ok(()))
        })
        .await
    }

    fn counters(&self) -> Vec<enroll_core::ports::CounterValue> {
        self.writer.statistics().counters()
    }

    async fn insert_org(&self, org: &Org) -> Result<()> {
        let org = org.clone();
        self.write("could not insert an organisation", move |connection| {
            connection
                .prepare_cached("INSERT INTO orgs (id, name, default_locale, created_at, unknown_address_mail) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![org.id.as_str(), org.name, org.default_locale.as_str(), org.created_at.as_millis(), org.unknown_address_mail])
                .map(drop)
        })
        .await
    }

    async fn set_org_unknown_address_mail(&self, id: &OrgId, send: bool) -> Result<()> {
        let id = id.clone();
        self.write("could not change an organisation", move |connection| {
            connection
                .prepare_cached("UPDATE orgs SET unknown_address_mail = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), send])
                .map(drop)
        })
        .await
    }

    async fn org(&self, id: &OrgId) -> Result<Option<Org>> {
        let id = id.clone();
        self.read("could not read an organisation", move |connection| {
            org_by_id(connection, &id)
        })
        .await
    }

    async fn orgs(&self) -> Result<Vec<Org>> {
        self.read("could not list organisations", |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {} FROM orgs ORDER BY created_at, id",
                    rows::ORG_COLUMNS
                ))?
                .query_map([], rows::org)?
                .collect()
        })
        .await
    }

    async fn insert_app(&self, app: &App) -> Result<()> {
        let app = app.clone();
        self.write("could not insert an app", move |connection| {
            connection
                .prepare_cached("INSERT INTO apps (id, org_id, name, permissions, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![
                    app.id.as_str(),
                    app.org_id.as_str(),
                    app.name,
                    Permission::list_to_json(&app.permissions),
                    app.created_at.as_millis()
                ])
                .map(drop)
        })
        .await
    }

    async fn apps(&self, org: Option<&OrgId>) -> Result<Vec<App>> {
        let org = org.map(|org| org.as_str().to_owned());
        self.read("could not list apps", move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {} FROM apps WHERE ?1 IS NULL OR org_id = ?1 ORDER BY created_at, id",
                    rows::APP_COLUMNS
                ))?
                .query_map([&org], rows::app)?
                .collect()
        })
        .await
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>> {
        let id = id.clone();
        self.read("could not read an app", move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {} FROM apps WHERE id = ?1",
                    rows::APP_COLUMNS
                ))?
                .query_row([id.as_str()], rows::app)
                .optional()
        })
        .await
    }

    async fn set_app_secret(
        &self,
        id: &AppId,
        digest: &[u8; 32],
        retired: Option<&RetiredSecret>,
    ) -> Result<()> {
        let (id, digest, retired) = (id.clone(), *digest, retired.copied());
        let updated = self
            .write("could not set an app secret", move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE apps SET secret_digest = ?2, retired_secret_digest = ?3, \
                         retired_secret_expires_at = ?4 WHERE id = ?1",
                    )?
                    .execute(params![
                        id.as_str(),
                        digest.as_slice(),
                        retired.as_ref().map(|retired| retired.digest.to_vec()),
                        retired.map(|retired| retired.expires_at.as_millis())
                    ])
            })
            .await?;
        if updated == 1 {
            Ok(())
        } else {
            Err(Error::UnknownApp)
        }
    }

    async fn set_app_public_key(&self, id: &AppId, public_key: &PublicKey) -> Result<()> {
        let (id, pem) = (id.clone(), public_key.pem().to_owned());
        let updated = self
            .write("could not set an app key", move |connection| {
                connection
                    .prepare_cached("UPDATE apps SET public_key = ?2 WHERE id = ?1")?
                    .execute(params![id.as_str(), pem])
            })
            .await?;
        if updated == 1 {
            Ok(())
        } else {
            Err(Error::UnknownApp)
        }
    }

    async fn insert_token(&self, token: &AccessToken) -> Result<()> {
        let token = token.clone();
        self.write("could not insert a token", move |connection| {
            effects::insert_token(connection, &token)
        })
        .await
    }

    async fn token_by_digest(&self, digest: &[u8; 32]) -> Result<Option<AccessToken>> {
        let digest = *digest;
        self.read("could not look up a token", move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {} FROM tokens WHERE digest = ?1",
                    rows::TOKEN_COLUMNS
                ))?
                .query_row([digest.as_slice()], rows::token)
                .optional()
        })
        .await
    }

    async fn token(&self, id: &TokenId) -> Result<Option<AccessToken>> {
        let id = id.clone();
        self.read("could not read a token", move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {} FROM tokens WHERE id = ?1",
                    rows::TOKEN_COLUMNS
                ))?
                .query_row([id.as_str()], rows::token)
                .optional()
        })
        .await
    }

    async fn token_with_user(
        &self,
        key: TokenKey<'_>,
    ) -> Result<Option<(AccessToken, Option<User>)>> {
        let (column, key) = match key {
            TokenKey::Digest(digest) => ("digest", rusqlite::types::Value::Blob(digest.to_vec())),
            TokenKey::Id(id) => ("id", rusqlite::types::Value::Text(id.as_str().to_owned())),
        };
        // Written here rather than in the lookup, which runs on the writer thread.
        let query = format!(
            "SELECT {} FROM tokens WHERE {column} = ?1",
            rows::TOKEN_COLUMNS
        );
        // One trip to the writer for both rows: every authenticated request starts here.
        self.look_up("could not look up a token", move |connection| {
            let token = connection
                .prepare_cached(&query)?
                .query_row([&key], rows::token)
                .optional()?;
            let Some(token) = token else {
                return Ok(None);
            };
            let user = match &token.user_id {
                Some(id) => user_by_id(connection, id)?,
                None => None,
            };
            Ok(Some((token, user)))
        })
        .await
    }

    async fn password_hash(&self, user: &UserId) -> Result<Option<PasswordHash>> {
        let user = user.clone();
        self.read("could not read a password", move |connection| {
            connection
                .prepare_cached("SELECT password_hash FROM users WHERE id = ?1")?
                .query_row([user.as_str()], |row| row.get::<_, Option<String>>(0))
                .optional()
                .map(|found| found.flatten().map(PasswordHash::from_trusted))
        })
        .await
    }

    async fn sends(&self, subject: &str, purpose: CodePurpose) -> Result<Option<SendRecord>> {
        let subject = subject.to_owned();
        self.read("could not read a cooldown", move |connection| {
            sends(connection, &subject, purpose)
        })
        .await
    }

    async fn login_failures(&self, subject: &str) -> Result<Option<(u32, Timestamp)>> {
        let subject = subject.to_owned();
        self.read("could not read failed logins", move |connection| {
            login_failures(connection, &subject)
        })
        .await
    }

    async fn code(&self, id: &CodeId) -> Result<Option<CodeRecord>> {
        let id = id.clone();
        self.read("could not read a code", move |connection| {
            code_by_id(connection, &id)
        })
        .await
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        let id = id.clone();
        self.read("could not read a user", move |connection| {
            user_by_id(connection, &id)
        })
        .await
    }

    async fn user_by_username(&self, org: &OrgId, username: &EmailAddress) -> Result<Option<User>> {
        let (org, username) = (org.clone(), username.clone());
        self.read("could not read a user", move |connection| {
            user_by_username(connection, &org, &username)
        })
        .await
    }

    async fn users(&self, org: Option<&OrgId>) -> Result<Vec<User>> {
        let org = org.map(|org| org.as_str().to_owned());
        self.read("could not list users", move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {} FROM users WHERE ?1 IS NULL OR org_id = ?1 ORDER BY created_at, id",
                    rows::USER_COLUMNS
                ))?
                .query_map([&org], rows::user)?
                .collect()
        })
        .await
    }

    async fn codes(&self, user: &UserId) -> Result<Vec<CodeRecord>> {
        let user = user.clone();
        self.read("could not list codes", move |connection| {
            // The codes the user's current ones replaced, oldest first, then those.
            let mut codes: Vec<CodeRecord> = connection
                .prepare_cached(&format!(
                    "{PAST_CODES} SELECT {} FROM past_codes WHERE entry IN chain ORDER BY entry",
                    rows::CODE_COLUMNS
                ))?
                .query_map(params![user.as_str(), None::<&str>], rows::code)?
                .collect::<rusqlite::Result<_>>()?;
            for purpose in CodePurpose::ALL {
                codes.extend(latest_code(connection, &user, purpose)?);
            }
            // In the order of issue: codes of one purpose are replaced in that order, and a
            // stable sort keeps it among codes of one millisecond.
            codes.sort_by_key(|code| code.created_at);
            Ok(codes)
        })
        .await
    }

    async fn credentials(&self, user: &UserId) -> Result<Vec<Credential>> {
        let user = user.clone();
        self.read("could not list credentials", move |connection| {
            credentials_of(connection, &user)
        })
        .await
    }

    async fn user_permissions(&self, user: &UserId) -> Result<Vec<Permission>> {
        let user = user.clone();
        self.read("could not read a user's permissions", move |connection| {
            connection
                .prepare_cached("SELECT permissions FROM users WHERE id = ?1")?
                .query_row([user.as_str()], |row| rows::permissions(row, 0))
                .optional()
                .map(Option::unwrap_or_default)
        })
        .await
    }

    async fn set_user_permissions(&self, user: &UserId, permissions: &[Permission]) -> Result<()> {
        let (user, permissions) = (user.clone(), Permission::list_to_json(permissions));
        let updated = self
            .write("could not set a user's permissions", move |connection| {
                connection
                    .prepare_cached("UPDATE users SET permissions = ?2 WHERE id = ?1")?
                    .execute(params![user.as_str(), permissions])
            })
            .await?;
        if updated == 1 {
            Ok(())
        } else {
            Err(Error::UserNotFound)
        }
    }

    async fn events(&self, aggregate_id: &str) -> Result<Vec<Event>> {
        let aggregate_id = aggregate_id.to_owned();
        self.read("could not list events", move |connection| {
            // Back along the user's chain, from the newest event its row names (migration 0011);
            // each link points to an earlier rowid, so a damaged chain cannot loop.
            connection
                .prepare_cached(&format!(
                    "WITH RECURSIVE chain (id) AS ( \
                         SELECT last_event FROM users WHERE id = ?1 \
                         UNION ALL \
                         SELECT events.previous FROM events JOIN chain ON events.id = chain.id \
                         WHERE events.previous < events.id \
                     ) \
                     SELECT {} FROM events WHERE id IN (SELECT id FROM chain) ORDER BY sequence",
                    rows::EVENT_COLUMNS
                ))?
                .query_map([&aggregate_id], rows::event)?
                .collect()
        })
        .await
    }
}

/// Runs a decision's writes, keeping them when it answers with a refusal: the refusal itself
/// may have changed state (a wrong code counts an attempt).
fn carry_out<T>(connection: &Connection, plan: rules::Plan<T>) -> Result<Result<T>> {
    for effect in &plan.effects {
        effects::apply(connection, effect).map_err(db_error("could not apply a change"))?;
    }
    Ok(plan.outcome)
}

#[async_trait]
impl Registrations for SqliteStore {
    async fn create_user(&self, command: CreateUser) -> Result<UserCreated> {
        self.writer
            .run(move |connection| {
                if let Some(user_action) = &command.user_action {
                    spend(connection, user_action)?;
                }
                let state = CreateUserState {
                    org: org_by_id(connection, &command.org_id)
                        .map_err(db_error("could not read an organisation"))?,
                    existing: user_by_username(connection, &command.org_id, &command.username)
                        .map_err(db_error("could not read a user"))?,
                };
                carry_out(connection, rules::create_user(&state, &command))
            })
            .await?
    }

    async fn issue_code(&self, command: IssueCode, nonce: Option<Nonce>) -> Result<CodeIssued> {
        self.writer
            .run(move |connection| {
                if let Some(nonce) = &nonce {
                    record_nonce(connection, nonce, command.now)?;
                }
                let read = db_error("could not read the state of a resend");
                let user = user_by_username(connection, &command.org_id, &command.username)
                    .map_err(&read)?;
                let app = match &command.app {
                    Some(check) => connection
                        .prepare_cached(&format!(
                            "SELECT {} FROM apps WHERE id = ?1",
                            rows::APP_COLUMNS
                        ))
                        .and_then(|mut statement| {
                            statement
                                .query_row([check.app_id.as_str()], rows::app)
                                .optional()
                        })
                        .map_err(&read)?,
                    None => None,
                };
                let active_code = match &user {
                    Some(user) => {
                        active_code(connection, &user.id, command.purpose).map_err(&read)?
                    }
                    None => None,
                };
                let state = IssueCodeState {
                    org: org_by_id(connection, &command.org_id).map_err(&read)?,
                    user,
                    app,
                    active_code,
                    sends: sends(connection, &command.cooldown_subject, command.purpose)
                        .map_err(&read)?,
                };
                carry_out(connection, rules::issue_code(&state, &command))
            })
            .await?
    }

    async fn verify_code(&self, command: VerifyCode) -> Result<CodeVerified> {
        self.writer
            .run(move |connection| {
                let read = db_error("could not read the state of a verification");
                let user = match &command.user {
                    UserKey::Username { org_id, username } => {
                        user_by_username(connection, org_id, username)
                    }
                    UserKey::Id(id) => user_by_id(connection, id),
                }
                .map_err(&read)?;
                let latest_code = match &user {
                    Some(user) => {
                        latest_code(connection, &user.id, command.purpose).map_err(&read)?
                    }
                    None => None,
                };
                let state = VerifyCodeState { user, latest_code };
                carry_out(connection, rules::verify_code(&state, &command))
            })
            .await?
    }

    async fn update_email(&self, command: UpdateEmail) -> Result<EmailUpdated> {
        self.writer
            .run(move |connection| {
                let read = db_error("could not read the state of an address change");
                let purpose = CodePurpose::EmailVerification;
                let user = user_by_id(connection, &command.user_id).map_err(&read)?;
                let mut state = UpdateEmailState {
                    user: None,
                    org: None,
                    latest_code: None,
                    sends: None,
                    address_taken: false,
                };
                if let Some(user) = user {
                    let recipient = command.recipient(&user);
                    state.address_taken = recipient != &user.username
                        && user_by_username(connection, &user.org_id, recipient)
                            .map_err(&read)?
                            .is_some();
                    state.org = org_by_id(connection, &user.org_id).map_err(&read)?;
                    state.latest_code =
                        latest_code(connection, &user.id, purpose).map_err(&read)?;
                    state.sends = sends(connection, &command.cooldown_subject(&user), purpose)
                        .map_err(&read)?;
                    state.user = Some(user);
                }
                carry_out(connection, rules::update_email(&state, &command))
            })
            .await?
    }

    async fn create_service_account(
        &self,
        command: CreateServiceAccount,
    ) -> Result<ServiceAccountCreated> {
        self.writer
            .run(move |connection| {
                let read = db_error("could not read the state of a new service account");
                let state = CreateUserState {
                    org: org_by_id(connection, &command.org_id).map_err(&read)?,
                    existing: user_by_username(connection, &command.org_id, &command.username)
                        .map_err(&read)?,
                };
                carry_out(connection, rules::create_service_account(&state, &command))
            })
            .await?
    }

    async fn register_credential(
        &self,
        command: RegisterCredential,
    ) -> Result<CredentialRegistered> {
        self.writer
            .run(move |connection| {
                let read = db_error("could not read the state of a registration");
                let user = user_by_id(connection, &command.user_id).map_err(&read)?;
                let code = code_by_id(connection, &command.code_id).map_err(&read)?;
                let state = RegisterCredentialState { user, code };
                carry_out(connection, rules::register_credential(&state, &command))
            })
            .await?
    }

    async fn complete_login(&self, command: CompleteLogin) -> Result<AccessToken> {
        self.writer
            .run(move |connection| {
                spend(connection, &command.challenge)?;
                let read = db_error("could not read the state of a login");
                let user = user_by_id(connection, &command.user_id).map_err(&read)?;
                let credential_held = credentials_of(connection, &command.user_id)
                    .map_err(&read)?
                    .iter()
                    .any(|credential| credential.id == command.credential_id);
                let state = CompleteLoginState {
                    user,
                    credential_held,
                };
                carry_out(connection, rules::complete_login(&state, &command))
            })
            .await?
    }

    async fn sign_up(&self, command: SignUp) -> Result<SignedUp> {
        self.writer
            .run(move |connection| {
                let read = db_error("could not read the state of a sign-up");
                let user = &command.user;
                let state = SignUpState {
                    create: CreateUserState {
                        org: org_by_id(connection, &user.org_id).map_err(&read)?,
                        existing: user_by_username(connection, &user.org_id, &user.username)
                            .map_err(&read)?,
                    },
                    sends: sends(
                        connection,
                        &user.cooldown_subject,
                        CodePurpose::EmailVerification,
                    )
                    .map_err(&read)?,
                };
                carry_out(connection, rules::sign_up(&state, &command))
            })
            .await?
    }

    async fn record_login(&self, command: LoginAttempt) -> Result<LoginRecorded> {
        self.writer
            .run(move |connection| {
                let read = db_error("could not read the state of a login");
                let user = match &command.user_id {
                    Some(id) => user_by_id(connection, id).map_err(&read)?,
                    None => None,
                };
                let state = LoginState {
                    user,
                    failures: login_failures(connection, &command.subject).map_err(&read)?,
                };
                carry_out(connection, rules::record_login(&state, &command))
            })
            .await?
    }

    async fn request_password_reset(
        &self,
        command: RequestPasswordReset,
    ) -> Result<PasswordResetRequested> {
        self.writer
            .run(move |connection| {
                let read = db_error("could not read the state of a password reset");
                let purpose = CodePurpose::PasswordReset;
                let user =
                    user_by_username(connection, &command.org_id, &command.email).map_err(&read)?;
                let active_code = match &user {
                    Some(user) => active_code(connection, &user.id, purpose).map_err(&read)?,
                    None => None,
                };
                let state = RequestPasswordResetState {
                    org: org_by_id(connection, &command.org_id).map_err(&read)?,
                    user,
                    active_code,
                    sends: sends(connection, &command.cooldown_subject, purpose).map_err(&read)?,
                };
                carry_out(connection, rules::request_password_reset(&state, &command))
            })
            .await?
    }

    async fn reset_password(&self, command: ResetPassword) -> Result<User> {
        self.writer
            .run(move |connection| {
                let read = db_error("could not read the state of a password reset");
                let user = user_by_id(connection, &command.user_id).map_err(&read)?;
                let latest_code = match &user {
                    Some(user) => latest_code(connection, &user.id, CodePurpose::PasswordReset)
                        .map_err(&read)?,
                    None => None,
                };
                let state = VerifyCodeState { user, latest_code };
                carry_out(connection, rules::reset_password(&state, &command))
            })
            .await?
    }

    async fn rotate_token(
        &self,
        id: &TokenId,
        old_digest: &[u8; 32],
        new_digest: &[u8; 32],
        now: Timestamp,
    ) -> Result<bool> {
        let (id, old_digest, new_digest) = (id.clone(), *old_digest, *new_digest);
        self.writer
            .run(move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE tokens SET digest = ?3 WHERE id = ?1 AND digest = ?2                            AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?4)",
                    )
                    .and_then(|mut statement| {
                        statement.execute(params![
                            id.as_str(),
                            old_digest.as_slice(),
                            new_digest.as_slice(),
                            now.as_millis()
                        ])
                    })
                    .map(|updated| updated == 1)
                    .map_err(db_error("could not rotate a token"))
            })
            .await
    }

    async fn spend(&self, single_use: SingleUse) -> Result<()> {
        self.writer
            .run(move |connection| spend(connection, &single_use))
            .await
    }

    async fn revoke_tokens(
        &self,
        user: &UserId,
        token: Option<&TokenId>,
        now: Timestamp,
    ) -> Result<u64> {
        let (user, token) = (user.clone(), token.cloned());
        self.write("could not revoke tokens", move |connection| {
            connection
                .prepare_cached(
                    "UPDATE tokens SET revoked_at = ?3 WHERE user_id = ?1 AND revoked_at IS NULL \
                       AND (id = ?2 OR (?2 IS NULL AND kind = 'session'))",
                )?
                .execute(params![
                    user.as_str(),
                    token.as_ref().map(TokenId::as_str),
                    now.as_millis()
                ])
                .map(|count| count as u64)
        })
        .await
    }

    async fn purge_spent(&self, expired_before: Timestamp) -> Result<u64> {
        self.write("could not purge spent tokens", move |connection| {
            connection
                .prepare_cached("DELETE FROM spent_tokens WHERE expires_at < ?1")?
                .execute([expired_before.as_millis()])
                .map(|count| count as u64)
        })
        .await
    }

    async fn purge_nonces(&self, seen_before: Timestamp) -> Result<u64> {
        self.write("could not purge nonces", move |connection| {
            connection
                .prepare_cached("DELETE FROM nonces WHERE seen_at < ?1")?
                .execute([seen_before.as_millis()])
                .map(|count| count as u64)
        })
        .await
    }
}

fn spend(connection: &Connection, single_use: &SingleUse) -> Result<()> {
    let inserted = connection
        .prepare_cached("INSERT INTO spent_tokens (id, expires_at) VALUES (?1, ?2)")
        .and_then(|mut statement| {
            statement.execute(params![single_use.id, single_use.expires_at.as_millis()])
        });
    match inserted {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation(&error) => Err(single_use.reused()),
        Err(error) => Err(db_error("could not record a spent token")(error)),
    }
}

fn record_nonce(connection: &Connection, nonce: &Nonce, now: Timestamp) -> Result<()> {
    let inserted = connection
        .prepare_cached("INSERT INTO nonces (key, seen_at) VALUES (?1, ?2)")
        .and_then(|mut statement| statement.execute(params![nonce.key, now.as_millis()]));
    match inserted {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation(&error) => Err(Error::NonceReused),
        Err(error) => Err(db_error("could not record a nonce")(error)),
    }
}

/// Writes how attempt number `attempt` ended, if the attempt still holds the message.
fn record_delivery(
    connection: &Connection,
    id: &MessageId,
    attempt: u32,
    outcome: &DeliveryOutcome,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    let record = outcome.record();
    connection
        .prepare_cached(
            "UPDATE outbox SET state = ?2, lease_until = NULL, \
                next_attempt_at = COALESCE(?3, next_attempt_at), \
                last_error = COALESCE(?4, last_error), \
                sealed = CASE WHEN ?5 THEN sealed ELSE NULL END, \
                sent_at = CASE WHEN ?2 = 'sent' THEN ?6 ELSE sent_at END \
             WHERE id = ?1 AND state = 'sending' AND attempts = ?7",
        )?
        .execute(params![
            id.as_str(),
            record.state.as_str(),
            record.next_attempt_at.map(Timestamp::as_millis),
            record.error,
            record.keep_content,
            now.as_millis(),
            attempt
        ])
        .map(|updated| updated == 1)
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn claim(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>> {
        self.write("could not claim outbox messages", move |connection| {
            let claimed: Vec<ClaimedMessage> = connection
                .prepare_cached(&CLAIM)?
                .query_map(params![now.as_millis(), limit], |row| {
                    Ok(ClaimedMessage {
                        id: MessageId::from_trusted(row.get(0)?),
                        org_id: OrgId::from_trusted(row.get(1)?),
                        org_name: row.get(2)?,
                        user_id: row.get::<_, Option<String>>(3)?.map(UserId::from_trusted),
                        template: {
                            let text: String = row.get(4)?;
                            MailTemplate::parse(&text).ok_or_else(|| {
                                rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, format!("unknown template {text:?}").into())
                            })?
                        },
                        locale: Locale::from_trusted(row.get(5)?),
                        recipient: EmailAddress::from_trusted(row.get(6)?),
                        sealed: row.get(7)?,
                        attempts: row.get(8)?,
                        code_state: rows::optional_code_state(row, 9)?,
                        code_expires_at: rows::optional_time(row, 10)?,
                        created_at: rows::timestamp(row, 11)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut mark = connection.prepare_cached(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1, lease_until = ?2 WHERE id = ?1",
            )?;
            for message in &claimed {
                mark.execute(params![message.id.as_str(), lease_until.as_millis()])?;
            }
            Ok(claimed)
        })
        .await
    }

    async fn finish(
        &self,
        id: &MessageId,
        attempt: u32,
        outcome: DeliveryOutcome,
        now: Timestamp,
    ) -> Result<bool> {
        let id = id.clone();
        self.write("could not record a delivery", move |connection| {
            record_delivery(connection, &id, attempt, &outcome, now)
        })
        .await
    }

    async fn finish_all(&self, outcomes: Vec<AttemptOutcome>, now: Timestamp) -> Result<Vec<bool>> {
        self.write("could not record deliveries", move |connection| {
            outcomes
                .iter()
                .map(|attempt| {
                    record_delivery(
                        connection,
                        &attempt.id,
                        attempt.attempt,
                        &attempt.outcome,
                        now,
                    )
                })
                .collect()
        })
        .await
    }

    async fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageSummary>> {
        let filter = filter.clone();
        let query = messages_query(filter.user_id.is_some());
        self.read("could not list outbox messages", move |connection| {
            connection
                .prepare_cached(&query)?
                .query_map(
                    params![
                        filter.recipient,
                        filter.org_id.as_ref().map(OrgId::as_str),
                        filter.limit.unwrap_or(u32::MAX),
                        filter.user_id.as_ref().map(UserId::as_str)
                    ],
                    rows::message_summary,
                )?
                .collect()
        })
        .await
    }

    async fn depth(&self) -> Result<u64> {
        self.read("could not count outbox messages", |connection| {
            connection
                .prepare_cached("SELECT COUNT(*) FROM outbox WHERE state IN ('queued', 'sending')")?
                .query_row([], |row| row.get(0))
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<Timestamp>> {
        self.read("could not read the outbox", |connection| {
            connection
                .prepare_cached(
                    "SELECT MIN(CASE WHEN state = 'queued' THEN next_attempt_at ELSE lease_until END) \
                     FROM outbox WHERE state IN ('queued', 'sending')",
                )?
                .query_row([], |row| rows::optional_time(row, 0))
        })
        .await
    }
}

#[async_trait]
impl Inbox for SqliteStore {
    async fn capture(&self, mail: &CapturedMail) -> Result<()> {
        let mail = mail.clone();
        self.write("could not store a captured mail", move |connection| {
            connection
                .prepare_cached(
                    "INSERT INTO captured_mail (id, message_id, sender, recipient, subject, text_body, html_body, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![
                    mail.id,
                    mail.message_id,
                    mail.from,
                    mail.to,
                    mail.subject,
                    mail.text,
                    mail.html,
                    mail.created_at.as_millis()
                ])
                .map(drop)
        })
        .await
    }

    async fn captured(&self, recipient: Option<&str>) -> Result<Vec<CapturedMail>> {
        let recipient = recipient.map(str::to_owned);
        self.read("could not list captured mail", move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {} FROM captured_mail WHERE ?1 IS NULL OR recipient = ?1 ORDER BY created_at DESC, rowid DESC",
                    rows::CAPTURED_COLUMNS
                ))?
                .query_map([&recipient], rows::captured)?
                .collect()
        })
        .await
    }
}

/// The listing of the outbox, newest first: `?1` a recipient, `?2` an organisation, `?3` a
/// limit, `?4` a user, each or none. A user's messages come back along their chain, from the
/// newest their row names (migration 0012); UNION, not UNION ALL, so that a damaged chain
/// that loops ends where it meets a message already read. The other filters are the command
/// line's, which reads the outbox through.
fn messages_query(by_user: bool) -> String {
    let (chain, of_user) = if by_user {
        (
            "WITH RECURSIVE chain (id) AS ( \
                 SELECT last_message FROM users WHERE id = ?4 \
                 UNION \
                 SELECT outbox.previous_for_user FROM outbox JOIN chain ON outbox.id = chain.id \
             )",
            "id IN (SELECT id FROM chain) AND user_id = ?4",
        )
    } else {
        ("", "?4 IS NULL")
    };
    format!(
        "{chain} SELECT {} FROM outbox WHERE {of_user} AND (?1 IS NULL OR recipient = ?1) \
           AND (?2 IS NULL OR org_id = ?2) \
         ORDER BY created_at DESC, rowid DESC LIMIT ?3",
        rows::MESSAGE_COLUMNS,
    )
}

#[cfg(test)]
mod tests {
    /// A user's messages are found along their chain, one lookup by id each: the listing never
    /// reads the whole outbox, however long it grows.
    #[test]
    fn a_users_messages_are_read_without_reading_the_outbox_through() {
        let connection = rusqlite::Connection::open_in_memory().expect("a database");
        super::migrate(&connection).expect("migrated");
        let plan: Vec<String> = connection
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                super::messages_query(true)
            ))
            .expect("the query prepares")
            .query_map(
                rusqlite::params![None::<String>, None::<String>, 10, "us-1"],
                |row| row.get(3),
            )
            .expect("a plan")
            .collect::<Result<_, _>>()
            .expect("the plan's steps");
        assert!(
            plan.iter().all(|step| !step.starts_with("SCAN outbox")),
            "{plan:#?}"
        );
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH outbox USING INDEX")),
            "{plan:#?}"
        );
    }

    /// The build of SQLite that `.cargo/config.toml` asks for: without it every allocation and
    /// every page a connection touches takes a process-wide mutex.
    #[test]
    fn sqlite_is_built_without_process_wide_locks_on_its_hot_paths() {
        let connection = rusqlite::Connection::open_in_memory().expect("a database");
        let options: Vec<String> = connection
            .prepare("PRAGMA compile_options")
            .expect("the pragma prepares")
            .query_map([], |row| row.get(0))
            .expect("the options")
            .collect::<Result<_, _>>()
            .expect("each option");
        assert!(
            options.iter().any(|option| option == "DEFAULT_MEMSTATUS=0"),
            "{options:#?}"
        );
        assert!(
            options.iter().any(|option| option == "OMIT_SHARED_CACHE"),
            "{options:#?}"
        );
        assert!(
            !options
                .iter()
                .any(|option| option == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:#?}"
        );
    }
}
