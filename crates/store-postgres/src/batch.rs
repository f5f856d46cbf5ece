//! Transactions in as few round trips as the protocol allows.
//!
//! A statement with bound parameters (the extended protocol) is one round trip, and so are
//! `BEGIN` and `COMMIT`. The simple protocol takes several statements in one message and runs
//! them one after the other, each exactly as if it had been sent alone: each takes its own
//! snapshot (so a read after a lock sees what the holder of the lock committed), each fires its
//! triggers, and the first that fails stops the rest. A [`Batch`] is such a message. That
//! protocol has no parameters, and parses and plans each statement anew: so each statement is
//! [`Prepared`] once per connection, and the batch `EXECUTE`s it with its values written as
//! typed literals (see [`Value`]), which only the tiny `EXECUTE` has to be parsed for.
//!
//! A hot transaction so takes two round trips: `BEGIN` and the statements that lock and load
//! its state, then the statements of its effects and `COMMIT`.

use std::borrow::Cow;
use std::fmt::Write as _;

use futures_util::TryStreamExt as _;
use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Either, PgConnection, Postgres};

/// A value of a statement: a parameter of a prepared statement, or a literal in a [`Batch`].
#[derive(Debug, Clone)]
pub enum Value<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
    Int4(i32),
    Bytes(Option<Cow<'a, [u8]>>),
}

impl<'a> Value<'a> {
    pub fn text(text: &'a str) -> Self {
        Self::Text(Some(Cow::Borrowed(text)))
    }

    pub fn owned_text(text: String) -> Self {
        Self::Text(Some(Cow::Owned(text)))
    }

    pub fn optional_text(text: Option<&'a str>) -> Self {
        Self::Text(text.map(Cow::Borrowed))
    }

    pub fn int(value: i64) -> Self {
        Self::Int(Some(value))
    }

    pub fn bytes(bytes: &'a [u8]) -> Self {
        Self::Bytes(Some(Cow::Borrowed(bytes)))
    }

    /// Binds the value to a statement of the extended protocol.
    pub fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        match self {
            Self::Text(text) => query.bind(text.map(Cow::into_owned)),
            Self::Int(value) => query.bind(value),
            Self::Int4(value) => query.bind(value),
            Self::Bytes(bytes) => query.bind(bytes.map(Cow::into_owned)),
        }
    }

    /// Writes the value as a literal of its type. Strings are escape strings (`E'...'`), whose
    /// meaning does not depend on `standard_conforming_strings`: every backslash and quote is
    /// doubled, and the connection's encoding is UTF-8, where no byte of a multi-byte
    /// character is a quote or a backslash. A NUL, which no PostgreSQL string can hold, is
    /// refused as a bound parameter holding one would be.
    fn write_literal(&self, sql: &mut String) -> sqlx::Result<()> {
        match self {
            Self::Text(None) => sql.push_str("NULL::text"),
            Self::Text(Some(text)) => {
                if text.contains('\0') {
                    return Err(sqlx::Error::Encode(
                        "a string with a NUL character cannot be stored".into(),
                    ));
                }
                sql.reserve(text.len() + 10);
                sql.push_str("E'");
                for character in text.chars() {
                    match character {
                        '\'' => sql.push_str("''"),
                        '\\' => sql.push_str("\\\\"),
                        other => sql.push(other),
                    }
                }
                sql.push_str("'::text");
            }
            Self::Int(None) => sql.push_str("NULL::bigint"),
            Self::Int(Some(value)) => {
                let _ = write!(sql, "'{value}'::bigint");
            }
            Self::Int4(value) => {
                let _ = write!(sql, "'{value}'::integer");
            }
            Self::Bytes(None) => sql.push_str("NULL::bytea"),
            Self::Bytes(Some(bytes)) => {
                sql.reserve(bytes.len() * 2 + 16);
                sql.push_str("E'\\\\x");
                for byte in bytes.iter() {
                    let _ = write!(sql, "{byte:02x}");
                }
                sql.push_str("'::bytea");
            }
        }
        Ok(())
    }
}

/// A statement prepared on each connection under a name of the store's own (`enroll_…`, apart
/// from sqlx's), with the types of its parameters `$1`, `$2`….
#[derive(Debug)]
pub struct Prepared {
    pub name: Cow<'static, str>,
    pub parameters: Cow<'static, str>,
    pub sql: String,
}

impl Prepared {
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        parameters: impl Into<Cow<'static, str>>,
        sql: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            parameters: parameters.into(),
            sql: sql.into(),
        }
    }
}

/// The `PREPARE`s of `statements`, as one message for [`sqlx::raw_sql`].
pub fn prepare_all<'a>(statements: impl IntoIterator<Item = &'a Prepared>) -> String {
    let mut sql = String::new();
    for statement in statements {
        let _ = writeln!(
            sql,
            "PREPARE {} ({}) AS {};",
            statement.name, statement.parameters, statement.sql
        );
    }
    sql
}

/// A prepared statement and its values.
#[derive(Debug)]
pub struct Statement<'a> {
    pub prepared: &'static Prepared,
    pub values: Vec<Value<'a>>,
}

impl<'a> Statement<'a> {
    pub fn new(prepared: &'static Prepared, values: Vec<Value<'a>>) -> Self {
        Self { prepared, values }
    }
}

/// Statements sent in one message of the simple protocol; see the module's documentation.
#[derive(Debug, Default)]
pub struct Batch {
    sql: String,
    statements: usize,
}

/// Where a statement's rows are in the answer to its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an `EXECUTE` of the prepared statement with `values`.
    pub fn push(&mut self, prepared: &Prepared, values: &[Value<'_>]) -> sqlx::Result<Slot> {
        self.sql.push_str("EXECUTE ");
        self.sql.push_str(&prepared.name);
        if !values.is_empty() {
            self.sql.push('(');
            for (index, value) in values.iter().enumerate() {
                if index > 0 {
                    self.sql.push_str(", ");
                }
                value.write_literal(&mut self.sql)?;
            }
            self.sql.push(')');
        }
        self.sql.push_str(";\n");
        self.statements += 1;
        Ok(Slot(self.statements - 1))
    }

    pub fn push_statement(&mut self, statement: &Statement<'_>) -> sqlx::Result<Slot> {
        self.push(statement.prepared, &statement.values)
    }

    /// Sends the batch on `connection` and collects each statement's rows.
    pub fn run<'a>(
        &'a self,
        connection: &'a mut PgConnection,
    ) -> BoxFuture<'a, sqlx::Result<Answers>> {
        // Boxed, with the executor named, so that callers' futures are `Send` for any lifetime.
        Box::pin(async move {
            let mut answers = Vec::with_capacity(self.statements);
            let mut rows = Vec::new();
            let mut stream = <&mut PgConnection as sqlx::Executor<'_>>::fetch_many(
                connection,
                sqlx::raw_sql(&self.sql),
            );
            while let Some(item) = stream.try_next().await? {
                match item {
                    // Each statement ends with its command tag, whether it returned rows or not.
                    Either::Left(_) => answers.push(std::mem::take(&mut rows)),
                    Either::Right(row) => rows.push(row),
                }
            }
            if answers.len() != self.statements {
                return Err(sqlx::Error::Protocol(format!(
                    "{} statements answered {} times",
                    self.statements,
                    answers.len()
                )));
            }
            Ok(Answers(answers))
        })
    }
}

/// The rows of each statement of a batch.
#[derive(Debug)]
pub struct Answers(Vec<Vec<PgRow>>);

impl Answers {
    /// The first row of the statement in `slot`, if it returned any.
    pub fn row(&self, slot: Slot) -> Option<&PgRow> {
        self.0.get(slot.0).and_then(|rows| rows.first())
    }

    /// The first row of the statement in `slot`, read with `read`.
    pub fn optional<T>(
        &self,
        slot: Slot,
        read: impl FnOnce(&PgRow) -> sqlx::Result<T>,
    ) -> sqlx::Result<Option<T>> {
        self.row(slot).map(read).transpose()
    }
}

/// A transaction driven by batches: the first batch begins it, [`Transaction::commit`] sends
/// the last one with `COMMIT`, and a batch that fails rolls it back. A transaction that is
/// neither committed nor rolled back (a caller that stopped waiting) closes its connection,
/// which ends it, instead of returning it to the pool in the middle of a transaction.
pub struct Transaction {
    connection: PoolConnection<Postgres>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing sent yet.
    Idle,
    /// `BEGIN` sent, neither `COMMIT` nor `ROLLBACK` yet.
    Begun,
    /// Committed or rolled back.
    Ended,
}

impl Transaction {
    /// Takes a connection from the pool; nothing is sent yet.
    pub fn acquire(pool: &PgPool) -> BoxFuture<'_, sqlx::Result<Self>> {
        Box::pin(async move {
            Ok(Self {
                connection: pool.acquire().await?,
                state: State::Idle,
            })
        })
    }

    /// Sends the batch, preceded by `BEGIN` when it is the first and followed by `COMMIT` when
    /// `commit`; a failure rolls the transaction back. The answers are those of the batch's
    /// own statements.
    fn send(&mut self, batch: Batch, commit: bool) -> BoxFuture<'_, sqlx::Result<Answers>> {
        Box::pin(self.send_unboxed(batch, commit))
    }

    async fn send_unboxed(&mut self, batch: Batch, commit: bool) -> sqlx::Result<Answers> {
        let begin = match self.state {
            State::Idle => true,
            State::Begun => false,
            State::Ended => {
                return Err(sqlx::Error::Protocol("the transaction has ended".into()));
            }
        };
        let mut sql = String::with_capacity(batch.sql.len() + 16);
        if begin {
            sql.push_str("BEGIN;\n");
        }
        sql.push_str(&batch.sql);
        if commit {
            sql.push_str("COMMIT;\n");
        }
        let message = Batch {
            sql,
            statements: batch.statements + usize::from(begin) + usize::from(commit),
        };
        self.state = State::Begun;
        match message.run(&mut self.connection).await {
            Ok(mut answers) => {
                if commit {
                    answers.0.pop();
                    self.state = State::Ended;
                }
                if begin {
                    answers.0.remove(0);
                }
                Ok(answers)
            }
            Err(error) => {
                self.rollback().await;
                Err(error)
            }
        }
    }

    /// Runs the batch inside the transaction, beginning it in the same message if needed.
    pub async fn run(&mut self, batch: Batch) -> sqlx::Result<Answers> {
        self.send(batch, false).await
    }

    /// Runs the batch, then `COMMIT`, in one message.
    pub async fn commit(&mut self, batch: Batch) -> sqlx::Result<Answers> {
        self.send(batch, true).await
    }

    /// Ends the transaction without its writes if it is still open (a step failed before it
    /// committed); when even that fails the connection is closed (on drop), which ends it too.
    pub fn rollback(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.state == State::Begun
                && <&mut PgConnection as sqlx::Executor<'_>>::execute(
                    &mut *self.connection,
                    sqlx::raw_sql("ROLLBACK"),
                )
                .await
                .is_ok()
            {
                self.state = State::Ended;
            }
        })
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.state == State::Begun {
            self.connection.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection as _, Row as _};

    use super::*;

    fn literal(value: &Value<'_>) -> String {
        let mut sql = String::new();
        value.write_literal(&mut sql).expect("a literal");
        sql
    }

    #[test]
    fn literals_are_typed_and_escaped() {
        assert_eq!(literal(&Value::text("a'b\\c")), "E'a''b\\\\c'::text");
        assert_eq!(literal(&Value::Text(None)), "NULL::text");
        assert_eq!(
            literal(&Value::int(i64::MIN)),
            "'-9223372036854775808'::bigint"
        );
        assert_eq!(literal(&Value::Int4(-7)), "'-7'::integer");
        assert_eq!(literal(&Value::bytes(&[0, 0xab])), "E'\\\\x00ab'::bytea");
        assert!(
            Value::text("a\0b")
                .write_literal(&mut String::new())
                .is_err()
        );
    }

    #[test]
    fn statements_are_executed_with_their_values() {
        let prepared = Prepared::new("enroll_test", "text, bigint", "SELECT $1, $2");
        assert_eq!(
            prepare_all([&prepared]),
            "PREPARE enroll_test (text, bigint) AS SELECT $1, $2;\n"
        );
        let mut batch = Batch::new();
        batch
            .push(&prepared, &[Value::text("two"), Value::int(1)])
            .expect("a statement");
        assert_eq!(
            batch.sql,
            "EXECUTE enroll_test(E'two'::text, '1'::bigint);\n"
        );
    }

    /// Strings and bytes come back from PostgreSQL as they went in, whatever they hold, with
    /// `standard_conforming_strings` on or off.
    #[tokio::test]
    async fn literals_round_trip_through_postgres() {
        let url = std::env::var("ENROLL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut connection = PgConnection::connect(&url)
            .await
            .expect("the PostgreSQL test server is reachable (ENROLL_TEST_POSTGRES_URL)");
        let texts = [
            "plain",
            "o'brien@example.com",
            "back\\slash \\' \\\\ ''",
            "$1 $$ $tag$ ; COMMIT; --",
            "ünïcödé ✓ 𝄞",
            "\u{1}\t\n\r",
        ];
        let bytes: Vec<u8> = (0..=255).collect();
        let set = Prepared::new(
            "enroll_test_set",
            "text",
            "SELECT set_config('standard_conforming_strings', $1, false)",
        );
        let text = Prepared::new("enroll_test_text", "text", "SELECT $1 AS value");
        let raw = Prepared::new("enroll_test_bytes", "bytea", "SELECT $1 AS value");
        sqlx::raw_sql(&prepare_all([&set, &text, &raw]))
            .execute(&mut connection)
            .await
            .expect("the statements are prepared");
        for conforming in ["on", "off"] {
            let mut batch = Batch::new();
            batch
                .push(&set, &[Value::text(conforming)])
                .expect("a statement");
            let slots: Vec<Slot> = texts
                .iter()
                .map(|value| {
                    batch
                        .push(&text, &[Value::text(value)])
                        .expect("a statement")
                })
                .collect();
            let raw = batch
                .push(&raw, &[Value::bytes(&bytes)])
                .expect("a statement");
            let answers = batch.run(&mut connection).await.expect("the batch runs");
            for (slot, text) in slots.into_iter().zip(texts) {
                let row = answers.row(slot).expect("a row");
                assert_eq!(row.get::<String, _>("value"), text);
            }
            let row = answers.row(raw).expect("a row");
            assert_eq!(row.get::<Vec<u8>, _>("value"), bytes);
        }
    }
}
