//! Who is calling: `Authorization: Bearer <token>`, resolved to a live principal.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use enroll_core::Error;
use enroll_core::model::Principal;

use super::error::DfnsError;
use crate::faces::bearer;
use crate::state::AppState;

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
