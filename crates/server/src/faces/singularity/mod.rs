//! Singularity's authentication API (`/api/auth/…`), as a frontend written for it calls it:
//! accounts with passwords, sessions in HTTP-only cookies or `Authorization: Bearer`, the
//! verification email with its cooldown, and password resets. Errors are Singularity's
//! `ErrorResponse`, written in one place ([`error`]).

mod account;
mod error;
mod password;
mod session;
mod verification;
mod wire;

/// The face's endpoints in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    account::register,
    account::login,
    account::refresh,
    account::logout,
    account::me,
    verification::send,
    verification::cooldown,
    verification::verify,
    password::request,
    password::cooldown,
    password::reset,
))]
pub struct SingularityApi;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use enroll_core::Error;
use enroll_core::ids::OrgId;
use enroll_core::model::Locale;
use enroll_core::service::AccountLinks;
use serde::Deserialize;
use utoipa::IntoParams;

pub use error::SingularityError;

use crate::pacing::{floored, paced_sender};
use crate::state::AppState;

/// How the face is set up: its organisation, the pages its emails link to (none when mail is
/// off) and whether cookies are `Secure`.
#[derive(Debug, Clone)]
pub struct SingularitySettings {
    pub org_id: OrgId,
    pub links: Option<AccountLinks>,
    pub secure_cookies: bool,
}

pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/api/auth/register",
            paced_sender::<SingularityError>(post(account::register), state),
        )
        .route("/api/auth/login", post(account::login))
        .route("/api/auth/refresh", post(account::refresh))
        .route("/api/auth/logout", post(account::logout))
        .route("/api/users/me", get(account::me))
        .route("/api/auth/email/verification", post(verification::verify))
        .route(
            "/api/auth/email/verification/send",
            post(verification::send),
        )
        .route(
            "/api/auth/email/verification/cooldown",
            get(verification::cooldown),
        )
        .route(
            "/api/auth/password/reset-request",
            paced_sender::<SingularityError>(post(password::request), state),
        )
        .route(
            "/api/auth/password/reset/cooldown",
            floored(get(password::cooldown), state),
        )
        .route("/api/auth/password/reset", post(password::reset))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            error::with_path,
        ))
}

/// `?locale=xx`, which several endpoints take.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LocaleQuery {
    /// The language of the email (`en`, `de`, `fr`); else (or when empty) the user's, the
    /// browser's, the organisation's.
    #[param(pattern = r"^([A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?)?$")]
    locale: Option<String>,
}

impl LocaleQuery {
    fn locale(&self) -> Result<Option<Locale>, SingularityError> {
        match self.locale.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(tag) => Locale::parse(tag).map(Some).ok_or_else(|| {
                Error::Invalid(format!(
                    "locale {tag:?} is not a language tag such as en or de-CH"
                ))
                .into()
            }),
        }
    }
}
