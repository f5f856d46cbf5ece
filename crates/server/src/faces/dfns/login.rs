//! `POST /auth/login/init`, `POST /auth/login` and `PUT /auth/logout`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use enroll_core::Error;
use enroll_core::email::EmailAddress;
use enroll_core::ids::OrgId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::Caller;
use super::error::DfnsError;
use super::wire::{SignedChallenge, parse_body, required, user_action_challenge};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InitBody {
    org_id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    login_code: Option<String>,
}

pub async fn init(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, DfnsError> {
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
    let issued = state.enroll.start_login(&org_id, &username).await?;
    Ok(Json(user_action_challenge(&issued)))
}

pub async fn complete(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, DfnsError> {
    let (identifier, assertion) = SignedChallenge::parse(&body?)?;
    let (_, secret) = state.enroll.complete_login(&identifier, assertion).await?;
    Ok(Json(json!({ "token": secret.expose() })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LogoutBody {
    #[serde(default)]
    all_sessions: bool,
}

pub async fn logout(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, DfnsError> {
    let body = body?;
    let body: LogoutBody = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutBody::default()
    } else {
        parse_body(&body)?
    };
    state.enroll.logout(&caller, body.all_sessions).await?;
    Ok(Json(json!({ "message": "success" })))
}
