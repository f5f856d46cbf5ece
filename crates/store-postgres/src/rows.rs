//! Reading domain values out of PostgreSQL rows; a value that does not parse is reported.

use enroll_core::clock::Timestamp;
use enroll_core::code::{CodeHash, CodePurpose, CodeState};
use enroll_core::credential::{Credential, KeyAlgorithm, PublicKey};
use enroll_core::email::EmailAddress;
use enroll_core::ids::{AppId, CodeId, CredentialId, MessageId, OrgId, TokenId, UserId};
use enroll_core::model::{
    AccessToken, App, CapturedMail, ClaimedMessage, CodeRecord, Event, Locale, MailTemplate,
    MessageState, MessageSummary, Org, Permission, RetiredSecret, TokenKind, User, UserKind,
    UserState,
};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

fn invalid(column: &str, what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: format!("not a valid {what}: {value:?}").into(),
    }
}

fn parsed<T>(
    row: &PgRow,
    column: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> sqlx::Result<T> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| invalid(column, what, &text))
}

fn time(row: &PgRow, column: &str) -> sqlx::Result<Timestamp> {
    row.try_get::<i64, _>(column).map(Timestamp::from_millis)
}

fn optional_time(row: &PgRow, column: &str) -> sqlx::Result<Option<Timestamp>> {
    Ok(row
        .try_get::<Option<i64>, _>(column)?
        .map(Timestamp::from_millis))
}

fn count(row: &PgRow, column: &str) -> sqlx::Result<u32> {
    let value: i64 = row.try_get(column)?;
    u32::try_from(value).map_err(|_| invalid(column, "count", &value.to_string()))
}

fn optional_user(row: &PgRow, column: &str) -> sqlx::Result<Option<UserId>> {
    Ok(row
        .try_get::<Option<String>, _>(column)?
        .map(UserId::from_trusted))
}

fn permissions(row: &PgRow, column: &str) -> sqlx::Result<Vec<Permission>> {
    let text: String = row.try_get(column)?;
    Permission::list_from_json(&text).ok_or_else(|| invalid(column, "permission list", &text))
}

fn digest(row: &PgRow, column: &str) -> sqlx::Result<[u8; 32]> {
    let bytes: Vec<u8> = row.try_get(column)?;
    bytes
        .try_into()
        .map_err(|_| invalid(column, "digest", "wrong length"))
}

pub const ORG_COLUMNS: &str = "id, name, default_locale, unknown_address_mail, created_at";

pub fn org(row: &PgRow) -> sqlx::Result<Org> {
    Ok(Org {
        id: OrgId::from_trusted(row.try_get("id")?),
        name: row.try_get("name")?,
        default_locale: Locale::from_trusted(row.try_get("default_locale")?),
        unknown_address_mail: row.try_get("unknown_address_mail")?,
        created_at: time(row, "created_at")?,
    })
}

pub const APP_COLUMNS: &str = "id, org_id, name, permissions, created_at, secret_digest, public_key, \
     retired_secret_digest, retired_secret_expires_at";

pub fn app(row: &PgRow) -> sqlx::Result<App> {
    Ok(App {
        id: AppId::from_trusted(row.try_get("id")?),
        org_id: OrgId::from_trusted(row.try_get("org_id")?),
        name: row.try_get("name")?,
        permissions: permissions(row, "permissions")?,
        created_at: time(row, "created_at")?,
        secret_digest: row
            .try_get::<Option<Vec<u8>>, _>("secret_digest")?
            .map(|digest| digest.try_into())
            .transpose()
            .map_err(|_| invalid("secret_digest", "app secret digest", "wrong length"))?,
        public_key: row
            .try_get::<Option<String>, _>("public_key")?
            .map(|pem| {
                PublicKey::from_pem(&pem).map_err(|_| invalid("public_key", "public key", &pem))
            })
            .transpose()?,
        retired_secret: match (
            row.try_get::<Option<Vec<u8>>, _>("retired_secret_digest")?,
            row.try_get::<Option<i64>, _>("retired_secret_expires_at")?,
        ) {
            (Some(digest), Some(expires_at)) => Some(RetiredSecret {
                digest: digest.try_into().map_err(|_| {
                    invalid(
                        "retired_secret_digest",
                        "retired app secret digest",
                        "wrong length",
                    )
                })?,
                expires_at: Timestamp::from_millis(expires_at),
            }),
            _ => None,
        },
    })
}

pub const TOKEN_COLUMNS: &str =
    "id, org_id, kind, digest, permissions, created_at, user_id, expires_at, revoked_at";

pub fn token(row: &PgRow) -> sqlx::Result<AccessToken> {
    Ok(AccessToken {
        id: TokenId::from_trusted(row.try_get("id")?),
        org_id: OrgId::from_trusted(row.try_get("org_id")?),
        kind: parsed(row, "kind", "token kind", TokenKind::parse)?,
        digest: digest(row, "digest")?,
        permissions: permissions(row, "permissions")?,
        created_at: time(row, "created_at")?,
        user_id: optional_user(row, "user_id")?,
        expires_at: optional_time(row, "expires_at")?,
        revoked_at: optional_time(row, "revoked_at")?,
    })
}

pub fn user_permissions(row: &PgRow) -> sqlx::Result<Vec<Permission>> {
    permissions(row, "permissions")
}

pub const CREDENTIAL_COLUMNS: &str =
    "id, cred_id, user_id, org_id, name, algorithm, public_key, created_at";

pub fn credential(row: &PgRow) -> sqlx::Result<Credential> {
    let pem: String = row.try_get("public_key")?;
    let public_key =
        PublicKey::from_pem(&pem).map_err(|_| invalid("public_key", "public key", &pem))?;
    let algorithm: String = row.try_get("algorithm")?;
    if KeyAlgorithm::parse(&algorithm) != Some(public_key.algorithm()) {
        return Err(invalid("algorithm", "key algorithm", &algorithm));
    }
    Ok(Credential {
        id: CredentialId::from_trusted(row.try_get("id")?),
        cred_id: row.try_get("cred_id")?,
        user_id: UserId::from_trusted(row.try_get("user_id")?),
        org_id: OrgId::from_trusted(row.try_get("org_id")?),
        name: row.try_get("name")?,
        public_key,
        created_at: time(row, "created_at")?,
    })
}

pub const USER_COLUMNS: &str = "id, org_id, username, name, kind, state, locale, sequence, created_at, updated_at, email_verified_at";

pub fn user(row: &PgRow) -> sqlx::Result<User> {
    Ok(User {
        id: UserId::from_trusted(row.try_get("id")?),
        org_id: OrgId::from_trusted(row.try_get("org_id")?),
        username: EmailAddress::from_trusted(row.try_get("username")?),
        name: row.try_get("name")?,
        kind: parsed(row, "kind", "user kind", UserKind::parse)?,
        state: parsed(row, "state", "user state", UserState::parse)?,
        locale: row
            .try_get::<Option<String>, _>("locale")?
            .map(Locale::from_trusted),
        sequence: row.try_get("sequence")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        email_verified_at: row
            .try_get::<Option<i64>, _>("email_verified_at")?
            .map(Timestamp::from_millis),
    })
}

/// Failed logins of a subject and when their window ends.
pub fn login_failures(row: &PgRow) -> sqlx::Result<(u32, Timestamp)> {
    Ok((count(row, "failures")?, time(row, "window_ends_at")?))
}

pub const CODE_COLUMNS: &str =
    "id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at";

pub fn code(row: &PgRow) -> sqlx::Result<CodeRecord> {
    Ok(CodeRecord {
        id: CodeId::from_trusted(row.try_get("id")?),
        user_id: UserId::from_trusted(row.try_get("user_id")?),
        purpose: parsed(row, "purpose", "code purpose", CodePurpose::parse)?,
        hash: CodeHash(digest(row, "hash")?),
        state: parsed(row, "state", "code state", CodeState::parse)?,
        failed_attempts: count(row, "failed_attempts")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}

/// The current code read beside its user's row (`id`), in the columns of
/// [`crate::current_codes::columns`]; `None` if the user has none of the purpose.
pub fn current_code(row: &PgRow) -> sqlx::Result<Option<CodeRecord>> {
    let Some(id) = row.try_get::<Option<String>, _>("code_id")? else {
        return Ok(None);
    };
    Ok(Some(CodeRecord {
        id: CodeId::from_trusted(id),
        user_id: UserId::from_trusted(row.try_get("id")?),
        purpose: parsed(row, "code_purpose", "code purpose", CodePurpose::parse)?,
        hash: CodeHash(digest(row, "code_hash")?),
        state: parsed(row, "code_state", "code state", CodeState::parse)?,
        failed_attempts: count(row, "code_failed_attempts")?,
        created_at: time(row, "code_created_at")?,
        expires_at: time(row, "code_expires_at")?,
    }))
}

pub const EVENT_COLUMNS: &str = "aggregate_id, sequence, kind, payload, org_id, at";

pub fn event(row: &PgRow) -> sqlx::Result<Event> {
    let payload: String = row.try_get("payload")?;
    Ok(Event {
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        kind: row.try_get("kind")?,
        payload: serde_json::from_str(&payload)
            .map_err(|_| invalid("payload", "event payload", &payload))?,
        org_id: OrgId::from_trusted(row.try_get("org_id")?),
        at: time(row, "at")?,
    })
}

pub const MESSAGE_COLUMNS: &str = "id, org_id, user_id, template, locale, recipient, state, attempts, \
     last_error, created_at, next_attempt_at, sent_at, sealed IS NOT NULL AS has_content";

pub fn message_summary(row: &PgRow) -> sqlx::Result<MessageSummary> {
    Ok(MessageSummary {
        id: MessageId::from_trusted(row.try_get("id")?),
        org_id: OrgId::from_trusted(row.try_get("org_id")?),
        user_id: optional_user(row, "user_id")?,
        template: parsed(row, "template", "mail template", MailTemplate::parse)?,
        locale: Locale::from_trusted(row.try_get("locale")?),
        recipient: EmailAddress::from_trusted(row.try_get("recipient")?),
        state: parsed(row, "state", "message state", MessageState::parse)?,
        attempts: count(row, "attempts")?,
        last_error: row.try_get("last_error")?,
        created_at: time(row, "created_at")?,
        next_attempt_at: time(row, "next_attempt_at")?,
        sent_at: optional_time(row, "sent_at")?,
        has_content: row.try_get("has_content")?,
    })
}

pub fn claimed(row: &PgRow) -> sqlx::Result<ClaimedMessage> {
    Ok(ClaimedMessage {
        id: MessageId::from_trusted(row.try_get("id")?),
        org_id: OrgId::from_trusted(row.try_get("org_id")?),
        org_name: row
            .try_get::<Option<String>, _>("org_name")?
            .unwrap_or_default(),
        user_id: optional_user(row, "user_id")?,
        template: parsed(row, "template", "mail template", MailTemplate::parse)?,
        locale: Locale::from_trusted(row.try_get("locale")?),
        recipient: EmailAddress::from_trusted(row.try_get("recipient")?),
        sealed: row.try_get("sealed")?,
        attempts: count(row, "attempts")?,
        code_state: match row.try_get::<Option<String>, _>("code_state")? {
            None => None,
            Some(text) => Some(
                CodeState::parse(&text)
                    .ok_or_else(|| invalid("code_state", "code state", &text))?,
            ),
        },
        code_expires_at: optional_time(row, "code_expires_at")?,
        created_at: time(row, "created_at")?,
    })
}

pub const CAPTURED_COLUMNS: &str =
    "id, message_id, sender, recipient, subject, text_body, html_body, created_at";

pub fn captured(row: &PgRow) -> sqlx::Result<CapturedMail> {
    Ok(CapturedMail {
        id: row.try_get("id")?,
        message_id: row.try_get("message_id")?,
        from: row.try_get("sender")?,
        to: row.try_get("recipient")?,
        subject: row.try_get("subject")?,
        text: row.try_get("text_body")?,
        html: row.try_get("html_body")?,
        created_at: time(row, "created_at")?,
    })
}
