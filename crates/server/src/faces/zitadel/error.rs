//! The core's errors as ZITADEL reports them: a gRPC code, a message `<text> (<ID>)`, and a
//! `zitadel.v1.ErrorDetail {id, message: <untranslated key>}`; then written once per protocol
//! (gRPC status, Connect error JSON, grpc-gateway JSON).

use axum::Json;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use enroll_core::Error;
use enroll_core::error::retry_after_seconds;
use enroll_core::url_template::UrlTemplateError;
use enroll_zitadel_proto::google::rpc::Status;
use enroll_zitadel_proto::zitadel::v1::ErrorDetail;
use prost::Message as _;
use serde::Serialize;
use tonic::Code;
use utoipa::ToSchema;

/// An error as ZITADEL describes it, before it is put on a wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZitadelError {
    pub code: Code,
    pub message: String,
    /// `(id, untranslated key)`; request validation errors carry none, as in ZITADEL.
    pub detail: Option<(&'static str, &'static str)>,
    pub retry_after: Option<u64>,
}

impl ZitadelError {
    /// ZITADEL's own errors: the English text of the key, then the id in parentheses.
    fn zitadel(code: Code, id: &'static str, key: &'static str, text: &str) -> Self {
        Self {
            code,
            message: format!("{text} ({id})"),
            detail: Some((id, key)),
            retry_after: None,
        }
    }

    /// A request the proto validation rules refuse, worded as ZITADEL's validator words it.
    pub fn invalid(message: &str, field: &str, rule: &str) -> Self {
        Self {
            code: Code::InvalidArgument,
            message: format!("invalid {message}.{field}: {rule}"),
            detail: None,
            retry_after: None,
        }
    }

    /// A body that is not the message the method takes.
    pub fn undecodable(reason: impl std::fmt::Display) -> Self {
        Self {
            code: Code::InvalidArgument,
            message: format!("invalid request body: {reason}"),
            detail: None,
            retry_after: None,
        }
    }

    /// A response that would not serialise: a fault of the server.
    pub fn unserialisable(error: serde_json::Error) -> Self {
        Error::internal("a response did not serialise", error).into()
    }

    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self {
            code: Code::Unimplemented,
            message: message.into(),
            detail: None,
            retry_after: None,
        }
    }

    pub fn url_template(error: &UrlTemplateError) -> Self {
        let id = match error {
            UrlTemplateError::Syntax(_) | UrlTemplateError::Length => "USERv2-ooD8p",
            UrlTemplateError::UnknownField(_) => "USERv2-ohSi5",
        };
        Self::zitadel(
            Code::InvalidArgument,
            id,
            "Errors.User.Email.InvalidURLTemplate",
            "URL template is invalid",
        )
    }

    pub fn user_not_found() -> Self {
        Self::zitadel(
            Code::NotFound,
            "COMMAND-ieJ2e",
            "Errors.User.Email.NotFound",
            "Email not found",
        )
    }

    pub fn code_empty() -> Self {
        Self::zitadel(
            Code::InvalidArgument,
            "COMMAND-Fia4a",
            "Errors.User.Code.Empty",
            "Code is empty",
        )
    }

    /// The `google.rpc.Status` of the error, with its detail packed in an `Any`.
    fn status(&self) -> Status {
        Status {
            code: self.code as i32,
            message: self.message.clone(),
            details: self
                .detail
                .iter()
                .map(|(id, key)| prost_types::Any {
                    type_url: format!("type.googleapis.com/{ERROR_DETAIL}"),
                    value: error_detail(id, key),
                })
                .collect(),
        }
    }

    /// For gRPC and gRPC-Web: the status in `grpc-status-details-bin` too, where the client
    /// reads code, message and details from.
    pub fn into_status(self) -> tonic::Status {
        let details = self.status().encode_to_vec();
        let mut status = tonic::Status::with_details(self.code, self.message, details.into());
        if let Some(seconds) = self.retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }

    /// For the Connect protocol: the code's HTTP status and the error as JSON, whatever the
    /// request's codec.
    pub fn into_connect(self) -> Response {
        #[derive(Serialize)]
        struct Detail {
            #[serde(rename = "type")]
            type_name: &'static str,
            value: String,
        }
        #[derive(Serialize)]
        struct Body {
            code: &'static str,
            message: String,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            details: Vec<Detail>,
        }
        let body = Body {
            code: connect_code(self.code),
            details: self
                .detail
                .iter()
                .map(|(id, key)| Detail {
                    type_name: ERROR_DETAIL,
                    value: STANDARD_NO_PAD.encode(error_detail(id, key)),
                })
                .collect(),
            message: self.message,
        };
        let status = connect_status(self.code);
        with_retry_after(self.retry_after, (status, Json(body)).into_response())
    }

    /// For the REST gateway: grpc-gateway's status mapping and its error body.
    pub fn into_gateway(self) -> Response {
        let body = GatewayError {
            code: self.code as i32,
            details: self
                .detail
                .iter()
                .map(|&(id, message)| GatewayErrorDetail {
                    type_url: format!("type.googleapis.com/{ERROR_DETAIL}"),
                    id,
                    message,
                })
                .collect(),
            message: self.message,
        };
        let status = gateway_status(self.code);
        let mut response = with_retry_after(self.retry_after, (status, Json(body)).into_response());
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// The REST gateway's error body (grpc-gateway's `google.rpc.Status` as JSON).
#[derive(Serialize, ToSchema)]
#[schema(as = ZitadelError)]
pub struct GatewayError {
    /// The gRPC code: 3 InvalidArgument, 5 NotFound, 6 AlreadyExists, 7 PermissionDenied,
    /// 8 ResourceExhausted, 9 FailedPrecondition, 12 Unimplemented, 13 Internal,
    /// 14 Unavailable, 16 Unauthenticated.
    #[schema(minimum = 0, maximum = 16)]
    code: i32,
    /// `<text> (<ID>)` for ZITADEL's own errors (`Code is empty (EMAIL-5w5ilin4yt)`); the
    /// validator's wording for a refused request (`invalid AddHumanUserRequest.Email.Email: …`).
    message: String,
    /// One `zitadel.v1.ErrorDetail` for ZITADEL's own errors; none for a refused request.
    details: Vec<GatewayErrorDetail>,
}

/// `zitadel.v1.ErrorDetail`, as grpc-gateway writes an `Any`.
#[derive(Serialize, ToSchema)]
#[schema(as = ZitadelErrorDetail)]
pub struct GatewayErrorDetail {
    /// `type.googleapis.com/zitadel.v1.ErrorDetail`
    #[serde(rename = "@type")]
    type_url: String,
    /// ZITADEL's id of the error (`COMMAND-eis9R`).
    id: &'static str,
    /// The untranslated key (`Errors.User.Code.Invalid`).
    message: &'static str,
}

const ERROR_DETAIL: &str = "zitadel.v1.ErrorDetail";

fn error_detail(id: &str, key: &str) -> Vec<u8> {
    ErrorDetail {
        id: id.to_owned(),
        message: key.to_owned(),
    }
    .encode_to_vec()
}

fn with_retry_after(seconds: Option<u64>, mut response: Response) -> Response {
    if let Some(seconds) = seconds {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The Connect protocol's names and HTTP statuses of the gRPC codes.
fn connect_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

fn connect_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::REQUEST_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway's `HTTPStatusFromCode`.
fn gateway_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ZitadelError {
    fn from(error: Error) -> Self {
        match &error {
            Error::UserNotFound => Self::user_not_found(),
            Error::OrgNotFound => Self::zitadel(
                Code::NotFound,
                "ENROLL-org404",
                "Errors.Org.NotFound",
                "Organisation not found",
            ),
            Error::PermissionDenied { .. } => Self::zitadel(
                Code::PermissionDenied,
                "AUTHZ-HKJD33",
                "Errors.PermissionDenied",
                "No matching permissions found",
            ),
            Error::NoCodePending => Self::zitadel(
                Code::FailedPrecondition,
                "EMAIL-5w5ilin4yt",
                "Errors.User.Code.Empty",
                "Code is empty",
            ),
            Error::EmailAlreadyVerified => Self::zitadel(
                Code::FailedPrecondition,
                "ENROLL-verified",
                "Errors.User.Email.AlreadyVerified",
                "Email is already verified",
            ),
            Error::EmailUnchanged => Self::zitadel(
                Code::FailedPrecondition,
                "COMMAND-Uch5e",
                "Errors.User.Email.NotChanged",
                "Email not changed",
            ),
            // ZITADEL answers every failed verification alike.
            Error::CodeInvalid | Error::CodeExpired | Error::CodeExhausted => Self::zitadel(
                Code::InvalidArgument,
                "COMMAND-eis9R",
                "Errors.User.Code.Invalid",
                "Code is invalid",
            ),
            Error::UserExists | Error::AlreadyRegistered => Self::zitadel(
                Code::AlreadyExists,
                "ENROLL-exists",
                "Errors.User.AlreadyExisting",
                "User already exists",
            ),
            Error::Cooldown { retry_after } => {
                let seconds = retry_after_seconds(*retry_after);
                Self {
                    retry_after: Some(seconds),
                    ..Self::zitadel(
                        Code::ResourceExhausted,
                        "ENROLL-cooldown",
                        "Errors.User.Code.Cooldown",
                        &format!("A code was sent recently; the next may be sent in {seconds} s"),
                    )
                }
            }
            Error::Unauthenticated | Error::TokenExpired => Self::zitadel(
                Code::Unauthenticated,
                "ENROLL-token",
                "Errors.Token.Invalid",
                "Token is invalid",
            ),
            Error::PasswordRejected(reason) => Self {
                code: Code::InvalidArgument,
                message: reason.to_string(),
                detail: None,
                retry_after: None,
            },
            Error::MailDisabled => Self::zitadel(
                Code::FailedPrecondition,
                "ENROLL-mail-off",
                "Errors.Notification.Disabled",
                "Email is disabled on this server",
            ),
            Error::Invalid(message) => Self {
                code: Code::InvalidArgument,
                message: message.clone(),
                detail: None,
                retry_after: None,
            },
            Error::Unavailable(source) => {
                tracing::error!(error = %source, "store unavailable");
                Self::zitadel(
                    Code::Unavailable,
                    "ENROLL-unavailable",
                    "Errors.Internal",
                    "Service unavailable",
                )
            }
            // The Dfns face's own conditions never come from these calls; if one did, it is a
            // fault of the server.
            Error::Internal { .. }
            | Error::NonceInvalid
            | Error::NonceReused
            | Error::UnknownApp
            | Error::SignatureInvalid
            | Error::ChallengeInvalid
            | Error::NoCredential
            | Error::UserActionInvalid
            | Error::UserActionReused
            | Error::InvalidCredentials
            | Error::LoginThrottled { .. } => {
                tracing::error!(error = ?anyhow::Error::from(error), "request failed");
                Self::zitadel(
                    Code::Internal,
                    "ENROLL-internal",
                    "Errors.Internal",
                    "Internal error",
                )
            }
        }
    }
}

impl IntoResponse for ZitadelError {
    /// Outside an RPC (the REST paths), errors take the gateway's form.
    fn into_response(self) -> Response {
        self.into_gateway()
    }
}
