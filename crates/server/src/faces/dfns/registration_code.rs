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
use utoipa::{IntoParams, ToSchema};

use super::error::{DfnsError, DfnsErrorResponse};
use super::headers;
use super::wire::{Success, success};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = DfnsResendCodeRequest)]
pub struct ResendBody {
    /// The user's email address.
    #[schema(min_length = 1)]
    username: String,
    #[schema(min_length = 1)]
    org_id: String,
}

/// The optional header of older SDKs.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "documents a header read by `headers::nonce`")]
pub struct NonceHeader {
    /// `base64url(JSON {"uuid", "date"})`: single use, within ±5 minutes of the server's clock.
    #[param(rename = "X-DFNS-NONCE")]
    nonce: Option<String>,
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

/// A new registration code for a pending user, by email; the previous code stops working.
#[utoipa::path(put, path = "/auth/registration/code", tag = "Dfns", operation_id = "DfnsResendRegistrationCode",
    params(NonceHeader),
    request_body = ResendBody,
    responses(
        (status = 200, description = "Always for a pending, a registered and an unknown user alike (and an address or org id that cannot exist): only a pending user gets a new code", body = Success),
        (status = 400, description = "`Invalid request body: …` (malformed JSON, a missing or empty field, an unknown field); `X-DFNS-NONCE` malformed, out of its window or used before", body = DfnsErrorResponse),
        (status = 401, description = "`Not Authorized.`: `X-DFNS-APPID` names no app of the organisation, or its `X-DFNS-APPSECRET` or `X-DFNS-APISIGNATURE` is missing or wrong", body = DfnsErrorResponse),
        (status = 413, description = "The body is larger than 64 KiB", body = DfnsErrorResponse),
        (status = 429, description = "A code was sent to the address within the cooldown, or the address's daily, the client's or the organisation's hourly cap of emails is reached; `Retry-After` says when the next may be", body = DfnsErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds until the next code may be sent"))),
        (status = 500, description = "`Internal Server Error`", body = DfnsErrorResponse),
        (status = 503, description = "`Service Unavailable` (the database), or `Email is disabled on this server.`", body = DfnsErrorResponse),
    ),
    security((), ("dfns_app_id" = [])))]
pub async fn resend(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Success>, DfnsError> {
    resend_code(state, &headers, &body?, false).await
}

/// The legacy path checks the calling app's permissions, as Dfns documented it then.
#[utoipa::path(put, path = "/auth/manage/users/send-registration-email", tag = "Dfns", operation_id = "DfnsSendRegistrationEmail",
    params(NonceHeader),
    request_body = ResendBody,
    responses(
        (status = 200, description = "Always for a pending, a registered and an unknown user alike (and an address or org id that cannot exist): only a pending user gets a new code", body = Success),
        (status = 400, description = "`Invalid request body: …` (malformed JSON, a missing or empty field, an unknown field); `X-DFNS-NONCE` malformed, out of its window or used before", body = DfnsErrorResponse),
        (status = 401, description = "`Not Authorized.`: `X-DFNS-APPID` names no app of the organisation, or its `X-DFNS-APPSECRET` or `X-DFNS-APISIGNATURE` is missing or wrong", body = DfnsErrorResponse),
        (status = 403, description = "The app named by `X-DFNS-APPID` lacks `Auth:Users:Create` or the user kind's type permission", body = DfnsErrorResponse),
        (status = 413, description = "The body is larger than 64 KiB", body = DfnsErrorResponse),
        (status = 429, description = "A code was sent to the address within the cooldown, or the address's daily, the client's or the organisation's hourly cap of emails is reached; `Retry-After` says when the next may be", body = DfnsErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds until the next code may be sent"))),
        (status = 500, description = "`Internal Server Error`", body = DfnsErrorResponse),
        (status = 503, description = "`Service Unavailable` (the database), or `Email is disabled on this server.`", body = DfnsErrorResponse),
    ),
    security((), ("dfns_app_id" = [])))]
pub async fn resend_legacy(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Success>, DfnsError> {
    resend_code(state, &headers, &body?, true).await
}

async fn resend_code(
    State(state): State<AppState>,
    headers: &HeaderMap,
    body: &[u8],
    legacy: bool,
) -> Result<Json<Success>, DfnsError> {
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
        return Ok(Json(success()));
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
            Ok(Json(success()))
        }
        Err(error) => Err(error.into()),
    }
}
