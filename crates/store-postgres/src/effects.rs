//! The writes a decision of the core asks for, as statements to run inside the caller's
//! transaction.

use std::sync::LazyLock;

use enroll_core::ids::UserId;
use enroll_core::model::{AccessToken, CodeRecord, Permission, User};
use enroll_core::rules::Effect;
use sqlx::PgConnection;

use crate::batch::{Batch, Prepared, Statement, Value};
use crate::current_codes;

/// The user's own fields a write of the user's row sets, in the order of their values
/// ([`user_values`]).
const USER_FIELDS: [&str; 7] = [
    "state",
    "locale",
    "sequence",
    "updated_at",
    "username",
    "email_verified_at",
    "name",
];

/// The types of [`USER_FIELDS`]' values.
pub const USER_FIELD_TYPES: &str = "text, text, bigint, bigint, text, bigint, text";

/// The assignments of the user's fields (SQL), from the parameter `$first` on.
pub fn assign_user_fields(first: usize) -> String {
    USER_FIELDS
        .iter()
        .enumerate()
        .map(|(index, field)| format!("{field} = ${}", first + index))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The values of [`USER_FIELDS`].
fn user_values(user: &User) -> [Value<'_>; 7] {
    [
        Value::text(user.state.as_str()),
        Value::optional_text(user.locale.as_ref().map(|locale| locale.as_str())),
        Value::int(user.sequence),
        Value::int(user.updated_at.as_millis()),
        Value::text(user.username.as_str()),
        Value::Int(user.email_verified_at.map(|at| at.as_millis())),
        Value::optional_text(user.name.as_deref()),
    ]
}

/// `$1` … `$4` the user's id, organisation, kind and creation; then its [`USER_FIELDS`].
pub static INSERT_USER: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_insert_user",
        format!("text, text, text, bigint, {USER_FIELD_TYPES}"),
        format!(
            "INSERT INTO users (id, org_id, kind, created_at, {}) VALUES ({})",
            USER_FIELDS.join(", "),
            (1..=4 + USER_FIELDS.len())
                .map(|index| format!("${index}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
});

pub static INSERT_CREDENTIAL: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_insert_credential",
        "text, text, text, text, text, text, text, bigint",
        "INSERT INTO credentials (id, cred_id, user_id, org_id, name, algorithm, public_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
});

pub static SET_PERMISSIONS: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_set_permissions",
        "text, text",
        "UPDATE users SET permissions = $2 WHERE id = $1",
    )
});

pub static UPDATE_USER: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_update_user",
        format!("text, {USER_FIELD_TYPES}"),
        format!("UPDATE users SET {} WHERE id = $1", assign_user_fields(2)),
    )
});

pub static APPEND_EVENT: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_append_event",
        "text, bigint, text, text, text, bigint",
        "INSERT INTO events (aggregate_id, sequence, kind, payload, org_id, at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
});

pub static ENQUEUE_MESSAGE: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_enqueue_message",
        "text, text, text, text, text, text, text, bytea, bigint",
        "INSERT INTO outbox (id, org_id, user_id, code_id, template, locale, recipient, sealed, state, \
                                 attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', 0, $9, $9)",
    )
});

pub static SET_COOLDOWN: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_set_cooldown",
        "text, text, bigint, bigint, integer",
        "INSERT INTO cooldowns (subject, purpose, until, window_started_at, sends) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject, purpose) DO UPDATE \
             SET until = excluded.until, window_started_at = excluded.window_started_at, \
             sends = excluded.sends",
    )
});

pub static SET_PASSWORD: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_set_password",
        "text, text",
        "UPDATE users SET password_hash = $2 WHERE id = $1",
    )
});

pub static REVOKE_SESSIONS: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_revoke_sessions",
        "text, bigint",
        "UPDATE tokens SET revoked_at = $2 \
             WHERE user_id = $1 AND kind = 'session' AND revoked_at IS NULL",
    )
});

pub static FORGET_LOGIN_FAILURES: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_forget_login_failures",
        "text",
        "DELETE FROM login_failures WHERE subject = $1",
    )
});

pub static SET_LOGIN_FAILURES: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_set_login_failures",
        "text, bigint, bigint",
        "INSERT INTO login_failures (subject, failures, window_ends_at) VALUES ($1, $2, $3) \
             ON CONFLICT (subject) DO UPDATE \
             SET failures = excluded.failures, window_ends_at = excluded.window_ends_at",
    )
});

pub static INSERT_TOKEN: LazyLock<Prepared> = LazyLock::new(|| {
    Prepared::new(
        "enroll_insert_token",
        "text, text, text, bytea, text, bigint, text, bigint, bigint",
        "INSERT INTO tokens (id, org_id, kind, digest, permissions, created_at, user_id, expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
});

/// Every statement of this module, prepared on each connection.
pub fn prepared() -> impl Iterator<Item = &'static Prepared> {
    [
        &INSERT_USER,
        &INSERT_CREDENTIAL,
        &SET_PERMISSIONS,
        &UPDATE_USER,
        &APPEND_EVENT,
        &ENQUEUE_MESSAGE,
        &SET_COOLDOWN,
        &SET_PASSWORD,
        &REVOKE_SESSIONS,
        &FORGET_LOGIN_FAILURES,
        &SET_LOGIN_FAILURES,
        &INSERT_TOKEN,
    ]
    .into_iter()
    .map(|prepared| &**prepared)
    .chain(current_codes::prepared())
}

/// The statement that makes one write.
fn statement(effect: &Effect) -> Statement<'_> {
    match effect {
        Effect::InsertUser(user) => Statement::new(
            &INSERT_USER,
            [
                Value::text(user.id.as_str()),
                Value::text(user.org_id.as_str()),
                Value::text(user.kind.as_str()),
                Value::int(user.created_at.as_millis()),
            ]
            .into_iter()
            .chain(user_values(user))
            .collect(),
        ),
        Effect::InsertCredential(credential) => Statement::new(
            &INSERT_CREDENTIAL,
            vec![
                Value::text(credential.id.as_str()),
                Value::text(&credential.cred_id),
                Value::text(credential.user_id.as_str()),
                Value::text(credential.org_id.as_str()),
                Value::text(&credential.name),
                Value::text(credential.public_key.algorithm().as_str()),
                Value::text(credential.public_key.pem()),
                Value::int(credential.created_at.as_millis()),
            ],
        ),
        Effect::InsertToken(token) => insert_token(token),
        Effect::SetPermissions {
            user_id,
            permissions,
        } => Statement::new(
            &SET_PERMISSIONS,
            vec![
                Value::text(user_id.as_str()),
                Value::owned_text(Permission::list_to_json(permissions)),
            ],
        ),
        Effect::UpdateUser(user) => Statement::new(
            &UPDATE_USER,
            std::iter::once(Value::text(user.id.as_str()))
                .chain(user_values(user))
                .collect(),
        ),
        // The code takes its purpose's place in its user's row (migration 0009), and only the
        // current code of its user and purpose can change: a replaced one is final.
        Effect::InsertCode(_) | Effect::UpdateCode { .. } => {
            let code = CodeWrite::at(std::slice::from_ref(effect), 0)
                .unwrap_or_else(|| unreachable!("a code's effect is a code's write"));
            Statement::new(&code.write.alone, code.values)
        }
        Effect::AppendEvent(event) => Statement::new(
            &APPEND_EVENT,
            vec![
                Value::text(&event.aggregate_id),
                Value::int(event.sequence),
                Value::text(&event.kind),
                Value::owned_text(event.payload.to_string()),
                Value::text(event.org_id.as_str()),
                Value::int(event.at.as_millis()),
            ],
        ),
        Effect::EnqueueMessage(message) => Statement::new(
            &ENQUEUE_MESSAGE,
            vec![
                Value::text(message.id.as_str()),
                Value::text(message.org_id.as_str()),
                Value::optional_text(message.user_id.as_ref().map(|id| id.as_str())),
                Value::optional_text(message.code_id.as_ref().map(|id| id.as_str())),
                Value::text(message.template.as_str()),
                Value::text(message.locale.as_str()),
                Value::text(message.recipient.as_str()),
                Value::bytes(message.sealed.as_slice()),
                Value::int(message.created_at.as_millis()),
            ],
        ),
        Effect::SetCooldown {
            subject,
            purpose,
            record,
        } => Statement::new(
            &SET_COOLDOWN,
            vec![
                Value::text(subject),
                Value::text(purpose.as_str()),
                Value::int(record.cooldown_until.as_millis()),
                Value::int(record.window_started_at.as_millis()),
                Value::Int4(i32::try_from(record.sends).unwrap_or(i32::MAX)),
            ],
        ),
        Effect::SetPassword { user_id, hash } => Statement::new(
            &SET_PASSWORD,
            vec![Value::text(user_id.as_str()), Value::text(hash.as_str())],
        ),
        Effect::RevokeSessions { user_id, at } => Statement::new(
            &REVOKE_SESSIONS,
            vec![Value::text(user_id.as_str()), Value::int(at.as_millis())],
        ),
        // Zero failures forget the subject.
        Effect::SetLoginFailures {
            subject,
            failures: 0,
            ..
        } => Statement::new(&FORGET_LOGIN_FAILURES, vec![Value::text(subject)]),
        Effect::SetLoginFailures {
            subject,
            failures,
            window_ends_at,
        } => Statement::new(
            &SET_LOGIN_FAILURES,
            vec![
                Value::text(subject),
                Value::int(i64::from(*failures)),
                Value::int(window_ends_at.as_millis()),
            ],
        ),
    }
}

pub fn insert_token(token: &AccessToken) -> Statement<'_> {
    Statement::new(
        &INSERT_TOKEN,
        vec![
            Value::text(token.id.as_str()),
            Value::text(token.org_id.as_str()),
            Value::text(token.kind.as_str()),
            Value::bytes(token.digest.as_slice()),
            Value::owned_text(Permission::list_to_json(&token.permissions)),
            Value::int(token.created_at.as_millis()),
            Value::optional_text(token.user_id.as_ref().map(|id| id.as_str())),
            Value::Int(token.expires_at.map(|at| at.as_millis())),
            Value::Int(token.revoked_at.map(|at| at.as_millis())),
        ],
    )
}

/// Adds the writes to a batch, in order, writing the user's row once where the effects write
/// it twice:
/// - a code's last change followed by the issue of the code that replaces it (a resend) is one
///   statement;
/// - the user's fields ([`Effect::UpdateUser`]) are set by the write of the user's code, where
///   the transaction writes one, rather than by a statement of their own. They are the fields'
///   whole values, not changes, so the write that carries them can come before the writes of
///   other tables that the effects list between the two.
pub fn push_all(batch: &mut Batch, effects: &[Effect]) -> sqlx::Result<()> {
    let mut set_with_code = vec![false; effects.len()];
    let mut at = 0;
    while at < effects.len() {
        if let Some(code) = CodeWrite::at(effects, at) {
            let user =
                effects
                    .iter()
                    .enumerate()
                    .skip(at + code.effects)
                    .find_map(|(index, effect)| match effect {
                        Effect::UpdateUser(user)
                            if user.id == *code.user_id && !set_with_code[index] =>
                        {
                            Some((index, user))
                        }
                        _ => None,
                    });
            let mut values = code.values;
            match user {
                Some((index, user)) => {
                    set_with_code[index] = true;
                    values.extend(user_values(user));
                    batch.push(&code.write.with_user, &values)?;
                }
                None => {
                    batch.push(&code.write.alone, &values)?;
                }
            }
            at += code.effects;
            continue;
        }
        if !set_with_code[at] {
            batch.push_statement(&statement(&effects[at]))?;
        }
        at += 1;
    }
    Ok(())
}

/// One write of a user's current code, made of one or two effects.
struct CodeWrite<'a> {
    write: &'static current_codes::Write,
    values: Vec<Value<'a>>,
    user_id: &'a UserId,
    /// How many effects it makes.
    effects: usize,
}

impl<'a> CodeWrite<'a> {
    /// The write of the effect at `at`, and of the one after it when the two write the same
    /// code's place, if it is a code's.
    fn at(effects: &'a [Effect], at: usize) -> Option<Self> {
        match effects.get(at)? {
            Effect::UpdateCode {
                id,
                user_id,
                purpose,
                state,
                failed_attempts,
            } => Some(match effects.get(at + 1) {
                Some(Effect::InsertCode(code))
                    if code.user_id == *user_id && code.purpose == *purpose =>
                {
                    let mut values = take_place_values(code);
                    values.extend([
                        Value::text(id.as_str()),
                        Value::text(state.as_str()),
                        Value::int(i64::from(*failed_attempts)),
                    ]);
                    Self {
                        write: &current_codes::writes(*purpose).replace,
                        values,
                        user_id,
                        effects: 2,
                    }
                }
                _ => Self {
                    write: &current_codes::writes(*purpose).update,
                    values: vec![
                        Value::text(user_id.as_str()),
                        Value::text(id.as_str()),
                        Value::text(state.as_str()),
                        Value::int(i64::from(*failed_attempts)),
                    ],
                    user_id,
                    effects: 1,
                },
            }),
            Effect::InsertCode(code) => Some(Self {
                write: &current_codes::writes(code.purpose).take_place,
                values: take_place_values(code),
                user_id: &code.user_id,
                effects: 1,
            }),
            _ => None,
        }
    }
}

/// The values of [`current_codes::Writes::take_place`] for the code.
fn take_place_values(code: &CodeRecord) -> Vec<Value<'_>> {
    vec![
        Value::text(code.user_id.as_str()),
        Value::text(code.id.as_str()),
        Value::bytes(code.hash.0.as_slice()),
        Value::text(code.state.as_str()),
        Value::int(i64::from(code.failed_attempts)),
        Value::int(code.created_at.as_millis()),
        Value::int(code.expires_at.as_millis()),
    ]
}

/// Makes the writes, in order, in one round trip (none for no writes).
pub async fn apply_all(connection: &mut PgConnection, effects: &[Effect]) -> sqlx::Result<()> {
    if effects.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::new();
    push_all(&mut batch, effects)?;
    batch.run(connection).await.map(drop)
}

/// Runs one statement with bound parameters (prepared once per connection).
pub async fn execute(connection: &mut PgConnection, statement: Statement<'_>) -> sqlx::Result<u64> {
    let mut query = sqlx::query(&statement.prepared.sql);
    for value in statement.values {
        query = value.bind(query);
    }
    query
        .execute(connection)
        .await
        .map(|done| done.rows_affected())
}
