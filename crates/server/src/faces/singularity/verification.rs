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
use utoipa::IntoParams;

use super::error::{ErrorResponse, LinkToken, SingularityError};
use super::session::{Caller, optional_caller};
use super::{LocaleQuery, wire};
use crate::faces::browser_locale;
use crate::state::AppState;

/// A new verification email for the caller: `200 {"cooldown": <seconds>}`, `304` when the
/// address is verified, `429` within the cooldown, `503` when mail is off.
#[utoipa::path(post, path = "/api/auth/email/verification/send", tag = "Singularity", params(LocaleQuery),
    responses(
        (status = 200, description = "A new verification email is queued; the link of the previous one stops working", body = wire::SendEmailResponse),
        (status = 304, description = "`EMAIL_ALREADY_VERIFIED` (no body)"),
        (status = 400, description = "`INVALID_REQUEST`: a bad locale", body = ErrorResponse),
        (status = 401, description = "`AUTHENTICATION_REQUIRED` (no token), `ACCESS_TOKEN_INVALID`, `ACCESS_TOKEN_EXPIRED`", body = ErrorResponse),
        (status = 404, description = "`USER_NOT_FOUND`", body = ErrorResponse),
        (status = 429, description = "`EMAIL_COOLDOWN_ACTIVE`; `Retry-After` says when the next email may be sent", body = ErrorResponse),
        (status = 503, description = "`EMAIL_DISABLED`: the server sends no email", body = ErrorResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`. Sending happens after the answer, through the outbox: `EMAIL_SEND_FAILURE` and `EMAIL_TEMPLATE_FAILURE` never come from here; a failed email shows in the cooldown endpoint's `lastEmail.state`", body = ErrorResponse),
    ),
    security(("bearer" = []), ("access_cookie" = [])))]
pub async fn send(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    query: Result<Query<LocaleQuery>, QueryRejection>,
) -> Result<Json<wire::SendEmailResponse>, SingularityError> {
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
    Ok(Json(wire::SendEmailResponse::new(
        state.enroll.policy().cooldown,
    )))
}

/// `{"remaining": <seconds>}` as Singularity answers, with when the next email may be sent and
/// how the last one fared: `queued`, `sent` or `failed`.
#[utoipa::path(get, path = "/api/auth/email/verification/cooldown", tag = "Singularity",
    operation_id = "verificationCooldown",
    responses(
        (status = 200, description = "The seconds until the next verification email may be sent, and how the last one fared", body = wire::CooldownResponse),
        (status = 401, description = "`AUTHENTICATION_REQUIRED` (no token), `ACCESS_TOKEN_INVALID`, `ACCESS_TOKEN_EXPIRED`", body = ErrorResponse),
        (status = 404, description = "`USER_NOT_FOUND`", body = ErrorResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`", body = ErrorResponse),
    ),
    security(("bearer" = []), ("access_cookie" = [])))]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The token of the email's link.
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
#[utoipa::path(post, path = "/api/auth/email/verification", tag = "Singularity", params(TokenQuery),
    responses(
        (status = 200, description = "The address is verified; no one is logged in", body = wire::UserResponse),
        (status = 304, description = "`EMAIL_ALREADY_VERIFIED` (no body)"),
        (status = 401, description = "`EMAIL_VERIFICATION_TOKEN_MISSING`, `EMAIL_VERIFICATION_TOKEN_INVALID` (wrong, replaced by a newer email, or used), `EMAIL_VERIFICATION_TOKEN_EXPIRED`; `ACCESS_TOKEN_INVALID` when an access token is sent and is not valid", body = ErrorResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`", body = ErrorResponse),
    ))]
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
