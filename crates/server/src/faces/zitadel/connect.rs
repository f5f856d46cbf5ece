//! The Connect protocol, unary: the message as the whole body (`application/proto` or
//! `application/json`), errors as Connect's JSON with the code's HTTP status.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{ALLOW, CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use enroll_core::service::Enroll;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::Call;
use super::error::ZitadelError;
use super::{email, users};

/// As for the other protocols.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Proto,
    Json,
}

impl Codec {
    fn of(request: &Request) -> Option<Self> {
        let content_type = request.headers().get(CONTENT_TYPE)?.to_str().ok()?;
        let essence = content_type.split(';').next()?.trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/proto" => Some(Self::Proto),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Proto => "application/proto",
            Self::Json => "application/json",
        }
    }

    fn decode<T: Message + Default + DeserializeOwned>(
        self,
        body: &[u8],
    ) -> Result<T, ZitadelError> {
        match self {
            Self::Proto => T::decode(body).map_err(ZitadelError::undecodable),
            Self::Json if body.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
            Self::Json => serde_json::from_slice(body).map_err(ZitadelError::undecodable),
        }
    }

    fn respond<T: Message + Serialize>(self, message: &T) -> Response {
        let body = match self {
            Self::Proto => message.encode_to_vec(),
            Self::Json => match serde_json::to_vec(message) {
                Ok(body) => body,
                Err(error) => return ZitadelError::unserialisable(error).into_connect(),
            },
        };
        (
            [(CONTENT_TYPE, HeaderValue::from_static(self.content_type()))],
            body,
        )
            .into_response()
    }
}

/// A Connect unary call of `method`.
pub async fn serve(enroll: Arc<Enroll>, method: &str, request: Request) -> Response {
    if request.method() != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(ALLOW, HeaderValue::from_static("POST"))],
        )
            .into_response();
    }
    if !matches!(
        method,
        "AddHumanUser" | "SetEmail" | "SendEmailCode" | "ResendEmailCode" | "VerifyEmail"
    ) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(codec) = Codec::of(&request) else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(
                axum::http::header::ACCEPT,
                HeaderValue::from_static("application/proto, application/json"),
            )],
        )
            .into_response();
    };
    if request
        .headers()
        .get(CONTENT_ENCODING)
        .is_some_and(|encoding| encoding != "identity")
    {
        return ZitadelError::unimplemented("compressed requests are not supported").into_connect();
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_MESSAGE_BYTES).await {
        Ok(body) => body,
        Err(error) => return ZitadelError::undecodable(error).into_connect(),
    };
    let call = match Call::authenticate(enroll, &parts.headers).await {
        Ok(call) => call,
        Err(error) => return error.into_connect(),
    };
    match method {
        "AddHumanUser" => unary(codec, &body, call, users::add_human_user).await,
        "SetEmail" => unary(codec, &body, call, email::set_email).await,
        "SendEmailCode" => unary(codec, &body, call, email::send_email_code).await,
        "ResendEmailCode" => unary(codec, &body, call, email::resend_email_code).await,
        _ => unary(codec, &body, call, email::verify_email).await,
    }
}

async fn unary<Req, Res, Fut>(
    codec: Codec,
    body: &[u8],
    call: Call,
    method: impl FnOnce(Call, Req) -> Fut,
) -> Response
where
    Req: Message + Default + DeserializeOwned,
    Res: Message + Serialize,
    Fut: Future<Output = Result<Res, ZitadelError>>,
{
    let request = match codec.decode(body) {
        Ok(request) => request,
        Err(error) => return error.into_connect(),
    };
    match method(call, request).await {
        Ok(response) => codec.respond(&response),
        Err(error) => error.into_connect(),
    }
}
