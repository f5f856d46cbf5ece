//! Shapes the Dfns SDK reads, shared by several endpoints.

use enroll_core::credential::Credential;
use enroll_core::model::{User, UserKind, UserState};
use enroll_core::service::{ChallengeIssued, KeyAssertion};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssertionBody {
    cred_id: String,
    client_data: String,
    signature: String,
    // An `algorithm` field ("RSA-SHA256", …) some clients add is ignored: the key decides.
}

/// `firstFactor` of a login or user-action signature.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirstFactor {
    kind: String,
    credential_assertion: Option<AssertionBody>,
}

/// A signed challenge: `{challengeIdentifier, firstFactor, secondFactor?}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedChallenge {
    pub challenge_identifier: String,
    pub first_factor: FirstFactor,
    #[serde(default)]
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

fn public_key_entries(credentials: &[Credential]) -> Vec<Value> {
    credentials
        .iter()
        .map(|credential| json!({ "type": "public-key", "id": credential.cred_id }))
        .collect()
}

/// The `UserActionChallenge` of `login/init` and `action/init`.
pub fn user_action_challenge(issued: &ChallengeIssued) -> Value {
    json!({
        "challenge": issued.challenge,
        "challengeIdentifier": issued.challenge_identifier,
        "supportedCredentialKinds": [
            { "kind": "Key", "factor": "either", "requiresSecondFactor": false }
        ],
        "userVerification": "required",
        "attestation": "direct",
        "externalAuthenticationUrl": "",
        "allowCredentials": {
            "key": public_key_entries(&issued.credentials),
            "webauthn": [],
        },
    })
}

/// The User object of `POST /auth/users`.
pub fn user_object(user: &User, permissions: &[String]) -> Value {
    json!({
        "username": user.username.as_str(),
        "name": user.username.as_str(),
        "userId": user.id,
        "kind": user.kind.shown_as().as_str(),
        "credentialUuid": "",
        "orgId": user.org_id,
        "permissions": permissions,
        "scopes": [],
        "isActive": true,
        "isServiceAccount": user.kind == UserKind::ServiceAccount,
        "isRegistered": user.state == UserState::Registered,
        "isSSORequired": false,
        "permissionAssignments": [],
    })
}
