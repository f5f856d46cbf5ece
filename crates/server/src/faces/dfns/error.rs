//! The one place where the core's errors become Dfns responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use enroll_core::Error;
use enroll_core::error::retry_after_seconds;
use serde::Serialize;
use utoipa::ToSchema;

/// A Dfns error response: a status and the message the SDK shows.
#[derive(Debug)]
pub struct DfnsError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl DfnsError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A body that is not the JSON the endpoint takes.
    pub fn invalid_body(reason: impl std::fmt::Display) -> Self {
        Self::bad_request(format!("Invalid request body: {reason}"))
    }
}

impl From<Error> for DfnsError {
    fn from(error: Error) -> Self {
        let (status, message) = match &error {
            Error::NonceInvalid => (
                StatusCode::BAD_REQUEST,
                "request nonce is missing or invalid".to_owned(),
            ),
            Error::NonceReused => (
                StatusCode::BAD_REQUEST,
                "request nonce has already been used".to_owned(),
            ),
            Error::UnknownApp => (StatusCode::UNAUTHORIZED, "Not Authorized.".to_owned()),
            Error::PermissionDenied { .. } => (StatusCode::FORBIDDEN, error.to_string()),
            Error::Cooldown { retry_after } => {
                let seconds = retry_after_seconds(*retry_after);
                return Self {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    message: format!(
                        "A registration code was sent recently; a new one can be requested in {seconds} seconds."
                    ),
                    retry_after: Some(seconds),
                };
            }
            Error::CodeExpired => (
                StatusCode::BAD_REQUEST,
                "Registration code expired".to_owned(),
            ),
            Error::AlreadyRegistered => {
                (StatusCode::UNAUTHORIZED, "User already exists.".to_owned())
            }
            Error::UserExists => (StatusCode::CONFLICT, "User already exists.".to_owned()),
            Error::Unauthenticated => (StatusCode::UNAUTHORIZED, "Not Authorized.".to_owned()),
            Error::SignatureInvalid => (
                StatusCode::UNAUTHORIZED,
                "Credential signature is not valid.".to_owned(),
            ),
            Error::ChallengeInvalid => (
                StatusCode::BAD_REQUEST,
                "Challenge token is not valid.".to_owned(),
            ),
            Error::NoCredential => (
                StatusCode::UNAUTHORIZED,
                "User does not have a credential that can be used for the application.".to_owned(),
            ),
            Error::UserActionInvalid => (
                StatusCode::FORBIDDEN,
                "user action signature is missing or invalid".to_owned(),
            ),
            Error::UserActionReused => (
                StatusCode::BAD_REQUEST,
                "user action has already been used".to_owned(),
            ),
            Error::UserNotFound | Error::OrgNotFound => {
                (StatusCode::UNAUTHORIZED, "User not found".to_owned())
            }
            Error::CodeInvalid | Error::CodeExhausted => (
                StatusCode::UNAUTHORIZED,
                "Invalid registration code".to_owned(),
            ),
            Error::Invalid(message) => (StatusCode::BAD_REQUEST, message.clone()),
            // Address changes and email codes are other faces' operations.
            Error::EmailAlreadyVerified | Error::NoCodePending | Error::EmailUnchanged => {
                (StatusCode::BAD_REQUEST, error.to_string())
            }
            Error::TokenExpired => (StatusCode::UNAUTHORIZED, "Not Authorized.".to_owned()),
            // Password accounts are another face's; these answer in Dfns's words.
            Error::InvalidCredentials | Error::LoginThrottled { .. } => {
                (StatusCode::UNAUTHORIZED, "Not Authorized.".to_owned())
            }
            Error::PasswordRejected(reason) => (StatusCode::BAD_REQUEST, reason.to_string()),
            Error::MailDisabled => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Email is disabled on this server.".to_owned(),
            ),
            Error::Unavailable(source) => {
                tracing::error!(error = %source, "store unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable".to_owned(),
                )
            }
            Error::Internal { .. } => {
                tracing::error!(error = ?anyhow::Error::from(error), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error".to_owned(),
                )
            }
        };
        Self::new(status, message)
    }
}

/// A body too large or cut short: axum's rejection, in Dfns's shape.
impl From<axum::extract::rejection::BytesRejection> for DfnsError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

/// Every Dfns error body: `{"error":{"message":…}}`.
#[derive(Serialize, ToSchema)]
pub struct DfnsErrorResponse {
    error: DfnsErrorMessage,
}

#[derive(Serialize, ToSchema)]
pub struct DfnsErrorMessage {
    /// What went wrong, in Dfns's words (`Not Authorized.`, `Invalid request body: …`).
    message: String,
}

impl IntoResponse for DfnsError {
    fn into_response(self) -> Response {
        let body = DfnsErrorResponse {
            error: DfnsErrorMessage {
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
