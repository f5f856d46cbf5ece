//! The statements on a user's current code of each purpose, which the user's row holds in
//! columns of its own (migration 0013). Written out once per purpose, not for every statement
//! run: they are on the path of every resend and verification.

use std::sync::LazyLock;

use enroll_core::code::CodePurpose;

pub struct CurrentCodeSql {
    purpose: CodePurpose,
    /// The current code of the user `?1`, in the columns of [`crate::rows::CODE_COLUMNS`].
    pub select: String,
    /// Appends the current code of the user `?1`, if any, to the user's past codes.
    pub append_to_past: String,
    /// Makes the code `?2` the current one of the user `?1` (`?3` … `?7`: its hash, state,
    /// failed attempts, creation and expiry), naming the past code just appended if `?8`.
    pub take_place: String,
    /// Sets the state `?3` and failed attempts `?4` of the code `?2`, if it is the user
    /// `?1`'s current one.
    pub update: String,
}

impl CurrentCodeSql {
    fn new(purpose: CodePurpose) -> Self {
        let p = purpose.as_str();
        let columns = format!(
            "{p}_code_id, id, '{p}', {p}_code_hash, {p}_code_state, {p}_code_failed_attempts, \
             {p}_code_created_at, {p}_code_expires_at"
        );
        Self {
            purpose,
            select: format!(
                "SELECT {columns} FROM users WHERE id = ?1 AND {p}_code_id IS NOT NULL"
            ),
            append_to_past: format!(
                "INSERT INTO past_codes (id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at, previous) \
                 SELECT {columns}, last_past_code FROM users WHERE id = ?1 AND {p}_code_id IS NOT NULL"
            ),
            take_place: format!(
                "UPDATE users SET {p}_code_id = ?2, {p}_code_hash = ?3, {p}_code_state = ?4, \
                     {p}_code_failed_attempts = ?5, {p}_code_created_at = ?6, {p}_code_expires_at = ?7, \
                     last_past_code = CASE WHEN ?8 THEN last_insert_rowid() ELSE last_past_code END \
                 WHERE id = ?1"
            ),
            update: format!(
                "UPDATE users SET {p}_code_state = ?3, {p}_code_failed_attempts = ?4 \
                 WHERE id = ?1 AND {p}_code_id = ?2"
            ),
        }
    }
}

static STATEMENTS: LazyLock<[CurrentCodeSql; 3]> =
    LazyLock::new(|| CodePurpose::ALL.map(CurrentCodeSql::new));

pub fn statements(purpose: CodePurpose) -> &'static CurrentCodeSql {
    STATEMENTS
        .iter()
        .find(|statements| statements.purpose == purpose)
        .unwrap_or_else(|| unreachable!("statements are written for every purpose"))
}

/// `CASE` over the user's row `u`: the `column` (`state`, `expires_at`) of the code
/// `m.code_id` if it is one of the user's current codes.
pub fn of_message(column: &str) -> String {
    CodePurpose::ALL
        .iter()
        .fold(String::from("CASE m.code_id"), |case, purpose| {
            let p = purpose.as_str();
            format!("{case} WHEN u.{p}_code_id THEN u.{p}_code_{column}")
        })
        + " END"
}
