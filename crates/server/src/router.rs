//! Mounts the faces and the operational endpoints, with the layers every request passes.

use std::any::Any;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Response, StatusCode};
use axum::middleware;
use axum::response::IntoResponse;
use tower::util::MapResponseLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::faces;
use crate::faces::dfns::DfnsError;
use crate::metrics;
use crate::ops;
use crate::pages;
use crate::state::AppState;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Bodies of this API are small JSON objects.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn build(state: AppState) -> Router {
    let metrics_state: Arc<metrics::Metrics> = state.metrics.clone();
    Router::new()
        .merge(faces::dfns::routes(state.clone()))
        .merge(faces::zitadel::routes(&state))
        .merge(faces::singularity::routes(&state))
        .merge(faces::dev::routes())
        .merge(pages::routes())
        .merge(ops::routes())
        .merge(crate::openapi::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            metrics_state,
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside the request id and the trace, so that a panic's answer carries the id too and
        // is logged in the request's span.
        .layer(CatchPanicLayer::custom(panicked))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(MapResponseLayer::new(unindexed_request_id))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(NewRequestId))
}

async fn not_found() -> DfnsError {
    DfnsError::new(StatusCode::NOT_FOUND, "Not Found")
}

async fn method_not_allowed() -> DfnsError {
    DfnsError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// A request's span names its id, method and path, never its query: links carry their tokens
/// there (`?token=…`, `?code=…`), and logs must not.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Each request's id (`X-Request-Id`), in its log lines and its response: the one a proxy in
/// front sent, or a new one.
#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let id = enroll_core::random::characters(ALPHABET, 20);
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// A request id differs on every response, so HTTP/2's header compression gains nothing by
/// keeping it in the connection's table and loses much: each new value was compared with every
/// id kept before it, then pushed another entry out. Marked sensitive, it goes as a literal.
fn unindexed_request_id<B>(mut response: Response<B>) -> Response<B> {
    if let Some(id) = response.headers_mut().get_mut(X_REQUEST_ID) {
        id.set_sensitive(true);
    }
    response
}

/// A panic answers like any internal error and never takes the process down.
fn panicked(_: Box<dyn Any + Send + 'static>) -> Response<axum::body::Body> {
    tracing::error!("a request handler panicked");
    DfnsError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    /// Reliability target 25: a handler that panics answers a generic 500 in JSON, with its
    /// request id, and the service goes on answering.
    #[tokio::test]
    async fn a_panicking_handler_answers_a_generic_error_and_the_service_goes_on() {
        async fn boom() -> &'static str {
            panic!("SELECT secret FROM somewhere")
        }
        let router = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(CatchPanicLayer::custom(panicked))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(MapResponseLayer::new(unindexed_request_id))
            .layer(SetRequestIdLayer::x_request_id(NewRequestId));
        let request = |path: &str| {
            axum::http::Request::get(path)
                .header("x-request-id", "req-1")
                .body(Body::empty())
                .unwrap()
        };
        let response = router.clone().oneshot(request("/boom")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-request-id"], "req-1");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            br#"{"error":{"message":"Internal Server Error"}}"#
        );
        let response = router.oneshot(request("/fine")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-request-id"], "req-1");
    }

    /// The id of every response is kept out of HTTP/2's header table: a new one or a proxy's.
    #[tokio::test]
    async fn request_ids_are_sent_unindexed() {
        let router = Router::new()
            .route("/", get(|| async { "fine" }))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(MapResponseLayer::new(unindexed_request_id))
            .layer(SetRequestIdLayer::x_request_id(NewRequestId));
        for sent in [None, Some("req-1")] {
            let mut request = axum::http::Request::get("/");
            if let Some(sent) = sent {
                request = request.header("x-request-id", sent);
            }
            let response = router
                .clone()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let id = &response.headers()["x-request-id"];
            assert!(id.is_sensitive(), "{sent:?}: {id:?}");
            if let Some(sent) = sent {
                assert_eq!(id, sent);
            }
        }
    }
}
