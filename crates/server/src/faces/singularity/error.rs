//! Singularity's `ErrorResponse`: `{"timestamp", "status", "code", "error", "message", "path"}`,
//! and the one mapping of the core's errors to it.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use enroll_core::Error;
use enroll_core::email::EmailError;
use enroll_core::error::retry_after_seconds;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// An error as Singularity answers it; `path` and `timestamp` are added on the way out.
#[derive(Debug, Clone)]
pub struct SingularityError {
    pub status: StatusCode,
    pub code: &'static str,
    /// Singularity names the failure's class here (`InvalidCredentials`).
    pub error: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

/// Which token an endpoint takes, for the codes of a wrong, expired or missing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkToken {
    EmailVerification,
    PasswordReset,
}

impl SingularityError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        error: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            error,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn authentication_required() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_REQUIRED",
            "AuthenticationRequired",
            "User is not authenticated.",
        )
    }

    pub fn access_token_invalid() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "ACCESS_TOKEN_INVALID",
            "AccessTokenInvalid",
            "The access token is invalid.",
        )
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "InvalidRequest",
            message,
        )
    }

    pub fn refresh_token(refused: Error) -> Self {
        match refused {
            Error::TokenExpired => Self::new(
                StatusCode::UNAUTHORIZED,
                "REFRESH_TOKEN_EXPIRED",
                "RefreshTokenExpired",
                "The refresh token has expired.",
            ),
            Error::Unauthenticated => Self::new(
                StatusCode::UNAUTHORIZED,
                "REFRESH_TOKEN_INVALID",
                "RefreshTokenInvalid",
                "The refresh token is invalid, was already used, or its session has ended.",
            ),
            other => other.into(),
        }
    }

    pub fn refresh_token_missing() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "REFRESH_TOKEN_MISSING",
            "RefreshTokenMissing",
            "No refresh token was sent (cookie refresh_token or Authorization: Bearer).",
        )
    }

    /// The answer for a missing `?token=`.
    pub fn link_token_missing(token: LinkToken) -> Self {
        match token {
            LinkToken::EmailVerification => Self::new(
                StatusCode::UNAUTHORIZED,
                "EMAIL_VERIFICATION_TOKEN_MISSING",
                "EmailVerificationTokenMissing",
                "The request has no token parameter.",
            ),
            LinkToken::PasswordReset => Self::new(
                StatusCode::UNAUTHORIZED,
                "PASSWORD_RESET_TOKEN_MISSING",
                "PasswordResetTokenMissing",
                "The request has no token parameter.",
            ),
        }
    }

    /// The core's error where an endpoint takes a link's token: wrong and expired tokens are
    /// named after it.
    pub fn for_link(error: Error, token: LinkToken) -> Self {
        let (invalid, expired) = match token {
            LinkToken::EmailVerification => (
                (
                    "EMAIL_VERIFICATION_TOKEN_INVALID",
                    "EmailVerificationTokenInvalid",
                ),
                (
                    "EMAIL_VERIFICATION_TOKEN_EXPIRED",
                    "EmailVerificationTokenExpired",
                ),
            ),
            LinkToken::PasswordReset => (
                ("PASSWORD_RESET_TOKEN_INVALID", "PasswordResetTokenInvalid"),
                ("PASSWORD_RESET_TOKEN_EXPIRED", "PasswordResetTokenExpired"),
            ),
        };
        match error {
            Error::CodeInvalid | Error::CodeExhausted => Self::new(
                StatusCode::UNAUTHORIZED,
                invalid.0,
                invalid.1,
                "The token is invalid, was replaced by a newer one, or was already used.",
            ),
            Error::CodeExpired => Self::new(
                StatusCode::UNAUTHORIZED,
                expired.0,
                expired.1,
                "The token has expired; request a new email.",
            ),
            other => other.into(),
        }
    }
}

/// A bad address in a request, as Singularity's validation answers it.
impl From<EmailError> for SingularityError {
    fn from(error: EmailError) -> Self {
        Self::invalid_request(format!("Invalid email format: {error}"))
    }
}

impl From<Error> for SingularityError {
    fn from(error: Error) -> Self {
        use StatusCode as S;
        match &error {
            Error::Unauthenticated => Self::access_token_invalid(),
            Error::TokenExpired => Self::new(
                S::UNAUTHORIZED,
                "ACCESS_TOKEN_EXPIRED",
                "AccessTokenExpired",
                "The access token has expired; refresh it.",
            ),
            Error::InvalidCredentials => Self::new(
                S::UNAUTHORIZED,
                "INVALID_CREDENTIALS",
                "InvalidCredentials",
                "Invalid credentials.",
            ),
            Error::LoginThrottled { retry_after } => {
                let seconds = retry_after_seconds(*retry_after);
                Self {
                    retry_after: Some(seconds),
                    ..Self::new(
                        S::TOO_MANY_REQUESTS,
                        "LOGIN_ATTEMPTS_EXCEEDED",
                        "TooManyLoginAttempts",
                        format!("Too many failed logins; try again in {seconds} seconds."),
                    )
                }
            }
            Error::Cooldown { retry_after } => {
                let seconds = retry_after_seconds(*retry_after);
                Self {
                    retry_after: Some(seconds),
                    ..Self::new(
                        S::TOO_MANY_REQUESTS,
                        "EMAIL_COOLDOWN_ACTIVE",
                        "EmailCooldownActive",
                        format!(
                            "Failed to send email because cooldown is active; try again in {seconds} seconds."
                        ),
                    )
                }
            }
            Error::EmailAlreadyVerified => Self::new(
                S::NOT_MODIFIED,
                "EMAIL_ALREADY_VERIFIED",
                "EmailAlreadyVerified",
                "User's email is already verified.",
            ),
            Error::MailDisabled => Self::new(
                S::SERVICE_UNAVAILABLE,
                "EMAIL_DISABLED",
                "EmailDisabled",
                "Sending email is disabled on this server.",
            ),
            Error::UserNotFound => Self::new(
                S::NOT_FOUND,
                "USER_NOT_FOUND",
                "UserNotFound",
                "User not found.",
            ),
            Error::PasswordRejected(reason) => Self::new(
                S::BAD_REQUEST,
                reason.code(),
                "InvalidPassword",
                reason.to_string(),
            ),
            Error::Invalid(message) => Self::invalid_request(message.clone()),
            Error::CodeInvalid | Error::CodeExhausted | Error::CodeExpired => {
                Self::for_link(error, LinkToken::EmailVerification)
            }
            Error::Unavailable(source) => {
                tracing::error!(error = %source, "store unavailable");
                Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "DATABASE_FAILURE",
                    "DatabaseFailure",
                    "The database could not be reached.",
                )
            }
            // Conditions of the other faces' operations never come from these calls; if one
            // did, it is a fault of the server.
            Error::Internal { .. }
            | Error::OrgNotFound
            | Error::UserExists
            | Error::AlreadyRegistered
            | Error::NoCodePending
            | Error::EmailUnchanged
            | Error::NonceInvalid
            | Error::NonceReused
            | Error::UnknownApp
            | Error::PermissionDenied { .. }
            | Error::SignatureInvalid
            | Error::ChallengeInvalid
            | Error::NoCredential
            | Error::UserActionInvalid
            | Error::UserActionReused => {
                tracing::error!(error = ?anyhow::Error::from(error), "request failed");
                Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "INTERNAL_FAILURE",
                    "InternalFailure",
                    "The request failed on the server.",
                )
            }
        }
    }
}

/// A body that is not the JSON the endpoint takes: axum's status (400, 413, 415, 422) with
/// Singularity's body.
impl From<JsonRejection> for SingularityError {
    fn from(rejection: JsonRejection) -> Self {
        Self {
            status: rejection.status(),
            ..Self::invalid_request(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for SingularityError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid_request(rejection.body_text())
    }
}

impl IntoResponse for SingularityError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// Singularity's `ErrorResponse`, in its field order.
#[derive(Serialize, ToSchema)]
#[schema(as = ErrorResponse)]
pub struct ErrorBody<'a> {
    /// When the error happened (RFC 3339, UTC).
    timestamp: String,
    status: u16,
    /// A stable name of the error, such as `INVALID_CREDENTIALS`.
    code: &'static str,
    error: &'static str,
    message: &'a str,
    path: &'a str,
}

/// Writes the body of an error answer, which needs the request's path and the time.
pub async fn with_path(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let Some(error) = response.extensions_mut().remove::<SingularityError>() else {
        return response;
    };
    // A 304 has no body on the wire.
    if error.status == StatusCode::NOT_MODIFIED {
        return response;
    }
    let body = ErrorBody {
        timestamp: state.enroll.clock().now().to_rfc3339(),
        status: error.status.as_u16(),
        code: error.code,
        error: error.error,
        message: &error.message,
        path: &path,
    };
    let body = serde_json::to_string(&body)
        .unwrap_or_else(|_| unreachable!("a struct of strings and a number serialises"));
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The error body as the OpenAPI document names it.
pub type ErrorResponse = ErrorBody<'static>;
