//! `POST /api/auth/password/reset-request`, `GET …/password/reset/cooldown?email=…` and
//! `POST /api/auth/password/reset?token=…`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use enroll_core::code::CodePurpose;
use enroll_core::email::EmailAddress;
use enroll_core::model::MailTemplate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{LinkToken, SingularityError};
use super::verification::TokenQuery;
use super::{LocaleQuery, wire};
use crate::faces::browser_locale;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ResetRequestBody {
    email: String,
}

/// `200 {"cooldown": <seconds>}` for any address: one with an account gets a reset link, one
/// without the "no account" email; `429` within the address's cooldown either way.
pub async fn request(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LocaleQuery>, QueryRejection>,
    body: Result<Json<ResetRequestBody>, JsonRejection>,
) -> Result<Json<Value>, SingularityError> {
    let Json(body) = body?;
    let Query(query) = query?;
    let email = EmailAddress::parse(&body.email).map_err(|error| {
        SingularityError::invalid_request(format!("Invalid email format: {error}"))
    })?;
    let face = &state.singularity;
    state
        .enroll
        .request_password_reset(
            face.org_id.clone(),
            email,
            query.locale()?,
            browser_locale(&headers),
            face.links.as_ref(),
        )
        .await?;
    Ok(Json(json!({
        "cooldown": state.enroll.policy().cooldown.as_secs(),
    })))
}

#[derive(Deserialize)]
pub struct CooldownQuery {
    email: Option<String>,
}

/// `{"remaining": <seconds>}` for an address, known or not.
pub async fn cooldown(
    State(state): State<AppState>,
    query: Result<Query<CooldownQuery>, QueryRejection>,
) -> Result<Json<wire::CooldownResponse>, SingularityError> {
    let Query(query) = query?;
    let email = query
        .email
        .as_deref()
        .map(EmailAddress::parse)
        .transpose()
        .map_err(|error| {
            SingularityError::invalid_request(format!("Invalid email format: {error}"))
        })?
        .ok_or_else(|| SingularityError::invalid_request("The email parameter is required."))?;
    let status = state
        .enroll
        .send_status(
            &state.singularity.org_id,
            &email,
            None,
            CodePurpose::PasswordReset,
            MailTemplate::PasswordReset,
        )
        .await?;
    // Anyone may ask about any address: only the time, which is the same for every address.
    Ok(Json(wire::CooldownResponse::new(&status, false)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetBody {
    new_password: String,
}

/// Sets the new password with the token of the newest reset link; every session ends.
pub async fn reset(
    State(state): State<AppState>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    body: Result<Json<ResetBody>, JsonRejection>,
) -> Result<Json<Value>, SingularityError> {
    let Query(query) = query?;
    let token = query
        .token()
        .ok_or_else(|| SingularityError::link_token_missing(LinkToken::PasswordReset))?;
    let Json(body) = body?;
    state
        .enroll
        .reset_password(&token, &body.new_password)
        .await
        .map_err(|error| SingularityError::for_link(error, LinkToken::PasswordReset))?;
    Ok(Json(wire::success()))
}
