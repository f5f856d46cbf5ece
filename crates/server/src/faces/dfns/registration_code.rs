//! `PUT /auth/registration/code` and its legacy name `PUT /auth/manage/users/send-registration-email`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use enroll_core::Error;
use enroll_core::email::EmailAddress;
use enroll_core::ids::OrgId;
use enroll_core::rules::AppCheck;
use enroll_core::service::ResendCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::DfnsError;
use super::headers;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResendBody {
    username: String,
    org_id: String,
}

fn parse_body(body: &[u8]) -> Result<ResendBody, DfnsError> {
    let parsed: ResendBody = serde_json::from_slice(body)
        .map_err(|error| DfnsError::bad_request(format!("Invalid request body: {error}")))?;
    if parsed.username.trim().is_empty() {
        return Err(DfnsError::bad_request(
            "Invalid request body: username must not be empty",
        ));
    }
    if parsed.org_id.trim().is_empty() {
        return Err(DfnsError::bad_request(
            "Invalid request body: orgId must not be empty",
        ));
    }
    Ok(parsed)
}

fn success() -> Json<Value> {
    Json(json!({ "message": "success" }))
}

pub async fn resend(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, DfnsError> {
    resend_code(state, &headers, &body?, false).await
}

/// The legacy path checks the calling app's permissions, as Dfns documented it then.
pub async fn resend_legacy(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, DfnsError> {
    resend_code(state, &headers, &body?, true).await
}

async fn resend_code(
    State(state): State<AppState>,
    headers: &HeaderMap,
    body: &[u8],
    legacy: bool,
) -> Result<Json<Value>, DfnsError> {
    let body = parse_body(body)?;
    let nonce = headers::nonce(headers)?;
    let app = headers::app_id(headers)?.map(|app_id| AppCheck {
        app_id,
        require_user_permissions: legacy,
    });
    // No account can have an address that does not parse or an org id of the wrong shape:
    // such requests get the answer an unknown user gets.
    let (Ok(username), Some(org_id)) = (
        EmailAddress::parse(&body.username),
        OrgId::parse(body.org_id.trim()),
    ) else {
        return Ok(success());
    };
    let request = ResendCode {
        org_id,
        username,
        locale: None,
        nonce,
        app,
    };
    match state.enroll.resend_registration_code(request).await {
        // Unknown and already registered users get the same answer as pending ones.
        Ok(_) | Err(Error::UserNotFound | Error::OrgNotFound | Error::AlreadyRegistered) => {
            Ok(success())
        }
        Err(error) => Err(error.into()),
    }
}
