//! Dfns Auth, as `@dfns/sdk` calls it. Every answer, errors included, is JSON, since the SDK
//! parses every body; errors are `{"error":{"message":…}}` with Dfns's wording.

mod error;
mod headers;
mod registration_code;

use axum::Router;
use axum::routing::put;

pub use error::DfnsError;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/registration/code", put(registration_code::resend))
        .route(
            "/auth/manage/users/send-registration-email",
            put(registration_code::resend_legacy),
        )
}
