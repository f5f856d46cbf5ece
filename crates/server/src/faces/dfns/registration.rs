//! `POST /auth/registration/init` and `POST /auth/registration`: a registration code buys a
//! challenge, and a Key credential's attestation of that challenge registers the user.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use enroll_core::Error;
use enroll_core::code::CodeSecret;
use enroll_core::email::EmailAddress;
use enroll_core::ids::OrgId;
use enroll_core::service::KeyAttestation;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::DfnsError;
use super::wire::{parse_body, required, unsupported_kind};
use crate::faces::bearer;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InitBody {
    org_id: String,
    username: String,
    registration_code: String,
}

pub async fn init(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, DfnsError> {
    let body: InitBody = parse_body(&body?)?;
    let code = required("registrationCode", &body.registration_code)?;
    let org = required("orgId", &body.org_id)?;
    let username = required("username", &body.username)?;
    // No account has an org id or address that does not parse: such requests get the answer
    // an unknown user gets, which is a wrong code's.
    let (Some(org_id), Ok(username)) = (OrgId::parse(org), EmailAddress::parse(username)) else {
        return Err(Error::CodeInvalid.into());
    };
    let started = state
        .enroll
        .start_registration(org_id, username, CodeSecret::from_user_input(code))
        .await?;
    let user = &started.user;
    Ok(Json(json!({
        "user": {
            "id": user.id,
            "displayName": user.username.as_str(),
            "name": user.username.as_str(),
        },
        "temporaryAuthenticationToken": started.temporary_token,
        "challenge": started.challenge,
        "supportedCredentialKinds": { "firstFactor": ["Key"], "secondFactor": [] },
        "authenticatorSelection": {
            "residentKey": "required",
            "requireResidentKey": true,
            "userVerification": "required",
        },
        "attestation": "direct",
        "pubKeyCredParams": [
            { "type": "public-key", "alg": -7 },
            { "type": "public-key", "alg": -8 },
            { "type": "public-key", "alg": -257 },
        ],
        "excludeCredentials": [],
        "otpUrl": "",
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialInfo {
    cred_id: String,
    client_data: String,
    attestation_data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttestationBody {
    credential_kind: String,
    /// Read once the kind is known to be Key: other kinds carry other fields.
    credential_info: Option<Value>,
    #[serde(default)]
    credential_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterBody {
    first_factor_credential: AttestationBody,
    #[serde(default)]
    second_factor_credential: Option<Value>,
    #[serde(default)]
    recovery_credential: Option<Value>,
}

fn attestation(body: &[u8]) -> Result<KeyAttestation, DfnsError> {
    let body: RegisterBody = parse_body(body)?;
    if body.second_factor_credential.is_some() || body.recovery_credential.is_some() {
        return Err(DfnsError::invalid_body(
            "only firstFactorCredential is supported: second factors and recovery credentials are not",
        ));
    }
    let first = body.first_factor_credential;
    if first.credential_kind != "Key" {
        return Err(unsupported_kind(&first.credential_kind));
    }
    let info = first.credential_info.ok_or_else(|| {
        DfnsError::invalid_body("firstFactorCredential.credentialInfo is required")
    })?;
    let info: CredentialInfo = serde_json::from_value(info).map_err(|error| {
        DfnsError::invalid_body(format!("firstFactorCredential.credentialInfo: {error}"))
    })?;
    Ok(KeyAttestation {
        cred_id: info.cred_id,
        client_data: info.client_data,
        attestation_data: info.attestation_data,
        name: first.credential_name,
    })
}

pub async fn complete(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, DfnsError> {
    let token = bearer(&headers).ok_or(Error::Unauthenticated)?.to_owned();
    let attestation = attestation(&body?)?;
    let registered = state
        .enroll
        .complete_registration(&token, attestation)
        .await?;
    let (user, credential) = (&registered.user, &registered.credential);
    Ok(Json(json!({
        "credential": {
            "uuid": credential.id,
            "kind": "Key",
            "credentialKind": "Key",
            "name": credential.name,
        },
        "user": {
            "id": user.id,
            "username": user.username.as_str(),
            "orgId": user.org_id,
        },
    })))
}
