//! The REST paths of ZITADEL's gateway (`POST /v2/users/{userId}/email/resend`, …): protobuf
//! canonical JSON in and out, the path's user id merged into the body, grpc-gateway's errors.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::Call;
use super::error::{GatewayError, ZitadelError};
use super::{email, schema, users};
use crate::state::AppState;

/// The gateway's paths in the OpenAPI document (gRPC, gRPC-Web and Connect are not in it).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    add_human_user,
    set_email,
    send_email_code,
    resend_email_code,
    verify_email
))]
pub struct ZitadelApi;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/users/human",
            post(add_human_user).fallback(method_not_allowed),
        )
        .route(
            "/v2/users/{user_id}/email",
            post(set_email).fallback(method_not_allowed),
        )
        .route(
            "/v2/users/{user_id}/email/send",
            post(send_email_code).fallback(method_not_allowed),
        )
        .route(
            "/v2/users/{user_id}/email/resend",
            post(resend_email_code).fallback(method_not_allowed),
        )
        .route(
            "/v2/users/{user_id}/email/verify",
            post(verify_email).fallback(method_not_allowed),
        )
}

/// `AddHumanUser`: a user in the caller's (or the named) organisation, with an address to
/// verify by a code (emailed, or handed back with `returnCode`) or verified from the start.
#[utoipa::path(post, path = "/v2/users/human", tag = "ZITADEL", operation_id = "ZitadelAddHumanUser",
    request_body(content = schema::AddHumanUserRequest, description = "Protobuf JSON; an empty body is `{}`"),
    responses(
        (status = 200, description = "Done", body = schema::AddHumanUserResponse),
        (status = 400, description = "InvalidArgument (3): a malformed body or a field of the wrong type (`invalid request body: …`); a field the validation rules refuse (`invalid AddHumanUserRequest.{Field}: …`); an invalid `urlTemplate` (`URL template is invalid (USERv2-ooD8p)`, `(USERv2-ohSi5)`). FailedPrecondition (9): `Email is disabled on this server (ENROLL-mail-off)`", body = GatewayError),
        (status = 403, description = "PermissionDenied (7): the caller lacks `user.write` in the organisation, or names one that cannot exist: `No matching permissions found (AUTHZ-HKJD33)`", body = GatewayError),
        (status = 404, description = "NotFound (5): `Organisation not found (ENROLL-org404)`", body = GatewayError),
        (status = 409, description = "AlreadyExists (6): the address has a user: `User already exists (ENROLL-exists)`", body = GatewayError),
        (status = 429, description = "ResourceExhausted (8): the organisation reached its hourly cap of emails; `Retry-After` says when the next may be", body = GatewayError,
            headers(("Retry-After" = u64, description = "Seconds until the next email may be sent"))),
        (status = 501, description = "Unimplemented (12): a field ZITADEL has and enroll does not support (`userId`, a `username` other than the address, a phone number, passwords, a TOTP secret, metadata, identity provider links, `orgDomain`)", body = GatewayError),
        (status = 401, description = "Unauthenticated (16): no bearer token, or not a live one: `Token is invalid (ENROLL-token)`", body = GatewayError),
        (status = 500, description = "Internal (13): `Internal error (ENROLL-internal)`", body = GatewayError),
        (status = 503, description = "Unavailable (14): `Service unavailable (ENROLL-unavailable)`", body = GatewayError),
    ),
    security(("bearer" = [])))]
async fn add_human_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    gateway(state, &headers, body, |_| {}, users::add_human_user).await
}

/// `SetEmail`: a new address for the user, to verify by a code (emailed, or handed back with
/// `returnCode`) or verified at once (`isVerified`).
#[utoipa::path(post, path = "/v2/users/{userId}/email", tag = "ZITADEL", operation_id = "ZitadelSetEmail",
    params(("userId" = String, Path, description = "The user's id (`us-…`); one that is not a user's answers NotFound")),
    request_body(content = schema::SetEmailRequest, description = "Protobuf JSON; an empty body is `{}`"),
    responses(
        (status = 200, description = "Done", body = schema::EmailCodeResponse),
        (status = 400, description = "InvalidArgument (3): a malformed body or a field of the wrong type (`invalid request body: …`); a field the validation rules refuse (`invalid SetEmailRequest.{Field}: …`); `isVerified` false; an invalid `urlTemplate` (`URL template is invalid (USERv2-ooD8p)`, `(USERv2-ohSi5)`). FailedPrecondition (9): the address is the user's already (`Email not changed (COMMAND-Uch5e)`), `Email is disabled on this server (ENROLL-mail-off)`", body = GatewayError),
        (status = 403, description = "PermissionDenied (7): the caller is not the user and lacks `user.write` in its organisation: `No matching permissions found (AUTHZ-HKJD33)`", body = GatewayError),
        (status = 404, description = "NotFound (5): no such user: `Email not found (COMMAND-ieJ2e)`", body = GatewayError),
        (status = 409, description = "AlreadyExists (6): another user has the address: `User already exists (ENROLL-exists)`", body = GatewayError),
        (status = 429, description = "ResourceExhausted (8): a code was sent to the address within the cooldown; `Retry-After` says when the next may be", body = GatewayError,
            headers(("Retry-After" = u64, description = "Seconds until the next code may be sent"))),
        (status = 401, description = "Unauthenticated (16): no bearer token, or not a live one: `Token is invalid (ENROLL-token)`", body = GatewayError),
        (status = 500, description = "Internal (13): `Internal error (ENROLL-internal)`", body = GatewayError),
        (status = 503, description = "Unavailable (14): `Service unavailable (ENROLL-unavailable)`", body = GatewayError),
    ),
    security(("bearer" = [])))]
async fn set_email(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let path = |request: &mut enroll_zitadel_proto::zitadel::user::v2::SetEmailRequest| {
        request.user_id = user_id
    };
    gateway(state, &headers, body, path, email::set_email).await
}

/// `SendEmailCode`: a new code for the user's unverified address; the previous one stops
/// working.
#[utoipa::path(post, path = "/v2/users/{userId}/email/send", tag = "ZITADEL", operation_id = "ZitadelSendEmailCode",
    params(("userId" = String, Path, description = "The user's id (`us-…`); one that is not a user's answers NotFound")),
    request_body(content = schema::EmailCodeRequest, description = "Protobuf JSON; an empty body is `{}`"),
    responses(
        (status = 200, description = "Done", body = schema::EmailCodeResponse),
        (status = 400, description = "InvalidArgument (3): a malformed body or a field of the wrong type (`invalid request body: …`); a field the validation rules refuse (`invalid SendEmailCodeRequest.{Field}: …`); an invalid `urlTemplate` (`URL template is invalid (USERv2-ooD8p)`, `(USERv2-ohSi5)`). FailedPrecondition (9): `Email is already verified (ENROLL-verified)`, `Email is disabled on this server (ENROLL-mail-off)`", body = GatewayError),
        (status = 403, description = "PermissionDenied (7): the caller is not the user and lacks `user.write` in its organisation: `No matching permissions found (AUTHZ-HKJD33)`", body = GatewayError),
        (status = 404, description = "NotFound (5): no such user: `Email not found (COMMAND-ieJ2e)`", body = GatewayError),
        (status = 429, description = "ResourceExhausted (8): a code was sent to the address within the cooldown; `Retry-After` says when the next may be", body = GatewayError,
            headers(("Retry-After" = u64, description = "Seconds until the next code may be sent"))),
        (status = 401, description = "Unauthenticated (16): no bearer token, or not a live one: `Token is invalid (ENROLL-token)`", body = GatewayError),
        (status = 500, description = "Internal (13): `Internal error (ENROLL-internal)`", body = GatewayError),
        (status = 503, description = "Unavailable (14): `Service unavailable (ENROLL-unavailable)`", body = GatewayError),
    ),
    security(("bearer" = [])))]
async fn send_email_code(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let path = |request: &mut enroll_zitadel_proto::zitadel::user::v2::SendEmailCodeRequest| {
        request.user_id = user_id
    };
    gateway(state, &headers, body, path, email::send_email_code).await
}

/// `ResendEmailCode`: a new code while one is pending; the previous one stops working.
#[utoipa::path(post, path = "/v2/users/{userId}/email/resend", tag = "ZITADEL", operation_id = "ZitadelResendEmailCode",
    params(("userId" = String, Path, description = "The user's id (`us-…`); one that is not a user's answers NotFound")),
    request_body(content = schema::EmailCodeRequest, description = "Protobuf JSON; an empty body is `{}`"),
    responses(
        (status = 200, description = "Done", body = schema::EmailCodeResponse),
        (status = 400, description = "InvalidArgument (3): a malformed body or a field of the wrong type (`invalid request body: …`); a field the validation rules refuse (`invalid ResendEmailCodeRequest.{Field}: …`); an invalid `urlTemplate` (`URL template is invalid (USERv2-ooD8p)`, `(USERv2-ohSi5)`). FailedPrecondition (9): no code is pending (`Code is empty (EMAIL-5w5ilin4yt)`), `Email is already verified (ENROLL-verified)`, `Email is disabled on this server (ENROLL-mail-off)`", body = GatewayError),
        (status = 403, description = "PermissionDenied (7): the caller is not the user and lacks `user.write` in its organisation: `No matching permissions found (AUTHZ-HKJD33)`", body = GatewayError),
        (status = 404, description = "NotFound (5): no such user: `Email not found (COMMAND-ieJ2e)`", body = GatewayError),
        (status = 429, description = "ResourceExhausted (8): a code was sent to the address within the cooldown; `Retry-After` says when the next may be", body = GatewayError,
            headers(("Retry-After" = u64, description = "Seconds until the next code may be sent"))),
        (status = 401, description = "Unauthenticated (16): no bearer token, or not a live one: `Token is invalid (ENROLL-token)`", body = GatewayError),
        (status = 500, description = "Internal (13): `Internal error (ENROLL-internal)`", body = GatewayError),
        (status = 503, description = "Unavailable (14): `Service unavailable (ENROLL-unavailable)`", body = GatewayError),
    ),
    security(("bearer" = [])))]
async fn resend_email_code(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let path = |request: &mut enroll_zitadel_proto::zitadel::user::v2::ResendEmailCodeRequest| {
        request.user_id = user_id
    };
    gateway(state, &headers, body, path, email::resend_email_code).await
}

/// `VerifyEmail`: the user's newest code verifies its address. Any valid token may call: the
/// code is the proof.
#[utoipa::path(post, path = "/v2/users/{userId}/email/verify", tag = "ZITADEL", operation_id = "ZitadelVerifyEmail",
    params(("userId" = String, Path, description = "The user's id (`us-…`); one that is not a user's answers NotFound")),
    request_body(content = schema::VerifyEmailRequest, description = "Protobuf JSON; an empty body is `{}`"),
    responses(
        (status = 200, description = "Done", body = schema::VerifyEmailResponse),
        (status = 400, description = "InvalidArgument (3): a malformed body or a field of the wrong type (`invalid request body: …`); a field the validation rules refuse (`invalid VerifyEmailRequest.{Field}: …`); `Code is empty (COMMAND-Fia4a)`; a wrong, replaced, expired or exhausted code: `Code is invalid (COMMAND-eis9R)`. FailedPrecondition (9): `Email is already verified (ENROLL-verified)`, no code pending (`Code is empty (EMAIL-5w5ilin4yt)`)", body = GatewayError),
        (status = 404, description = "NotFound (5): no such user: `Email not found (COMMAND-ieJ2e)`", body = GatewayError),
        (status = 401, description = "Unauthenticated (16): no bearer token, or not a live one: `Token is invalid (ENROLL-token)`", body = GatewayError),
        (status = 500, description = "Internal (13): `Internal error (ENROLL-internal)`", body = GatewayError),
        (status = 503, description = "Unavailable (14): `Service unavailable (ENROLL-unavailable)`", body = GatewayError),
    ),
    security(("bearer" = [])))]
async fn verify_email(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let path = |request: &mut enroll_zitadel_proto::zitadel::user::v2::VerifyEmailRequest| {
        request.user_id = user_id
    };
    gateway(state, &headers, body, path, email::verify_email).await
}

/// As the gateway does: the body is decoded first, then the call authenticates.
async fn gateway<Req, Res, Fut>(
    state: AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    from_path: impl FnOnce(&mut Req),
    method: impl FnOnce(Call, Req) -> Fut,
) -> Response
where
    Req: Message + Default + DeserializeOwned,
    Res: Message + Serialize,
    Fut: Future<Output = Result<Res, ZitadelError>>,
{
    let answer = async {
        // A body over the limit or cut short answers in the gateway's format, like any other
        // body it cannot read.
        let body = body.map_err(|rejection| ZitadelError::undecodable(rejection.body_text()))?;
        let mut request: Req = if body.iter().all(u8::is_ascii_whitespace) {
            Req::default()
        } else {
            serde_json::from_slice(&body).map_err(ZitadelError::undecodable)?
        };
        from_path(&mut request);
        let call = Call::authenticate(state.enroll.clone(), headers).await?;
        method(call, request).await
    };
    match answer.await {
        Ok(response) => match serde_json::to_vec(&response) {
            Ok(body) => ([(CONTENT_TYPE, "application/json")], body).into_response(),
            Err(error) => ZitadelError::unserialisable(error).into_gateway(),
        },
        Err(error) => error.into_gateway(),
    }
}

/// The gateway answers other methods with 405 and code 12 (Unimplemented).
async fn method_not_allowed() -> Response {
    let mut response = ZitadelError::unimplemented("Method Not Allowed").into_gateway();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}
