//! `GET /openapi.json`: the REST endpoints, their bodies and every error they answer with.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::faces::singularity::SingularityApi;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "enroll",
        description = "Registration and email verification, speaking the Dfns, ZITADEL and Singularity APIs."
    ),
    modifiers(&Credentials),
    tags((name = "Singularity", description = "Singularity's authentication API: password accounts, the verification email, password resets. Errors are `{timestamp, status, code, error, message, path}`; each response lists its codes."))
)]
pub struct ApiDoc;

/// How callers prove who they are.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "access_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("access_token"))),
        );
        components.add_security_scheme(
            "refresh_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("refresh_token"))),
        );
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(serve))
}

/// The whole document: every face's endpoints under the common parts.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.merge(SingularityApi::openapi());
    document
}

async fn serve() -> Json<utoipa::openapi::OpenApi> {
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}
