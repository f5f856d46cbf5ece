//! The REST paths of ZITADEL's gateway (`POST /v2/users/{userId}/email/resend`, …): protobuf
//! canonical JSON in and out, the path's user id merged into the body, grpc-gateway's errors.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::Call;
use super::error::ZitadelError;
use super::{email, users};
use crate::state::AppState;

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

async fn add_human_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gateway(state, &headers, &body, |_| {}, users::add_human_user).await
}

async fn set_email(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = |request: &mut enroll_zitadel_proto::zitadel::user::v2::SetEmailRequest| {
        request.user_id = user_id
    };
    gateway(state, &headers, &body, path, email::set_email).await
}

async fn send_email_code(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = |request: &mut enroll_zitadel_proto::zitadel::user::v2::SendEmailCodeRequest| {
        request.user_id = user_id
    };
    gateway(state, &headers, &body, path, email::send_email_code).await
}

async fn resend_email_code(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = |request: &mut enroll_zitadel_proto::zitadel::user::v2::ResendEmailCodeRequest| {
        request.user_id = user_id
    };
    gateway(state, &headers, &body, path, email::resend_email_code).await
}

async fn verify_email(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = |request: &mut enroll_zitadel_proto::zitadel::user::v2::VerifyEmailRequest| {
        request.user_id = user_id
    };
    gateway(state, &headers, &body, path, email::verify_email).await
}

/// As the gateway does: the body is decoded first, then the call authenticates.
async fn gateway<Req, Res, Fut>(
    state: AppState,
    headers: &HeaderMap,
    body: &[u8],
    from_path: impl FnOnce(&mut Req),
    method: impl FnOnce(Call, Req) -> Fut,
) -> Response
where
    Req: Message + Default + DeserializeOwned,
    Res: Message + Serialize,
    Fut: Future<Output = Result<Res, ZitadelError>>,
{
    let answer = async {
        let mut request: Req = if body.iter().all(u8::is_ascii_whitespace) {
            Req::default()
        } else {
            serde_json::from_slice(body).map_err(ZitadelError::undecodable)?
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
