//! Pages users open from their emails. They answer in the user's language, are never cached,
//! send no referrer (their links carry codes), and change nothing on GET: only a form's POST
//! acts, so that link scanners that fetch a URL use up nothing.

mod account;
mod account_texts;
mod locale;
mod texts;
mod verification;

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_FRAME_OPTIONS,
};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;

pub(crate) use locale::from_header as browser_language;

/// The hosted pages of the Singularity face's emails, used when no frontend is configured.
pub const VERIFY_EMAIL_PATH: &str = "/ui/auth/verify-email";
pub const RESET_PASSWORD_PATH: &str = "/ui/auth/reset-password";
pub const FORGOT_PASSWORD_PATH: &str = "/ui/auth/forgot-password";
pub const SIGN_UP_PATH: &str = "/ui/auth/register";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            verification::PATH,
            get(verification::show).post(verification::verify),
        )
        .route(verification::RESEND_PATH, post(verification::resend))
        .route(
            VERIFY_EMAIL_PATH,
            get(account::show_verify).post(account::verify),
        )
        .route(
            RESET_PASSWORD_PATH,
            get(account::show_reset).post(account::reset),
        )
        .route(
            FORGOT_PASSWORD_PATH,
            get(account::show_forgot).post(account::forgot),
        )
        .route(
            SIGN_UP_PATH,
            get(account::show_register).post(account::register),
        )
}

/// Renders `template` (HTML-escaped) into a page answered with `status`; a page that fails
/// to render is logged and answered with a plain apology.
fn render(
    template: &str,
    context: minijinja::Value,
    status: axum::http::StatusCode,
    retry_after: Option<u64>,
) -> Response {
    let mut environment = minijinja::Environment::new();
    environment.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    let html = environment
        .render_str(template, context)
        .unwrap_or_else(|error| {
            tracing::error!(%error, "a page did not render");
            "<!doctype html><title>enroll</title><p>The page could not be shown.</p>".to_owned()
        });
    let mut response = page(status, html);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, seconds.into());
    }
    response
}

/// The headers every page carries.
fn page(status: axum::http::StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    response
}
