//! Applies the writes a decision of the core asks for, inside the caller's transaction.

use enroll_core::model::{AccessToken, Permission};
use enroll_core::rules::Effect;
use sqlx::PgConnection;

pub async fn apply(connection: &mut PgConnection, effect: &Effect) -> sqlx::Result<()> {
    match effect {
        Effect::InsertUser(user) => sqlx::query(
            "INSERT INTO users (id, org_id, username, kind, state, locale, sequence, created_at, updated_at, email_verified_at, name) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(user.id.as_str())
        .bind(user.org_id.as_str())
        .bind(user.username.as_str())
        .bind(user.kind.as_str())
        .bind(user.state.as_str())
        .bind(user.locale.as_ref().map(|locale| locale.as_str()))
        .bind(user.sequence)
        .bind(user.created_at.as_millis())
        .bind(user.updated_at.as_millis())
        .bind(user.email_verified_at.map(|at| at.as_millis()))
        .bind(user.name.as_deref())
        .execute(connection)
        .await
        .map(drop),
        Effect::InsertCredential(credential) => sqlx::query(
            "INSERT INTO credentials (id, cred_id, user_id, org_id, name, algorithm, public_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(credential.id.as_str())
        .bind(&credential.cred_id)
        .bind(credential.user_id.as_str())
        .bind(credential.org_id.as_str())
        .bind(&credential.name)
        .bind(credential.public_key.algorithm().as_str())
        .bind(credential.public_key.pem())
        .bind(credential.created_at.as_millis())
        .execute(connection)
        .await
        .map(drop),
        Effect::InsertToken(token) => insert_token(connection, token).await,
        Effect::SetPermissions {
            user_id,
            permissions,
        } => sqlx::query("UPDATE users SET permissions = $2 WHERE id = $1")
            .bind(user_id.as_str())
            .bind(Permission::list_to_json(permissions))
            .execute(connection)
            .await
            .map(drop),
        Effect::UpdateUser(user) => sqlx::query(
            "UPDATE users SET state = $2, locale = $3, sequence = $4, updated_at = $5, \
             username = $6, email_verified_at = $7, name = $8 WHERE id = $1",
        )
        .bind(user.id.as_str())
        .bind(user.state.as_str())
        .bind(user.locale.as_ref().map(|locale| locale.as_str()))
        .bind(user.sequence)
        .bind(user.updated_at.as_millis())
        .bind(user.username.as_str())
        .bind(user.email_verified_at.map(|at| at.as_millis()))
        .bind(user.name.as_deref())
        .execute(connection)
        .await
        .map(drop),
        Effect::InsertCode(code) => sqlx::query(
            "INSERT INTO codes (id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(code.id.as_str())
        .bind(code.user_id.as_str())
        .bind(code.purpose.as_str())
        .bind(code.hash.0.as_slice())
        .bind(code.state.as_str())
        .bind(i64::from(code.failed_attempts))
        .bind(code.created_at.as_millis())
        .bind(code.expires_at.as_millis())
        .execute(connection)
        .await
        .map(drop),
        Effect::UpdateCode {
            id,
            state,
            failed_attempts,
        } => sqlx::query("UPDATE codes SET state = $2, failed_attempts = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(state.as_str())
            .bind(i64::from(*failed_attempts))
            .execute(connection)
            .await
            .map(drop),
        Effect::AppendEvent(event) => sqlx::query(
            "INSERT INTO events (aggregate_id, sequence, kind, payload, org_id, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .bind(&event.kind)
        .bind(event.payload.to_string())
        .bind(event.org_id.as_str())
        .bind(event.at.as_millis())
        .execute(connection)
        .await
        .map(drop),
        Effect::EnqueueMessage(message) => sqlx::query(
            "INSERT INTO outbox (id, org_id, user_id, code_id, template, locale, recipient, sealed, state, \
                                 attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', 0, $9, $9)",
        )
        .bind(message.id.as_str())
        .bind(message.org_id.as_str())
        .bind(message.user_id.as_ref().map(|id| id.as_str()))
        .bind(message.code_id.as_ref().map(|id| id.as_str()))
        .bind(message.template.as_str())
        .bind(message.locale.as_str())
        .bind(message.recipient.as_str())
        .bind(message.sealed.as_slice())
        .bind(message.created_at.as_millis())
        .execute(connection)
        .await
        .map(drop),
        Effect::SetCooldown {
            subject,
            purpose,
            record,
        } => sqlx::query(
            "INSERT INTO cooldowns (subject, purpose, until, window_started_at, sends) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject, purpose) DO UPDATE \
             SET until = excluded.until, window_started_at = excluded.window_started_at, \
             sends = excluded.sends",
        )
        .bind(subject)
        .bind(purpose.as_str())
        .bind(record.cooldown_until.as_millis())
        .bind(record.window_started_at.as_millis())
        .bind(i32::try_from(record.sends).unwrap_or(i32::MAX))
        .execute(connection)
        .await
        .map(drop),
        Effect::SetPassword { user_id, hash } => {
            sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(user_id.as_str())
                .bind(hash.as_str())
                .execute(connection)
                .await
                .map(drop)
        }
        Effect::RevokeSessions { user_id, at } => sqlx::query(
            "UPDATE tokens SET revoked_at = $2 \
             WHERE user_id = $1 AND kind = 'session' AND revoked_at IS NULL",
        )
        .bind(user_id.as_str())
        .bind(at.as_millis())
        .execute(connection)
        .await
        .map(drop),
        // Zero failures forget the subject.
        Effect::SetLoginFailures { subject, failures: 0, .. } => {
            sqlx::query("DELETE FROM login_failures WHERE subject = $1")
                .bind(subject)
                .execute(connection)
                .await
                .map(drop)
        }
        Effect::SetLoginFailures {
            subject,
            failures,
            window_ends_at,
        } => sqlx::query(
            "INSERT INTO login_failures (subject, failures, window_ends_at) VALUES ($1, $2, $3) \
             ON CONFLICT (subject) DO UPDATE \
             SET failures = excluded.failures, window_ends_at = excluded.window_ends_at",
        )
        .bind(subject)
        .bind(i64::from(*failures))
        .bind(window_ends_at.as_millis())
        .execute(connection)
        .await
        .map(drop),
    }
}

pub async fn insert_token(connection: &mut PgConnection, token: &AccessToken) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO tokens (id, org_id, kind, digest, permissions, created_at, user_id, expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(token.id.as_str())
    .bind(token.org_id.as_str())
    .bind(token.kind.as_str())
    .bind(token.digest.as_slice())
    .bind(Permission::list_to_json(&token.permissions))
    .bind(token.created_at.as_millis())
    .bind(token.user_id.as_ref().map(|id| id.as_str()))
    .bind(token.expires_at.map(|at| at.as_millis()))
    .bind(token.revoked_at.map(|at| at.as_millis()))
    .execute(connection)
    .await
    .map(drop)
}
