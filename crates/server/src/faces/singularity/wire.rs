//! Singularity's response bodies.

use enroll_core::model::User;
use enroll_core::service::Session;
use serde::Serialize;
use serde_json::{Value, json};

/// `UserResponse`, in Singularity's field order. Two-factor methods, roles beyond `USER`,
/// groups and avatars are not enroll's; they keep their empty values.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    id: String,
    name: Option<String>,
    email: String,
    identity_providers: [&'static str; 1],
    roles: [&'static str; 1],
    email_verified: bool,
    last_active: String,
    two_factor_auth_enabled: bool,
    preferred_two_factor_method: Option<String>,
    two_factor_methods: [String; 0],
    avatar: Option<Value>,
    created_at: String,
    groups: [String; 0],
}

impl From<&User> for UserResponse {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            name: user.name.clone(),
            email: user.username.to_string(),
            identity_providers: ["password"],
            roles: ["USER"],
            email_verified: user.email_verified_at.is_some(),
            last_active: user.updated_at.to_rfc3339(),
            two_factor_auth_enabled: false,
            preferred_two_factor_method: None,
            two_factor_methods: [],
            avatar: None,
            created_at: user.created_at.to_rfc3339(),
            groups: [],
        }
    }
}

/// `LoginResponse`: the user and both tokens, which the cookies carry too.
pub fn login(session: &Session) -> Value {
    json!({
        "user": UserResponse::from(&session.user),
        "accessToken": session.access_token,
        "refreshToken": session.refresh_token,
        "twoFactorRequired": false,
        "twoFactorMethods": [],
        "preferredTwoFactorMethod": null,
        "twoFactorAuthenticationToken": null,
        "location": null,
    })
}

/// `RefreshTokenResponse`.
pub fn refreshed(session: &Session) -> Value {
    json!({
        "user": UserResponse::from(&session.user),
        "accessToken": session.access_token,
        "refreshToken": session.refresh_token,
    })
}

pub fn success() -> Value {
    json!({ "success": true })
}
