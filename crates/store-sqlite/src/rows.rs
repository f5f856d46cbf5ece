//! Reading domain values out of rows; a value that does not parse is reported, never guessed.

use enroll_core::clock::Timestamp;
use enroll_core::code::{CodeHash, CodePurpose, CodeState};
use enroll_core::credential::{Credential, KeyAlgorithm, PublicKey};
use enroll_core::email::EmailAddress;
use enroll_core::ids::{AppId, CodeId, CredentialId, MessageId, OrgId, TokenId, UserId};
use enroll_core::model::{
    AccessToken, App, CapturedMail, CodeRecord, Event, Locale, MailTemplate, MessageState,
    MessageSummary, Org, Permission, RetiredSecret, TokenKind, User, UserKind, UserState,
};
use rusqlite::Row;
use rusqlite::types::Type;

fn invalid(index: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        index,
        Type::Text,
        format!("not a valid {what}: {value:?}").into(),
    )
}

fn parsed<T>(
    row: &Row<'_>,
    index: usize,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).ok_or_else(|| invalid(index, what, &text))
}

pub fn timestamp(row: &Row<'_>, index: usize) -> rusqlite::Result<Timestamp> {
    row.get::<_, i64>(index).map(Timestamp::from_millis)
}

fn optional_timestamp(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row
        .get::<_, Option<i64>>(index)?
        .map(Timestamp::from_millis))
}

pub fn permissions(row: &Row<'_>, index: usize) -> rusqlite::Result<Vec<Permission>> {
    let text: String = row.get(index)?;
    Permission::list_from_json(&text).ok_or_else(|| invalid(index, "permission list", &text))
}

pub const ORG_COLUMNS: &str = "id, name, default_locale, created_at, unknown_address_mail";

pub fn org(row: &Row<'_>) -> rusqlite::Result<Org> {
    Ok(Org {
        id: OrgId::from_trusted(row.get(0)?),
        name: row.get(1)?,
        default_locale: Locale::from_trusted(row.get(2)?),
        created_at: timestamp(row, 3)?,
        unknown_address_mail: row.get(4)?,
    })
}

pub const APP_COLUMNS: &str = "id, org_id, name, permissions, created_at, secret_digest, public_key, \
     retired_secret_digest, retired_secret_expires_at";

pub fn app(row: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        id: AppId::from_trusted(row.get(0)?),
        org_id: OrgId::from_trusted(row.get(1)?),
        name: row.get(2)?,
        permissions: permissions(row, 3)?,
        created_at: timestamp(row, 4)?,
        secret_digest: row
            .get::<_, Option<Vec<u8>>>(5)?
            .map(|digest| digest.try_into())
            .transpose()
            .map_err(|_| invalid(5, "app secret digest", "wrong length"))?,
        public_key: row
            .get::<_, Option<String>>(6)?
            .map(|pem| PublicKey::from_pem(&pem).map_err(|_| invalid(6, "public key", &pem)))
            .transpose()?,
        retired_secret: match (
            row.get::<_, Option<Vec<u8>>>(7)?,
            row.get::<_, Option<i64>>(8)?,
        ) {
            (Some(digest), Some(expires_at)) => Some(RetiredSecret {
                digest: digest
                    .try_into()
                    .map_err(|_| invalid(7, "retired app secret digest", "wrong length"))?,
                expires_at: Timestamp::from_millis(expires_at),
            }),
            _ => None,
        },
    })
}

pub const TOKEN_COLUMNS: &str =
    "id, org_id, kind, digest, permissions, created_at, user_id, expires_at, revoked_at";

pub fn token(row: &Row<'_>) -> rusqlite::Result<AccessToken> {
    let digest: Vec<u8> = row.get(3)?;
    Ok(AccessToken {
        id: TokenId::from_trusted(row.get(0)?),
        org_id: OrgId::from_trusted(row.get(1)?),
        kind: parsed(row, 2, "token kind", TokenKind::parse)?,
        digest: digest
            .try_into()
            .map_err(|_| invalid(3, "token digest", "wrong length"))?,
        permissions: permissions(row, 4)?,
        created_at: timestamp(row, 5)?,
        user_id: row.get::<_, Option<String>>(6)?.map(UserId::from_trusted),
        expires_at: optional_timestamp(row, 7)?,
        revoked_at: optional_timestamp(row, 8)?,
    })
}

pub const CREDENTIAL_COLUMNS: &str =
    "id, cred_id, user_id, org_id, name, algorithm, public_key, created_at";

pub fn credential(row: &Row<'_>) -> rusqlite::Result<Credential> {
    let pem: String = row.get(6)?;
    let public_key = PublicKey::from_pem(&pem).map_err(|_| invalid(6, "public key", &pem))?;
    let algorithm: String = row.get(5)?;
    if KeyAlgorithm::parse(&algorithm) != Some(public_key.algorithm()) {
        return Err(invalid(5, "key algorithm", &algorithm));
    }
    Ok(Credential {
        id: CredentialId::from_trusted(row.get(0)?),
        cred_id: row.get(1)?,
        user_id: UserId::from_trusted(row.get(2)?),
        org_id: OrgId::from_trusted(row.get(3)?),
        name: row.get(4)?,
        public_key,
        created_at: timestamp(row, 7)?,
    })
}

pub const USER_COLUMNS: &str = "id, org_id, username, kind, state, locale, sequence, created_at, updated_at, email_verified_at, name";

pub fn user(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: UserId::from_trusted(row.get(0)?),
        org_id: OrgId::from_trusted(row.get(1)?),
        username: EmailAddress::from_trusted(row.get(2)?),
        kind: parsed(row, 3, "user kind", UserKind::parse)?,
        state: parsed(row, 4, "user state", UserState::parse)?,
        locale: row.get::<_, Option<String>>(5)?.map(Locale::from_trusted),
        sequence: row.get(6)?,
        created_at: timestamp(row, 7)?,
        updated_at: timestamp(row, 8)?,
        email_verified_at: row.get::<_, Option<i64>>(9)?.map(Timestamp::from_millis),
        name: row.get(10)?,
    })
}

pub const CODE_COLUMNS: &str =
    "id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at";

pub fn code(row: &Row<'_>) -> rusqlite::Result<CodeRecord> {
    let hash: Vec<u8> = row.get(3)?;
    Ok(CodeRecord {
        id: CodeId::from_trusted(row.get(0)?),
        user_id: UserId::from_trusted(row.get(1)?),
        purpose: code_purpose(row, 2)?,
        hash: CodeHash(
            hash.try_into()
                .map_err(|_| invalid(3, "code hash", "wrong length"))?,
        ),
        state: parsed(row, 4, "code state", CodeState::parse)?,
        failed_attempts: row.get(5)?,
        created_at: timestamp(row, 6)?,
        expires_at: timestamp(row, 7)?,
    })
}

pub const EVENT_COLUMNS: &str = "aggregate_id, sequence, kind, payload, org_id, at";

pub fn event(row: &Row<'_>) -> rusqlite::Result<Event> {
    let payload: String = row.get(3)?;
    Ok(Event {
        aggregate_id: row.get(0)?,
        sequence: row.get(1)?,
        kind: row.get(2)?,
        payload: serde_json::from_str(&payload)
            .map_err(|_| invalid(3, "event payload", &payload))?,
        org_id: OrgId::from_trusted(row.get(4)?),
        at: timestamp(row, 5)?,
    })
}

pub const MESSAGE_COLUMNS: &str = "id, org_id, user_id, template, locale, recipient, state, attempts, \
     last_error, created_at, next_attempt_at, sent_at, sealed IS NOT NULL";

pub fn message_summary(row: &Row<'_>) -> rusqlite::Result<MessageSummary> {
    Ok(MessageSummary {
        id: MessageId::from_trusted(row.get(0)?),
        org_id: OrgId::from_trusted(row.get(1)?),
        user_id: row.get::<_, Option<String>>(2)?.map(UserId::from_trusted),
        template: parsed(row, 3, "mail template", MailTemplate::parse)?,
        locale: Locale::from_trusted(row.get(4)?),
        recipient: EmailAddress::from_trusted(row.get(5)?),
        state: parsed(row, 6, "message state", MessageState::parse)?,
        attempts: row.get(7)?,
        last_error: row.get(8)?,
        created_at: timestamp(row, 9)?,
        next_attempt_at: timestamp(row, 10)?,
        sent_at: optional_timestamp(row, 11)?,
        has_content: row.get(12)?,
    })
}

pub const CAPTURED_COLUMNS: &str =
    "id, message_id, sender, recipient, subject, text_body, html_body, created_at";

pub fn captured(row: &Row<'_>) -> rusqlite::Result<CapturedMail> {
    Ok(CapturedMail {
        id: row.get(0)?,
        message_id: row.get(1)?,
        from: row.get(2)?,
        to: row.get(3)?,
        subject: row.get(4)?,
        text: row.get(5)?,
        html: row.get(6)?,
        created_at: timestamp(row, 7)?,
    })
}

pub fn code_purpose(row: &Row<'_>, index: usize) -> rusqlite::Result<CodePurpose> {
    parsed(row, index, "code purpose", CodePurpose::parse)
}

pub fn optional_code_state(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<CodeState>> {
    match row.get::<_, Option<String>>(index)? {
        None => Ok(None),
        Some(text) => CodeState::parse(&text)
            .map(Some)
            .ok_or_else(|| invalid(index, "code state", &text)),
    }
}

pub fn optional_time(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    optional_timestamp(row, index)
}
