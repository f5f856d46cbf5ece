//! The store conformance suite on PostgreSQL, a fresh database per test, plus what only a
//! shared database can show: several instances (pools) working on the same rows.
//!
//! The server is `ENROLL_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); the role needs `CREATEDB`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use enroll_core::Error;
use enroll_core::clock::{Clock, ManualClock, SystemClock, Timestamp};
use enroll_core::ids::MessageId;
use enroll_core::model::UserState;
use enroll_core::ports::{Outbox as _, Store};
use enroll_core::random;
use enroll_core::rules::CodeUse;
use enroll_core::secret::ServerSecret;
use enroll_store_postgres::PostgresStore;
use enroll_testkit::conformance::{Harness, LEASE, all_at_once, describe};
use sqlx::Connection as _;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Test databases older than this are dropped by the next run: whatever left them behind
/// (a failed or interrupted run) is over.
const STALE_AFTER_SECONDS: i64 = 3600;

fn server_url() -> String {
    std::env::var("ENROLL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` with its database (the path) replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |index| index + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

fn created_at_seconds(database: &str) -> Option<i64> {
    let rest = database.strip_prefix("enroll_test_")?;
    let (seconds, suffix) = rest.split_once('_')?;
    let well_formed = suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then(|| seconds.parse().ok()).flatten()
}

/// Drops the test databases of runs long finished; once per test binary.
async fn drop_stale_databases(admin: &mut sqlx::PgConnection, now_seconds: i64) {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'enroll\\_test\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    for name in names {
        let stale = created_at_seconds(&name)
            .is_some_and(|created| now_seconds - created > STALE_AFTER_SECONDS);
        if stale {
            // Best effort: another run may be dropping it at the same moment.
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut *admin)
                .await;
        }
    }
}

/// A new, empty database on the test server; returns its URL.
async fn fresh_database() -> String {
    let url = server_url();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|error| {
        panic!("the PostgreSQL test server at {url} is reachable (ENROLL_TEST_POSTGRES_URL): {error}")
    });
    let now_seconds = SystemClock.now().as_millis() / 1000;
    drop_stale_databases(&mut admin, now_seconds).await;
    let name = format!(
        "enroll_test_{now_seconds}_{}",
        random::characters(b"0123456789abcdef", 16)
    );
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("a test database is created");
    let _ = admin.close().await;
    with_database(&url, &name)
}

async fn fresh_store() -> Arc<dyn Store> {
    let url = fresh_database().await;
    Arc::new(
        PostgresStore::connect(&url, 8)
            .await
            .expect("the store connects and migrates"),
    )
}

enroll_testkit::conformance_suite!(fresh_store);

/// Two instances started at once on one new database: both migrate (one waits for the other)
/// and the schema is recorded once.
async fn two_instances() -> (String, PostgresStore, PostgresStore) {
    let url = fresh_database().await;
    let (a, b) = tokio::join!(
        PostgresStore::connect(&url, 8),
        PostgresStore::connect(&url, 8)
    );
    let (a, b) = (
        a.expect("the first instance starts"),
        b.expect("the second instance starts"),
    );
    (url, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let (url, a, _b) = two_instances().await;
    a.migrate().await.expect("migrating again is a no-op");
    let mut connection = sqlx::PgConnection::connect(&url).await.expect("connects");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut connection)
            .await
            .expect("the migrations are recorded");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("the migrations directory")
        .count();
    let expected: Vec<i64> = (1..=i64::try_from(files).unwrap()).collect();
    assert_eq!(versions, expected, "each migration once");
}

/// A database a newer build migrated further is refused, not half used.
#[tokio::test]
async fn a_schema_newer_than_the_build_is_refused() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url, 2)
        .await
        .expect("the store connects and migrates");
    store.close().await;
    let mut connection = sqlx::PgConnection::connect(&url).await.expect("connects");
    sqlx::query(
        "INSERT INTO schema_migrations (version, applied_at) \
         SELECT MAX(version) + 1, 0 FROM schema_migrations",
    )
    .execute(&mut connection)
    .await
    .expect("a newer version is recorded");
    let refused = PostgresStore::connect(&url, 2).await.map(drop);
    match refused {
        Err(error) => assert!(
            format!("{error:?}").contains("newer than this build"),
            "{error:#}"
        ),
        Ok(()) => panic!("a newer schema was accepted"),
    }
}

/// A new database at the schema before `next` (a file of `migrations/`), made with the
/// migrations the directory holds before it and recorded as a store records them, with the
/// organisation `org`, its `users` (id, username and event sequence) and the other `rows`
/// (SQL) written in it; returns its URL.
async fn database_before(
    next: &str,
    org: &enroll_core::ids::OrgId,
    users: &[(&enroll_core::ids::UserId, &str, i64)],
    rows: &str,
) -> String {
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("the migrations directory")
        .map(|entry| entry.expect("a migration file").path())
        .collect();
    files.sort();
    let position = files
        .iter()
        .position(|path| path.ends_with(next))
        .unwrap_or_else(|| panic!("{next} in {files:?}"));
    let url = fresh_database().await;
    let mut old = sqlx::PgConnection::connect(&url).await.expect("connects");
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut old)
    .await
    .expect("the migrations are recorded");
    for (version, file) in (1_i64..).zip(&files[..position]) {
        sqlx::raw_sql(&std::fs::read_to_string(file).expect("a migration"))
            .execute(&mut old)
            .await
            .expect("an old migration applies");
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)")
            .bind(version)
            .execute(&mut old)
            .await
            .expect("the migration is recorded");
    }
    let users: Vec<String> = users
        .iter()
        .map(|(id, username, sequence)| {
            format!("('{id}', '{org}', '{username}', 'EndUser', 'Pending', {sequence}, 0, 0)")
        })
        .collect();
    sqlx::raw_sql(&format!(
        "INSERT INTO orgs (id, name, default_locale, created_at) VALUES ('{org}', 'Acme', 'en', 0);
         INSERT INTO users (id, org_id, username, kind, state, sequence, created_at, updated_at)
             VALUES {};
         {rows}",
        users.join(", ")
    ))
    .execute(&mut old)
    .await
    .expect("the old rows are written");
    let _ = old.close().await;
    url
}

/// A database made by the schema that kept every code in `codes` (before migration 9) keeps
/// every code with its state, listed in the order of issue and found by id: the current one of
/// each purpose in the user's row, the ones they replaced chained behind it. The active code
/// is the current one even where an instance's clock put a replaced code after it.
#[tokio::test]
async fn upgrading_to_current_codes_in_user_rows_keeps_every_code() {
    let old = enroll_testkit::upgrades::CodesBeforeUserRows::new();
    let codes: Vec<String> = old
        .codes
        .iter()
        .map(|code| {
            format!(
                "('{}', '{}', '{}', decode(repeat('00', 32), 'hex'), '{}', {}, {}, 9000)",
                code.user,
                code.id,
                code.purpose.as_str(),
                code.state.as_str(),
                code.failed_attempts,
                code.created_at
            )
        })
        .collect();
    let url = database_before(
        "0009_current_codes_in_user_rows.sql",
        &old.org,
        &old.users(),
        &format!(
            "INSERT INTO codes (user_id, id, purpose, hash, state, failed_attempts, created_at, expires_at) \
             VALUES {};",
            codes.join(", ")
        ),
    )
    .await;

    let store = PostgresStore::connect(&url, 2)
        .await
        .expect("the store connects and migrates");
    old.assert_kept(&store).await;
    store.close().await;

    let mut migrated = sqlx::PgConnection::connect(&url).await.expect("connects");
    let current: (Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT registration_code_id, email_verification_code_id, password_reset_code_id \
         FROM users WHERE id = $1",
    )
    .bind(old.jane.as_str())
    .fetch_one(&mut migrated)
    .await
    .expect("jane's row");
    assert_eq!(
        current,
        (
            None,
            Some(old.id(&old.jane, 4).to_string()),
            Some(old.id(&old.jane, 2).to_string())
        ),
        "the active code of each purpose is the current one"
    );
    let chain: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE chain(id) AS ( \
             SELECT last_past_code FROM users WHERE id = $1 \
             UNION ALL \
             SELECT past.previous FROM past_codes past JOIN chain ON past.id = chain.id) \
         SELECT id FROM chain WHERE id IS NOT NULL",
    )
    .bind(old.jane.as_str())
    .fetch_all(&mut migrated)
    .await
    .expect("jane's past codes");
    assert_eq!(
        chain,
        old.janes_past_codes(),
        "the user's row names the newest replaced code, and each the one before"
    );
    let counts: (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM past_codes), (SELECT COUNT(*) FROM code_ids)")
            .fetch_one(&mut migrated)
            .await
            .expect("the counts");
    assert_eq!(counts, (2, 5));
    assert_one_active_code_per_user_and_purpose(&mut migrated, &old.john).await;
}

/// The schema's rule of one active code per user and purpose (migration 9), checked on the
/// database of `connection`, where `user`'s current registration code is active and another
/// user has replaced codes.
async fn assert_one_active_code_per_user_and_purpose(
    connection: &mut sqlx::PgConnection,
    user: &enroll_core::ids::UserId,
) {
    async fn run(
        connection: &mut sqlx::PgConnection,
        sql: &str,
        user: &enroll_core::ids::UserId,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(sql)
            .bind(user.as_str())
            .execute(connection)
            .await
            .map(drop)
    }
    for (sql, why) in [
        (
            "UPDATE users SET registration_code_id = 'cd-extra', registration_code_state = 'active' \
             WHERE id = $1",
            "a second active code does not take the place of the active one",
        ),
        (
            "INSERT INTO past_codes (id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at) \
             VALUES ('cd-behind', $1, 'registration', decode(repeat('00', 32), 'hex'), 'active', 0, 3000, 9000)",
            "nor goes behind it",
        ),
        (
            "UPDATE past_codes SET failed_attempts = 0 WHERE user_id <> $1",
            "a replaced code (another user's) does not change",
        ),
    ] {
        let outcome = run(connection, sql, user).await;
        assert!(
            matches!(&outcome, Err(sqlx::Error::Database(error))
                if error.code().is_some_and(|code| code.starts_with("23"))),
            "{why}: {outcome:?}"
        );
    }
    run(
        connection,
        "UPDATE users SET registration_code_state = 'used' WHERE id = $1",
        user,
    )
    .await
    .expect("the active code is used");
    let outcome = run(
        connection,
        "UPDATE users SET registration_code_state = 'active' WHERE id = $1",
        user,
    )
    .await;
    assert!(
        matches!(&outcome, Err(sqlx::Error::Database(error))
            if error.code().as_deref() == Some("23514")),
        "a code is active only from its issue: {outcome:?}"
    );
    run(
        connection,
        "UPDATE users SET registration_code_id = 'cd-next', registration_code_state = 'active' \
         WHERE id = $1",
        user,
    )
    .await
    .expect("a new code takes the place of one no longer active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_cooldowns_and_never_share_claims() {
    let (_url, a, b) = two_instances().await;
    let clock = Arc::new(ManualClock::starting_now());
    let secret = ServerSecret::generate();
    let instances = Arc::new([
        Harness::with(Arc::new(a), Arc::clone(&clock), &secret),
        Harness::with(Arc::new(b), Arc::clone(&clock), &secret),
    ]);
    for instance in instances.iter() {
        instance.warm_up().await;
    }
    let org = instances[0].org("Acme").await;
    let created = instances[1].user(&org, "jane").await;
    clock.advance(Duration::from_secs(61));

    // Resends for one user, split across the instances.
    let results = all_at_once(40, |index| {
        let instances = Arc::clone(&instances);
        let org = org.id.clone();
        async move { instances[index % 2].resend(&org, "jane").await }
    })
    .await;
    let ok = results.iter().filter(|result| result.is_ok()).count();
    let cooled = results
        .iter()
        .filter(|result| matches!(result, Err(Error::Cooldown { .. })))
        .count();
    assert_eq!(
        (ok, cooled),
        (1, 39),
        "one resend across both instances: {:?}",
        results.iter().map(describe).collect::<Vec<_>>()
    );
    let codes = instances[0]
        .store
        .codes(&created.user.id)
        .await
        .expect("codes");
    assert_eq!(codes.len(), 2);
    instances[1].history(&created.user.id).await;

    // Resends for an address without an account, split likewise.
    let results = all_at_once(20, |index| {
        let instances = Arc::clone(&instances);
        let org = org.id.clone();
        async move { instances[index % 2].resend(&org, "nobody").await }
    })
    .await;
    let not_found = results
        .iter()
        .filter(|result| matches!(result, Err(Error::UserNotFound)))
        .count();
    assert_eq!(
        not_found,
        1,
        "{:?}",
        results.iter().map(describe).collect::<Vec<_>>()
    );

    // Claims from both instances, in small batches, until the outbox is drained.
    for index in 0..30 {
        instances[index % 2]
            .user(&org, &format!("user{index}"))
            .await;
    }
    let expected: HashSet<MessageId> = instances[0]
        .all_messages()
        .await
        .into_iter()
        .map(|message| message.id)
        .collect();
    assert_eq!(expected.len(), 32);
    let claimed = all_at_once(2, |index| {
        let instances = Arc::clone(&instances);
        async move {
            let instance = &instances[index];
            let mut mine = Vec::new();
            loop {
                let now = instance.now();
                let batch = instance
                    .store
                    .claim(now, now.plus(LEASE), 2)
                    .await
                    .expect("a claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|message| message.id));
            }
        }
    })
    .await;
    let first: HashSet<&MessageId> = claimed[0].iter().collect();
    let second: HashSet<&MessageId> = claimed[1].iter().collect();
    assert_eq!(
        first.len() + second.len(),
        claimed[0].len() + claimed[1].len()
    );
    assert!(
        first.is_disjoint(&second),
        "no message goes to both instances"
    );
    let all: HashSet<MessageId> = claimed.iter().flatten().cloned().collect();
    assert_eq!(all, expected, "every message is claimed");
}

/// A resend and a verification write their user's row once, its code and its own fields
/// together. A second write of the row in one transaction would check its organisation again
/// (the key's version is the transaction's own) and share-lock the organisation's row, which
/// every concurrent transaction of that organisation would lock too; the lock would be seen as
/// the row's `xmax`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_and_verifications_leave_the_organisation_row_unlocked() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url, 2)
        .await
        .expect("the store connects and migrates");
    let h = Harness::new(Arc::new(store));
    let org = h.org("Acme").await;
    h.user(&org, "jane").await;
    let mut connection = sqlx::PgConnection::connect(&url).await.expect("connects");
    let org_lock = async |connection: &mut sqlx::PgConnection| -> String {
        sqlx::query_scalar("SELECT xmax::text FROM orgs WHERE id = $1")
            .bind(org.id.as_str())
            .fetch_one(connection)
            .await
            .expect("the organisation's row")
    };
    let before = org_lock(&mut connection).await;

    h.advance(Duration::from_secs(61));
    let issued = h.resend(&org.id, "jane").await.expect("the resend");
    assert_eq!(org_lock(&mut connection).await, before, "after the resend");

    let code = h.code(&issued.message_id).await;
    h.verify(&org.id, "jane", &code, CodeUse::Consume)
        .await
        .expect("the verification");
    assert_eq!(
        org_lock(&mut connection).await,
        before,
        "after the verification"
    );
    let verified = h.stored_user(&issued.user.id).await;
    assert_eq!(
        (verified.state, verified.sequence),
        (UserState::Registered, issued.user.sequence + 2),
        "the user's fields, written with the code (two events: the code used, the user registered)"
    );
}

/// Scans of the outbox's due index and the entries they read, once `scans_at_least` are
/// reported.
async fn due_index_reads(connection: &mut sqlx::PgConnection, scans_at_least: i64) -> (i64, i64) {
    let mut counts = (0, 0);
    for _ in 0..100 {
        counts = sqlx::query_as(
            "SELECT idx_scan, idx_tup_read FROM pg_stat_user_indexes \
             WHERE indexrelname = 'outbox_due_at'",
        )
        .fetch_one(&mut *connection)
        .await
        .expect("the index's counts");
        if counts.0 >= scans_at_least {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the claims' index scans were never all reported: (scans, entries) {counts:?}");
}

/// The statistics say the outbox is empty, as they do after a quiet spell, and thousands of
/// messages have been queued since, some of them claimed and in flight: each claim still walks
/// the due index to its limit, stepping over none of the messages in flight, and `next_due`
/// reads one entry. (A plan that sorted the queue, or a walk that stepped over the messages in
/// flight, read the whole queue on each claim, and delivery fell behind under load.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_read_only_the_messages_they_take() {
    const QUEUED: i64 = 5_000;
    const CLAIMS: i64 = 8;
    const LIMIT: u32 = 8;
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url, 1)
        .await
        .expect("the store connects and migrates");
    let mut connection = sqlx::PgConnection::connect(&url).await.expect("connects");
    sqlx::query("ANALYZE outbox")
        .execute(&mut connection)
        .await
        .expect("the empty outbox's statistics");
    sqlx::query(
        "INSERT INTO outbox (id, org_id, user_id, template, locale, recipient, state, attempts, \
                             next_attempt_at, created_at) \
         SELECT 'message-' || n, 'org', 'user-' || n, 'registration', 'en', \
                'user-' || n || '@example.com', 'queued', 0, n, n \
         FROM generate_series(1, $1) AS n",
    )
    .bind(QUEUED)
    .execute(&mut connection)
    .await
    .expect("messages are queued");
    let now = Timestamp::from_millis(QUEUED + 1);
    let mut claimed = Vec::new();
    for _ in 0..CLAIMS {
        let batch = store
            .claim(now, now.plus(LEASE), LIMIT)
            .await
            .expect("a claim");
        assert_eq!(batch.len(), LIMIT as usize, "a full claim");
        claimed.extend(batch.into_iter().map(|message| message.id));
    }
    assert_eq!(
        claimed.iter().collect::<HashSet<_>>().len(),
        claimed.len(),
        "no message is claimed twice"
    );
    assert_eq!(
        claimed.first().map(MessageId::as_str),
        Some("message-1"),
        "the oldest first"
    );
    assert_eq!(
        store.next_due().await.expect("next due"),
        Some(Timestamp::from_millis(
            i64::try_from(claimed.len()).unwrap() + 1
        )),
        "the oldest message not in flight"
    );
    store.close().await;
    // A backend reports its counts when idle for a while, or when it ends.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut connection)
    .await
    .expect("the store's connections end");
    let (scans, read) = due_index_reads(&mut connection, CLAIMS + 1).await;
    // Each claim also steps over the entries its predecessors left behind (a claimed message's
    // entry moves to its lease's end, and the old one lingers until it is found dead, which a
    // snapshot held anywhere in the database, an automatic ANALYZE's say, can put off for the
    // whole test): at most all of them, and `next_due` over every claimed message's.
    let taken = i64::try_from(claimed.len()).unwrap();
    assert!(
        read <= taken * (CLAIMS + 1) / 2 + taken + 1,
        "{scans} scans of the due index read {read} entries to take {taken} messages \
         with {QUEUED} queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    // Port 1 on the loopback: nothing listens there.
    match PostgresStore::connect("postgres://postgres@127.0.0.1:1/postgres", 1).await {
        Err(Error::Unavailable(_)) => {}
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected Unavailable, but connected"),
    }
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@db:5432/app?sslmode=disable", "x"),
        "postgres://u:p@db:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://db", "x"), "postgres://db/x");
    assert_eq!(
        created_at_seconds("enroll_test_1700000000_0123456789abcdef"),
        Some(1_700_000_000)
    );
    assert_eq!(created_at_seconds("enroll_test_other"), None);
}
