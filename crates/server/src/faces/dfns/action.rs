//! `POST /auth/action/init` and `POST /auth/action`: signing one request as a user action,
//! and checking a signed request's `x-dfns-useraction`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, Uri};
use enroll_core::model::{Principal, SingleUse};
use enroll_core::token::SignedRequest;
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::Caller;
use super::error::DfnsError;
use super::wire::{SignedChallenge, parse_body, required, user_action_challenge};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InitBody {
    user_action_payload: String,
    user_action_http_method: String,
    user_action_http_path: String,
    #[serde(default)]
    user_action_server_kind: Option<String>,
}

pub async fn init(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, DfnsError> {
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

pub async fn sign(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, DfnsError> {
    let (identifier, assertion) = SignedChallenge::parse(&body?)?;
    let user_action = state
        .enroll
        .sign_user_action(&caller, &identifier, assertion)
        .await?;
    Ok(Json(json!({ "userAction": user_action })))
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
