//! The aggregates: organisations, users, apps, tokens, codes, events and outbox messages.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::code::{CodeHash, CodePurpose, CodeState};
use crate::email::EmailAddress;
use crate::ids::{AppId, CodeId, MessageId, OrgId, TokenId, UserId};

/// A language tag such as `en`, `de` or `fr-CH`, lowercased language and uppercased region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Locale(String);

impl Locale {
    pub fn parse(tag: &str) -> Option<Self> {
        let tag = tag.trim().replace('_', "-");
        let mut parts = tag.split('-');
        let language = parts.next()?;
        if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_alphabetic())
        {
            return None;
        }
        let mut out = language.to_ascii_lowercase();
        if let Some(region) = parts.next() {
            if !(2..=8).contains(&region.len())
                || !region.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return None;
            }
            out.push('-');
            out.push_str(&region.to_ascii_uppercase());
        }
        if parts.next().is_some() {
            return None;
        }
        Some(Self(out))
    }

    pub fn english() -> Self {
        Self("en".to_owned())
    }

    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `fr-CH` → `fr`.
    pub fn language(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The locale chain of every email and page: the request's, the user's saved one, the
/// browser's (`Accept-Language`), the organisation's default, English.
pub fn choose_locale(
    explicit: Option<&Locale>,
    saved: Option<&Locale>,
    browser: Option<&Locale>,
    org: Option<&Org>,
) -> Locale {
    explicit
        .or(saved)
        .or(browser)
        .or(org.map(|org| &org.default_locale))
        .cloned()
        .unwrap_or_else(Locale::english)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub default_locale: Locale,
    /// Whether a password reset asked for an address without an account sends that address a
    /// "no account" email (it tells the owner; it also costs mail to strangers' addresses).
    pub unknown_address_mail: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UserKind {
    CustomerEmployee,
    EndUser,
    /// A machine caller holding a key and a long-lived token, such as the bootstrap admin.
    ServiceAccount,
}

impl UserKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CustomerEmployee => "CustomerEmployee",
            Self::EndUser => "EndUser",
            Self::ServiceAccount => "ServiceAccount",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::CustomerEmployee, Self::EndUser, Self::ServiceAccount]
            .into_iter()
            .find(|kind| kind.as_str() == value)
    }

    /// The kind callers are shown: a service account is an employee (Dfns marks it with
    /// `isServiceAccount`).
    pub const fn shown_as(self) -> Self {
        match self {
            Self::ServiceAccount => Self::CustomerEmployee,
            kind => kind,
        }
    }

    /// The Dfns permission that allows acting on users of this kind.
    pub const fn type_permission(self) -> Permission {
        match self {
            Self::CustomerEmployee | Self::ServiceAccount => Permission::AUTH_TYPES_EMPLOYEE,
            Self::EndUser => Permission::AUTH_TYPES_END_USER,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UserState {
    Pending,
    Registered,
}

impl UserState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Registered => "Registered",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Pending, Self::Registered]
            .into_iter()
            .find(|state| state.as_str() == value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub org_id: OrgId,
    /// The normalised email address; Dfns calls it the username.
    pub username: EmailAddress,
    /// How the user is addressed, when known (Singularity's `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kind: UserKind,
    pub state: UserState,
    pub locale: Option<Locale>,
    /// When the user proved control of `username`; a new address starts unverified.
    pub email_verified_at: Option<Timestamp>,
    /// Sequence of the user's latest event.
    pub sequence: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A permission name, as Dfns spells them (`Auth:Users:Create`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permission(std::borrow::Cow<'static, str>);

impl Permission {
    pub const AUTH_USERS_CREATE: Self = Self::known("Auth:Users:Create");
    pub const AUTH_USERS_READ: Self = Self::known("Auth:Users:Read");
    pub const AUTH_TYPES_EMPLOYEE: Self = Self::known("Auth:Types:Employee");
    pub const AUTH_TYPES_END_USER: Self = Self::known("Auth:Types:EndUser");
    pub const AUTH_ACTION_SIGN: Self = Self::known("Auth:Action:Sign");
    pub const USER_WRITE: Self = Self::known("user.write");

    const fn known(name: &'static str) -> Self {
        Self(std::borrow::Cow::Borrowed(name))
    }

    /// Every permission the server checks; the admin token holds them all.
    pub fn all() -> Vec<Self> {
        vec![
            Self::AUTH_USERS_CREATE,
            Self::AUTH_USERS_READ,
            Self::AUTH_TYPES_EMPLOYEE,
            Self::AUTH_TYPES_END_USER,
            Self::AUTH_ACTION_SIGN,
            Self::USER_WRITE,
        ]
    }

    /// A name made of letters, digits, `:`, `.` and `_`.
    pub fn parse(name: &str) -> Option<Self> {
        let valid = !name.is_empty()
            && name.len() <= 100
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_'));
        valid.then(|| Self(std::borrow::Cow::Owned(name.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How a set of permissions is stored: a JSON array of names.
    pub fn list_to_json(permissions: &[Self]) -> String {
        serde_json::Value::from(permissions.iter().map(Self::as_str).collect::<Vec<_>>())
            .to_string()
    }

    /// Reads what [`Self::list_to_json`] wrote; `None` if any name is not a permission.
    pub fn list_from_json(text: &str) -> Option<Vec<Self>> {
        let names: Vec<String> = serde_json::from_str(text).ok()?;
        names.iter().map(|name| Self::parse(name)).collect()
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An application registered with an organisation (Dfns `X-DFNS-APPID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub id: AppId,
    pub org_id: OrgId,
    pub name: String,
    pub permissions: Vec<Permission>,
    pub created_at: Timestamp,
    /// SHA-256 of the app's secret (`X-DFNS-APPSECRET`), for server-signed apps.
    #[serde(skip)]
    pub secret_digest: Option<[u8; 32]>,
    /// The key the app signs its requests with (`X-DFNS-APISIGNATURE`): RSA or Ed25519.
    #[serde(skip)]
    pub public_key: Option<crate::credential::PublicKey>,
    /// The secret a rotation replaced, still accepted until its overlap ends.
    #[serde(skip)]
    pub retired_secret: Option<RetiredSecret>,
}

impl App {
    pub fn holds(&self, permission: &Permission) -> bool {
        self.permissions.contains(permission)
    }
}

/// An app secret replaced by a newer one, accepted beside it until `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetiredSecret {
    pub digest: [u8; 32],
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Written to `bootstrap.json` on first start; holds every permission.
    Admin,
    Personal,
    /// Issued by a login; expires, and ends at logout.
    Session,
}

impl TokenKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Personal => "personal",
            Self::Session => "session",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Admin, Self::Personal, Self::Session]
            .into_iter()
            .find(|kind| kind.as_str() == value)
    }
}

/// A bearer token as stored: its digest, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub id: TokenId,
    pub org_id: OrgId,
    /// Who acts with the token; tokens made before users held tokens have none.
    pub user_id: Option<UserId>,
    pub kind: TokenKind,
    pub digest: [u8; 32],
    /// What the token may do; a session acts with its user's permissions instead.
    pub permissions: Vec<Permission>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl AccessToken {
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires| now < expires)
    }
}

/// Who is calling: a live token, its user, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token: AccessToken,
    pub user: User,
    pub permissions: Vec<Permission>,
}

impl Principal {
    pub fn holds(&self, permission: &Permission) -> bool {
        self.permissions.contains(permission)
    }

    /// As Dfns names a caller in its errors: `CustomerEmployee us-…`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.user.kind.shown_as().as_str(), self.user.id)
    }
}

/// Something that may be used once: a challenge or a signed user action, remembered until it
/// expires (after that its signature refuses it anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleUse {
    pub id: String,
    pub kind: SingleUseKind,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleUseKind {
    LoginChallenge,
    ActionChallenge,
    UserAction,
}

impl SingleUse {
    /// The answer to a second use.
    pub fn reused(&self) -> crate::Error {
        match self.kind {
            SingleUseKind::LoginChallenge | SingleUseKind::ActionChallenge => {
                crate::Error::ChallengeInvalid
            }
            SingleUseKind::UserAction => crate::Error::UserActionReused,
        }
    }
}

/// One issued code as stored: the HMAC, never the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub id: CodeId,
    pub user_id: UserId,
    pub purpose: CodePurpose,
    pub hash: CodeHash,
    pub state: CodeState,
    pub failed_attempts: u32,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// One entry of a user's append-only history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub aggregate_id: String,
    pub sequence: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    pub org_id: OrgId,
    pub at: Timestamp,
}

/// Which email an outbox message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailTemplate {
    /// Carries a Dfns registration code.
    Registration,
    /// Carries an email verification code and a link that verifies with it.
    EmailVerification,
    /// Carries only a link that verifies the address (Singularity).
    AccountVerification,
    /// Carries a link to choose a new password.
    PasswordReset,
    /// Tells an account's owner that someone tried to sign up with its address.
    RegistrationAttempt,
    /// Tells an address without an account that someone asked to reset its password.
    NoAccount,
}

impl MailTemplate {
    pub const ALL: [Self; 6] = [
        Self::Registration,
        Self::EmailVerification,
        Self::AccountVerification,
        Self::PasswordReset,
        Self::RegistrationAttempt,
        Self::NoAccount,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::EmailVerification => "email_verification",
            Self::AccountVerification => "account_verification",
            Self::PasswordReset => "password_reset",
            Self::RegistrationAttempt => "registration_attempt",
            Self::NoAccount => "no_account",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Waiting for a worker (first attempt or a retry).
    Queued,
    /// Claimed by a worker until its lease ends.
    Sending,
    Sent,
    /// Given up: a permanent failure, or temporary ones until the retry limit.
    Abandoned,
    /// Not sent because its code was replaced or used before delivery.
    Superseded,
}

impl MessageState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Abandoned => "abandoned",
            Self::Superseded => "superseded",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Sending,
            Self::Sent,
            Self::Abandoned,
            Self::Superseded,
        ]
        .into_iter()
        .find(|state| state.as_str() == value)
    }
}

/// A message as enqueued, in the transaction that issued its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub id: MessageId,
    pub org_id: OrgId,
    /// `None` for mail to an address without an account.
    pub user_id: Option<UserId>,
    pub code_id: Option<CodeId>,
    pub template: MailTemplate,
    pub locale: Locale,
    pub recipient: EmailAddress,
    /// The message's secrets (the code), sealed under a key derived from the server secret.
    pub sealed: Vec<u8>,
    pub created_at: Timestamp,
}

/// A message a worker has claimed, with what it needs to render and send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedMessage {
    pub id: MessageId,
    pub org_id: OrgId,
    pub org_name: String,
    pub user_id: Option<UserId>,
    pub template: MailTemplate,
    pub locale: Locale,
    pub recipient: EmailAddress,
    pub sealed: Option<Vec<u8>>,
    /// Attempts including the one just claimed.
    pub attempts: u32,
    /// State of the message's code right now; `None` for messages without one. A code its
    /// user has replaced since may read as superseded, whatever state it was left in: the
    /// message is not sent either way.
    pub code_state: Option<CodeState>,
    pub code_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent,
    Retry { at: Timestamp, error: String },
    Abandoned { error: String },
    Superseded,
}

/// How attempt number `attempt` at message `id` ended, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub id: MessageId,
    pub attempt: u32,
    pub outcome: DeliveryOutcome,
}

/// How a finished attempt is written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRecord<'a> {
    pub state: MessageState,
    /// For a retry: when it is due.
    pub next_attempt_at: Option<Timestamp>,
    pub error: Option<&'a str>,
    /// Only a message that will be tried again keeps its sealed content.
    pub keep_content: bool,
}

impl DeliveryOutcome {
    pub fn record(&self) -> DeliveryRecord<'_> {
        let (state, next_attempt_at, error) = match self {
            Self::Sent => (MessageState::Sent, None, None),
            Self::Retry { at, error } => (MessageState::Queued, Some(*at), Some(error.as_str())),
            Self::Abandoned { error } => (MessageState::Abandoned, None, Some(error.as_str())),
            Self::Superseded => (MessageState::Superseded, None, None),
        };
        DeliveryRecord {
            state,
            next_attempt_at,
            error,
            keep_content: state == MessageState::Queued,
        }
    }
}

/// A message's metadata: the delivery log, which outlives the content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSummary {
    pub id: MessageId,
    pub org_id: OrgId,
    pub user_id: Option<UserId>,
    pub template: MailTemplate,
    pub locale: Locale,
    pub recipient: EmailAddress,
    pub state: MessageState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    /// Whether the sealed content is still stored (it is erased once delivered or dropped).
    pub has_content: bool,
}

/// A message captured by the development inbox instead of being sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapturedMail {
    pub id: String,
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_are_normalised() {
        assert_eq!(Locale::parse("DE").unwrap().as_str(), "de");
        assert_eq!(Locale::parse("fr_ch").unwrap().as_str(), "fr-CH");
        assert_eq!(Locale::parse("fr-CH").unwrap().language(), "fr");
        for bad in ["", "e", "english", "en-", "en-US-x", "e1"] {
            assert!(Locale::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn permission_lists_round_trip_through_json() {
        let list = vec![Permission::AUTH_USERS_CREATE, Permission::USER_WRITE];
        let json = Permission::list_to_json(&list);
        assert_eq!(json, r#"["Auth:Users:Create","user.write"]"#);
        assert_eq!(Permission::list_from_json(&json), Some(list));
        assert_eq!(Permission::list_from_json(r#"["drop table"]"#), None);
    }

    #[test]
    fn permissions_are_names_not_sentences() {
        assert!(Permission::parse("Auth:Users:Create").is_some());
        assert!(Permission::parse("user.write").is_some());
        assert!(Permission::parse("drop table").is_none());
    }
}
