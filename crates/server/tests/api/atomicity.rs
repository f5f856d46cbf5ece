//! Reliability target 26: a send is one transaction. A fail point (a trigger that aborts the
//! statement) at each write of a resend (the new code's place in the user's row, the code it
//! replaces, its event, its outbox row, the address's cooldown, the user's sequence) and of a
//! user's creation fails the request and leaves the database as it was; without it, the same
//! request succeeds.

use serde_json::json;
use sqlx::Connection as _;

use crate::helpers::{Db, Options, TestApp, fresh_postgres_database};

/// The writes of a resend, as (table, operation) pairs a trigger can fail. Both stores keep the
/// current code in the user's row and append the one it replaces, and every code's id: the
/// user's row (the code's place and the user's sequence, one statement on PostgreSQL and two on
/// SQLite), the replaced code, the new code's id, its event, its email, the address's cooldown.
const RESEND_WRITES: &[(&str, &str)] = &[
    ("users", "UPDATE"),
    ("past_codes", "INSERT"),
    ("code_ids", "INSERT"),
    ("events", "INSERT"),
    ("outbox", "INSERT"),
    ("cooldowns", "INSERT"),
];

/// The writes of a user's creation with its email.
const CREATION_WRITES: &[(&str, &str)] = &[
    ("users", "INSERT"),
    ("users", "UPDATE"),
    ("code_ids", "INSERT"),
    ("events", "INSERT"),
    ("outbox", "INSERT"),
    ("cooldowns", "INSERT"),
];

/// What a failed request must not change, given how many codes there are and how many are
/// active.
fn footprint(codes: &str, active_codes: &str) -> String {
    format!(
        "SELECT (SELECT COUNT(*) FROM users) || '/' || ({codes}) || '/' || ({active_codes}) || '/' || \
         (SELECT COUNT(*) FROM events) || '/' || (SELECT COUNT(*) FROM outbox) || '/' || \
         (SELECT COALESCE(SUM(sequence), 0) FROM users) || '/' || \
         (SELECT COALESCE(SUM(sends), 0) FROM cooldowns)"
    )
}

enum Database {
    Sqlite(rusqlite::Connection),
    Postgres(sqlx::PgConnection),
}

impl Database {
    async fn run(&mut self, sql: &str) {
        match self {
            Self::Sqlite(connection) => connection.execute_batch(sql).unwrap(),
            Self::Postgres(connection) => {
                sqlx::raw_sql(sql).execute(&mut *connection).await.unwrap();
            }
        }
    }

    async fn footprint(&mut self) -> String {
        let sql = footprint(
            "SELECT COUNT(*) FROM code_ids",
            "SELECT COALESCE(SUM( \
                 CASE WHEN registration_code_state = 'active' THEN 1 ELSE 0 END \
                 + CASE WHEN email_verification_code_state = 'active' THEN 1 ELSE 0 END \
                 + CASE WHEN password_reset_code_state = 'active' THEN 1 ELSE 0 END), 0) \
             FROM users",
        );
        match self {
            Self::Sqlite(connection) => connection.query_row(&sql, [], |row| row.get(0)).unwrap(),
            Self::Postgres(connection) => sqlx::query_scalar(&sql)
                .fetch_one(&mut *connection)
                .await
                .unwrap(),
        }
    }

    async fn fail_on(&mut self, table: &str, operation: &str) {
        let sql = match self {
            Self::Sqlite(_) => format!(
                "CREATE TRIGGER fail_point BEFORE {operation} ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'fail point'); END;"
            ),
            Self::Postgres(_) => format!(
                "CREATE TRIGGER fail_point BEFORE {operation} ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION fail_point();"
            ),
        };
        self.run(&sql).await;
    }

    async fn clear(&mut self, table: &str) {
        let sql = match self {
            Self::Sqlite(_) => "DROP TRIGGER fail_point;".to_owned(),
            Self::Postgres(_) => format!("DROP TRIGGER fail_point ON {table};"),
        };
        self.run(&sql).await;
    }
}

async fn open(db: Db) -> (TestApp, Database) {
    let database_url = match db {
        Db::Postgres => Some(fresh_postgres_database().await),
        Db::Sqlite => None,
    };
    let url = database_url.clone();
    let app = TestApp::spawn_with(Options {
        db: Db::Sqlite,
        settings: Box::new(move |settings| {
            settings.cooldown_seconds = 0;
            settings.max_emails_per_client_per_hour = 0;
            if let Some(url) = url {
                settings.database_url = Some(url);
            }
        }),
        ..Options::default()
    })
    .await;
    let database = match database_url {
        Some(url) => {
            let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(
                "CREATE FUNCTION fail_point() RETURNS trigger AS $$ \
                 BEGIN RAISE EXCEPTION 'fail point'; END $$ LANGUAGE plpgsql;",
            )
            .execute(&mut connection)
            .await
            .unwrap();
            Database::Postgres(connection)
        }
        None => Database::Sqlite(
            rusqlite::Connection::open(app.data_dir.path().join("enroll.db")).unwrap(),
        ),
    };
    (app, database)
}

async fn sends_are_all_or_nothing_on(db: Db) {
    let (app, mut database) = open(db).await;
    app.create_user("jane@example.com").await;
    let resend = json!({"username": "jane@example.com", "orgId": app.org_id});
    let bearer = format!("Bearer {}", app.admin_token);
    let creation = json!({
        "profile": {"givenName": "A", "familyName": "B"},
        "email": {"email": "ada@example.com"},
    })
    .to_string();
    for (request, writes) in [("resend", RESEND_WRITES), ("creation", CREATION_WRITES)] {
        for &(table, operation) in writes {
            let before = database.footprint().await;
            database.fail_on(table, operation).await;
            let reply = match request {
                "resend" => app.resend(&resend).await,
                _ => {
                    app.post(
                        "/v2/users/human",
                        creation.clone(),
                        &[("authorization", &bearer)],
                    )
                    .await
                }
            };
            database.clear(table).await;
            assert!(
                reply.status >= 500 && !reply.body.contains("fail point"),
                "a {request} with {operation} on {table} failing: {} {}",
                reply.status,
                reply.body
            );
            assert_eq!(
                database.footprint().await,
                before,
                "a {request} with {operation} on {table} failing leaves nothing behind"
            );
        }
    }
    // Without fail points both go through, each with its code and its email.
    let before = app.outbox_len().await;
    assert_eq!(app.resend(&resend).await.status, 200);
    let added = app
        .post("/v2/users/human", creation, &[("authorization", &bearer)])
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(app.outbox_len().await, before + 2);
    let footprint = database.footprint().await;
    let active_codes = footprint.split('/').nth(2).unwrap();
    assert_eq!(active_codes, "2", "one active code per user: {footprint}");
}

#[tokio::test]
async fn sends_are_all_or_nothing_on_sqlite() {
    sends_are_all_or_nothing_on(Db::Sqlite).await;
}

#[tokio::test]
async fn sends_are_all_or_nothing_on_postgres() {
    sends_are_all_or_nothing_on(Db::Postgres).await;
}
