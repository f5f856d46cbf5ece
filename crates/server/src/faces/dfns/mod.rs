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

/// The face's endpoints in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    registration_code::resend,
    registration_code::resend_legacy,
    registration::init,
    registration::complete,
    login::init,
    login::complete,
    login::logout,
    action::init,
    action::sign,
    users::create,
))]
pub struct DfnsApi;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};

use axum::http::HeaderMap;
use enroll_core::Error;
use enroll_core::credential::ApiRequest;
use enroll_core::ids::{AppId, OrgId};
use enroll_core::model::Permission;
use enroll_core::service::Enroll;
pub use error::DfnsError;

use crate::pacing::{floored, paced_sender};
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/auth/registration/code",
            paced_sender::<DfnsError>(put(registration_code::resend), &state),
        )
        .route(
            "/auth/manage/users/send-registration-email",
            put(registration_code::resend_legacy),
        )
        .route(
            "/auth/registration/init",
            floored(post(registration::init), &state),
        )
        .route("/auth/registration", post(registration::complete))
        .route("/auth/login/init", floored(post(login::init), &state))
        .route("/auth/login", post(login::complete))
        .route("/auth/logout", put(login::logout))
        .route("/auth/action/init", post(action::init))
        .route("/auth/action", post(action::sign))
        .route("/auth/users", post(users::create))
        .route_layer(middleware::from_fn_with_state(state, server_signed_app))
}

/// Older SDKs name their app (`X-DFNS-APPID`) on every call: the app must exist, an app with a
/// secret must present it (`X-DFNS-APPSECRET`), and an app with a key must sign the request
/// (`X-DFNS-APISIGNATURE`). Calls naming no app pass.
async fn server_signed_app(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match check_server_signed_app(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// The organisation of the app a call named and that passed its checks: the call may act in
/// that organisation only.
#[derive(Debug, Clone)]
pub struct NamedApp(pub OrgId);

impl NamedApp {
    /// Refuses, as an unknown app, a call whose app belongs to another organisation.
    pub fn allows(app: Option<&Self>, org_id: &OrgId) -> Result<(), Error> {
        match app {
            Some(Self(app_org)) if app_org != org_id => Err(Error::UnknownApp),
            _ => Ok(()),
        }
    }
}

/// What a call says about its app: the app id, and the secret and signature it sent.
struct AppHeaders {
    app: AppId,
    secret: Option<String>,
    signature: Option<String>,
}

fn app_headers(headers: &HeaderMap) -> Result<Option<AppHeaders>, Error> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    Ok(headers::app_id(headers)?.map(|app| AppHeaders {
        app,
        secret: header("x-dfns-appsecret"),
        signature: header("x-dfns-apisignature"),
    }))
}

async fn check_server_signed_app(state: &AppState, request: Request) -> Result<Request, DfnsError> {
    let Some(AppHeaders {
        app,
        secret,
        signature,
    }) = app_headers(request.headers())?
    else {
        return Ok(request);
    };
    let app = state.enroll.check_app(&app, secret.as_deref()).await?;
    Enroll::require_of_app(&app, app_permissions(request.uri().path()))?;
    let mut request = request;
    request
        .extensions_mut()
        .insert(NamedApp(app.org_id.clone()));
    let Some(key) = &app.public_key else {
        return Ok(request);
    };
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_SIGNED_BODY)
        .await
        .map_err(|_| DfnsError::invalid_body("the body is too large or was cut short"))?;
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |path| path.as_str());
    Enroll::check_api_signature(
        &app,
        key,
        signature.as_deref(),
        &ApiRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            path_and_query,
            body: &body,
            headers: &headers,
        },
    )?;
    Ok(Request::from_parts(parts, Body::from(body)))
}

/// What an app naming itself must hold to call a path, as Dfns documented app permissions;
/// the legacy resend path checks its own (they depend on the user's kind).
fn app_permissions(path: &str) -> &'static [Permission] {
    const READ_USERS: &[Permission] = &[Permission::AUTH_USERS_READ];
    const SIGN_ACTIONS: &[Permission] = &[Permission::AUTH_ACTION_SIGN];
    const CREATE_EMPLOYEES: &[Permission] = &[
        Permission::AUTH_USERS_CREATE,
        Permission::AUTH_TYPES_EMPLOYEE,
    ];
    match path {
        "/auth/registration/init" | "/auth/login/init" | "/auth/login" => READ_USERS,
        "/auth/action/init" | "/auth/action" => SIGN_ACTIONS,
        "/auth/users" => CREATE_EMPLOYEES,
        _ => &[],
    }
}

/// Signed bodies are buffered to be checked; they are small JSON objects.
const MAX_SIGNED_BODY: usize = 64 * 1024;
