//! `POST /auth/users`: a signed request creates a pending employee and emails their code.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, Uri};
use enroll_core::email::EmailAddress;
use enroll_core::model::{Permission, UserKind};
use enroll_core::service::{Enroll, NewUser};
use serde::Deserialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::action::user_action_of;
use super::caller::Caller;
use super::error::{DfnsError, DfnsErrorResponse};
use super::wire::{Unsupported, UserObject, parse_body, user_object};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = DfnsCreateUserRequest)]
pub struct CreateUserBody {
    #[schema(format = Email)]
    email: String,
    #[schema(value_type = EmployeeKind)]
    kind: String,
    #[serde(default)]
    #[schema(value_type = Unsupported)]
    public_key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Unsupported)]
    external_id: Option<String>,
    #[serde(default, rename = "isSSORequired")]
    #[schema(value_type = NotRequired)]
    is_sso_required: bool,
}

/// The one kind of user made here.
#[derive(ToSchema)]
#[schema(as = DfnsCreatedUserKind)]
#[allow(dead_code, reason = "describes the value the body must carry")]
pub enum EmployeeKind {
    CustomerEmployee,
}

/// `isSSORequired`: not supported, so only `false`.
pub struct NotRequired;

impl PartialSchema for NotRequired {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([false]))
            .description(Some("Single sign-on is not supported: only `false`"))
            .into()
    }
}

impl ToSchema for NotRequired {
    fn name() -> std::borrow::Cow<'static, str> {
        "DfnsSsoRequired".into()
    }
}

/// A pending employee in the caller's organisation, emailed its registration code. The
/// request must carry a user action signed for it (`action/init`, `action`).
#[utoipa::path(post, path = "/auth/users", tag = "Dfns", operation_id = "DfnsCreateUser",
    request_body = CreateUserBody,
    responses(
        (status = 200, description = "The new user, pending until it registers", body = UserObject),
        (status = 400, description = "`Invalid request body: …` (malformed JSON, a kind other than `CustomerEmployee`, an unsupported field, a bad email address); `user action has already been used`", body = DfnsErrorResponse),
        (status = 401, description = "`Not Authorized.`: no bearer token, or one that is not live; with `X-DFNS-APPID`, an unknown app or a wrong secret or signature", body = DfnsErrorResponse),
        (status = 403, description = "The caller (or the app named by `X-DFNS-APPID`) lacks `Auth:Users:Create` or `Auth:Types:Employee`; `user action signature is missing or invalid`: no `X-DFNS-USERACTION`, or one not signed by the caller for this method, path and body", body = DfnsErrorResponse),
        (status = 409, description = "`User already exists.`", body = DfnsErrorResponse),
        (status = 413, description = "The body is larger than 64 KiB", body = DfnsErrorResponse),
        (status = 500, description = "`Internal Server Error`", body = DfnsErrorResponse),
        (status = 503, description = "`Service Unavailable`, or `Email is disabled on this server.`", body = DfnsErrorResponse),
    ),
    security(("bearer" = [], "dfns_user_action" = []), ("bearer" = [], "dfns_user_action" = [], "dfns_app_id" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UserObject>, DfnsError> {
    let bytes = body?;
    let body: CreateUserBody = parse_body(&bytes)?;
    if body.kind != UserKind::CustomerEmployee.as_str() {
        return Err(DfnsError::invalid_body(format!(
            "kind {:?} cannot be created here: use \"CustomerEmployee\"",
            body.kind
        )));
    }
    if body.is_sso_required || body.public_key.is_some() || body.external_id.is_some() {
        return Err(DfnsError::invalid_body(
            "publicKey, externalId and isSSORequired are not supported",
        ));
    }
    let email = EmailAddress::parse(&body.email)
        .map_err(|error| DfnsError::invalid_body(format!("email: {error}")))?;
    Enroll::require(
        &caller,
        &[
            Permission::AUTH_USERS_CREATE,
            UserKind::CustomerEmployee.type_permission(),
        ],
    )?;
    let user_action = user_action_of(&state, &caller, &method, &uri, &headers, &bytes)?;
    let created = state
        .enroll
        .create_user(NewUser {
            org_id: caller.user.org_id.clone(),
            email,
            kind: UserKind::CustomerEmployee,
            locale: None,
            user_action: Some(user_action),
        })
        .await?;
    Ok(Json(user_object(&created.user, &[])))
}
