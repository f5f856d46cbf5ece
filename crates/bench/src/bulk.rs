//! Bulk users for the size scenario: seeding a million users through the API would take many
//! minutes, so the rows of one seeded Dfns user (`user0`) are copied with SQL, in one
//! transaction, as `user<n>@bench.example` for every missing `n`.
//!
//! Every row that names the template user is copied: its `users` row, its code (on SQLite,
//! kept in that row, and its id in `code_ids`), its events, its outbox message (settled) and
//! its cooldown. Each column is copied as it is (but rowids and identity columns, which the
//! database numbers, and on SQLite the chain of a user's events, rebuilt for the copies),
//! except that in text the template's user id, username, code id, message id and cooldown
//! subject become the copy's, and a code's hash is random bytes. So the copies have the shape
//! the store writes, whatever columns it has. Ids are well formed (`us-xxxxx-xxxxx-<16>`,
//! lowercase hexadecimal, which is base36): user ids random; code and message ids, which the server
//! begins with their creation time, begin with the template's and end at random, so they
//! sort before those the run creates. Usernames are unique. The copies' cooldown subjects
//! are random too (a keyed digest the server computes): a resend to a copied user finds no
//! cooldown row and writes one, as for a user's first send.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use enroll_core::email::EmailAddress;
use enroll_core::ids::OrgId;
use enroll_core::secret::ServerSecret;
use sqlx::Connection as _;

use crate::seed::{SECRET, dfns_username};

/// The tables copied, and the column that names the template user in each. Both stores keep
/// a user's current code in the user's row and every code's id in `code_ids`.
const TABLES: &[(&str, Reference)] = &[
    ("users", Reference::UserId("id")),
    ("code_ids", Reference::UserId("user_id")),
    ("events", Reference::UserId("aggregate_id")),
    ("outbox", Reference::UserId("user_id")),
    ("cooldowns", Reference::Subject("subject")),
];

#[derive(Clone, Copy)]
enum Reference {
    UserId(&'static str),
    Subject(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// One column of a table.
struct Column {
    name: String,
    text: bool,
    blob: bool,
}

/// The template user's values, each replaced by the copy's (a column of `bulk_ids`).
struct Template {
    user_id: String,
    username: String,
    code_id: String,
    message_id: String,
    subject: String,
}

impl Template {
    fn replacements(&self) -> [(&str, &'static str); 5] {
        [
            (&self.user_id, "b.user_id"),
            (&self.username, "b.username"),
            (&self.code_id, "b.code_id"),
            (&self.message_id, "b.message_id"),
            (&self.subject, "b.subject"),
        ]
    }

    fn reference(&self, reference: Reference) -> (&'static str, &str) {
        match reference {
            Reference::UserId(column) => (column, &self.user_id),
            Reference::Subject(column) => (column, &self.subject),
        }
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `INSERT INTO table (…) SELECT … FROM bulk_ids b CROSS JOIN (the template's rows) t`, the
/// template's rows read once: a table without an index on its user (`code_ids`) would be read
/// through again for every copy, as it grows.
fn copy_statement(
    dialect: Dialect,
    table: &str,
    columns: &[Column],
    template: &Template,
    reference: Reference,
) -> String {
    let names: Vec<&str> = columns.iter().map(|column| column.name.as_str()).collect();
    let values: Vec<String> = columns
        .iter()
        .map(|column| {
            let source = format!("t.{}", column.name);
            if column.blob && column.name.ends_with("hash") {
                match dialect {
                    Dialect::Sqlite => "randomblob(32)".to_owned(),
                    Dialect::Postgres => {
                        "decode(md5(random()::text) || md5(random()::text), 'hex')".to_owned()
                    }
                }
            } else if column.text {
                template
                    .replacements()
                    .iter()
                    .fold(source, |expression, (from, to)| {
                        format!("replace({expression}, {}, {to})", quote(from))
                    })
            } else {
                source
            }
        })
        .collect();
    let (column, value) = template.reference(reference);
    format!(
        "WITH t AS MATERIALIZED (SELECT * FROM {table} WHERE {column} = {}) \
         INSERT INTO {table} ({}) SELECT {} FROM bulk_ids b CROSS JOIN t",
        quote(value),
        names.join(", "),
        values.join(", ")
    )
}

/// The cooldown subject the server computes for the template user.
fn subject(org_id: &str, username: &str) -> anyhow::Result<String> {
    let org = OrgId::parse(org_id).context("a well-formed organisation id")?;
    Ok(ServerSecret::from_hex(SECRET)?
        .code_hasher()
        .cooldown_subject(&org, &EmailAddress::parse(username)?))
}

/// Adds users `user<from>` … `user<to - 1>` to the SQLite database `file`; returns the
/// file's size after.
pub fn sqlite(file: &Path, org_id: &str, from: usize, to: usize) -> anyhow::Result<u64> {
    if to <= from {
        return Ok(std::fs::metadata(file)?.len());
    }
    let mut connection = rusqlite::Connection::open(file)?;
    connection.busy_timeout(Duration::from_secs(30))?;
    connection.pragma_update(None, "synchronous", "OFF")?;
    connection.pragma_update(None, "cache_size", -512_000)?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    let username = dfns_username(0);
    let one = |sql: &str, parameter: &str| -> anyhow::Result<Vec<String>> {
        let mut statement = connection.prepare(sql)?;
        let rows = statement.query_map([parameter], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    };
    let user_id = one("SELECT id FROM users WHERE username = ?1", &username)?
        .pop()
        .context("the template user is not in the database")?;
    let template = Template {
        code_id: single(
            one("SELECT id FROM code_ids WHERE user_id = ?1", &user_id)?,
            "code",
        )?,
        message_id: single(
            one("SELECT id FROM outbox WHERE user_id = ?1", &user_id)?,
            "outbox message",
        )?,
        subject: subject(org_id, &username)?,
        user_id,
        username,
    };
    let mut tables = Vec::new();
    for (table, reference) in TABLES {
        let mut statement = connection.prepare(&format!("PRAGMA table_info({table})"))?;
        let described = statement
            .query_map([], |row| {
                let name: String = row.get(1)?;
                let kind: String = row.get(2)?;
                let key_position: i64 = row.get(5)?;
                Ok((name, kind, key_position))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        // A table's `INTEGER PRIMARY KEY` is its rowid: SQLite numbers the copies itself, as
        // PostgreSQL does its identity columns (left out below).
        let keys = described.iter().filter(|(_, _, key)| *key > 0).count();
        let columns: Vec<Column> = described
            .into_iter()
            .filter(|(_, kind, key)| {
                !(keys == 1 && *key == 1 && kind.eq_ignore_ascii_case("INTEGER"))
            })
            .map(|(name, kind, _)| Column {
                text: kind.eq_ignore_ascii_case("TEXT"),
                blob: kind.eq_ignore_ascii_case("BLOB"),
                name,
            })
            .collect();
        tables.push(copy_statement(
            Dialect::Sqlite,
            table,
            &columns,
            &template,
            *reference,
        ));
    }
    let transaction = connection.transaction()?;
    // Random hexadecimal first, ids made of it after: SQLite evaluates randomblob() once per
    // use, so the parts of one id must come from a stored value.
    transaction.execute_batch(&format!(
        "CREATE TEMP TABLE bulk_random (n INTEGER PRIMARY KEY, u TEXT, c TEXT, m TEXT, s TEXT);
         WITH RECURSIVE seq(n) AS (SELECT {from} UNION ALL SELECT n + 1 FROM seq WHERE n < {last})
         INSERT INTO bulk_random SELECT n, lower(hex(randomblob(13))), lower(hex(randomblob(13))),
             lower(hex(randomblob(13))), lower(hex(randomblob(16))) FROM seq;
         CREATE TEMP TABLE bulk_ids AS SELECT
             'us-' || substr(u, 1, 5) || '-' || substr(u, 6, 5) || '-' || substr(u, 11, 16) AS user_id,
             'user' || n || '@bench.example' AS username,
             {code_prefix} || substr(c, 1, 16) AS code_id,
             {message_prefix} || substr(m, 1, 16) AS message_id,
             s AS subject
             FROM bulk_random ORDER BY n;",
        last = to - 1,
        code_prefix = quote(id_prefix(&template.code_id)),
        message_prefix = quote(id_prefix(&template.message_id)),
    ))?;
    for statement in &tables {
        transaction
            .execute(statement, [])
            .with_context(|| format!("bulk copy failed: {statement}"))?;
    }
    // The copies' events chained as the store chains a user's events (its migration 0011):
    // each to the copy's event before it, the copy's row to its newest.
    transaction.execute_batch(
        "CREATE TEMP TABLE bulk_events AS
             SELECT e.id, e.aggregate_id,
                    LAG(e.id) OVER (PARTITION BY e.aggregate_id ORDER BY e.id) AS previous
             FROM events e JOIN bulk_ids b ON e.aggregate_id = b.user_id;
         UPDATE events SET previous = chained.previous FROM bulk_events AS chained
             WHERE events.id = chained.id;
         UPDATE users SET last_event = newest.id
             FROM (SELECT aggregate_id, MAX(id) AS id FROM bulk_events GROUP BY aggregate_id) AS newest
             WHERE users.id = newest.aggregate_id;
         DROP TABLE bulk_events;",
    )?;
    transaction.execute_batch("DROP TABLE bulk_ids; DROP TABLE bulk_random;")?;
    transaction.commit()?;
    // No ANALYZE: the server never runs it, so its databases have no statistics either.
    connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    drop(connection);
    // Written without syncing: flushed now, or the server's first fsync would write it all
    // (a start of a second on a million users).
    let database = std::fs::File::open(file)?;
    database.sync_all()?;
    Ok(database.metadata()?.len())
}

/// `cd-xxxxx-xxxxx-` of an id: the copies' code and message ids keep the template's first two
/// groups (its creation time, where the server orders them by it) and get random last ones.
fn id_prefix(id: &str) -> &str {
    id.get(..15).unwrap_or(id)
}

fn single(mut values: Vec<String>, what: &str) -> anyhow::Result<String> {
    if values.len() != 1 {
        bail!(
            "the template user has {} {what} rows; the bulk copy expects one",
            values.len()
        );
    }
    values.pop().context("one value")
}

/// Adds users `user<from>` … `user<to - 1>` to the PostgreSQL database at `url`; returns
/// the database's size after.
pub async fn postgres(url: &str, org_id: &str, from: usize, to: usize) -> anyhow::Result<u64> {
    let mut connection = sqlx::PgConnection::connect(url).await?;
    if to <= from {
        return database_size(&mut connection).await;
    }
    let username = dfns_username(0);
    let user_id: String = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(&username)
        .fetch_one(&mut connection)
        .await
        .context("the template user is not in the database")?;
    let code_ids: Vec<String> = sqlx::query_scalar("SELECT id FROM code_ids WHERE user_id = $1")
        .bind(&user_id)
        .fetch_all(&mut connection)
        .await?;
    let message_ids: Vec<String> = sqlx::query_scalar("SELECT id FROM outbox WHERE user_id = $1")
        .bind(&user_id)
        .fetch_all(&mut connection)
        .await?;
    let template = Template {
        code_id: single(code_ids, "code")?,
        message_id: single(message_ids, "outbox message")?,
        subject: subject(org_id, &username)?,
        user_id,
        username,
    };
    let mut tables = Vec::new();
    for (table, reference) in TABLES {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 \
             AND is_identity = 'NO' AND is_generated = 'NEVER' ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&mut connection)
        .await?;
        let columns: Vec<Column> = rows
            .into_iter()
            .map(|(name, kind)| Column {
                text: kind == "text",
                blob: kind == "bytea",
                name,
            })
            .collect();
        tables.push(copy_statement(
            Dialect::Postgres,
            table,
            &columns,
            &template,
            *reference,
        ));
    }
    let mut transaction = connection.begin().await?;
    sqlx::query(&format!(
        "CREATE TEMP TABLE bulk_ids ON COMMIT DROP AS \
         SELECT 'us-' || substr(u, 1, 5) || '-' || substr(u, 6, 5) || '-' || substr(u, 11, 16) AS user_id, \
                'user' || n || '@bench.example' AS username, \
                {code_prefix} || substr(c, 1, 16) AS code_id, \
                {message_prefix} || substr(m, 1, 16) AS message_id, \
                s AS subject \
         FROM (SELECT n, md5(random()::text || n) AS u, md5(random()::text || n) AS c, \
                      md5(random()::text || n) AS m, md5(random()::text || n) AS s \
               FROM generate_series({from}::bigint, {last}::bigint) AS n) r",
        last = to - 1,
        code_prefix = quote(id_prefix(&template.code_id)),
        message_prefix = quote(id_prefix(&template.message_id)),
    ))
    .execute(&mut *transaction)
    .await?;
    for statement in &tables {
        sqlx::query(statement)
            .execute(&mut *transaction)
            .await
            .with_context(|| format!("bulk copy failed: {statement}"))?;
    }
    transaction.commit().await?;
    // What autovacuum would do soon after a load this large.
    sqlx::query("ANALYZE").execute(&mut connection).await?;
    let size = database_size(&mut connection).await?;
    connection.close().await?;
    Ok(size)
}

async fn database_size(connection: &mut sqlx::PgConnection) -> anyhow::Result<u64> {
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(connection)
        .await?;
    Ok(u64::try_from(size).unwrap_or(0))
}
