//! `POST /auth/login/init`, `POST /auth/login` and `PUT /auth/logout`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use enroll_core::Error;
use enroll_core::email::EmailAddress;
use enroll_core::ids::OrgId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::NamedApp;
use super::caller::Caller;
use super::error::{DfnsError, DfnsErrorResponse};
use super::wire::{
    SignedChallenge, Success, Unsupported, UserActionChallenge, parse_body, required, success,
    user_action_challenge,
};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = DfnsLoginInitRequest)]
pub struct InitBody {
    #[schema(min_length = 1)]
    org_id: String,
    /// The user's email address (required: logins are by Key credential only).
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    username: Option<String>,
    /// Not supported: log in with a Key credential.
    #[serde(default)]
    #[schema(value_type = Unsupported)]
    login_code: Option<String>,
}

/// A challenge for a registered user to sign with one of its keys.
#[utoipa::path(post, path = "/auth/login/init", tag = "Dfns", operation_id = "DfnsLoginInit",
    request_body = InitBody,
    responses(
        (status = 200, description = "A challenge, listing the user's keys that may sign it", body = UserActionChallenge),
        (status = 400, description = "`Invalid request body: …` (malformed JSON, an empty `orgId` or `username`, a `loginCode`, an unknown field)", body = DfnsErrorResponse),
        (status = 401, description = "`User not found` (also an address or org id that cannot exist); `User does not have a credential that can be used for the application.`; with `X-DFNS-APPID`, `Not Authorized.` for an unknown app or a wrong secret or signature", body = DfnsErrorResponse),
        (status = 403, description = "The app named by `X-DFNS-APPID` lacks `Auth:Users:Read`", body = DfnsErrorResponse),
        (status = 413, description = "The body is larger than 64 KiB", body = DfnsErrorResponse),
        (status = 500, description = "`Internal Server Error`", body = DfnsErrorResponse),
        (status = 503, description = "`Service Unavailable`", body = DfnsErrorResponse),
    ),
    security((), ("dfns_app_id" = [])))]
pub async fn init(
    State(state): State<AppState>,
    app: Option<Extension<NamedApp>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UserActionChallenge>, DfnsError> {
    let body: InitBody = parse_body(&body?)?;
    if body.login_code.is_some() {
        return Err(DfnsError::invalid_body(
            "loginCode is not supported: log in with a Key credential",
        ));
    }
    let username = required("username", body.username.as_deref().unwrap_or_default())?;
    let org_id = required("orgId", &body.org_id)?;
    let (Some(org_id), Ok(username)) = (OrgId::parse(org_id), EmailAddress::parse(username)) else {
        return Err(Error::UserNotFound.into());
    };
    NamedApp::allows(app.as_deref(), &org_id)?;
    let issued = state.enroll.start_login(&org_id, &username).await?;
    Ok(Json(user_action_challenge(&issued)))
}

/// The token of a login.
#[derive(Serialize, ToSchema)]
#[schema(as = DfnsLoginResponse)]
pub struct LoginResponse {
    /// The bearer token of the new session (a JWT).
    token: String,
}

/// The signed login challenge gives a session token.
#[utoipa::path(post, path = "/auth/login", tag = "Dfns", operation_id = "DfnsLogin",
    request_body = SignedChallenge,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "`Invalid request body: …`, an unsupported credential kind or second factor; `Challenge token is not valid.` (unknown, expired or used before)", body = DfnsErrorResponse),
        (status = 401, description = "`Credential signature is not valid.`; `User does not have a credential that can be used for the application.`; `User not found`; with `X-DFNS-APPID`, `Not Authorized.` for an unknown app or a wrong secret or signature", body = DfnsErrorResponse),
        (status = 403, description = "The app named by `X-DFNS-APPID` lacks `Auth:Users:Read`", body = DfnsErrorResponse),
        (status = 413, description = "The body is larger than 64 KiB", body = DfnsErrorResponse),
        (status = 500, description = "`Internal Server Error`", body = DfnsErrorResponse),
        (status = 503, description = "`Service Unavailable`", body = DfnsErrorResponse),
    ),
    security((), ("dfns_app_id" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    app: Option<Extension<NamedApp>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoginResponse>, DfnsError> {
    let (identifier, assertion) = SignedChallenge::parse(&body?)?;
    if let Some(org_id) = state.enroll.login_challenge_org(&identifier) {
        NamedApp::allows(app.as_deref(), &org_id)?;
    }
    let (_, secret) = state.enroll.complete_login(&identifier, assertion).await?;
    Ok(Json(LoginResponse {
        token: secret.expose().to_owned(),
    }))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = DfnsLogoutRequest)]
pub struct LogoutBody {
    /// End every session of the caller's user, not only this token's.
    #[serde(default)]
    all_sessions: bool,
}

/// Ends the caller's token, or every session of its user; an empty body is `{}`.
#[utoipa::path(put, path = "/auth/logout", tag = "Dfns", operation_id = "DfnsLogout",
    request_body(content = LogoutBody, description = "Optional: an empty body is `{}`"),
    responses(
        (status = 200, description = "Logged out: the token stops working", body = Success),
        (status = 400, description = "`Invalid request body: …`", body = DfnsErrorResponse),
        (status = 401, description = "`Not Authorized.`: no bearer token, or one that is not live; with `X-DFNS-APPID`, an unknown app or a wrong secret or signature", body = DfnsErrorResponse),
        (status = 413, description = "The body is larger than 64 KiB", body = DfnsErrorResponse),
        (status = 500, description = "`Internal Server Error`", body = DfnsErrorResponse),
        (status = 503, description = "`Service Unavailable`", body = DfnsErrorResponse),
    ),
    security(("bearer" = []), ("bearer" = [], "dfns_app_id" = [])))]
pub async fn logout(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Success>, DfnsError> {
    let body = body?;
    let body: LogoutBody = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutBody::default()
    } else {
        parse_body(&body)?
    };
    state.enroll.logout(&caller, body.all_sessions).await?;
    Ok(Json(success()))
}
