//! `POST /api/auth/register`, `/login`, `/refresh`, `/logout` and `GET /api/users/me`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use enroll_core::email::EmailAddress;
use enroll_core::service::NewAccount;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ErrorResponse, SingularityError};
use super::session::{
    Caller, REFRESH_COOKIE, clear_session_cookies, cookie, optional_caller, set_session_cookies,
};
use super::{LocaleQuery, wire};
use crate::faces::{bearer, browser_locale};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// The device's description; accepted and not kept, as Singularity does.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted for Singularity clients, not used")]
    #[schema(value_type = Option<Object>)]
    session: Option<Value>,
}

/// Always `201 {"success":true}`: a new address gets its account and the verification email,
/// one that has an account gets an email telling its owner, and the answer does not say which.
#[utoipa::path(post, path = "/api/auth/register", tag = "Singularity", params(LocaleQuery),
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Always, whether or not the address had an account", body = wire::SuccessResponse),
        (status = 400, description = "`PASSWORD_TOO_SHORT`, `PASSWORD_TOO_LONG`, `PASSWORD_TOO_COMMON`, `PASSWORD_CONTAINS_EMAIL`, `PASSWORD_REPEATED_CHARACTER`; `INVALID_REQUEST`: a bad email address, name or locale, or malformed JSON", body = ErrorResponse),
        (status = 415, description = "`INVALID_REQUEST`: the body is not `application/json`", body = ErrorResponse),
        (status = 422, description = "`INVALID_REQUEST`: a required field is missing or of the wrong type", body = ErrorResponse),
        (status = 429, description = "`EMAIL_COOLDOWN_ACTIVE`: the client address or the organisation reached its hourly cap of emails; `Retry-After` says when", body = ErrorResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`", body = ErrorResponse),
    ))]
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LocaleQuery>, QueryRejection>,
    body: Result<Json<RegisterBody>, JsonRejection>,
) -> Result<Response, SingularityError> {
    let Json(body) = body?;
    let Query(query) = query?;
    let email = EmailAddress::parse(&body.email)?;
    let face = &state.singularity;
    let new = NewAccount {
        org_id: face.org_id.clone(),
        email,
        password: body.password,
        name: body.name,
        locale: query.locale()?,
        browser_locale: browser_locale(&headers),
    };
    state.enroll.sign_up(new, face.links.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(wire::success())).into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// At least 8 characters, not among the most common passwords, not containing the address.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted for Singularity clients, not used")]
    #[schema(value_type = Option<Object>)]
    session: Option<Value>,
}

/// Both tokens in the body and in HTTP-only cookies.
#[utoipa::path(post, path = "/api/auth/login", tag = "Singularity",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in; the tokens are also set as the HTTP-only cookies `access_token` and `refresh_token`", body = wire::LoginResponse),
        (status = 401, description = "`INVALID_CREDENTIALS`: a wrong password or an address without an account, alike", body = ErrorResponse),
        (status = 429, description = "`LOGIN_ATTEMPTS_EXCEEDED`: too many failed logins for the address or from the client; `Retry-After` says when to try again", body = ErrorResponse),
        (status = 400, description = "`INVALID_REQUEST`: malformed JSON, a bad email address or locale", body = ErrorResponse), (status = 415, description = "`INVALID_REQUEST`: the body is not `application/json`", body = ErrorResponse), (status = 422, description = "`INVALID_REQUEST`: a required field is missing or of the wrong type", body = ErrorResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`", body = ErrorResponse),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, SingularityError> {
    let Json(body) = body?;
    let face = &state.singularity;
    let client = peer.ip().to_string();
    let session = state
        .enroll
        .log_in(&face.org_id, &body.email, &body.password, Some(&client))
        .await?;
    let mut response = Json(wire::LoginResponse::from(&session)).into_response();
    set_session_cookies(
        response.headers_mut(),
        &session,
        state.enroll.clock().now(),
        face.secure_cookies,
    );
    Ok(response)
}

/// A new pair of tokens for the refresh token of the `refresh_token` cookie or the
/// `Authorization` header; the one presented stops working.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "Singularity",
    responses(
        (status = 200, description = "New tokens, also set as cookies; the refresh token presented stops working", body = wire::RefreshResponse),
        (status = 401, description = "`REFRESH_TOKEN_MISSING`, `REFRESH_TOKEN_INVALID` (a refresh token used twice also ends its session), `REFRESH_TOKEN_EXPIRED`", body = ErrorResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`", body = ErrorResponse),
    ),
    security((), ("bearer" = []), ("refresh_cookie" = [])))]
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, SingularityError> {
    let presented = bearer(&headers)
        .or_else(|| cookie(&headers, REFRESH_COOKIE))
        .ok_or_else(SingularityError::refresh_token_missing)?;
    let session = state
        .enroll
        .refresh_session(presented)
        .await
        .map_err(SingularityError::refresh_token)?;
    let mut response = Json(wire::RefreshResponse::from(&session)).into_response();
    set_session_cookies(
        response.headers_mut(),
        &session,
        state.enroll.clock().now(),
        state.singularity.secure_cookies,
    );
    Ok(response)
}

/// Ends the caller's session, if a valid access token came, and clears the cookies; always
/// `200 {"success":true}`.
#[utoipa::path(post, path = "/api/auth/logout", tag = "Singularity",
    responses(
        (status = 200, description = "Always; the session of a valid access token ends, and both cookies are cleared", body = wire::SuccessResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`", body = ErrorResponse),
    ),
    security((), ("bearer" = []), ("access_cookie" = [])))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, SingularityError> {
    if let Some(caller) = optional_caller(&headers, &state).await {
        state.enroll.logout(&caller, false).await?;
    }
    let mut response = Json(wire::success()).into_response();
    clear_session_cookies(response.headers_mut(), state.singularity.secure_cookies);
    Ok(response)
}

#[utoipa::path(get, path = "/api/users/me", tag = "Singularity",
    responses(
        (status = 200, description = "The caller", body = wire::UserResponse),
        (status = 401, description = "`AUTHENTICATION_REQUIRED` (no token), `ACCESS_TOKEN_INVALID`, `ACCESS_TOKEN_EXPIRED`", body = ErrorResponse),
        (status = 404, description = "`USER_NOT_FOUND`: the session's user is gone", body = ErrorResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`", body = ErrorResponse),
    ),
    security(("bearer" = []), ("access_cookie" = [])))]
pub async fn me(Caller(caller): Caller) -> Json<wire::UserResponse> {
    Json(wire::UserResponse::from(&caller.user))
}
