//! `POST /auth/action/init` and `POST /auth/action`: signing one request as a user action,
//! and checking a signed request's `x-dfns-useraction`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, Uri};
use enroll_core::model::{Principal, SingleUse};
use enroll_core::token::SignedRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::caller::Caller;
use super::error::{DfnsError, DfnsErrorResponse};
use super::wire::{
    SignedChallenge, UserActionChallenge, parse_body, required, user_action_challenge,
};
use crate::state::AppState;

/// The request to be signed, exactly as it will be sent.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = DfnsActionInitRequest)]
pub struct InitBody {
    /// The exact body the request will carry.
    user_action_payload: String,
    #[schema(min_length = 1)]
    user_action_http_method: String,
    /// An absolute path (`/auth/users`), with or without the query.
    #[schema(pattern = r"^\s*/")]
    user_action_http_path: String,
    #[serde(default)]
    #[schema(value_type = Option<ServerKind>)]
    user_action_server_kind: Option<String>,
}

/// The one server kind this server signs for.
#[derive(ToSchema)]
#[schema(as = DfnsUserActionServerKind)]
#[allow(dead_code, reason = "describes the value the body must carry")]
pub enum ServerKind {
    Api,
}

/// A challenge whose signature makes a user action for one request.
#[utoipa::path(post, path = "/auth/action/init", tag = "Dfns", operation_id = "DfnsActionInit",
    request_body = InitBody,
    responses(
        (status = 200, description = "A challenge, listing the caller's keys that may sign it", body = UserActionChallenge),
        (status = 400, description = "`Invalid request body: …` (malformed JSON, an empty method or path, a path that is not absolute, a server kind other than `Api`, an unknown field)", body = DfnsErrorResponse),
        (status = 401, description = "`Not Authorized.`: no bearer token, or one that is not live; `User does not have a credential that can be used for the application.`; with `X-DFNS-APPID`, an unknown app or a wrong secret or signature", body = DfnsErrorResponse),
        (status = 403, description = "The app named by `X-DFNS-APPID` lacks `Auth:Action:Sign`", body = DfnsErrorResponse),
        (status = 413, description = "The body is larger than 64 KiB", body = DfnsErrorResponse),
        (status = 500, description = "`Internal Server Error`", body = DfnsErrorResponse),
        (status = 503, description = "`Service Unavailable`", body = DfnsErrorResponse),
    ),
    security(("bearer" = []), ("bearer" = [], "dfns_app_id" = [])))]
pub async fn init(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UserActionChallenge>, DfnsError> {
    let body: InitBody = parse_body(&body?)?;
    let method = required("userActionHttpMethod", &body.user_action_http_method)?;
    let path = required("userActionHttpPath", &body.user_action_http_path)?;
    if !path.starts_with('/') {
        return Err(DfnsError::invalid_body(
            "userActionHttpPath must be an absolute path",
        ));
    }
    if let Some(kind) = body.user_action_server_kind.as_deref()
        && kind != "Api"
    {
        return Err(DfnsError::invalid_body(format!(
            "userActionServerKind {kind:?} is not supported: use \"Api\""
        )));
    }
    let request = SignedRequest::new(method, path, body.user_action_payload.as_bytes());
    let issued = state.enroll.start_user_action(&caller, request).await?;
    Ok(Json(user_action_challenge(&issued)))
}

/// A user action: the value of `X-DFNS-USERACTION` for the one request it was signed for.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsUserActionResponse)]
pub struct UserActionResponse {
    /// Good once, for 5 minutes, for the method, path and body signed.
    user_action: String,
}

/// The signed challenge of `action/init` gives the user action.
#[utoipa::path(post, path = "/auth/action", tag = "Dfns", operation_id = "DfnsAction",
    request_body = SignedChallenge,
    responses(
        (status = 200, description = "The user action", body = UserActionResponse),
        (status = 400, description = "`Invalid request body: …`, an unsupported credential kind or second factor; `Challenge token is not valid.` (not the caller's, expired or used before)", body = DfnsErrorResponse),
        (status = 401, description = "`Not Authorized.`: no bearer token, or one that is not live; `Credential signature is not valid.`; `User does not have a credential that can be used for the application.`; with `X-DFNS-APPID`, an unknown app or a wrong secret or signature", body = DfnsErrorResponse),
        (status = 403, description = "The app named by `X-DFNS-APPID` lacks `Auth:Action:Sign`", body = DfnsErrorResponse),
        (status = 413, description = "The body is larger than 64 KiB", body = DfnsErrorResponse),
        (status = 500, description = "`Internal Server Error`", body = DfnsErrorResponse),
        (status = 503, description = "`Service Unavailable`", body = DfnsErrorResponse),
    ),
    security(("bearer" = []), ("bearer" = [], "dfns_app_id" = [])))]
pub async fn sign(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UserActionResponse>, DfnsError> {
    let (identifier, assertion) = SignedChallenge::parse(&body?)?;
    let user_action = state
        .enroll
        .sign_user_action(&caller, &identifier, assertion)
        .await?;
    Ok(Json(UserActionResponse { user_action }))
}

/// The user action a signed request carries, checked against the request as received; it is
/// spent by the action itself. The signed path may or may not include the query string (the
/// SDK's clients differ), so both are accepted.
pub fn user_action_of(
    state: &AppState,
    caller: &Principal,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<SingleUse, DfnsError> {
    let header = headers
        .get("x-dfns-useraction")
        .and_then(|value| value.to_str().ok());
    let path_only = SignedRequest::new(method.as_str(), uri.path(), body);
    let checked = state.enroll.check_user_action(caller, header, &path_only);
    match (checked, uri.path_and_query()) {
        (Err(_), Some(with_query)) if uri.query().is_some() => {
            let with_query = SignedRequest::new(method.as_str(), with_query.as_str(), body);
            Ok(state
                .enroll
                .check_user_action(caller, header, &with_query)?)
        }
        (checked, _) => Ok(checked?),
    }
}
