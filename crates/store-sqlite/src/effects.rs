//! Applies the writes a decision of the core asks for.

use enroll_core::model::{AccessToken, CodeRecord, Permission};
use enroll_core::rules::Effect;
use rusqlite::{Connection, params};

use crate::current_codes;

pub fn apply(connection: &Connection, effect: &Effect) -> rusqlite::Result<()> {
    match effect {
        Effect::InsertUser(user) => connection
            .prepare_cached(
                "INSERT INTO users (id, org_id, username, kind, state, locale, sequence, created_at, updated_at, email_verified_at, name) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                user.id.as_str(),
                user.org_id.as_str(),
                user.username.as_str(),
                user.kind.as_str(),
                user.state.as_str(),
                user.locale.as_ref().map(|locale| locale.as_str()),
                user.sequence,
                user.created_at.as_millis(),
                user.updated_at.as_millis(),
                user.email_verified_at.map(|at| at.as_millis()),
                user.name
            ])
            .map(drop),
        Effect::UpdateUser(user) => {
            connection
                .prepare_cached(
                    "UPDATE users SET state = ?2, locale = ?3, sequence = ?4, updated_at = ?5, \
                     email_verified_at = ?6, name = ?7 WHERE id = ?1",
                )?
                .execute(params![
                    user.id.as_str(),
                    user.state.as_str(),
                    user.locale.as_ref().map(|locale| locale.as_str()),
                    user.sequence,
                    user.updated_at.as_millis(),
                    user.email_verified_at.map(|at| at.as_millis()),
                    user.name
                ])?;
            // SQLite rewrites the entry of every index on a column the statement sets, changed
            // or not: setting the username only when it changed spares the username index a
            // page on every write to a user (a resend's included).
            connection
                .prepare_cached(
                    "UPDATE users SET username = ?2 WHERE id = ?1 AND username IS NOT ?2",
                )?
                .execute(params![user.id.as_str(), user.username.as_str()])
                .map(drop)
        }
        Effect::InsertCode(code) => replace_current_code(connection, code),
        Effect::InsertCredential(credential) => connection
            .prepare_cached(
                "INSERT INTO credentials (id, cred_id, user_id, org_id, name, algorithm, public_key, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                credential.id.as_str(),
                credential.cred_id,
                credential.user_id.as_str(),
                credential.org_id.as_str(),
                credential.name,
                credential.public_key.algorithm().as_str(),
                credential.public_key.pem(),
                credential.created_at.as_millis()
            ])
            .map(drop),
        Effect::InsertToken(token) => insert_token(connection, token),
        Effect::SetPermissions {
            user_id,
            permissions,
        } => connection
            .prepare_cached("UPDATE users SET permissions = ?2 WHERE id = ?1")?
            .execute(params![
                user_id.as_str(),
                Permission::list_to_json(permissions)
            ])
            .map(drop),
        // Only the current code of its user and purpose can change (migration 0013).
        Effect::UpdateCode {
            id,
            user_id,
            purpose,
            state,
            failed_attempts,
        } => {
            let updated = connection
                .prepare_cached(&current_codes::statements(*purpose).update)?
                .execute(params![
                    user_id.as_str(),
                    id.as_str(),
                    state.as_str(),
                    failed_attempts
                ])?;
            exactly_one(updated)
        }
        // Appended in the order events happen, chained to the user's newest (migration 0011):
        // the user's row, written in every event's transaction, names the new one.
        Effect::AppendEvent(event) => {
            connection
                .prepare_cached(
                    "INSERT INTO events (aggregate_id, sequence, kind, payload, org_id, at, previous) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, (SELECT last_event FROM users WHERE id = ?1))",
                )?
                .execute(params![
                    event.aggregate_id,
                    event.sequence,
                    event.kind,
                    event.payload.to_string(),
                    event.org_id.as_str(),
                    event.at.as_millis()
                ])?;
            connection
                .prepare_cached("UPDATE users SET last_event = last_insert_rowid() WHERE id = ?1")?
                .execute([&event.aggregate_id])
                .map(drop)
        }
        // Chained to the user's newest message, as events are (migration 0012).
        Effect::EnqueueMessage(message) => {
            let user_id = message.user_id.as_ref().map(|id| id.as_str());
            connection
                .prepare_cached(
                    "INSERT INTO outbox (id, org_id, user_id, code_id, template, locale, recipient, sealed, state, \
                                         attempts, next_attempt_at, created_at, previous_for_user) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', 0, ?9, ?9, \
                             (SELECT last_message FROM users WHERE id = ?3))",
                )?
                .execute(params![
                    message.id.as_str(),
                    message.org_id.as_str(),
                    user_id,
                    message.code_id.as_ref().map(|id| id.as_str()),
                    message.template.as_str(),
                    message.locale.as_str(),
                    message.recipient.as_str(),
                    message.sealed,
                    message.created_at.as_millis()
                ])?;
            if let Some(user_id) = user_id {
                connection
                    .prepare_cached("UPDATE users SET last_message = ?2 WHERE id = ?1")?
                    .execute(params![user_id, message.id.as_str()])?;
            }
            Ok(())
        }
        Effect::SetCooldown {
            subject,
            purpose,
            record,
        } => connection
            .prepare_cached(
                "INSERT INTO cooldowns (subject, purpose, until, window_started_at, sends) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (subject, purpose) DO UPDATE \
                 SET until = excluded.until, window_started_at = excluded.window_started_at, \
                 sends = excluded.sends",
            )?
            .execute(params![
                subject,
                purpose.as_str(),
                record.cooldown_until.as_millis(),
                record.window_started_at.as_millis(),
                record.sends
            ])
            .map(drop),
        Effect::SetPassword { user_id, hash } => connection
            .prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
            .execute(params![user_id.as_str(), hash.as_str()])
            .map(drop),
        Effect::RevokeSessions { user_id, at } => connection
            .prepare_cached(
                "UPDATE tokens SET revoked_at = ?2 \
                 WHERE user_id = ?1 AND kind = 'session' AND revoked_at IS NULL",
            )?
            .execute(params![user_id.as_str(), at.as_millis()])
            .map(drop),
        Effect::SetLoginFailures {
            subject,
            failures: 0,
            ..
        } => connection
            .prepare_cached("DELETE FROM login_failures WHERE subject = ?1")?
            .execute([subject])
            .map(drop),
        Effect::SetLoginFailures {
            subject,
            failures,
            window_ends_at,
        } => connection
            .prepare_cached(
                "INSERT INTO login_failures (subject, failures, window_ends_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (subject) DO UPDATE SET failures = excluded.failures, \
                   window_ends_at = excluded.window_ends_at",
            )?
            .execute(params![subject, failures, window_ends_at.as_millis()])
            .map(drop),
    }
}

/// The code takes its purpose's place in its user's row; the code it replaces, if any, is
/// appended to the user's past codes (migration 0013), and its id to those of all codes.
fn replace_current_code(connection: &Connection, code: &CodeRecord) -> rusqlite::Result<()> {
    let statements = current_codes::statements(code.purpose);
    let replaced = connection
        .prepare_cached(&statements.append_to_past)?
        .execute([code.user_id.as_str()])?;
    let updated = connection
        .prepare_cached(&statements.take_place)?
        .execute(params![
            code.user_id.as_str(),
            code.id.as_str(),
            code.hash.0.as_slice(),
            code.state.as_str(),
            code.failed_attempts,
            code.created_at.as_millis(),
            code.expires_at.as_millis(),
            replaced == 1
        ])?;
    exactly_one(updated)?;
    connection
        .prepare_cached("INSERT INTO code_ids (id, user_id, purpose) VALUES (?1, ?2, ?3)")?
        .execute(params![
            code.id.as_str(),
            code.user_id.as_str(),
            code.purpose.as_str()
        ])
        .map(drop)
}

/// A write that must find its row: a code of a user who is not stored, or a replaced code,
/// fails the transaction rather than vanishing.
fn exactly_one(changed: usize) -> rusqlite::Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(rusqlite::Error::QueryReturnedNoRows)
    }
}

pub fn insert_token(connection: &Connection, token: &AccessToken) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO tokens (id, org_id, kind, digest, permissions, created_at, user_id, expires_at, revoked_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            token.id.as_str(),
            token.org_id.as_str(),
            token.kind.as_str(),
            token.digest.as_slice(),
            Permission::list_to_json(&token.permissions),
            token.created_at.as_millis(),
            token.user_id.as_ref().map(|id| id.as_str()),
            token.expires_at.map(|at| at.as_millis()),
            token.revoked_at.map(|at| at.as_millis())
        ])
        .map(drop)
}

#[cfg(test)]
mod tests {
    use enroll_core::clock::Timestamp;
    use enroll_core::code::{CodeHash, CodePurpose, CodeState};
    use enroll_core::email::EmailAddress;
    use enroll_core::ids::{CodeId, MessageId, OrgId, UserId};
    use enroll_core::model::{CodeRecord, Locale, MailTemplate, NewMessage};
    use enroll_core::rules::Effect;
    use rusqlite::Connection;

    use super::apply;

    const FRAME_HEADER: u64 = 24;
    const LOG_HEADER: u64 = 32;

    /// Frames the log holds: one per page a commit wrote.
    fn frames(connection: &Connection, log: &std::path::Path) -> u64 {
        let page_size: u64 = connection
            .pragma_query_value(None, "page_size", |row| row.get(0))
            .expect("the page size");
        let length = std::fs::metadata(log).map_or(0, |metadata| metadata.len());
        length.saturating_sub(LOG_HEADER) / (page_size + FRAME_HEADER)
    }

    /// The pages one transaction of `effects` wrote.
    fn pages_written(connection: &Connection, log: &std::path::Path, effects: &[Effect]) -> u64 {
        connection
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("a checkpoint");
        let before = frames(connection, log);
        connection.execute_batch("BEGIN").expect("a transaction");
        for effect in effects {
            apply(connection, effect).expect("the effect applies");
        }
        connection.execute_batch("COMMIT").expect("the commit");
        frames(connection, log) - before
    }

    /// A migrated database with 2,000 users, enough that their rows and the username index
    /// take pages of their own, and no automatic checkpoint.
    fn users_in_a_database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let connection =
            Connection::open(dir.path().join("enroll.db")).expect("the database opens");
        crate::configure(&connection).expect("configured");
        crate::migrate(&connection).expect("migrated");
        connection
            .pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no automatic checkpoint");
        connection
            .execute_batch(
                "INSERT INTO orgs (id, name, default_locale, created_at) VALUES ('or-1', 'Org', 'en', 0);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                 INSERT INTO users (id, org_id, username, kind, state, sequence, created_at, updated_at)
                 SELECT printf('us-%08d', i), 'or-1', printf('user%d@example.com', (i * 7919) % 2000),
                        'EndUser', 'Registered', 10, 1700000000000, 1700000000000
                 FROM n;",
            )
            .expect("users inserted");
        (dir, connection)
    }

    /// A user's message is appended to the outbox and named in the user's row: nothing is
    /// written at the user's place in an index of the outbox (migration 0012).
    #[test]
    fn a_message_for_a_user_is_appended_and_named_in_their_row() {
        let (dir, connection) = users_in_a_database();
        let log = dir.path().join("enroll.db-wal");
        // A message for every user, in the order of their ids' time, as the server writes them.
        let message = |n: u32, user: u32| NewMessage {
            id: MessageId::generate_at(Timestamp::from_millis(1_700_000_000_000 + i64::from(n))),
            org_id: OrgId::from_trusted("or-1".to_owned()),
            user_id: Some(UserId::from_trusted(format!("us-{user:08}"))),
            code_id: None,
            template: MailTemplate::Registration,
            locale: Locale::parse("en").expect("a locale"),
            recipient: EmailAddress::parse("user@example.com").expect("an address"),
            sealed: vec![7; 120],
            created_at: Timestamp::from_millis(1_700_000_000_000 + i64::from(n)),
        };
        connection.execute_batch("BEGIN").expect("a transaction");
        for n in 1..=2000 {
            apply(
                &connection,
                &Effect::EnqueueMessage(message(n, (n * 7919) % 2000 + 1)),
            )
            .expect("queued");
        }
        connection.execute_batch("COMMIT").expect("the commit");
        // Written beside the user's row, as a resend does: the message adds the outbox's
        // last page, its id's and its due time's (three), not one at the user's place.
        let user = UserId::from_trusted("us-00001000".to_owned());
        let newest = message(2001, 1000);
        let pages = pages_written(
            &connection,
            &log,
            &[
                Effect::UpdateUser(
                    crate::user_by_id(&connection, &user)
                        .expect("the user reads")
                        .expect("the user exists"),
                ),
                Effect::EnqueueMessage(newest.clone()),
            ],
        );
        assert_eq!(pages, 1 + 3);
        let named: Option<String> = connection
            .query_row(
                "SELECT last_message FROM users WHERE id = ?1",
                [user.as_str()],
                |row| row.get(0),
            )
            .expect("the user's row");
        assert_eq!(named.as_deref(), Some(newest.id.as_str()));
    }

    /// A code replacing the user's current one writes the user's row, where the current code
    /// is kept, and the last pages of the past codes and of the codes' ids, which the other
    /// resends of a batch share: nothing at the user's place in a table of codes (migration
    /// 0013), which took a page of its own per resend.
    #[test]
    fn a_new_code_is_kept_in_the_users_row_and_the_one_it_replaces_appended() {
        let (dir, connection) = users_in_a_database();
        let log = dir.path().join("enroll.db-wal");
        let code = |n: u32, user: u32| CodeRecord {
            id: CodeId::generate_at(Timestamp::from_millis(1_700_000_000_000 + i64::from(n))),
            user_id: UserId::from_trusted(format!("us-{user:08}")),
            purpose: CodePurpose::Registration,
            hash: CodeHash([7; 32]),
            state: CodeState::Active,
            failed_attempts: 0,
            created_at: Timestamp::from_millis(1_700_000_000_000 + i64::from(n)),
            expires_at: Timestamp::from_millis(1_800_000_000_000),
        };
        let replace = |old: &CodeRecord, new: &CodeRecord| {
            [
                Effect::UpdateCode {
                    id: old.id.clone(),
                    user_id: old.user_id.clone(),
                    purpose: old.purpose,
                    state: CodeState::Superseded,
                    failed_attempts: old.failed_attempts,
                },
                Effect::InsertCode(new.clone()),
            ]
        };
        // Every user's code replaced once, in the order of their ids' time.
        let mut current: Vec<CodeRecord> = (1..=2000).map(|n| code(n, n)).collect();
        connection.execute_batch("BEGIN").expect("a transaction");
        for first in &current {
            apply(&connection, &Effect::InsertCode(first.clone())).expect("issued");
        }
        for n in 2001..=4000 {
            let user = (n * 7919) % 2000;
            let next = code(n, user + 1);
            for effect in replace(&current[user as usize], &next) {
                apply(&connection, &effect).expect("replaced");
            }
            current[user as usize] = next;
        }
        connection.execute_batch("COMMIT").expect("the commit");

        // A batch of twenty resends to users far apart: their rows, and what the batch appends.
        let batch: Vec<(CodeRecord, CodeRecord)> = (1..=20u32)
            .map(|k| {
                (
                    current[(k * 97) as usize].clone(),
                    code(4000 + k, k * 97 + 1),
                )
            })
            .collect();
        let effects: Vec<Effect> = batch
            .iter()
            .flat_map(|(old, new)| replace(old, new))
            .collect();
        let pages = pages_written(&connection, &log, &effects);
        // Each table appended to writes its last page, and on a split the new one and their
        // parent: at most three pages each, where a page per resend would make forty.
        assert!(
            (20 + 2..=20 + 6).contains(&pages),
            "twenty rows and the last pages of two tables, not {pages}"
        );
        let (old, new) = batch[0].clone();
        let current = crate::latest_code(&connection, &new.user_id, CodePurpose::Registration)
            .expect("the current code reads");
        assert_eq!(current, Some(new.clone()));
        let replaced = crate::code_by_id(&connection, &old.id).expect("a code by id");
        assert_eq!(replaced.map(|code| code.state), Some(CodeState::Superseded));

        // A replaced code does not change, and a code of a user not stored is refused.
        let late = Effect::UpdateCode {
            id: old.id.clone(),
            user_id: old.user_id.clone(),
            purpose: old.purpose,
            state: CodeState::Used,
            failed_attempts: 0,
        };
        assert!(apply(&connection, &late).is_err());
        let stranger = code(4002, 9999);
        assert!(apply(&connection, &Effect::InsertCode(stranger)).is_err());
    }

    /// A write to a user that keeps its address leaves the username index alone: a resend
    /// writes one page fewer.
    #[test]
    fn a_user_written_without_a_new_address_writes_only_its_row() {
        let (dir, connection) = users_in_a_database();
        let log = dir.path().join("enroll.db-wal");
        let id = UserId::from_trusted("us-00001000".to_owned());
        let mut user = crate::user_by_id(&connection, &id)
            .expect("the user reads")
            .expect("the user exists");

        user.sequence += 1;
        assert_eq!(
            pages_written(&connection, &log, &[Effect::UpdateUser(user.clone())]),
            1
        );

        user.username = EmailAddress::parse("moved@example.com").expect("an address");
        user.sequence += 1;
        assert_eq!(
            pages_written(&connection, &log, &[Effect::UpdateUser(user.clone())]),
            2
        );
        let stored = crate::user_by_id(&connection, &id)
            .expect("the user reads")
            .expect("the user exists");
        assert_eq!(stored.username.as_str(), "moved@example.com");
        assert_eq!(stored.sequence, 12);
    }
}
