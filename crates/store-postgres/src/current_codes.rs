//! A user's current code of each purpose, which the user's row holds in columns of its own,
//! and the codes it replaced, appended to `past_codes` (migration 0009).

use std::sync::LazyLock;

use enroll_core::code::CodePurpose;

use crate::batch::Prepared;
use crate::effects;

/// `CASE` over the purpose `purpose` (SQL): the `column` (`id`, `state`, …) of the user row
/// `row`'s current code of that purpose.
pub fn of_purpose(purpose: &str, row: &str, column: &str) -> String {
    CodePurpose::ALL
        .iter()
        .fold(format!("CASE {purpose}"), |case, each| {
            let p = each.as_str();
            format!("{case} WHEN '{p}' THEN {row}.{p}_code_{column}")
        })
        + " END"
}

/// `CASE` over the code id `code` (SQL): its `column` (`state`, …) if it is one of the
/// current codes of the user row `row`; null otherwise.
pub fn of_code(code: &str, row: &str, column: &str) -> String {
    CodePurpose::ALL
        .iter()
        .fold(format!("CASE {code}"), |case, purpose| {
            let p = purpose.as_str();
            format!("{case} WHEN {row}.{p}_code_id THEN {row}.{p}_code_{column}")
        })
        + " END"
}

/// The columns [`crate::rows::current_code`] reads: the current code of the purpose `purpose`
/// (SQL) of the user row `row`, beside the row's own columns.
pub fn columns(purpose: &str, row: &str) -> String {
    let column = |name: &str| format!("{} AS code_{name}", of_purpose(purpose, row, name));
    [
        "id",
        "hash",
        "state",
        "failed_attempts",
        "created_at",
        "expires_at",
    ]
    .map(column)
    .join(", ")
        + &format!(", {purpose}::text AS code_purpose")
}

/// A statement that writes a user's current code, alone and as the one write of the user's row
/// that also sets the user's own fields: each write of a row within a transaction makes a new
/// version of it, and the second also checks the row's organisation again (its key's version is
/// the transaction's own), taking a share lock on the organisation's row that every concurrent
/// transaction of that organisation takes too.
pub struct Write {
    pub alone: Prepared,
    /// As `alone`, with the user's fields (see [`crate::effects::USER_FIELDS`]) as the
    /// parameters after its own.
    pub with_user: Prepared,
}

impl Write {
    /// `sql` is the statement with `{user}` where the user's assignments go (each preceded
    /// by a comma); `parameters` the types of its own parameters.
    fn new(name: String, parameters: &str, sql: &str) -> Self {
        let own = parameters.split(',').count();
        Self {
            alone: Prepared::new(
                name.clone(),
                parameters.to_owned(),
                sql.replace("{user}", ""),
            ),
            with_user: Prepared::new(
                format!("{name}_with_user"),
                format!("{parameters}, {}", effects::USER_FIELD_TYPES),
                sql.replace(
                    "{user}",
                    &format!(", {}", effects::assign_user_fields(own + 1)),
                ),
            ),
        }
    }
}

/// The statements that write a user's current code of one purpose.
pub struct Writes {
    purpose: CodePurpose,
    /// Makes the code `$2` the current one of the user `$1` (`$3` … `$7`: its hash, state,
    /// failed attempts, creation and expiry) and records its id. The code it replaces, if
    /// any, is appended to the user's past codes, read as it was before this statement (one
    /// snapshot serves all its parts). A user who is not stored fails it: nothing takes
    /// `code_ids.user_id`, which is not null.
    pub take_place: Write,
    /// As `take_place`, where the code `$8` is the user's current one and leaves with the
    /// state `$9` and failed attempts `$10` (a resend voids the code it replaces): one write of
    /// the user's row where the state's change and the new code's place were two. Fails if
    /// `$8` is not the current code.
    pub replace: Write,
    /// Sets the state `$3` and failed attempts `$4` of the code `$2`, if it is the user
    /// `$1`'s current one (the user's fields, if any, are set either way).
    pub update: Write,
}

impl Writes {
    fn new(purpose: CodePurpose) -> Self {
        let p = purpose.as_str();
        Self {
            purpose,
            take_place: Write::new(
                format!("enroll_take_{p}_code_place"),
                "text, text, bytea, text, bigint, bigint, bigint",
                &format!(
                    "WITH replaced AS ( \
                         INSERT INTO past_codes (id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at, previous) \
                         SELECT {p}_code_id, id, '{p}', {p}_code_hash, {p}_code_state, {p}_code_failed_attempts, \
                                {p}_code_created_at, {p}_code_expires_at, last_past_code \
                         FROM users WHERE id = $1 AND {p}_code_id IS NOT NULL \
                         RETURNING id), \
                     taken AS ( \
                         UPDATE users SET {p}_code_id = $2, {p}_code_hash = $3, {p}_code_state = $4, \
                             {p}_code_failed_attempts = $5, {p}_code_created_at = $6, {p}_code_expires_at = $7, \
                             last_past_code = COALESCE((SELECT id FROM replaced), last_past_code){{user}} \
                         WHERE id = $1 \
                         RETURNING id) \
                     INSERT INTO code_ids (id, user_id, purpose) VALUES ($2, (SELECT id FROM taken), '{p}')"
                ),
            ),
            replace: Write::new(
                format!("enroll_replace_{p}_code"),
                "text, text, bytea, text, bigint, bigint, bigint, text, text, bigint",
                &format!(
                    "WITH replaced AS ( \
                         INSERT INTO past_codes (id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at, previous) \
                         SELECT {p}_code_id, id, '{p}', {p}_code_hash, $9, $10, \
                                {p}_code_created_at, {p}_code_expires_at, last_past_code \
                         FROM users WHERE id = $1 AND {p}_code_id = $8 \
                         RETURNING id), \
                     taken AS ( \
                         UPDATE users SET {p}_code_id = $2, {p}_code_hash = $3, {p}_code_state = $4, \
                             {p}_code_failed_attempts = $5, {p}_code_created_at = $6, {p}_code_expires_at = $7, \
                             last_past_code = (SELECT id FROM replaced){{user}} \
                         WHERE id = $1 AND EXISTS (SELECT FROM replaced) \
                         RETURNING id) \
                     INSERT INTO code_ids (id, user_id, purpose) VALUES ($2, (SELECT id FROM taken), '{p}')"
                ),
            ),
            update: Write::new(
                format!("enroll_update_{p}_code"),
                "text, text, text, bigint",
                &format!(
                    "UPDATE users SET \
                         {p}_code_state = CASE WHEN {p}_code_id = $2 THEN $3 ELSE {p}_code_state END, \
                         {p}_code_failed_attempts = CASE WHEN {p}_code_id = $2 THEN $4 ELSE {p}_code_failed_attempts END{{user}} \
                     WHERE id = $1"
                ),
            ),
        }
    }
}

static WRITES: LazyLock<[Writes; 3]> = LazyLock::new(|| CodePurpose::ALL.map(Writes::new));

pub fn writes(purpose: CodePurpose) -> &'static Writes {
    WRITES
        .iter()
        .find(|writes| writes.purpose == purpose)
        .unwrap_or_else(|| unreachable!("statements are written for every purpose"))
}

/// Every statement of this module, prepared on each connection.
pub fn prepared() -> impl Iterator<Item = &'static Prepared> {
    WRITES
        .iter()
        .flat_map(|writes| [&writes.take_place, &writes.replace, &writes.update])
        .flat_map(|write| [&write.alone, &write.with_user])
}

/// The ids of the user `$1`'s codes the current ones replaced, each with its `depth`, 0 for the
/// newest: each names the one before it, the user's row the newest.
pub const PAST_CODES: &str = "WITH RECURSIVE chain(id, depth) AS ( \
         SELECT last_past_code, 0 FROM users WHERE id = $1 \
         UNION ALL \
         SELECT past.previous, chain.depth + 1 FROM past_codes past JOIN chain ON past.id = chain.id)";
