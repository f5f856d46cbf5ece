//! Dfns Auth, as `@dfns/sdk` calls it. Every answer, errors included, is JSON, since the SDK
//! parses every body; errors are `{"error":{"message":…}}` with Dfns's wording.

mod action;
mod caller;
mod error;
mod headers;
mod login;
mod registration;
mod registration_code;
mod users;
mod wire;

use axum::Router;
use axum::routing::{post, put};

pub use error::DfnsError;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/registration/code", put(registration_code::resend))
        .route(
            "/auth/manage/users/send-registration-email",
            put(registration_code::resend_legacy),
        )
        .route("/auth/registration/init", post(registration::init))
        .route("/auth/registration", post(registration::complete))
        .route("/auth/login/init", post(login::init))
        .route("/auth/login", post(login::complete))
        .route("/auth/logout", put(login::logout))
        .route("/auth/action/init", post(action::init))
        .route("/auth/action", post(action::sign))
        .route("/auth/users", post(users::create))
}
