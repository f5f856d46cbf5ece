//! ZITADEL's v2 user service (`zitadel.user.v2.UserService`), email verification part, on the
//! server's one port: gRPC and gRPC-Web (by content type) and the Connect protocol at
//! `/zitadel.user.v2.UserService/<Method>`, and the gateway's REST paths under `/v2/users`.
//! Each protocol decodes the request, calls the same method in `users`/`email`, and writes the
//! answer or the one [`ZitadelError`] in its own form.

mod call;
mod connect;
mod email;
mod error;
mod grpc;
mod rest;
mod schema;
mod users;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderName, Method};
use axum::response::IntoResponse;
use axum::routing::any;
use tower::ServiceExt as _;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::ZitadelError;
pub use rest::ZitadelApi;

use crate::state::AppState;

pub fn routes(state: &AppState) -> Router<AppState> {
    let grpc = grpc::service(state.enroll.clone());
    let rpc = move |State(state): State<AppState>, Path(method): Path<String>, request: Request| {
        let grpc = grpc.clone();
        async move {
            if is_grpc(&request) {
                match grpc.oneshot(request).await {
                    Ok(response) => response.map(Body::new).into_response(),
                    Err(never) => match never {},
                }
            } else {
                connect::serve(state.enroll.clone(), &method, request).await
            }
        }
    };
    Router::new()
        .route("/zitadel.user.v2.UserService/{method}", any(rpc))
        .merge(rest::routes())
        .layer(cors())
}

/// Browser clients (gRPC-Web, Connect) call from their own origin with a bearer token, no
/// cookies: any origin may, and may read the status the protocols put in headers.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::POST])
        .allow_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            HeaderName::from_static("connect-protocol-version"),
            HeaderName::from_static("connect-timeout-ms"),
            HeaderName::from_static("grpc-timeout"),
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(24 * 60 * 60))
}

/// `application/grpc…` and `application/grpc-web…` go to tonic; everything else is Connect.
fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}
