//! The scale-out store: PostgreSQL, shared by any number of server instances.
//!
//! Each command runs in one transaction that locks the user's row, so commands on one user
//! are serialised across instances; outbox claims use `FOR UPDATE SKIP LOCKED` with a lease.

mod effects;
mod rows;

use std::time::Duration;

use async_trait::async_trait;
use enroll_core::clock::Timestamp;
use enroll_core::code::CodePurpose;
use enroll_core::email::EmailAddress;
use enroll_core::ids::{MessageId, OrgId, UserId};
use enroll_core::model::{
    AccessToken, App, CapturedMail, ClaimedMessage, CodeRecord, DeliveryOutcome, Event,
    MessageState, MessageSummary, Org, User,
};
use enroll_core::nonce::Nonce;
use enroll_core::ports::{Directory, Inbox, MessageFilter, Outbox, Registrations};
use enroll_core::rules::{
    self, CodeIssued, CreateUser, CreateUserState, IssueCode, IssueCodeState, UserCreated,
    VerifyCode, VerifyCodeState,
};
use enroll_core::{Error, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{PgConnection, Row as _};

const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_initial.sql")];

/// Held while migrating, so instances starting together migrate one after the other.
const MIGRATION_LOCK: i64 = 0x656e_726f_6c6c; // "enroll"

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStore")
    }
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        // Class 08: connection exceptions; 57P0x: the server is shutting down or restarting.
        sqlx::Error::Database(database) => database
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.code().as_deref() == Some("23505"))
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
    /// Connects a pool of `max_connections` and brings the schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(db_error("could not connect to PostgreSQL"))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<()> {
        let fail = db_error("could not migrate the PostgreSQL database");
        let mut transaction = self.pool.begin().await.map_err(&fail)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *transaction)
            .await
            .map_err(&fail)?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&mut *transaction)
            .await
            .map_err(&fail)?;
        let applied: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&mut *transaction)
                .await
                .map_err(&fail)?;
        for (index, sql) in MIGRATIONS.iter().enumerate() {
            let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
            if version <= applied {
                continue;
            }
            sqlx::raw_sql(sql)
                .execute(&mut *transaction)
                .await
                .map_err(&fail)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, (extract(epoch FROM now()) * 1000)::BIGINT)")
                .bind(version)
                .execute(&mut *transaction)
                .await
                .map_err(&fail)?;
        }
        transaction.commit().await.map_err(&fail)
    }
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

/// The user, locked until the transaction ends: commands on one user run one at a time.
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

/// The active code if there is one, else the newest.
async fn latest_code(
    connection: &mut PgConnection,
    user: &UserId,
    purpose: CodePurpose,
    only_active: bool,
) -> sqlx::Result<Option<CodeRecord>> {
    sqlx::query(&format!(
        "SELECT {} FROM codes WHERE user_id = $1 AND purpose = $2 AND (NOT $3 OR state = 'active') \
         ORDER BY state = 'active' DESC, created_at DESC LIMIT 1",
        rows::CODE_COLUMNS
    ))
    .bind(user.as_str())
    .bind(purpose.as_str())
    .bind(only_active)
    .try_map(|row| rows::code(&row))
    .fetch_optional(connection)
    .await
}

/// Runs a decision's writes; a refusal may carry writes of its own (a counted attempt).
async fn carry_out<T>(
    connection: &mut PgConnection,
    plan: rules::Plan<T>,
) -> std::result::Result<Result<T>, sqlx::Error> {
    for effect in &plan.effects {
        effects::apply(connection, effect).await?;
    }
    Ok(plan.outcome)
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
            "INSERT INTO orgs (id, name, default_locale, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(org.default_locale.as_str())
        .bind(org.created_at.as_millis())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(db_error("could not insert an organisation"))
    }

    async fn org(&self, id: &OrgId) -> Result<Option<Org>> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(db_error("could not read an organisation"))?;
        org_by_id(&mut connection, id)
            .await
            .map_err(db_error("could not read an organisation"))
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
        sqlx::query("INSERT INTO apps (id, org_id, name, permissions, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(app.id.as_str())
            .bind(app.org_id.as_str())
            .bind(&app.name)
            .bind(rows::permissions_json(&app.permissions))
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

    async fn insert_token(&self, token: &AccessToken) -> Result<()> {
        sqlx::query("INSERT INTO tokens (id, org_id, kind, digest, permissions, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(token.id.as_str())
            .bind(token.org_id.as_str())
            .bind(token.kind.as_str())
            .bind(token.digest.as_slice())
            .bind(rows::permissions_json(&token.permissions))
            .bind(token.created_at.as_millis())
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(db_error("could not insert a token"))
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

    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        sqlx::query(&format!(
            "SELECT {} FROM users WHERE id = $1",
            rows::USER_COLUMNS
        ))
        .bind(id.as_str())
        .try_map(|row| rows::user(&row))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("could not read a user"))
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
        sqlx::query(&format!(
            "SELECT {} FROM codes WHERE user_id = $1 ORDER BY created_at, id",
            rows::CODE_COLUMNS
        ))
        .bind(user.as_str())
        .try_map(|row| rows::code(&row))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("could not list codes"))
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
        let mut transaction = self.pool.begin().await.map_err(&fail)?;
        let state = CreateUserState {
            org: org_by_id(&mut transaction, &command.org_id)
                .await
                .map_err(&fail)?,
            existing: lock_user(&mut transaction, &command.org_id, &command.username)
                .await
                .map_err(&fail)?,
        };
        let outcome = match carry_out(&mut transaction, rules::create_user(&state, &command)).await
        {
            Ok(outcome) => outcome,
            // Another instance created the same user between our read and our insert.
            Err(error) if is_unique_violation(&error) => return Err(Error::UserExists),
            Err(error) => return Err(fail(error)),
        };
        transaction.commit().await.map_err(&fail)?;
        outcome
    }

    async fn issue_code(&self, command: IssueCode, nonce: Option<Nonce>) -> Result<CodeIssued> {
        let fail = db_error("could not issue a code");
        let mut transaction = self.pool.begin().await.map_err(&fail)?;
        if let Some(nonce) = &nonce {
            let inserted = sqlx::query(
                "INSERT INTO nonces (key, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&nonce.key)
            .bind(command.now.as_millis())
            .execute(&mut *transaction)
            .await
            .map_err(&fail)?;
            if inserted.rows_affected() == 0 {
                return Err(Error::NonceReused);
            }
        }
        let user = lock_user(&mut transaction, &command.org_id, &command.username)
            .await
            .map_err(&fail)?;
        let app = match &command.app {
            Some(check) => sqlx::query(&format!(
                "SELECT {} FROM apps WHERE id = $1",
                rows::APP_COLUMNS
            ))
            .bind(check.app_id.as_str())
            .try_map(|row| rows::app(&row))
            .fetch_optional(&mut *transaction)
            .await
            .map_err(&fail)?,
            None => None,
        };
        let active_code = match &user {
            Some(user) => latest_code(&mut transaction, &user.id, command.purpose, true)
                .await
                .map_err(&fail)?,
            None => None,
        };
        let cooldown_until: Option<i64> = sqlx::query(
            "SELECT until FROM cooldowns WHERE subject = $1 AND purpose = $2 FOR UPDATE",
        )
        .bind(&command.cooldown_subject)
        .bind(command.purpose.as_str())
        .try_map(|row: sqlx::postgres::PgRow| row.try_get("until"))
        .fetch_optional(&mut *transaction)
        .await
        .map_err(&fail)?;
        let state = IssueCodeState {
            org: org_by_id(&mut transaction, &command.org_id)
                .await
                .map_err(&fail)?,
            user,
            app,
            active_code,
            cooldown_until: cooldown_until.map(Timestamp::from_millis),
        };
        let outcome = carry_out(&mut transaction, rules::issue_code(&state, &command))
            .await
            .map_err(&fail)?;
        transaction.commit().await.map_err(&fail)?;
        outcome
    }

    async fn verify_code(&self, command: VerifyCode) -> Result<User> {
        let fail = db_error("could not verify a code");
        let mut transaction = self.pool.begin().await.map_err(&fail)?;
        let user = lock_user(&mut transaction, &command.org_id, &command.username)
            .await
            .map_err(&fail)?;
        let latest_code = match &user {
            Some(user) => latest_code(&mut transaction, &user.id, command.purpose, false)
                .await
                .map_err(&fail)?,
            None => None,
        };
        let state = VerifyCodeState { user, latest_code };
        let outcome = carry_out(&mut transaction, rules::verify_code(&state, &command))
            .await
            .map_err(&fail)?;
        transaction.commit().await.map_err(&fail)?;
        outcome
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

#[async_trait]
impl Outbox for PostgresStore {
    async fn claim(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>> {
        sqlx::query(
            "WITH due AS ( \
                 SELECT id FROM outbox \
                 WHERE (state = 'queued' AND next_attempt_at <= $1) OR (state = 'sending' AND lease_until < $1) \
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
                 UPDATE outbox m SET state = 'sending', attempts = m.attempts + 1, lease_until = $2 \
                 FROM due WHERE m.id = due.id \
                 RETURNING m.id, m.org_id, m.user_id, m.code_id, m.template, m.locale, m.recipient, m.sealed, \
                           m.attempts, m.created_at, m.next_attempt_at) \
             SELECT claimed.*, o.name AS org_name, c.state AS code_state, c.expires_at AS code_expires_at \
             FROM claimed LEFT JOIN orgs o ON o.id = claimed.org_id LEFT JOIN codes c ON c.id = claimed.code_id \
             ORDER BY claimed.next_attempt_at",
        )
        .bind(now.as_millis())
        .bind(lease_until.as_millis())
        .bind(i64::from(limit))
        .try_map(|row| rows::claimed(&row))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("could not claim outbox messages"))
    }

    async fn finish(&self, id: &MessageId, outcome: DeliveryOutcome, now: Timestamp) -> Result<()> {
        let (state, next_attempt_at, error, keep_content) = match &outcome {
            DeliveryOutcome::Sent => (MessageState::Sent, None, None, false),
            DeliveryOutcome::Retry { at, error } => {
                (MessageState::Queued, Some(*at), Some(error.as_str()), true)
            }
            DeliveryOutcome::Abandoned { error } => {
                (MessageState::Abandoned, None, Some(error.as_str()), false)
            }
            DeliveryOutcome::Superseded => (MessageState::Superseded, None, None, false),
        };
        sqlx::query(
            "UPDATE outbox SET state = $2, lease_until = NULL, \
                next_attempt_at = COALESCE($3, next_attempt_at), \
                last_error = COALESCE($4, last_error), \
                sealed = CASE WHEN $5 THEN sealed ELSE NULL END, \
                sent_at = CASE WHEN $2 = 'sent' THEN $6 ELSE sent_at END \
             WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(state.as_str())
        .bind(next_attempt_at.map(Timestamp::as_millis))
        .bind(error)
        .bind(keep_content)
        .bind(now.as_millis())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(db_error("could not record a delivery"))
    }

    async fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageSummary>> {
        sqlx::query(&format!(
            "SELECT {} FROM outbox WHERE ($1::TEXT IS NULL OR recipient = $1) AND ($2::TEXT IS NULL OR org_id = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3",
            rows::MESSAGE_COLUMNS
        ))
        .bind(filter.recipient.as_deref())
        .bind(filter.org_id.as_ref().map(OrgId::as_str))
        .bind(i64::from(filter.limit.unwrap_or(u32::MAX)))
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
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN state = 'queued' THEN next_attempt_at ELSE lease_until END) \
             FROM outbox WHERE state IN ('queued', 'sending')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error("could not read the outbox"))?;
        Ok(due.map(Timestamp::from_millis))
    }
}

#[async_trait]
impl Inbox for PostgresStore {
    async fn capture(&self, mail: &CapturedMail) -> Result<()> {
        sqlx::query(
            "INSERT INTO captured_mail (id, message_id, sender, recipient, subject, text_body, html_body, created_at) \
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
            "SELECT {} FROM captured_mail WHERE $1::TEXT IS NULL OR recipient = $1 ORDER BY created_at DESC, id DESC",
            rows::CAPTURED_COLUMNS
        ))
        .bind(recipient)
        .try_map(|row| rows::captured(&row))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("could not list captured mail"))
    }
}
