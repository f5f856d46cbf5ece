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

/// A database of the schema before `next` (a file of `migrations/`), made with the migrations
/// the directory holds before it, with the organisation `org`, its `users` (id, username and
/// event sequence) and the other `rows` (SQL) written in it.
fn database_before(
    next: &str,
    org: &enroll_core::ids::OrgId,
    users: &[(&enroll_core::ids::UserId, &str, i64)],
    rows: &str,
) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("the migrations directory")
        .map(|entry| entry.expect("a migration file").path())
        .collect();
    files.sort();
    let position = files
        .iter()
        .position(|path| path.ends_with(next))
        .unwrap_or_else(|| panic!("{next} in {files:?}"));
    // Leaked on purpose: the directory must outlive the store's writer thread.
    let dir = Box::leak(Box::new(
        tempfile::tempdir().expect("a temporary directory"),
    ));
    let path = dir.path().join("enroll.db");
    let old = rusqlite::Connection::open(&path).expect("the old database opens");
    for file in &files[..position] {
        old.execute_batch(&std::fs::read_to_string(file).expect("a migration"))
            .expect("an old migration applies");
    }
    let users: Vec<String> = users
        .iter()
        .map(|(id, username, sequence)| {
            format!("('{id}', '{org}', '{username}', 'EndUser', 'Pending', {sequence}, 0, 0)")
        })
        .collect();
    old.execute_batch(&format!(
        "PRAGMA user_version = {position};
         INSERT INTO orgs (id, name, default_locale, created_at) VALUES ('{org}', 'Acme', 'en', 0);
         INSERT INTO users (id, org_id, username, kind, state, sequence, created_at, updated_at)
             VALUES {};
         {rows}",
        users.join(", ")
    ))
    .expect("the old rows are written");
    path
}

/// The one number `query` (a `SELECT COUNT(*)`) answers.
fn count(connection: &rusqlite::Connection, query: &str) -> i64 {
    connection
        .query_row(query, [], |row| row.get(0))
        .unwrap_or_else(|error| panic!("{query}: {error}"))
}

/// A database made by the schema before codes were clustered on their user (migration 9)
/// keeps its codes, in the order they were issued, and the rule of one active code per user
/// and purpose.
#[tokio::test]
async fn upgrading_to_codes_clustered_by_user_keeps_their_order_and_the_one_active_rule() {
    use enroll_core::clock::Timestamp;
    use enroll_core::code::CodeState;
    use enroll_core::ids::{CodeId, OrgId, UserId};
    use enroll_core::ports::Directory as _;

    let org = OrgId::generate();
    let user = UserId::generate();
    // Two codes of one millisecond, issued in the opposite order of their ids: only the order
    // of issue (the rowid, before) tells which is newer.
    let first = CodeId::generate_at(Timestamp::from_millis(1_000));
    let (mut second, mut third) = (
        CodeId::generate_at(Timestamp::from_millis(2_000)),
        CodeId::generate_at(Timestamp::from_millis(2_000)),
    );
    if second.as_str() < third.as_str() {
        std::mem::swap(&mut second, &mut third);
    }
    let path = database_before(
        "0009_codes_clustered_by_user.sql",
        &org,
        &[(&user, "jane@example.com", 3)],
        &format!(
            "INSERT INTO codes (id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at)
                 VALUES ('{first}', '{user}', 'registration', zeroblob(32), 'superseded', 0, 1000, 9000),
                        ('{second}', '{user}', 'registration', zeroblob(32), 'superseded', 0, 2000, 9000),
                        ('{third}', '{user}', 'registration', zeroblob(32), 'active', 0, 2000, 9000);"
        ),
    );

    let store = SqliteStore::open(&path)
        .await
        .expect("the store opens and migrates");
    let codes = store.codes(&user).await.expect("the codes are listed");
    let listed: Vec<(&str, CodeState)> = codes
        .iter()
        .map(|code| (code.id.as_str(), code.state))
        .collect();
    assert_eq!(
        listed,
        [
            (first.as_str(), CodeState::Superseded),
            (second.as_str(), CodeState::Superseded),
            (third.as_str(), CodeState::Active),
        ],
        "every code kept, in the order of issue"
    );
    drop(store);

    let migrated = rusqlite::Connection::open(&path).expect("the database opens");
    // The newest in the user's row, the two it replaced behind it.
    let current: (String, String) = migrated
        .query_row(
            "SELECT registration_code_id, registration_code_state FROM users WHERE id = ?1",
            [user.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the user's row");
    assert_eq!(current, (third.to_string(), "active".to_owned()));
    assert_eq!(
        count(
            &migrated,
            "SELECT COUNT(*) FROM past_codes WHERE state = 'superseded'"
        ),
        2
    );
    assert_eq!(count(&migrated, "SELECT COUNT(*) FROM code_ids"), 3);
    assert_one_active_code_per_user_and_purpose(&migrated, &user);
}

/// The schema's rule of one active code per user and purpose (migrations 0010 and 0013),
/// checked on `database`, where `user`'s current registration code is active.
fn assert_one_active_code_per_user_and_purpose(
    database: &rusqlite::Connection,
    user: &enroll_core::ids::UserId,
) {
    let refused = |sql: &str, why: &str| {
        let outcome = database.execute(sql, [user.as_str()]);
        assert!(
            matches!(&outcome, Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::ConstraintViolation),
            "{why}: {outcome:?}"
        );
    };
    refused(
        "UPDATE users SET registration_code_id = 'cd-extra', registration_code_state = 'active' \
         WHERE id = ?1",
        "a second active code does not take the place of the active one",
    );
    refused(
        "INSERT INTO past_codes (id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at) \
         VALUES ('cd-behind', ?1, 'registration', x'00', 'active', 0, 3000, 9000)",
        "nor goes behind it",
    );
    refused(
        "UPDATE past_codes SET state = 'active' WHERE user_id = ?1",
        "a replaced code does not change",
    );
    database
        .execute(
            "UPDATE users SET registration_code_state = 'used' WHERE id = ?1",
            [user.as_str()],
        )
        .expect("the active code is used");
    refused(
        "UPDATE users SET registration_code_state = 'active' WHERE id = ?1",
        "a code is active only from its issue",
    );
    database
        .execute(
            "UPDATE users SET registration_code_id = 'cd-next', registration_code_state = 'active' \
             WHERE id = ?1",
            [user.as_str()],
        )
        .expect("a new code takes the place of one no longer active");
}

/// A database made by the schema that kept codes clustered on their user (before migration
/// 13) keeps every code with its state, listed in the order of issue and found by id: the
/// newest of each purpose in the user's row, the ones they replaced chained behind it.
#[tokio::test]
async fn upgrading_to_current_codes_in_user_rows_keeps_every_code() {
    let old = enroll_testkit::upgrades::CodesBeforeUserRows::new();
    let codes: Vec<String> = old
        .codes
        .iter()
        .map(|code| {
            format!(
                "('{}', {}, '{}', '{}', zeroblob(32), '{}', {}, {}, 9000)",
                code.user,
                code.seq,
                code.id,
                code.purpose.as_str(),
                code.state.as_str(),
                code.failed_attempts,
                code.created_at
            )
        })
        .collect();
    let path = database_before(
        "0013_current_codes_in_user_rows.sql",
        &old.org,
        &old.users(),
        &format!(
            "INSERT INTO codes (user_id, seq, id, purpose, hash, state, failed_attempts, created_at, expires_at) \
             VALUES {};",
            codes.join(", ")
        ),
    );

    let store = SqliteStore::open(&path)
        .await
        .expect("the store opens and migrates");
    old.assert_kept(&store).await;
    drop(store);

    let migrated = rusqlite::Connection::open(&path).expect("the database opens");
    let chain: Vec<String> = migrated
        .prepare(
            "WITH RECURSIVE chain(entry) AS ( \
                 SELECT last_past_code FROM users WHERE id = ?1 \
                 UNION ALL \
                 SELECT past.previous FROM past_codes past JOIN chain ON past.entry = chain.entry) \
             SELECT past.id FROM chain JOIN past_codes past ON past.entry = chain.entry",
        )
        .and_then(|mut statement| {
            statement
                .query_map([old.jane.as_str()], |row| row.get(0))?
                .collect()
        })
        .expect("jane's past codes");
    assert_eq!(
        chain,
        old.janes_past_codes(),
        "the user's row names the newest replaced code, and each the one before"
    );
    assert_eq!(count(&migrated, "SELECT COUNT(*) FROM past_codes"), 2);
    assert_eq!(count(&migrated, "SELECT COUNT(*) FROM code_ids"), 5);
}

/// A database made by the schema that kept events clustered on their user (before migration
/// 11) keeps every user's events, listed in their order, and chains them for those written
/// after: the user's row names its newest, and every link points to an earlier event.
#[tokio::test]
async fn upgrading_to_events_in_order_keeps_each_users_events() {
    use enroll_core::ids::{OrgId, UserId};
    use enroll_core::model::Event;
    use enroll_core::ports::Directory as _;

    let org = OrgId::generate();
    let (jane, john, nobody) = (UserId::generate(), UserId::generate(), UserId::generate());
    // Interleaved in time, one of them out of order against its sequence (a clock set back).
    let path = database_before(
        "0011_events_in_order.sql",
        &org,
        &[
            (&jane, "jane@example.com", 3),
            (&john, "john@example.com", 2),
            (&nobody, "nobody@example.com", 0),
        ],
        &format!(
            "INSERT INTO events (aggregate_id, sequence, kind, payload, org_id, at) VALUES
                 ('{jane}', 1, 'user.created', '{{}}', '{org}', 100),
                 ('{john}', 1, 'user.created', '{{}}', '{org}', 200),
                 ('{jane}', 2, 'user.code.issued', '{{}}', '{org}', 300),
                 ('{john}', 2, 'user.code.issued', '{{}}', '{org}', 400),
                 ('{jane}', 3, 'user.code.issued', '{{}}', '{org}', 250);"
        ),
    );

    let store = SqliteStore::open(&path)
        .await
        .expect("the store opens and migrates");
    let listed = |events: Vec<Event>| -> Vec<(i64, String)> {
        events
            .into_iter()
            .map(|event| (event.sequence, event.kind))
            .collect()
    };
    let jane_events = listed(store.events(jane.as_str()).await.expect("jane's events"));
    assert_eq!(
        jane_events,
        [
            (1, "user.created".to_owned()),
            (2, "user.code.issued".to_owned()),
            (3, "user.code.issued".to_owned()),
        ]
    );
    let john_events = listed(store.events(john.as_str()).await.expect("john's events"));
    assert_eq!(
        john_events,
        [
            (1, "user.created".to_owned()),
            (2, "user.code.issued".to_owned())
        ]
    );
    assert!(
        store
            .events(nobody.as_str())
            .await
            .expect("no events")
            .is_empty()
    );
    drop(store);

    // The next event a user's transaction appends chains on to the newest the row names.
    let connection = rusqlite::Connection::open(&path).expect("the database opens");
    let newest: (i64, Option<i64>) = connection
        .query_row(
            "SELECT events.sequence, users.last_event FROM users JOIN events ON events.id = users.last_event \
             WHERE users.id = ?1",
            [jane.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("jane's row names an event");
    assert_eq!(newest.0, 3, "the newest by sequence, not by time");
    let backwards = count(
        &connection,
        "SELECT COUNT(*) FROM events WHERE previous >= id",
    );
    assert_eq!(backwards, 0, "every link points to an earlier event");
    let unchained = count(
        &connection,
        "SELECT COUNT(*) FROM events WHERE previous IS NULL",
    );
    assert_eq!(unchained, 2, "only each user's first event starts a chain");
}

/// Each user's messages, once found through an index on the user, are chained from their row.
#[tokio::test]
async fn upgrading_to_messages_chained_by_user_keeps_each_users_messages() {
    use enroll_core::ids::{MessageId, OrgId, UserId};
    use enroll_core::ports::{MessageFilter, Outbox as _};

    let org = OrgId::generate();
    let (jane, john, nobody) = (UserId::generate(), UserId::generate(), UserId::generate());
    let message = |n: u32| format!("ms-{n:05}-00000-0000000000000000");
    // Interleaved in time, one written with the clock set back, one to an address without an
    // account.
    let path = database_before(
        "0012_messages_chained_by_user.sql",
        &org,
        &[
            (&jane, "jane@example.com", 0),
            (&john, "john@example.com", 0),
            (&nobody, "nobody@example.com", 0),
        ],
        &format!(
            "INSERT INTO outbox (id, org_id, user_id, template, locale, recipient, state, attempts,
                                 next_attempt_at, created_at)
                 VALUES ('{m1}', '{org}', '{jane}', 'registration', 'en', 'jane@example.com', 'sent', 1, 100, 100),
                        ('{m2}', '{org}', '{john}', 'registration', 'en', 'john@example.com', 'sent', 1, 200, 200),
                        ('{m3}', '{org}', NULL, 'no_account', 'en', 'who@example.com', 'sent', 1, 250, 250),
                        ('{m4}', '{org}', '{jane}', 'registration', 'en', 'jane@example.com', 'queued', 0, 300, 300),
                        ('{m5}', '{org}', '{jane}', 'registration', 'en', 'jane@example.com', 'queued', 0, 150, 150);",
            m1 = message(1),
            m2 = message(2),
            m3 = message(3),
            m4 = message(4),
            m5 = message(5),
        ),
    );

    let store = SqliteStore::open(&path)
        .await
        .expect("the store opens and migrates");
    let of = |user: &UserId| {
        let filter = MessageFilter {
            user_id: Some(user.clone()),
            ..MessageFilter::default()
        };
        let store = store.clone();
        async move {
            let listed = store.messages(&filter).await.expect("the user's messages");
            listed
                .into_iter()
                .map(|message| message.id)
                .collect::<Vec<MessageId>>()
        }
    };
    let ids = |numbers: &[u32]| -> Vec<MessageId> {
        numbers
            .iter()
            .map(|&n| MessageId::from_trusted(message(n)))
            .collect()
    };
    assert_eq!(of(&jane).await, ids(&[4, 5, 1]), "newest first by time");
    assert_eq!(of(&john).await, ids(&[2]));
    assert!(of(&nobody).await.is_empty());
    drop(store);

    // The next message queued for a user chains on to the newest the row names.
    let connection = rusqlite::Connection::open(&path).expect("the database opens");
    let newest: Option<String> = connection
        .query_row(
            "SELECT last_message FROM users WHERE id = ?1",
            [jane.as_str()],
            |row| row.get(0),
        )
        .expect("jane's row");
    assert_eq!(newest, Some(message(4)), "the newest by time");
    let indexes = count(
        &connection,
        "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name = 'outbox_by_user'",
    );
    assert_eq!(indexes, 0, "the index by user is gone");
}

/// A database a newer build migrated further is refused, not half used.
#[tokio::test]
async fn a_schema_newer_than_the_build_is_refused() {
    let dir = Box::leak(Box::new(
        tempfile::tempdir().expect("a temporary directory"),
    ));
    let path = dir.path().join("enroll.db");
    drop(SqliteStore::open(&path).await.expect("the store opens"));
    let connection = rusqlite::Connection::open(&path).expect("the database opens");
    let version: u32 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("a schema version");
    connection
        .pragma_update(None, "user_version", version + 1)
        .expect("a newer version is recorded");
    drop(connection);
    match SqliteStore::open(&path).await {
        Err(error) => assert!(
            format!("{error:?}").contains("newer than this build"),
            "{error:#}"
        ),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}
