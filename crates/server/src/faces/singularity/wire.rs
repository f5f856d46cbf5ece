//! Singularity's response bodies.

use enroll_core::clock::Timestamp;
use enroll_core::error::retry_after_seconds;
use enroll_core::model::{MessageState, User};
use enroll_core::service::{SendStatus, Session};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `UserResponse`, in Singularity's field order. Two-factor methods, roles beyond `USER`,
/// groups and avatars are not enroll's; they keep their empty values.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    id: String,
    name: Option<String>,
    email: String,
    /// `password`.
    #[schema(value_type = Vec<String>)]
    identity_providers: [&'static str; 1],
    /// `USER`.
    #[schema(value_type = Vec<String>)]
    roles: [&'static str; 1],
    email_verified: bool,
    last_active: String,
    two_factor_auth_enabled: bool,
    preferred_two_factor_method: Option<String>,
    #[schema(value_type = Vec<String>)]
    two_factor_methods: [String; 0],
    #[schema(value_type = Option<Object>)]
    avatar: Option<Value>,
    created_at: String,
    #[schema(value_type = Vec<String>)]
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

/// `LoginResponse`, in Singularity's field order: the user and both tokens, which the cookies
/// carry too. enroll has no second factor, so none is ever required.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse<'a> {
    user: UserResponse,
    access_token: &'a str,
    refresh_token: &'a str,
    two_factor_required: bool,
    #[schema(value_type = Vec<String>)]
    two_factor_methods: [String; 0],
    preferred_two_factor_method: Option<String>,
    two_factor_authentication_token: Option<String>,
    #[schema(value_type = Option<Object>)]
    location: Option<Value>,
}

impl<'a> From<&'a Session> for LoginResponse<'a> {
    fn from(session: &'a Session) -> Self {
        Self {
            user: UserResponse::from(&session.user),
            access_token: &session.access_token,
            refresh_token: &session.refresh_token,
            two_factor_required: false,
            two_factor_methods: [],
            preferred_two_factor_method: None,
            two_factor_authentication_token: None,
            location: None,
        }
    }
}

/// `RefreshTokenResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshResponse<'a> {
    user: UserResponse,
    access_token: &'a str,
    refresh_token: &'a str,
}

impl<'a> From<&'a Session> for RefreshResponse<'a> {
    fn from(session: &'a Session) -> Self {
        Self {
            user: UserResponse::from(&session.user),
            access_token: &session.access_token,
            refresh_token: &session.refresh_token,
        }
    }
}

/// Singularity's `{"remaining": <seconds>}`, and beyond it when the next email may be sent
/// and how the last one fared.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CooldownResponse {
    remaining: u64,
    next_send_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The account's own cooldown only: its last verification email, `null` before any.
    #[schema(value_type = Option<LastEmail>)]
    last_email: Option<Option<LastEmail>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastEmail {
    /// `queued`, `sent`, `failed`, or `superseded` (replaced before it was sent).
    state: &'static str,
    queued_at: String,
    sent_at: Option<String>,
    attempts: u32,
    last_error: Option<String>,
}

impl CooldownResponse {
    /// With `last_email`, the state of the last email (for the account's own endpoint).
    pub fn new(status: &SendStatus, last_email: bool) -> Self {
        let last = status.last_message.as_ref().map(|message| LastEmail {
            state: match message.state {
                MessageState::Queued | MessageState::Sending => "queued",
                MessageState::Sent => "sent",
                MessageState::Abandoned => "failed",
                MessageState::Superseded => "superseded",
            },
            queued_at: message.created_at.to_rfc3339(),
            sent_at: message.sent_at.map(Timestamp::to_rfc3339),
            attempts: message.attempts,
            last_error: message.last_error.clone(),
        });
        Self {
            remaining: retry_after_seconds(status.remaining),
            next_send_at: status.next_send_at.to_rfc3339(),
            last_email: last_email.then_some(last),
        }
    }
}

/// `{"success": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuccessResponse {
    success: bool,
}

pub fn success() -> SuccessResponse {
    SuccessResponse { success: true }
}

/// `{"cooldown": <seconds>}`: how long until the next email may be sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendEmailResponse {
    cooldown: u64,
}

impl SendEmailResponse {
    pub fn new(cooldown: std::time::Duration) -> Self {
        Self {
            cooldown: cooldown.as_secs(),
        }
    }
}
