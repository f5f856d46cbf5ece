//! `POST /api/auth/email/verification/send`, `GET …/verification/cooldown` and
//! `POST /api/auth/email/verification?token=…`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use enroll_core::Error;
use enroll_core::code::CodePurpose;
use enroll_core::model::MailTemplate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{LinkToken, SingularityError};
use super::session::{Caller, optional_caller};
use super::{LocaleQuery, wire};
use crate::faces::browser_locale;
use crate::state::AppState;

/// A new verification email for the caller: `200 {"cooldown": <seconds>}`, `304` when the
/// address is verified, `429` within the cooldown, `503` when mail is off.
pub async fn send(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    query: Result<Query<LocaleQuery>, QueryRejection>,
) -> Result<Json<Value>, SingularityError> {
    let Query(query) = query?;
    let links = state
        .singularity
        .links
        .as_ref()
        .ok_or(Error::MailDisabled)?;
    // The request's language, the user's, the browser's; else the organisation's default.
    let locale = query
        .locale()?
        .or_else(|| caller.user.locale.clone())
        .or_else(|| browser_locale(&headers));
    state
        .enroll
        .send_account_verification(&caller, locale, links)
        .await?;
    Ok(Json(json!({
        "cooldown": state.enroll.policy().cooldown.as_secs(),
    })))
}

/// `{"remaining": <seconds>}` as Singularity answers, with when the next email may be sent and
/// how the last one fared: `queued`, `sent` or `failed`.
pub async fn cooldown(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<wire::CooldownResponse>, SingularityError> {
    let status = state
        .enroll
        .send_status(
            &caller.user.org_id,
            &caller.user.username,
            Some(&caller.user.id),
            CodePurpose::EmailVerification,
            MailTemplate::AccountVerification,
        )
        .await?;
    Ok(Json(wire::CooldownResponse::new(&status, true)))
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

impl TokenQuery {
    /// The token, if one was given.
    pub fn token(self) -> Option<String> {
        self.token.filter(|token| !token.trim().is_empty())
    }
}

/// Verifies the address with the token of the newest verification link: `200` and the user,
/// `304` when it was verified already. It logs no one in.
pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, SingularityError> {
    // An access token that is sent must be valid, as Singularity checks it first.
    if super::session::has_access_token(&headers)
        && optional_caller(&headers, &state).await.is_none()
    {
        return Err(SingularityError::access_token_invalid());
    }
    let Query(query) = query?;
    let token = query
        .token()
        .ok_or_else(|| SingularityError::link_token_missing(LinkToken::EmailVerification))?;
    let user = state
        .enroll
        .verify_account(&token)
        .await
        .map_err(|error| SingularityError::for_link(error, LinkToken::EmailVerification))?;
    Ok(Json(wire::UserResponse::from(&user)).into_response())
}
