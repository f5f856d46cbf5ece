//! The scale-out store: PostgreSQL, shared by any number of server instances.
//!
//! Each command of [`Registrations`] runs in one transaction: it locks the user's row (and the
//! cooldown subject, which exists whether or not the user does), loads what the rule needs,
//! calls the rule of [`enroll_core::rules`], applies its effects and commits. Commands on one
//! user or one address are so serialised across instances. The hot commands (resends,
//! verifications, user creation) send their statements in batches (module `batch`): `BEGIN`
//! with the locks and reads, then the writes with `COMMIT`, two round trips where each
//! statement was one. Outbox claims take due rows with `FOR UPDATE SKIP LOCKED` and lease
//! them, so no two workers send one message at once.

mod batch;
mod current_codes;
mod effects;
mod rows;

use std::str::FromStr as _;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use enroll_core::clock::Timestamp;
use enroll_core::code::{CodePurpose, CodeState};
use enroll_core::credential::{Credential, PublicKey};
use enroll_core::email::EmailAddress;
use enroll_core::ids::{AppId, CodeId, MessageId, OrgId, TokenId, UserId};
use enroll_core::model::{
    AccessToken, App, AttemptOutcome, CapturedMail, ClaimedMessage, CodeRecord, DeliveryOutcome,
    Event, MessageSummary, Org, Permission, RetiredSecret, SingleUse, User,
};
use enroll_core::nonce::Nonce;
use enroll_core::password::PasswordHash;
use enroll_core::ports::{Directory, Inbox, MessageFilter, Outbox, Registrations};
use enroll_core::rules::{
    self, CodeIssued, CodeVerified, CompleteLogin, CompleteLoginState, CreateServiceAccount,
    CreateUser, CreateUserState, CredentialRegistered, EmailUpdated, IssueCode, IssueCodeState,
    LoginAttempt, LoginRecorded, LoginState, PasswordResetRequested, RegisterCredential,
    RegisterCredentialState, RequestPasswordReset, RequestPasswordResetState, ResetPassword,
    SendRecord, ServiceAccountCreated, SignUp, SignUpState, SignedUp, UpdateEmail,
    UpdateEmailState, UserCreated, UserKey, VerifyCode, VerifyCodeState,
};
use enroll_core::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};

use crate::batch::{Answers, Batch, Prepared, Slot, Transaction, Value};

/// The migrations, in order; the version of each is its position, from 1.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_credentials.sql"),
    include_str!("../migrations/0003_email_verification.sql"),
    include_str!("../migrations/0004_password_accounts.sql"),
    include_str!("../migrations/0005_send_windows.sql"),
    include_str!("../migrations/0006_app_secret_rotation.sql"),
    include_str!("../migrations/0007_outbox_due_in_claim_order.sql"),
    include_str!("../migrations/0008_outbox_due_at.sql"),
    include_str!("../migrations/0009_current_codes_in_user_rows.sql"),
];

/// Held while migrating, so that instances starting together migrate one after the other.
const MIGRATION_LOCK: i64 = 0x656e_726f_6c6c; // "enroll"

/// Class of the transaction-scoped advisory locks on cooldown subjects (the two-key form of
/// `pg_advisory_xact_lock`, a key space apart from [`MIGRATION_LOCK`]).
const COOLDOWN_LOCK_CLASS: i32 = 0x636f_6f6c; // "cool"

/// Class of the transaction-scoped advisory locks on the login failures of a subject.
const LOGIN_LOCK_CLASS: i32 = 0x6c6f_676e; // "logn"

/// How long a command waits for a pooled connection before the store counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection idle for longer is checked (one round trip) before it is handed out;
/// one in steady use is not, and a broken one fails its command, which answers unavailable.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(2);

/// The PostgreSQL store; cheap to clone (it is a pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

/// Connection trouble: the database may answer again later, unlike a failed statement.
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exceptions; 57P0x: the server is shutting down or restarting;
        // 53300: too many connections.
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

/// The unique constraint on (org, username) refused a second user.
fn is_duplicate_username(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database)
        if database.code().as_deref() == Some("23505")
            && database.constraint() == Some("users_username_unique"))
}

fn db_error(context: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| {
        if is_unavailable(&error) {
            Error::Unavailable(Box::new(error))
        } else {
            Error::internal(context, error)
        }
    }
}

impl PostgresStore {
    /// Connects a pool of up to `max_connections` and brings the schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let fail = db_error("could not connect to PostgreSQL");
        // Statements are not logged: the batches of the hot transactions carry their values
        // (addresses among them) in their text. Nor compiled: JIT compiles a plan anew at every
        // run whose estimate passes `jit_above_cost`, and the outbox's claims pass it at every
        // run (the costs that keep them on their index, see [`Self::walking_the_due_index`],
        // are 10^10 each), for far longer than a claim runs: a sixth of the machine's time
        // under the resend load (docs/performance.md, change 43).
        let options = PgConnectOptions::from_str(url)
            .map_err(&fail)?
            .disable_statement_logging()
            .options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for > CHECK_IDLE_AFTER {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            // The statements of the batches, prepared once per connection (see [`batch`]).
            .after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(connection, sqlx::raw_sql(&PREPARE_ALL))
                        .await
                        .map(drop)
                })
            });
        // The schema first, on a connection of its own: the pool's connections prepare
        // statements on its tables as they open.
        let mut connection = options.connect().await.map_err(&fail)?;
        migrate(&mut connection).await?;
        connection.close().await.map_err(&fail)?;
        let pool = pool.connect_with(options).await.map_err(&fail)?;
        Ok(Self { pool })
    }

    /// Applies the migrations not yet recorded in `schema_migrations`, in order, in one
    /// transaction that holds an advisory lock: a second instance waits, then finds nothing
    /// left to do.
    pub async fn migrate(&self) -> Result<()> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(db_error("could not migrate the PostgreSQL database"))?;
        migrate(&mut connection).await
    }

    /// Closes the pool: waits for connections in use to come back, then closes them all.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// One try of [`Registrations::sign_up`]; a refused insert comes back as the database
    /// error, so that the caller can tell a concurrent sign-up of the address.
    async fn try_sign_up(&self, command: &SignUp) -> sqlx::Result<Result<SignedUp>> {
        let create = &command.user;
        let mut transaction = self.pool.begin().await?;
        if let Some(user_action) = &create.user_action
            && !spend(&mut transaction, user_action).await?
        {
            transaction.rollback().await?;
            return Ok(Err(user_action.reused()));
        }
        // Locks in the order issue_code takes: the user's row, then the cooldown subject,
        // which an address without an account has too.
        let purpose = CodePurpose::EmailVerification;
        let existing = lock_user(&mut transaction, &create.org_id, &create.username).await?;
        lock_cooldown(&mut transaction, &create.cooldown_subject, purpose).await?;
        let state = SignUpState {
            create: CreateUserState {
                org: org_by_id(&mut transaction, &create.org_id).await?,
                existing,
            },
            sends: sends(&mut transaction, &create.cooldown_subject, purpose).await?,
        };
        let outcome = carry_out(&mut transaction, rules::sign_up(&state, command)).await?;
        transaction.commit().await?;
        Ok(outcome)
    }
}

/// See [`PostgresStore::migrate`].
async fn migrate(connection: &mut PgConnection) -> Result<()> {
    let fail = db_error("could not migrate the PostgreSQL database");
    let mut transaction = connection.begin().await.map_err(&fail)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *transaction)
        .await
        .map_err(&fail)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *transaction)
    .await
    .map_err(&fail)?;
    let applied: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *transaction)
            .await
            .map_err(&fail)?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if applied > known {
        // A newer build changed the tables in ways this one does not know.
        return Err(Error::internal(
            "could not migrate the PostgreSQL database",
            format!(
                "its schema is version {applied}, newer than this build's {known}: \
                 it was written by a newer enroll; run that version or newer"
            ),
        ));
    }
    for (version, sql) in (1_i64..).zip(MIGRATIONS) {
        if version <= applied {
            continue;
        }
        tracing::info!(version, "applying a PostgreSQL migration");
        sqlx::raw_sql(sql)
            .execute(&mut *transaction)
            .await
            .map_err(&fail)?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, applied_at) \
             VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)",
        )
        .bind(version)
        .execute(&mut *transaction)
        .await
        .map_err(&fail)?;
    }
    transaction.commit().await.map_err(&fail)
}

async fn org_by_id(connection: &mut PgConnection, id: &OrgId) -> sqlx::Result<Option<Org>> {
    sqlx::query(&format!(
        "SELECT {} FROM orgs WHERE id = $1",
        rows::ORG_COLUMNS
    ))
    .bind(id.as_str())
    .try_map(|row| rows::org(&row))
    .fetch_optional(connection)
    .await
}

/// The user, locked until the transaction ends: commands on one user run one at a time, and
/// each sees what the one before it committed.
async fn lock_user(
    connection: &mut PgConnection,
    org: &OrgId,
    username: &EmailAddress,
) -> sqlx::Result<Option<User>> {
    sqlx::query(&format!(
        "SELECT {} FROM users WHERE org_id = $1 AND username = $2 FOR UPDATE",
        rows::USER_COLUMNS
    ))
    .bind(org.as_str())
    .bind(username.as_str())
    .try_map(|row| rows::user(&row))
    .fetch_optional(connection)
    .await
}

/// The user by id, locked until the transaction ends when `lock`.
async fn user_by_id(
    connection: &mut PgConnection,
    id: &UserId,
    lock: bool,
) -> sqlx::Result<Option<User>> {
    sqlx::query(&format!(
        "SELECT {} FROM users WHERE id = $1{}",
        rows::USER_COLUMNS,
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind(id.as_str())
    .try_map(|row| rows::user(&row))
    .fetch_optional(connection)
    .await
}

async fn credentials_of(
    connection: &mut PgConnection,
    user: &UserId,
) -> sqlx::Result<Vec<Credential>> {
    sqlx::query(&format!(
        "SELECT {} FROM credentials WHERE user_id = $1 ORDER BY created_at, seq",
        rows::CREDENTIAL_COLUMNS
    ))
    .bind(user.as_str())
    .try_map(|row| rows::credential(&row))
    .fetch_all(connection)
    .await
}

/// Records a single-use token; `false` if it was spent before. A second spender waits for the
/// first to commit, then finds the row.
async fn spend(connection: &mut PgConnection, single_use: &SingleUse) -> sqlx::Result<bool> {
    sqlx::query(
        "INSERT INTO spent_tokens (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&single_use.id)
    .bind(single_use.expires_at.as_millis())
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// Serialises the commands on one cooldown subject until the transaction ends. The subject
/// has no row to lock when the address has no account, and an unknown address must be
/// refused by its cooldown exactly like a known one, whatever the concurrency.
async fn lock_cooldown(
    connection: &mut PgConnection,
    subject: &str,
    purpose: CodePurpose,
) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2 || '/' || $3))")
        .bind(COOLDOWN_LOCK_CLASS)
        .bind(subject)
        .bind(purpose.as_str())
        .execute(connection)
        .await
        .map(drop)
}

async fn sends(
    connection: &mut PgConnection,
    subject: &str,
    purpose: CodePurpose,
) -> sqlx::Result<Option<SendRecord>> {
    let row: Option<(i64, i64, i32)> = sqlx::query_as(
        "SELECT until, window_started_at, sends FROM cooldowns \
         WHERE subject = $1 AND purpose = $2",
    )
    .bind(subject)
    .bind(purpose.as_str())
    .fetch_optional(connection)
    .await?;
    Ok(row.map(|(until, window_started_at, sends)| SendRecord {
        cooldown_until: Timestamp::from_millis(until),
        window_started_at: Timestamp::from_millis(window_started_at),
        sends: u32::try_from(sends).unwrap_or(0),
    }))
}

/// Serialises the logins of one subject until the transaction ends, so that concurrent
/// failures each count: like a cooldown subject, it has no row to lock while it has no failures.
async fn lock_login_subject(connection: &mut PgConnection, subject: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(LOGIN_LOCK_CLASS)
        .bind(subject)
        .execute(connection)
        .await
        .map(drop)
}

async fn login_failures_of(
    connection: &mut PgConnection,
    subject: &str,
) -> sqlx::Result<Option<(u32, Timestamp)>> {
    sqlx::query("SELECT failures, window_ends_at FROM login_failures WHERE subject = $1")
        .bind(subject)
        .try_map(|row| rows::login_failures(&row))
        .fetch_optional(connection)
        .await
}

async fn app_by_id(connection: &mut PgConnection, id: &str) -> sqlx::Result<Option<App>> {
    sqlx::query(&format!(
        "SELECT {} FROM apps WHERE id = $1",
        rows::APP_COLUMNS
    ))
    .bind(id)
    .try_map(|row| rows::app(&row))
    .fetch_optional(connection)
    .await
}

/// The user, locked until the transaction ends, and its current code of `purpose`, which
/// its row holds (migration 0009).
async fn lock_user_and_code(
    connection: &mut PgConnection,
    org: &OrgId,
    username: &EmailAddress,
    purpose: CodePurpose,
) -> sqlx::Result<(Option<User>, Option<CodeRecord>)> {
    let row = sqlx::query(&LOCK_USER_AND_CODE_BY_NAME.sql)
        .bind(org.as_str())
        .bind(username.as_str())
        .bind(purpose.as_str())
        .fetch_optional(connection)
        .await?;
    user_and_code(row.as_ref())
}

/// A user's row read with its current code of a purpose.
fn user_and_code(row: Option<&PgRow>) -> sqlx::Result<(Option<User>, Option<CodeRecord>)> {
    match row {
        Some(row) => Ok((Some(rows::user(row)?), rows::current_code(row)?)),
        None => Ok((None, None)),
    }
}

/// Claims the due messages: one statement. The due rows are locked (rows another claimer holds
/// are skipped, not waited for), leased and counted, then joined with their org and code. Due
/// is the expression of the index `outbox_due_at`, written the same so that the index serves.
/// A message's code is read from its user's row if it is still the user's current one; one the
/// user has replaced since is superseded, whatever state it was left in, and is not looked up.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH claimed AS ( \
             UPDATE outbox SET state = 'sending', lease_until = $2, attempts = attempts + 1 \
             WHERE id IN ( \
                 SELECT id FROM outbox \
                 WHERE state IN ('queued', 'sending') \
                   AND (CASE WHEN state = 'queued' THEN next_attempt_at ELSE lease_until END) <= $1 \
                 ORDER BY (CASE WHEN state = 'queued' THEN next_attempt_at ELSE lease_until END), seq \
                 LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING id, seq, org_id, user_id, code_id, template, locale, recipient, sealed, \
                       attempts, created_at, next_attempt_at) \
         SELECT claimed.id, claimed.org_id, claimed.user_id, claimed.template, claimed.locale, \
                claimed.recipient, claimed.sealed, claimed.attempts, claimed.created_at, \
                o.name AS org_name, \
                CASE WHEN claimed.code_id IS NOT NULL THEN COALESCE({}, 'superseded') END AS code_state, \
                {} AS code_expires_at \
         FROM claimed \
         LEFT JOIN orgs o ON o.id = claimed.org_id \
         LEFT JOIN users u ON u.id = claimed.user_id \
         ORDER BY claimed.next_attempt_at, claimed.seq",
        current_codes::of_code("claimed.code_id", "u", "state"),
        current_codes::of_code("claimed.code_id", "u", "expires_at"),
    )
});

/// The user `$1`'s replaced codes, in the order they were replaced.
static PAST_CODES_OF_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} SELECT {} FROM past_codes JOIN chain USING (id) ORDER BY depth DESC",
        current_codes::PAST_CODES,
        rows::CODE_COLUMNS
    )
});

/// The user `$1` and its current code of the purpose `$2`, unlocked.
static CURRENT_CODE_OF_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {} FROM users WHERE id = $1",
        rows::USER_COLUMNS,
        current_codes::columns("$2", "users")
    )
});

/// A code by its id: one its user's row holds, found through `code_ids`, or one it replaced.
static CODE_BY_ID: LazyLock<String> = LazyLock::new(|| {
    let current = |column: &str| current_codes::of_purpose("i.purpose", "u", column);
    format!(
        "SELECT {} FROM past_codes WHERE id = $1 \
         UNION ALL \
         SELECT i.id, i.user_id, i.purpose, {} AS hash, {} AS state, {} AS failed_attempts, \
                {} AS created_at, {} AS expires_at \
         FROM code_ids i JOIN users u ON u.id = i.user_id \
         WHERE i.id = $1 AND {} = $1",
        rows::CODE_COLUMNS,
        current("hash"),
        current("state"),
        current("failed_attempts"),
        current("created_at"),
        current("expires_at"),
        current("id"),
    )
});

async fn code_by_id(
    connection: &mut PgConnection,
    id: &CodeId,
) -> sqlx::Result<Option<CodeRecord>> {
    sqlx::query(&CODE_BY_ID)
        .bind(id.as_str())
        .try_map(|row| rows::code(&row))
        .fetch_optional(connection)
        .await
}

/// Applies a decision's writes in order and hands back its answer; a refusal may carry
/// writes of its own (a wrong code counts an attempt), which are kept.
async fn carry_out<T>(
    connection: &mut PgConnection,
    plan: rules::Plan<T>,
) -> sqlx::Result<Result<T>> {
    effects::apply_all(connection, &plan.effects).await?;
    Ok(plan.outcome)
}

// The statements of the hot transactions, sent in batches (see [`batch`]). Each does what the
// function of the same purpose above does, in the same order.

static LOCK_USER_BY_NAME: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_lock_user_by_name",
        "text, text",
        format!(
            "SELECT {} FROM users WHERE org_id = $1 AND username = $2 FOR UPDATE",
            rows::USER_COLUMNS
        ),
    )
});

static ORG_BY_ID: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_org_by_id",
        "text",
        format!("SELECT {} FROM orgs WHERE id = $1", rows::ORG_COLUMNS),
    )
});

static APP_BY_ID: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_app_by_id",
        "text",
        format!("SELECT {} FROM apps WHERE id = $1", rows::APP_COLUMNS),
    )
});

/// As [`lock_user_and_code`]: `$1` organisation, `$2` username, `$3` purpose.
static LOCK_USER_AND_CODE_BY_NAME: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_lock_user_and_code_by_name",
        "text, text, text",
        format!(
            "SELECT {}, {} FROM users WHERE org_id = $1 AND username = $2 FOR UPDATE",
            rows::USER_COLUMNS,
            current_codes::columns("$3", "users")
        ),
    )
});

/// As [`lock_user_and_code`], for the user with id `$1`: `$2` purpose.
static LOCK_USER_AND_CODE_BY_ID: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_lock_user_and_code_by_id",
        "text, text",
        format!(
            "SELECT {}, {} FROM users WHERE id = $1 FOR UPDATE",
            rows::USER_COLUMNS,
            current_codes::columns("$2", "users")
        ),
    )
});

/// As [`lock_cooldown`]: `$1` the lock class, `$2` subject, `$3` purpose.
static LOCK_COOLDOWN: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_lock_cooldown",
        "integer, text, text",
        "SELECT pg_advisory_xact_lock($1, hashtext($2 || '/' || $3))",
    )
});

static SENDS: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_sends",
        "text, text",
        "SELECT until, window_started_at, sends FROM cooldowns WHERE subject = $1 AND purpose = $2",
    )
});

/// A nonce's first use. A second one fails on the key (after the first committed, if it was
/// still running), which stops the rest of its batch.
static INSERT_NONCE: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_insert_nonce",
        "text, bigint",
        "INSERT INTO nonces (key, seen_at) VALUES ($1, $2)",
    )
});

/// As [`spend`], but a second use fails on the key and stops the rest of its batch.
static SPEND: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_spend",
        "text, bigint",
        "INSERT INTO spent_tokens (id, expires_at) VALUES ($1, $2)",
    )
});

/// The `PREPARE`s every connection runs once it is open.
static PREPARE_ALL: LazyLock<String> = LazyLock::new(|| {
    batch::prepare_all(
        [
            &*LOCK_USER_BY_NAME,
            &*ORG_BY_ID,
            &*APP_BY_ID,
            &*LOCK_USER_AND_CODE_BY_NAME,
            &*LOCK_USER_AND_CODE_BY_ID,
            &*LOCK_COOLDOWN,
            &*SENDS,
            &*INSERT_NONCE,
            &*SPEND,
        ]
        .into_iter()
        .chain(effects::prepared()),
    )
});

/// The unique constraint named `constraint` refused a row.
fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(database)
        if database.code().as_deref() == Some("23505")
            && database.constraint() == Some(constraint))
}

fn send_record(row: &PgRow) -> sqlx::Result<SendRecord> {
    use sqlx::Row as _;
    Ok(SendRecord {
        cooldown_until: Timestamp::from_millis(row.try_get("until")?),
        window_started_at: Timestamp::from_millis(row.try_get("window_started_at")?),
        sends: u32::try_from(row.try_get::<i32, _>("sends")?).unwrap_or(0),
    })
}

/// Adds the statement that locks the user a verification names and reads its current code
/// of the purpose.
fn push_verify_state(batch: &mut Batch, command: &VerifyCode) -> sqlx::Result<Slot> {
    let purpose = Value::text(command.purpose.as_str());
    match &command.user {
        UserKey::Username { org_id, username } => batch.push(
            &LOCK_USER_AND_CODE_BY_NAME,
            &[
                Value::text(org_id.as_str()),
                Value::text(username.as_str()),
                purpose,
            ],
        ),
        UserKey::Id(id) => batch.push(
            &LOCK_USER_AND_CODE_BY_ID,
            &[Value::text(id.as_str()), purpose],
        ),
    }
}

fn read_verify_state(answers: &Answers, user: Slot) -> sqlx::Result<VerifyCodeState> {
    let (user, latest_code) = user_and_code(answers.row(user))?;
    Ok(VerifyCodeState { user, latest_code })
}

/// Loads what a verification decides on, decides with `rule`, and commits its writes (a
/// refusal's too: a wrong code counts an attempt): two round trips.
async fn verify_in<T>(
    transaction: &mut Transaction,
    command: &VerifyCode,
    rule: impl FnOnce(&VerifyCodeState) -> rules::Plan<T>,
) -> sqlx::Result<Result<T>> {
    let mut load = Batch::new();
    let user = push_verify_state(&mut load, command)?;
    let answers = transaction.run(load).await?;
    let state = read_verify_state(&answers, user)?;
    commit_plan(transaction, rule(&state)).await
}

/// Sends a decision's writes, in order, with `COMMIT`, and hands back its answer.
async fn commit_plan<T>(
    transaction: &mut Transaction,
    plan: rules::Plan<T>,
) -> sqlx::Result<Result<T>> {
    let mut batch = Batch::new();
    effects::push_all(&mut batch, &plan.effects)?;
    transaction.commit(batch).await?;
    Ok(plan.outcome)
}

/// [`Registrations::issue_code`] in two round trips: `BEGIN`, the nonce, the locks and the
/// reads; then the writes and `COMMIT`.
async fn issue_code_in(
    transaction: &mut Transaction,
    command: &IssueCode,
    nonce: Option<&Nonce>,
) -> sqlx::Result<Result<CodeIssued>> {
    let org = Value::text(command.org_id.as_str());
    let username = Value::text(command.username.as_str());
    let subject = Value::text(&command.cooldown_subject);
    let purpose = Value::text(command.purpose.as_str());
    let mut load = Batch::new();
    if let Some(nonce) = nonce {
        // First, so that a replay waits for the first use to commit and then fails.
        load.push(
            &INSERT_NONCE,
            &[Value::text(&nonce.key), Value::int(command.now.as_millis())],
        )?;
    }
    // Locks in one order everywhere: the user's row, then the cooldown subject.
    let user = load.push(
        &LOCK_USER_AND_CODE_BY_NAME,
        &[org.clone(), username, purpose.clone()],
    )?;
    load.push(
        &LOCK_COOLDOWN,
        &[
            Value::Int4(COOLDOWN_LOCK_CLASS),
            subject.clone(),
            purpose.clone(),
        ],
    )?;
    let app = match &command.app {
        Some(check) => Some(load.push(&APP_BY_ID, &[Value::text(check.app_id.as_str())])?),
        None => None,
    };
    let org = load.push(&ORG_BY_ID, &[org])?;
    let sends = load.push(&SENDS, &[subject, purpose])?;
    let answers = transaction.run(load).await?;
    let (user, current_code) = user_and_code(answers.row(user))?;
    let state = IssueCodeState {
        org: answers.optional(org, rows::org)?,
        app: match app {
            Some(app) => answers.optional(app, rows::app)?,
            None => None,
        },
        active_code: current_code.filter(|code| code.state == CodeState::Active),
        sends: answers.optional(sends, send_record)?,
        user,
    };
    // Committed whatever the answer: the nonce stays recorded, and a refusal's writes (the
    // cooldown of an unknown or registered address) are kept.
    commit_plan(transaction, rules::issue_code(&state, command)).await
}

/// [`Registrations::create_user`] in two round trips.
async fn create_user_in(
    transaction: &mut Transaction,
    command: &CreateUser,
) -> sqlx::Result<Result<UserCreated>> {
    let org = Value::text(command.org_id.as_str());
    let mut load = Batch::new();
    if let Some(user_action) = &command.user_action {
        load.push(
            &SPEND,
            &[
                Value::text(&user_action.id),
                Value::int(user_action.expires_at.as_millis()),
            ],
        )?;
    }
    let existing = load.push(
        &LOCK_USER_BY_NAME,
        &[org.clone(), Value::text(command.username.as_str())],
    )?;
    let org = load.push(&ORG_BY_ID, &[org])?;
    let answers = transaction.run(load).await?;
    let state = CreateUserState {
        org: answers.optional(org, rows::org)?,
        existing: answers.optional(existing, rows::user)?,
    };
    commit_plan(transaction, rules::create_user(&state, command)).await
}

/// [`Registrations::update_email`] in three round trips: the cooldown subject depends on the
/// user's organisation and address, so the user is locked and read first.
async fn update_email_in(
    transaction: &mut Transaction,
    command: &UpdateEmail,
) -> sqlx::Result<Result<EmailUpdated>> {
    let purpose = CodePurpose::EmailVerification;
    let mut load = Batch::new();
    let user = load.push(
        &LOCK_USER_AND_CODE_BY_ID,
        &[
            Value::text(command.user_id.as_str()),
            Value::text(purpose.as_str()),
        ],
    )?;
    let (user, latest_code) = user_and_code(transaction.run(load).await?.row(user))?;
    let state = match user {
        Some(user) => {
            // Locks in the order issue_code takes: the user's row, then the cooldown subject.
            let subject = command.cooldown_subject(&user);
            let recipient = command.recipient(&user);
            let org = Value::text(user.org_id.as_str());
            let mut load = Batch::new();
            load.push(
                &LOCK_COOLDOWN,
                &[
                    Value::Int4(COOLDOWN_LOCK_CLASS),
                    Value::text(&subject),
                    Value::text(purpose.as_str()),
                ],
            )?;
            let taken = if recipient == &user.username {
                None
            } else {
                Some(load.push(
                    &LOCK_USER_BY_NAME,
                    &[org.clone(), Value::text(recipient.as_str())],
                )?)
            };
            let org = load.push(&ORG_BY_ID, &[org])?;
            let sends = load.push(
                &SENDS,
                &[Value::text(&subject), Value::text(purpose.as_str())],
            )?;
            let answers = transaction.run(load).await?;
            UpdateEmailState {
                org: answers.optional(org, rows::org)?,
                latest_code,
                sends: answers.optional(sends, send_record)?,
                address_taken: taken.is_some_and(|taken| answers.row(taken).is_some()),
                user: Some(user),
            }
        }
        None => UpdateEmailState {
            user: None,
            org: None,
            latest_code: None,
            sends: None,
            address_taken: false,
        },
    };
    commit_plan(transaction, rules::update_email(&state, command)).await
}

#[async_trait]
impl Directory for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(db_error("could not query PostgreSQL"))
    }

    async fn insert_org(&self, org: &Org) -> Result<()> {
        sqlx::query(
            "INSERT INTO orgs (id, name, default_locale, unknown_address_mail, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(org.default_locale.as_str())
        .bind(org.unknown_address_mail)
        .bind(org.created_at.as_millis())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(db_error("could not insert an organisation"))
    }

    async fn set_org_unknown_address_mail(&self, id: &OrgId, send: bool) -> Result<()> {
        sqlx::query("UPDATE orgs SET unknown_address_mail = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(send)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(db_error("could not change an organisation"))
    }

    async fn org(&self, id: &OrgId) -> Result<Option<Org>> {
        let fail = db_error("could not read an organisation");
        let mut connection = self.pool.acquire().await.map_err(&fail)?;
        org_by_id(&mut connection, id).await.map_err(&fail)
    }

    async fn orgs(&self) -> Result<Vec<Org>> {
        sqlx::query(&format!(
            "SELECT {} FROM orgs ORDER BY created_at, id",
            rows::ORG_COLUMNS
        ))
        .try_map(|row| rows::org(&row))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("could not list organisations"))
    }

    async fn insert_app(&self, app: &App) -> Result<()> {
        sqlx::query(
            "INSERT INTO apps (id, org_id, name, permissions, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(app.id.as_str())
        .bind(app.org_id.as_str())
        .bind(&app.name)
        .bind(Permission::list_to_json(&app.permissions))
        .bind(app.created_at.as_millis())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(db_error("could not insert an app"))
    }

    async fn apps(&self, org: Option<&OrgId>) -> Result<Vec<App>> {
        sqlx::query(&format!(
            "SELECT {} FROM apps WHERE $1::TEXT IS NULL OR org_id = $1 ORDER BY created_at, id",
            rows::APP_COLUMNS
        ))
        .bind(org.map(OrgId::as_str))
        .try_map(|row| rows::app(&row))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("could not list apps"))
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>> {
        let fail = db_error("could not read an app");
        let mut connection = self.pool.acquire().await.map_err(&fail)?;
        app_by_id(&mut connection, id.as_str()).await.map_err(&fail)
    }

    async fn set_app_secret(
        &self,
        id: &AppId,
        digest: &[u8; 32],
        retired: Option<&RetiredSecret>,
    ) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE apps SET secret_digest = $2, retired_secret_digest = $3, \
             retired_secret_expires_at = $4 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(digest.as_slice())
        .bind(retired.map(|retired| retired.digest.to_vec()))
        .bind(retired.map(|retired| retired.expires_at.as_millis()))
        .execute(&self.pool)
        .await
        .map_err(db_error("could not set an app secret"))?;
        if updated.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::UnknownApp)
        }
    }

    async fn set_app_public_key(&self, id: &AppId, public_key: &PublicKey) -> Result<()> {
        let updated = sqlx::query("UPDATE apps SET public_key = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(public_key.pem())
            .execute(&self.pool)
            .await
            .map_err(db_error("could not set an app key"))?;
        if updated.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::UnknownApp)
        }
    }

    async fn insert_token(&self, token: &AccessToken) -> Result<()> {
        let fail = db_error("could not insert a token");
        let mut connection = self.pool.acquire().await.map_err(&fail)?;
        effects::execute(&mut connection, effects::insert_token(token))
            .await
            .map(drop)
            .map_err(&fail)
    }

    async fn token_by_digest(&self, digest: &[u8; 32]) -> Result<Option<AccessToken>> {
        sqlx::query(&format!(
            "SELECT {} FROM tokens WHERE digest = $1",
            rows::TOKEN_COLUMNS
        ))
        .bind(digest.as_slice())
        .try_map(|row| rows::token(&row))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("could not look up a token"))
    }

    async fn token(&self, id: &TokenId) -> Result<Option<AccessToken>> {
        sqlx::query(&format!(
            "SELECT {} FROM tokens WHERE id = $1",
            rows::TOKEN_COLUMNS
        ))
        .bind(id.as_str())
        .try_map(|row| rows::token(&row))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("could not read a token"))
    }

    async fn password_hash(&self, user: &UserId) -> Result<Option<PasswordHash>> {
        let hash: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error("could not read a password"))?;
        Ok(hash.flatten().map(PasswordHash::from_trusted))
    }

    async fn sends(&self, subject: &str, purpose: CodePurpose) -> Result<Option<SendRecord>> {
        let fail = db_error("could not read a cooldown");
        let mut connection = self.pool.acquire().await.map_err(&fail)?;
        sends(&mut connection, subject, purpose)
            .await
            .map_err(&fail)
    }

    async fn login_failures(&self, subject: &str) -> Result<Option<(u32, Timestamp)>> {
        let fail = db_error("could not read failed logins");
        let mut connection = self.pool.acquire().await.map_err(&fail)?;
        login_failures_of(&mut connection, subject)
            .await
            .map_err(&fail)
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        let fail = db_error("could not read a user");
        let mut connection = self.pool.acquire().await.map_err(&fail)?;
        user_by_id(&mut connection, id, false).await.map_err(&fail)
    }

    async fn user_by_username(&self, org: &OrgId, username: &EmailAddress) -> Result<Option<User>> {
        sqlx::query(&format!(
            "SELECT {} FROM users WHERE org_id = $1 AND username = $2",
            rows::USER_COLUMNS
        ))
        .bind(org.as_str())
        .bind(username.as_str())
        .try_map(|row| rows::user(&row))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("could not read a user"))
    }

    async fn users(&self, org: Option<&OrgId>) -> Result<Vec<User>> {
        sqlx::query(&format!(
            "SELECT {} FROM users WHERE $1::TEXT IS NULL OR org_id = $1 ORDER BY created_at, id",
            rows::USER_COLUMNS
        ))
        .bind(org.map(OrgId::as_str))
        .try_map(|row| rows::user(&row))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("could not list users"))
    }

    async fn codes(&self, user: &UserId) -> Result<Vec<CodeRecord>> {
        let fail = db_error("could not list codes");
        let mut transaction = self.pool.begin().await.map_err(&fail)?;
        // The codes the user's current ones replaced, oldest first, then those.
        let mut codes: Vec<CodeRecord> = sqlx::query(&PAST_CODES_OF_USER)
            .bind(user.as_str())
            .try_map(|row| rows::code(&row))
            .fetch_all(&mut *transaction)
            .await
            .map_err(&fail)?;
        for purpose in CodePurpose::ALL {
            let current = sqlx::query(&CURRENT_CODE_OF_USER)
                .bind(user.as_str())
                .bind(purpose.as_str())
                .fetch_optional(&mut *transaction)
                .await
                .map_err(&fail)?;
            codes.extend(user_and_code(current.as_ref()).map_err(&fail)?.1);
        }
        transaction.commit().await.map_err(&fail)?;
        // In the order of issue: codes of one purpose are replaced in that order, and a
        // stable sort keeps it among codes of one millisecond.
        codes.sort_by_key(|code| code.created_at);
        Ok(codes)
    }

    async fn code(&self, id: &CodeId) -> Result<Option<CodeRecord>> {
        let fail = db_error("could not read a code");
        let mut connection = self.pool.acquire().await.map_err(&fail)?;
        code_by_id(&mut connection, id).await.map_err(&fail)
    }

    async fn credentials(&self, user: &UserId) -> Result<Vec<Credential>> {
        let fail = db_error("could not list credentials");
        let mut connection = self.pool.acquire().await.map_err(&fail)?;
        credentials_of(&mut connection, user).await.map_err(&fail)
    }

    async fn user_permissions(&self, user: &UserId) -> Result<Vec<Permission>> {
        sqlx::query("SELECT permissions FROM users WHERE id = $1")
            .bind(user.as_str())
            .try_map(|row| rows::user_permissions(&row))
            .fetch_optional(&self.pool)
            .await
            .map(Option::unwrap_or_default)
            .map_err(db_error("could not read a user's permissions"))
    }

    async fn set_user_permissions(&self, user: &UserId, permissions: &[Permission]) -> Result<()> {
        let updated = sqlx::query("UPDATE users SET permissions = $2 WHERE id = $1")
            .bind(user.as_str())
            .bind(Permission::list_to_json(permissions))
            .execute(&self.pool)
            .await
            .map_err(db_error("could not set a user's permissions"))?;
        if updated.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::UserNotFound)
        }
    }

    async fn events(&self, aggregate_id: &str) -> Result<Vec<Event>> {
        sqlx::query(&format!(
            "SELECT {} FROM events WHERE aggregate_id = $1 ORDER BY sequence",
            rows::EVENT_COLUMNS
        ))
        .bind(aggregate_id)
        .try_map(|row| rows::event(&row))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("could not list events"))
    }
}

#[async_trait]
impl Registrations for PostgresStore {
    async fn create_user(&self, command: CreateUser) -> Result<UserCreated> {
        let fail = db_error("could not create a user");
        let mut transaction = Transaction::acquire(&self.pool).await.map_err(&fail)?;
        let outcome = create_user_in(&mut transaction, &command).await;
        transaction.rollback().await;
        match outcome {
            Ok(outcome) => outcome,
            Err(error)
                if command.user_action.is_some()
                    && is_unique_violation(&error, "spent_tokens_pkey") =>
            {
                Err(command
                    .user_action
                    .as_ref()
                    .map_or(Error::UserExists, SingleUse::reused))
            }
            // Another transaction inserted the same username after our read: the constraint
            // decides, and the loser writes nothing (its transaction is rolled back).
            Err(error) if is_duplicate_username(&error) => Err(Error::UserExists),
            Err(error) => Err(fail(error)),
        }
    }

    async fn issue_code(&self, command: IssueCode, nonce: Option<Nonce>) -> Result<CodeIssued> {
        let fail = db_error("could not issue a code");
        let mut transaction = Transaction::acquire(&self.pool).await.map_err(&fail)?;
        let outcome = issue_code_in(&mut transaction, &command, nonce.as_ref()).await;
        transaction.rollback().await;
        match outcome {
            Ok(outcome) => outcome,
            Err(error) if nonce.is_some() && is_unique_violation(&error, "nonces_pkey") => {
                Err(Error::NonceReused)
            }
            Err(error) => Err(fail(error)),
        }
    }

    async fn verify_code(&self, command: VerifyCode) -> Result<CodeVerified> {
        let fail = db_error("could not verify a code");
        let mut transaction = Transaction::acquire(&self.pool).await.map_err(&fail)?;
        let outcome = verify_in(&mut transaction, &command, |state| {
            rules::verify_code(state, &command)
        })
        .await;
        transaction.rollback().await;
        outcome.map_err(&fail)?
    }

    async fn update_email(&self, command: UpdateEmail) -> Result<EmailUpdated> {
        let fail = db_error("could not update an address");
        let mut transaction = Transaction::acquire(&self.pool).await.map_err(&fail)?;
        let outcome = update_email_in(&mut transaction, &command).await;
        transaction.rollback().await;
        match outcome {
            Ok(outcome) => outcome,
            // Another user took the address after our read: the constraint decides.
            Err(error) if is_duplicate_username(&error) => Err(Error::UserExists),
            Err(error) => Err(fail(error)),
        }
    }

    async fn create_service_account(
        &self,
        command: CreateServiceAccount,
    ) -> Result<ServiceAccountCreated> {
        let fail = db_error("could not create a service account");
        let mut transaction = self.pool.begin().await.map_err(&fail)?;
        let existing = lock_user(&mut transaction, &command.org_id, &command.username)
            .await
            .map_err(&fail)?;
        let state = CreateUserState {
            org: org_by_id(&mut transaction, &command.org_id)
                .await
                .map_err(&fail)?,
            existing,
        };
        let outcome = match carry_out(
            &mut transaction,
            rules::create_service_account(&state, &command),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(error) if is_duplicate_username(&error) => return Err(Error::UserExists),
            Err(error) => return Err(fail(error)),
        };
        transaction.commit().await.map_err(&fail)?;
        outcome
    }

    async fn register_credential(
        &self,
        command: RegisterCredential,
    ) -> Result<CredentialRegistered> {
        let fail = db_error("could not register a credential");
        let mut transaction = self.pool.begin().await.map_err(&fail)?;
        let user = user_by_id(&mut transaction, &command.user_id, true)
            .await
            .map_err(&fail)?;
        let code = code_by_id(&mut transaction, &command.code_id)
            .await
            .map_err(&fail)?;
        let state = RegisterCredentialState { user, code };
        let outcome = carry_out(
            &mut transaction,
            rules::register_credential(&state, &command),
        )
        .await
        .map_err(&fail)?;
        transaction.commit().await.map_err(&fail)?;
        outcome
    }

    async fn complete_login(&self, command: CompleteLogin) -> Result<AccessToken> {
        let fail = db_error("could not complete a login");
        let mut transaction = self.pool.begin().await.map_err(&fail)?;
        if !spend(&mut transaction, &command.challenge)
            .await
            .map_err(&fail)?
        {
            transaction.rollback().await.map_err(&fail)?;
            return Err(command.challenge.reused());
        }
        let user = user_by_id(&mut transaction, &command.user_id, true)
            .await
            .map_err(&fail)?;
        let credential_held = credentials_of(&mut transaction, &command.user_id)
            .await
            .map_err(&fail)?
            .iter()
            .any(|credential| credential.id == command.credential_id);
        let state = CompleteLoginState {
            user,
            credential_held,
        };
        let outcome = carry_out(&mut transaction, rules::complete_login(&state, &command))
            .await
            .map_err(&fail)?;
        transaction.commit().await.map_err(&fail)?;
        outcome
    }

    async fn sign_up(&self, command: SignUp) -> Result<SignedUp> {
        let fail = db_error("could not sign up");
        // A concurrent sign-up may insert the address between our read and our insert; the
        // constraint refuses ours after theirs committed, so a second try finds the account
        // and answers as for any address that has one.
        match self.try_sign_up(&command).await {
            Err(error) if is_duplicate_username(&error) => {}
            other => return other.map_err(&fail)?,
        }
        match self.try_sign_up(&command).await {
            Err(error) if is_duplicate_username(&error) => Err(Error::UserExists),
            other => other.map_err(&fail)?,
        }
    }

    async fn record_login(&self, command: LoginAttempt) -> Result<LoginRecorded> {
        let fail = db_error("could not record a login");
        let mut transaction = self.pool.begin().await.map_err(&fail)?;
        lock_login_subject(&mut transaction, &command.subject)
            .await
            .map_err(&fail)?;
        let user = match &command.user_id {
            Some(id) => user_by_id(&mut transaction, id, false)
                .await
                .map_err(&fail)?,
            None => None,
        };
        let state = LoginState {
            user,
            failures: login_failures_of(&mut transaction, &command.subject)
                .await
                .map_err(&fail)?,
        };
        let outcome = carry_out(&mut transaction, rules::record_login(&state, &command))
            .await
            .map_err(&fail)?;
        // Committed whatever the answer: a failure is counted.
        transaction.commit().await.map_err(&fail)?;
        outcome
    }

    async fn request_password_reset(
        &self,
        command: RequestPasswordReset,
    ) -> Result<PasswordResetRequested> {
        let fail = db_error("could not request a password reset");
        let mut transaction = self.pool.begin().await.map_err(&fail)?;
        let purpose = CodePurpose::PasswordReset;
        // Locks in the order issue_code takes: the user's row, then the cooldown subject.
        let (user, current_code) =
            lock_user_and_code(&mut transaction, &command.org_id, &command.email, purpose)
                .await
                .map_err(&fail)?;
        lock_cooldown(&mut transaction, &command.cooldown_subject, purpose)
            .await
            .map_err(&fail)?;
        let state = RequestPasswordResetState {
            org: org_by_id(&mut transaction, &command.org_id)
                .await
                .map_err(&fail)?,
            user,
            active_code: current_code.filter(|code| code.state == CodeState::Active),
            sends: sends(&mut transaction, &command.cooldown_subject, purpose)
                .await
                .map_err(&fail)?,
        };
        let outcome = carry_out(
            &mut transaction,
            rules::request_password_reset(&state, &command),
        )
        .await
        .map_err(&fail)?;
        transaction.commit().await.map_err(&fail)?;
        outcome
    }

    async fn reset_password(&self, command: ResetPassword) -> Result<User> {
        let fail = db_error("could not reset a password");
        let mut transaction = Transaction::acquire(&self.pool).await.map_err(&fail)?;
        // Committed whatever the answer: a wrong code counts an attempt.
        let outcome = verify_in(&mut transaction, &command.verify, |state| {
            rules::reset_password(state, &command)
        })
        .await;
        transaction.rollback().await;
        outcome.map_err(&fail)?
    }

    async fn rotate_token(
        &self,
        id: &TokenId,
        old_digest: &[u8; 32],
        new_digest: &[u8; 32],
        now: Timestamp,
    ) -> Result<bool> {
        sqlx::query(
            "UPDATE tokens SET digest = $3 \
             WHERE id = $1 AND digest = $2 AND revoked_at IS NULL \
               AND (expires_at IS NULL OR expires_at > $4)",
        )
        .bind(id.as_str())
        .bind(old_digest.as_slice())
        .bind(new_digest.as_slice())
        .bind(now.as_millis())
        .execute(&self.pool)
        .await
        .map(|done| done.rows_affected() == 1)
        .map_err(db_error("could not rotate a token"))
    }

    async fn spend(&self, single_use: SingleUse) -> Result<()> {
        let fail = db_error("could not record a spent token");
        let mut connection = self.pool.acquire().await.map_err(&fail)?;
        if spend(&mut connection, &single_use).await.map_err(&fail)? {
            Ok(())
        } else {
            Err(single_use.reused())
        }
    }

    async fn revoke_tokens(
        &self,
        user: &UserId,
        token: Option<&TokenId>,
        now: Timestamp,
    ) -> Result<u64> {
        sqlx::query(
            "UPDATE tokens SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL \
               AND (id = $2 OR ($2::TEXT IS NULL AND kind = 'session'))",
        )
        .bind(user.as_str())
        .bind(token.map(TokenId::as_str))
        .bind(now.as_millis())
        .execute(&self.pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(db_error("could not revoke tokens"))
    }

    async fn purge_spent(&self, expired_before: Timestamp) -> Result<u64> {
        sqlx::query("DELETE FROM spent_tokens WHERE expires_at < $1")
            .bind(expired_before.as_millis())
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error("could not purge spent tokens"))
    }

    async fn purge_nonces(&self, seen_before: Timestamp) -> Result<u64> {
        sqlx::query("DELETE FROM nonces WHERE seen_at < $1")
            .bind(seen_before.as_millis())
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error("could not purge nonces"))
    }
}

impl PostgresStore {
    /// Begins a transaction for the outbox's due queries. Their index (`outbox_due_at`) is in
    /// the order they ask for, and a walk of it stops at the rows they take; but with
    /// statistics from while the queue was short (it can grow from nothing to thousands between
    /// two ANALYZEs), the planner prefers to read the whole queue and sort it, on every claim.
    /// Without scans of the table, bitmaps or sorts, the walk is the only plan left.
    async fn walking_the_due_index(
        &self,
    ) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool
            .begin_with(
                "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
                 SET LOCAL enable_sort = off",
            )
            .await
    }
}

#[async_trait]
impl Outbox for PostgresStore {
    async fn claim(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>> {
        let fail = db_error("could not claim outbox messages");
        let mut transaction = self.walking_the_due_index().await.map_err(&fail)?;
        let claimed = sqlx::query(&CLAIM)
            .bind(now.as_millis())
            .bind(lease_until.as_millis())
            .bind(i64::from(limit))
            .try_map(|row| rows::claimed(&row))
            .fetch_all(&mut *transaction)
            .await
            .map_err(&fail)?;
        transaction.commit().await.map_err(&fail)?;
        Ok(claimed)
    }

    async fn finish(
        &self,
        id: &MessageId,
        attempt: u32,
        outcome: DeliveryOutcome,
        now: Timestamp,
    ) -> Result<bool> {
        let attempt = AttemptOutcome {
            id: id.clone(),
            attempt,
            outcome,
        };
        Ok(self.finish_all(vec![attempt], now).await?.contains(&true))
    }

    async fn finish_all(&self, outcomes: Vec<AttemptOutcome>, now: Timestamp) -> Result<Vec<bool>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<_> = outcomes
            .iter()
            .map(|attempt| attempt.outcome.record())
            .collect();
        // One statement for the batch: the outcomes go in as parallel arrays, and the ids
        // updated come back (an attempt whose lease lapsed updates nothing, as in `finish`).
        let updated: Vec<String> = sqlx::query_scalar(
            "UPDATE outbox AS m SET state = f.state, lease_until = NULL, \
                next_attempt_at = COALESCE(f.next_attempt_at, m.next_attempt_at), \
                last_error = COALESCE(f.error, m.last_error), \
                sealed = CASE WHEN f.keep_content THEN m.sealed ELSE NULL END, \
                sent_at = CASE WHEN f.state = 'sent' THEN $7 ELSE m.sent_at END \
             FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::BOOLEAN[], $6::BIGINT[]) \
                 AS f(id, state, next_attempt_at, error, keep_content, attempt) \
             WHERE m.id = f.id AND m.state = 'sending' AND m.attempts = f.attempt \
             RETURNING m.id",
        )
        .bind(outcomes.iter().map(|attempt| attempt.id.as_str().to_owned()).collect::<Vec<_>>())
        .bind(records.iter().map(|record| record.state.as_str().to_owned()).collect::<Vec<_>>())
        .bind(
            records
                .iter()
                .map(|record| record.next_attempt_at.map(Timestamp::as_millis))
                .collect::<Vec<_>>(),
        )
        .bind(
            records
                .iter()
                .map(|record| record.error.map(str::to_owned))
                .collect::<Vec<_>>(),
        )
        .bind(records.iter().map(|record| record.keep_content).collect::<Vec<_>>())
        .bind(
            outcomes
                .iter()
                .map(|attempt| i64::from(attempt.attempt))
                .collect::<Vec<_>>(),
        )
        .bind(now.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("could not record deliveries"))?;
        Ok(outcomes
            .iter()
            .map(|attempt| updated.iter().any(|id| id == attempt.id.as_str()))
            .collect())
    }

    async fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageSummary>> {
        sqlx::query(&format!(
            "SELECT {} FROM outbox \
             WHERE {} AND ($1::TEXT IS NULL OR recipient = $1) AND ($2::TEXT IS NULL OR org_id = $2) \
             ORDER BY created_at DESC, seq DESC LIMIT $3",
            rows::MESSAGE_COLUMNS,
            // Spelled out, so that a plan made for any value of the user keeps its index.
            if filter.user_id.is_some() {
                "user_id = $4"
            } else {
                "$4::TEXT IS NULL"
            },
        ))
        .bind(filter.recipient.as_deref())
        .bind(filter.org_id.as_ref().map(OrgId::as_str))
        .bind(i64::from(filter.limit.unwrap_or(u32::MAX)))
        .bind(filter.user_id.as_ref().map(UserId::as_str))
        .try_map(|row| rows::message_summary(&row))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("could not list outbox messages"))
    }

    async fn depth(&self) -> Result<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state IN ('queued', 'sending')")
                .fetch_one(&self.pool)
                .await
                .map_err(db_error("could not count outbox messages"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn next_due(&self) -> Result<Option<Timestamp>> {
        let fail = db_error("could not read the outbox");
        let mut transaction = self.walking_the_due_index().await.map_err(&fail)?;
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN state = 'queued' THEN next_attempt_at ELSE lease_until END) \
             FROM outbox WHERE state IN ('queued', 'sending')",
        )
        .fetch_one(&mut *transaction)
        .await
        .map_err(&fail)?;
        transaction.commit().await.map_err(&fail)?;
        Ok(due.map(Timestamp::from_millis))
    }
}

#[async_trait]
impl Inbox for PostgresStore {
    async fn capture(&self, mail: &CapturedMail) -> Result<()> {
        sqlx::query(
            "INSERT INTO captured_mail \
                 (id, message_id, sender, recipient, subject, text_body, html_body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&mail.id)
        .bind(&mail.message_id)
        .bind(&mail.from)
        .bind(&mail.to)
        .bind(&mail.subject)
        .bind(&mail.text)
        .bind(&mail.html)
        .bind(mail.created_at.as_millis())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(db_error("could not store a captured mail"))
    }

    async fn captured(&self, recipient: Option<&str>) -> Result<Vec<CapturedMail>> {
        sqlx::query(&format!(
            "SELECT {} FROM captured_mail WHERE $1::TEXT IS NULL OR recipient = $1 \
             ORDER BY created_at DESC, seq DESC",
            rows::CAPTURED_COLUMNS
        ))
        .bind(recipient)
        .try_map(|row| rows::captured(&row))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("could not list captured mail"))
    }
}
