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
use utoipa::{IntoParams, ToSchema};

use super::error::{ErrorResponse, LinkToken, SingularityError};
use super::verification::TokenQuery;
use super::{LocaleQuery, wire};
use crate::faces::browser_locale;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct ResetRequestBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
}

/// `200 {"cooldown": <seconds>}` for any address: one with an account gets a reset link, one
/// without the "no account" email; `429` within the address's cooldown either way.
#[utoipa::path(post, path = "/api/auth/password/reset-request", tag = "Singularity", params(LocaleQuery),
    request_body = ResetRequestBody,
    responses(
        (status = 200, description = "For any address: one with an account gets a reset link, one without the \"no account\" email", body = wire::SendEmailResponse),
        (status = 400, description = "`INVALID_REQUEST`: malformed JSON, a bad email address or locale", body = ErrorResponse), (status = 415, description = "`INVALID_REQUEST`: the body is not `application/json`", body = ErrorResponse), (status = 422, description = "`INVALID_REQUEST`: a required field is missing or of the wrong type", body = ErrorResponse),
        (status = 429, description = "`EMAIL_COOLDOWN_ACTIVE`, for known and unknown addresses alike: the address's cooldown or daily cap, or the client address's or organisation's hourly cap; `Retry-After` says when", body = ErrorResponse),
        (status = 503, description = "`EMAIL_DISABLED`", body = ErrorResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`", body = ErrorResponse),
    ))]
pub async fn request(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LocaleQuery>, QueryRejection>,
    body: Result<Json<ResetRequestBody>, JsonRejection>,
) -> Result<Json<wire::SendEmailResponse>, SingularityError> {
    let Json(body) = body?;
    let Query(query) = query?;
    let email = EmailAddress::parse(&body.email)?;
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
    Ok(Json(wire::SendEmailResponse::new(
        state.enroll.policy().cooldown,
    )))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CooldownQuery {
    /// The address asked about.
    #[param(format = Email, max_length = 254)]
    email: Option<String>,
}

/// `{"remaining": <seconds>}` for an address, known or not.
#[utoipa::path(get, path = "/api/auth/password/reset/cooldown", tag = "Singularity", params(CooldownQuery),
    operation_id = "passwordResetCooldown",
    responses(
        (status = 200, description = "The seconds until the next reset email to the address may be sent", body = wire::CooldownResponse),
        (status = 400, description = "`INVALID_REQUEST`: no or a bad email address", body = ErrorResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`", body = ErrorResponse),
    ))]
pub async fn cooldown(
    State(state): State<AppState>,
    query: Result<Query<CooldownQuery>, QueryRejection>,
) -> Result<Json<wire::CooldownResponse>, SingularityError> {
    let Query(query) = query?;
    let email = query
        .email
        .as_deref()
        .map(EmailAddress::parse)
        .transpose()?
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

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetBody {
    #[schema(min_length = 8, max_length = 128)]
    new_password: String,
}

/// Sets the new password with the token of the newest reset link; every session ends.
#[utoipa::path(post, path = "/api/auth/password/reset", tag = "Singularity", params(TokenQuery),
    request_body = ResetBody,
    responses(
        (status = 200, description = "The password is changed and every session of the account ended", body = wire::SuccessResponse),
        (status = 400, description = "`PASSWORD_TOO_SHORT`, `PASSWORD_TOO_LONG`, `PASSWORD_TOO_COMMON`, `PASSWORD_CONTAINS_EMAIL`, `PASSWORD_REPEATED_CHARACTER`; `INVALID_REQUEST`", body = ErrorResponse),
        (status = 401, description = "`PASSWORD_RESET_TOKEN_MISSING`, `PASSWORD_RESET_TOKEN_INVALID` (wrong, replaced, or used), `PASSWORD_RESET_TOKEN_EXPIRED`", body = ErrorResponse),
        (status = 415, description = "`INVALID_REQUEST`: the body is not `application/json`", body = ErrorResponse),
        (status = 422, description = "`INVALID_REQUEST`: `newPassword` is missing", body = ErrorResponse),
        (status = 500, description = "`DATABASE_FAILURE`, `INTERNAL_FAILURE`", body = ErrorResponse),
    ))]
pub async fn reset(
    State(state): State<AppState>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    body: Result<Json<ResetBody>, JsonRejection>,
) -> Result<Json<wire::SuccessResponse>, SingularityError> {
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
