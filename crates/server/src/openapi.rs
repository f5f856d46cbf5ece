//! `GET /openapi.json`: the REST endpoints, their bodies and every error they answer with.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::Required;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::faces::dfns::DfnsApi;
use crate::faces::singularity::SingularityApi;
use crate::faces::zitadel::ZitadelApi;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "enroll",
        description = "Registration and email verification, speaking the Dfns, ZITADEL and Singularity APIs."
    ),
    modifiers(&Credentials),
    tags(
        (name = "Dfns", description = "Dfns Auth, as `@dfns/sdk` calls it: registration codes, registering a Key credential, logging in, signing user actions, creating users. Errors are `{\"error\":{\"message\":…}}`. `X-DFNS-APPID` is optional; an app made with a secret or a public key must also send `X-DFNS-APPSECRET` or sign the request in `X-DFNS-APISIGNATURE`."),
        (name = "Singularity", description = "Singularity's authentication API: password accounts, the verification email, password resets. Errors are `{timestamp, status, code, error, message, path}`; each response lists its codes."),
        (name = "ZITADEL", description = "The REST gateway of ZITADEL's `zitadel.user.v2.UserService` (email part), with a personal access token as the bearer. Bodies are protobuf's canonical JSON; errors are grpc-gateway's `{code, message, details}` with ZITADEL's `zitadel.v1.ErrorDetail`. The same methods are served over gRPC, gRPC-Web and Connect at `/zitadel.user.v2.UserService/<Method>`, which this document does not describe."),
    )
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
            "dfns_app_id",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-DFNS-APPID",
                "An app of the organisation (`enroll app create`); its permissions are checked for the path",
            ))),
        );
        components.add_security_scheme(
            "dfns_user_action",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-DFNS-USERACTION",
                "A user action from `POST /auth/action`, signed by the caller for this method, path and body",
            ))),
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
    document.merge(DfnsApi::openapi());
    document.merge(SingularityApi::openapi());
    document.merge(ZitadelApi::openapi());
    // These take an empty body as `{}`: Dfns's logout, and every method of ZITADEL's gateway.
    optional_bodies(&mut document, |path| {
        path == "/auth/logout" || path.starts_with("/v2/users/")
    });
    document
}

/// Marks the request bodies of the paths `optional` picks as not required.
fn optional_bodies(document: &mut utoipa::openapi::OpenApi, optional: impl Fn(&str) -> bool) {
    for (path, item) in &mut document.paths.paths {
        if !optional(path) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            if let Some(body) = &mut operation.request_body {
                body.required = Some(Required::False);
            }
        }
    }
}

async fn serve() -> Json<utoipa::openapi::OpenApi> {
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}
