//! Shapes the Dfns SDK reads, shared by several endpoints.

use enroll_core::credential::Credential;
use enroll_core::model::{User, UserKind, UserState};
use enroll_core::service::{ChallengeIssued, KeyAssertion};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::error::DfnsError;

/// Parses a JSON body, answering what is wrong with it in Dfns's error shape.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, DfnsError> {
    serde_json::from_slice(body).map_err(DfnsError::invalid_body)
}

/// Fails unless a required string field has content.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, DfnsError> {
    let value = value.trim();
    if value.is_empty() {
        Err(DfnsError::invalid_body(format!(
            "{field} must not be empty"
        )))
    } else {
        Ok(value)
    }
}

/// A field of Dfns's API this server does not support: absent or `null`, anything else is
/// refused with 400.
pub struct Unsupported;

impl PartialSchema for Unsupported {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Null)
            .description(Some("Not supported: absent or `null`"))
            .into()
    }
}

impl ToSchema for Unsupported {
    fn name() -> std::borrow::Cow<'static, str> {
        "DfnsUnsupported".into()
    }
}

/// The one credential kind this server takes.
#[derive(ToSchema)]
#[schema(as = DfnsCredentialKind)]
#[allow(dead_code, reason = "describes the value the body must carry")]
pub enum KeyKind {
    Key,
}

/// A Key credential's signature of a challenge (base64url fields).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsCredentialAssertion)]
pub struct AssertionBody {
    cred_id: String,
    client_data: String,
    signature: String,
    // An `algorithm` field ("RSA-SHA256", …) some clients add is ignored: the key decides.
}

/// `firstFactor` of a login or user-action signature.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsFirstFactor)]
pub struct FirstFactor {
    #[schema(value_type = KeyKind)]
    kind: String,
    /// Required for kind `Key`.
    #[schema(value_type = AssertionBody, required = true)]
    credential_assertion: Option<AssertionBody>,
}

/// A signed challenge: `{challengeIdentifier, firstFactor, secondFactor?}`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = DfnsSignedChallenge)]
pub struct SignedChallenge {
    /// The `challengeIdentifier` of `login/init` or `action/init`.
    pub challenge_identifier: String,
    pub first_factor: FirstFactor,
    /// Not supported: Key credentials need no second factor.
    #[serde(default)]
    #[schema(value_type = Unsupported)]
    pub second_factor: Option<Value>,
}

impl SignedChallenge {
    pub fn parse(body: &[u8]) -> Result<(String, KeyAssertion), DfnsError> {
        let signed: Self = parse_body(body)?;
        let identifier = required("challengeIdentifier", &signed.challenge_identifier)?.to_owned();
        if signed.second_factor.is_some() {
            return Err(DfnsError::invalid_body(
                "secondFactor is not supported: Key credentials need no second factor",
            ));
        }
        Ok((identifier, signed.first_factor.into_assertion()?))
    }
}

impl FirstFactor {
    fn into_assertion(self) -> Result<KeyAssertion, DfnsError> {
        if self.kind != "Key" {
            return Err(unsupported_kind(&self.kind));
        }
        let assertion = self.credential_assertion.ok_or_else(|| {
            DfnsError::invalid_body("firstFactor.credentialAssertion is required for kind Key")
        })?;
        Ok(KeyAssertion {
            cred_id: assertion.cred_id,
            client_data: assertion.client_data,
            signature: assertion.signature,
        })
    }
}

pub fn unsupported_kind(kind: &str) -> DfnsError {
    DfnsError::bad_request(format!(
        "Credential kind {kind} is not supported: this server accepts Key credentials (ECDSA P-256, Ed25519 or RSA)"
    ))
}

/// `{"message":"success"}`.
#[derive(Serialize, ToSchema)]
#[schema(as = DfnsSuccess)]
pub struct Success {
    #[schema(example = "success")]
    message: &'static str,
}

pub fn success() -> Success {
    Success { message: "success" }
}

/// A credential the challenge may be answered with.
#[derive(Serialize, ToSchema)]
#[schema(as = DfnsPublicKeyCredential)]
pub struct PublicKeyCredential {
    /// `public-key`
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsSupportedCredentialKind)]
pub struct SupportedCredentialKind {
    kind: &'static str,
    factor: &'static str,
    requires_second_factor: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DfnsAllowCredentials)]
pub struct AllowCredentials {
    key: Vec<PublicKeyCredential>,
    webauthn: Vec<PublicKeyCredential>,
}

/// The `UserActionChallenge` of `login/init` and `action/init`: sign `challenge` with one of
/// `allowCredentials.key` and send it back with `challengeIdentifier`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsUserActionChallenge)]
pub struct UserActionChallenge {
    challenge: String,
    challenge_identifier: String,
    supported_credential_kinds: Vec<SupportedCredentialKind>,
    user_verification: &'static str,
    attestation: &'static str,
    external_authentication_url: &'static str,
    allow_credentials: AllowCredentials,
}

/// The `UserActionChallenge` of `login/init` and `action/init`.
pub fn user_action_challenge(issued: &ChallengeIssued) -> UserActionChallenge {
    UserActionChallenge {
        challenge: issued.challenge.clone(),
        challenge_identifier: issued.challenge_identifier.clone(),
        supported_credential_kinds: vec![SupportedCredentialKind {
            kind: "Key",
            factor: "either",
            requires_second_factor: false,
        }],
        user_verification: "required",
        attestation: "direct",
        external_authentication_url: "",
        allow_credentials: AllowCredentials {
            key: public_key_entries(&issued.credentials),
            webauthn: Vec::new(),
        },
    }
}

fn public_key_entries(credentials: &[Credential]) -> Vec<PublicKeyCredential> {
    credentials
        .iter()
        .map(|credential| PublicKeyCredential {
            kind: "public-key",
            id: credential.cred_id.clone(),
        })
        .collect()
}

/// The User object of `POST /auth/users`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsUser)]
pub struct UserObject {
    username: String,
    name: String,
    user_id: String,
    /// `CustomerEmployee`, `EndUser` or `ServiceAccount`.
    kind: String,
    credential_uuid: &'static str,
    org_id: String,
    permissions: Vec<String>,
    scopes: Vec<String>,
    is_active: bool,
    is_service_account: bool,
    is_registered: bool,
    #[serde(rename = "isSSORequired")]
    is_sso_required: bool,
    #[schema(value_type = Vec<Object>)]
    permission_assignments: Vec<Value>,
}

/// The User object of `POST /auth/users`.
pub fn user_object(user: &User, permissions: &[String]) -> UserObject {
    UserObject {
        username: user.username.as_str().to_owned(),
        name: user.username.as_str().to_owned(),
        user_id: user.id.to_string(),
        kind: user.kind.shown_as().as_str().to_owned(),
        credential_uuid: "",
        org_id: user.org_id.to_string(),
        permissions: permissions.to_vec(),
        scopes: Vec::new(),
        is_active: true,
        is_service_account: user.kind == UserKind::ServiceAccount,
        is_registered: user.state == UserState::Registered,
        is_sso_required: false,
        permission_assignments: Vec::new(),
    }
}
