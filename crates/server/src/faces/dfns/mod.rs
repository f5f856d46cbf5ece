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
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};

pub use error::DfnsError;

use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
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
        .route_layer(middleware::from_fn_with_state(state, server_signed_app))
}

/// Older SDKs name their app (`X-DFNS-APPID`) on every call: the app must exist, and an app
/// with a secret must present it (`X-DFNS-APPSECRET`). Calls naming no app pass.
async fn server_signed_app(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let checked = match headers::app_id(request.headers()) {
        Ok(None) => Ok(()),
        Ok(Some(app)) => {
            let secret = request
                .headers()
                .get("x-dfns-appsecret")
                .and_then(|value| value.to_str().ok());
            state.enroll.check_app(&app, secret).await.map(drop)
        }
        Err(error) => Err(error),
    };
    match checked {
        Ok(()) => next.run(request).await,
        Err(error) => DfnsError::from(error).into_response(),
    }
}
