//! `POST /auth/users`: a signed request creates a pending employee and emails their code.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, Uri};
use enroll_core::email::EmailAddress;
use enroll_core::model::{Permission, UserKind};
use enroll_core::service::{Enroll, NewUser};
use serde::Deserialize;
use serde_json::Value;

use super::action::user_action_of;
use super::caller::Caller;
use super::error::DfnsError;
use super::wire::{parse_body, user_object};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateUserBody {
    email: String,
    kind: String,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default, rename = "isSSORequired")]
    is_sso_required: bool,
}

pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, DfnsError> {
    let bytes = body?;
    let body: CreateUserBody = parse_body(&bytes)?;
    if body.kind != UserKind::CustomerEmployee.as_str() {
        return Err(DfnsError::invalid_body(format!(
            "kind {:?} cannot be created here: use \"CustomerEmployee\"",
            body.kind
        )));
    }
    if body.is_sso_required || body.public_key.is_some() || body.external_id.is_some() {
        return Err(DfnsError::invalid_body(
            "publicKey, externalId and isSSORequired are not supported",
        ));
    }
    let email = EmailAddress::parse(&body.email)
        .map_err(|error| DfnsError::invalid_body(format!("email: {error}")))?;
    Enroll::require(
        &caller,
        &[
            Permission::AUTH_USERS_CREATE,
            UserKind::CustomerEmployee.type_permission(),
        ],
    )?;
    let user_action = user_action_of(&state, &caller, &method, &uri, &headers, &bytes)?;
    let created = state
        .enroll
        .create_user(NewUser {
            org_id: caller.user.org_id.clone(),
            email,
            kind: UserKind::CustomerEmployee,
            locale: None,
            user_action: Some(user_action),
        })
        .await?;
    Ok(Json(user_object(&created.user, &[])))
}
