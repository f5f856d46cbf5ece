//! Who calls: the access token of a `Authorization: Bearer` header (which wins) or of the
//! `access_token` cookie; and the session cookies a login sets and a logout clears.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use enroll_core::clock::Timestamp;
use enroll_core::model::Principal;
use enroll_core::service::Session;

use super::error::SingularityError;
use crate::faces::bearer;
use crate::state::AppState;

pub const ACCESS_COOKIE: &str = "access_token";
pub const REFRESH_COOKIE: &str = "refresh_token";

/// The caller of an endpoint that needs a live session.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = SingularityError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)
            .or_else(|| cookie(&parts.headers, ACCESS_COOKIE))
            .ok_or_else(SingularityError::authentication_required)?;
        // A token that fails answers ACCESS_TOKEN_INVALID or _EXPIRED; a session whose user
        // is gone, USER_NOT_FOUND.
        state
            .enroll
            .authenticate_session(token)
            .await
            .map(Self)
            .map_err(SingularityError::from)
    }
}

/// The caller if a valid access token came with the request; no token, or one that fails,
/// is no caller.
pub async fn optional_caller(headers: &HeaderMap, state: &AppState) -> Option<Principal> {
    let token = bearer(headers).or_else(|| cookie(headers, ACCESS_COOKIE))?;
    state.enroll.authenticate_session(token).await.ok()
}

/// Whether the request carries an access token at all.
pub fn has_access_token(headers: &HeaderMap) -> bool {
    bearer(headers).is_some() || cookie(headers, ACCESS_COOKIE).is_some()
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value)
}

/// `Set-Cookie` for both tokens of `session`, living as long as each token.
pub fn set_session_cookies(
    headers: &mut HeaderMap,
    session: &Session,
    now: Timestamp,
    secure: bool,
) {
    for (name, value, expires) in [
        (
            ACCESS_COOKIE,
            &session.access_token,
            session.access_expires_at,
        ),
        (
            REFRESH_COOKIE,
            &session.refresh_token,
            session.refresh_expires_at,
        ),
    ] {
        let max_age = now.until(expires).as_secs();
        push_cookie(headers, name, value, max_age, secure);
    }
}

/// `Set-Cookie` that removes both tokens.
pub fn clear_session_cookies(headers: &mut HeaderMap, secure: bool) {
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        push_cookie(headers, name, "", 0, secure);
    }
}

fn push_cookie(headers: &mut HeaderMap, name: &str, value: &str, max_age: u64, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookie =
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    // Tokens are base64url and dots: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.append(SET_COOKIE, value);
    }
}
