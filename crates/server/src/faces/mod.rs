//! The APIs `enroll` speaks. A face parses its wire format into core calls and maps the core's
//! answers and errors back; it holds no rule of its own.

pub mod dev;
pub mod dfns;
pub mod singularity;
pub mod zitadel;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use enroll_core::model::Locale;

/// The browser's preferred language among those the emails are written in.
pub fn browser_locale(headers: &HeaderMap) -> Option<Locale> {
    crate::pages::browser_language(headers).and_then(|language| Locale::parse(language.tag()))
}

/// The token in an `Authorization: Bearer …` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|token| !token.is_empty())
}
