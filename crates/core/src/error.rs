//! The one error type of the core. Each face maps it to its wire format in one place.

use std::time::Duration;

use crate::model::Permission;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("organisation not found")]
    OrgNotFound,
    #[error("user not found")]
    UserNotFound,
    #[error("a user with this username already exists in the organisation")]
    UserExists,
    #[error("the user has already completed registration")]
    AlreadyRegistered,
    #[error("the address is already verified")]
    EmailAlreadyVerified,
    #[error("no code is pending for the address: it is verified, or none was sent")]
    NoCodePending,
    #[error("the address is the one the user already has")]
    EmailUnchanged,
    #[error("a code was sent recently; the next may be sent in {} s", retry_after_seconds(*.retry_after))]
    Cooldown { retry_after: Duration },
    #[error("the code is wrong, was replaced by a newer one, or was already used")]
    CodeInvalid,
    #[error("the code has expired")]
    CodeExpired,
    #[error("too many wrong attempts; request a new code")]
    CodeExhausted,
    #[error("the request nonce is missing or invalid")]
    NonceInvalid,
    #[error("the request nonce has already been used")]
    NonceReused,
    #[error("the application is not known")]
    UnknownApp,
    #[error("{principal} is not authorized to perform operation ({permission})")]
    PermissionDenied {
        principal: String,
        permission: Permission,
    },
    #[error("the bearer token is missing, invalid, expired or revoked")]
    Unauthenticated,
    #[error("the access token has expired; refresh it")]
    TokenExpired,
    #[error("the signature does not verify for this challenge and key")]
    SignatureInvalid,
    #[error("the challenge is unknown, expired or already answered")]
    ChallengeInvalid,
    #[error("the user has no credential that can answer the challenge")]
    NoCredential,
    #[error("the user action is missing, invalid, or was signed for another request or caller")]
    UserActionInvalid,
    #[error("the user action has already been used")]
    UserActionReused,
    #[error("the email address or the password is wrong")]
    InvalidCredentials,
    #[error("too many failed logins; the next may be tried in {} s", retry_after_seconds(*.retry_after))]
    LoginThrottled { retry_after: Duration },
    #[error("{0}")]
    PasswordRejected(#[from] crate::password::PasswordError),
    #[error("sending email is switched off")]
    MailDisabled,
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("{context}")]
    Internal {
        context: String,
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// A stable name for the error, for logs and the security event log.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OrgNotFound => "org_not_found",
            Self::UserNotFound => "user_not_found",
            Self::UserExists => "user_exists",
            Self::AlreadyRegistered => "already_registered",
            Self::EmailAlreadyVerified => "email_already_verified",
            Self::NoCodePending => "no_code_pending",
            Self::EmailUnchanged => "email_unchanged",
            Self::Cooldown { .. } => "cooldown",
            Self::CodeInvalid => "code_invalid",
            Self::CodeExpired => "code_expired",
            Self::CodeExhausted => "code_locked",
            Self::NonceInvalid => "nonce_invalid",
            Self::NonceReused => "nonce_replayed",
            Self::UnknownApp => "app_rejected",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::Unauthenticated => "unauthenticated",
            Self::TokenExpired => "token_expired",
            Self::SignatureInvalid => "signature_invalid",
            Self::ChallengeInvalid => "challenge_invalid",
            Self::NoCredential => "no_credential",
            Self::UserActionInvalid => "user_action_invalid",
            Self::UserActionReused => "user_action_replayed",
            Self::InvalidCredentials => "invalid_credentials",
            Self::LoginThrottled { .. } => "login_throttled",
            Self::PasswordRejected(_) => "password_rejected",
            Self::MailDisabled => "mail_disabled",
            Self::Invalid(_) => "invalid_input",
            Self::Unavailable(_) => "unavailable",
            Self::Internal { .. } => "internal",
        }
    }

    pub fn internal(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Whole seconds, rounded up: "retry in 0 s" would invite an immediate, refused retry.
pub fn retry_after_seconds(duration: Duration) -> u64 {
    let seconds = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        seconds + 1
    } else {
        seconds
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
