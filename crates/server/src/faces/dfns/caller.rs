//! Who is calling: `Authorization: Bearer <token>`, resolved to a live principal.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use enroll_core::Error;
use enroll_core::model::Principal;

use super::error::DfnsError;
use crate::state::AppState;

/// The token in an `Authorization: Bearer …` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|token| !token.is_empty())
}

/// An authenticated caller; anything else is `401 Not Authorized.`
#[derive(Debug)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = DfnsError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, DfnsError> {
        let token = bearer(&parts.headers).ok_or(Error::Unauthenticated)?;
        Ok(Self(state.enroll.authenticate(token).await?))
    }
}
