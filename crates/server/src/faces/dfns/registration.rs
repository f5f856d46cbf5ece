//! `POST /auth/registration/init` and `POST /auth/registration`: a registration code buys a
//! challenge, and a Key credential's attestation of that challenge registers the user.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use enroll_core::Error;
use enroll_core::code::CodeSecret;
use enroll_core::email::EmailAddress;
use enroll_core::ids::OrgId;
use enroll_core::service::KeyAttestation;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::NamedApp;
use super::error::{DfnsError, DfnsErrorResponse};
use super::wire::{
    KeyKind, PublicKeyCredential, Unsupported, parse_body, required, unsupported_kind,
};
use crate::faces::bearer;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = DfnsRegistrationInitRequest)]
pub struct InitBody {
    #[schema(min_length = 1)]
    org_id: String,
    /// The user's email address.
    #[schema(min_length = 1)]
    username: String,
    /// The code the registration email carried.
    #[schema(min_length = 1)]
    registration_code: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsRegistrationUser)]
pub struct ChallengeUser {
    id: String,
    display_name: String,
    name: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsSupportedCredentialKinds)]
pub struct SupportedCredentialKinds {
    first_factor: Vec<&'static str>,
    second_factor: Vec<&'static str>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsAuthenticatorSelection)]
pub struct AuthenticatorSelection {
    resident_key: &'static str,
    require_resident_key: bool,
    user_verification: &'static str,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DfnsPubKeyCredParam)]
pub struct PubKeyCredParam {
    #[serde(rename = "type")]
    kind: &'static str,
    /// A COSE algorithm: -7 (ES256), -8 (EdDSA), -257 (RS256).
    alg: i32,
}

/// The `CredentialChallenge` of `registration/init`: attest `challenge` with a new key and
/// send it to `registration` with `temporaryAuthenticationToken` as the bearer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsRegistrationChallenge)]
pub struct RegistrationChallenge {
    user: ChallengeUser,
    temporary_authentication_token: String,
    challenge: String,
    supported_credential_kinds: SupportedCredentialKinds,
    authenticator_selection: AuthenticatorSelection,
    attestation: &'static str,
    pub_key_cred_params: Vec<PubKeyCredParam>,
    exclude_credentials: Vec<PublicKeyCredential>,
    otp_url: &'static str,
}

/// A registration code buys a challenge to register a Key credential with.
#[utoipa::path(post, path = "/auth/registration/init", tag = "Dfns", operation_id = "DfnsRegistrationInit",
    request_body = InitBody,
    responses(
        (status = 200, description = "The code is good: a challenge, and the temporary token to answer it with", body = RegistrationChallenge),
        (status = 400, description = "`Invalid request body: …`; `Registration code expired`", body = DfnsErrorResponse),
        (status = 401, description = "`Invalid registration code`: a wrong, replaced or exhausted code and an unknown user alike; `User already exists.` for the holder of the code that registered the user; with `X-DFNS-APPID`, `Not Authorized.` for an unknown app or a wrong secret or signature", body = DfnsErrorResponse),
        (status = 403, description = "The app named by `X-DFNS-APPID` lacks `Auth:Users:Read`", body = DfnsErrorResponse),
        (status = 413, description = "The body is larger than 64 KiB", body = DfnsErrorResponse),
        (status = 500, description = "`Internal Server Error`", body = DfnsErrorResponse),
        (status = 503, description = "`Service Unavailable`", body = DfnsErrorResponse),
    ),
    security((), ("dfns_app_id" = [])))]
pub async fn init(
    State(state): State<AppState>,
    app: Option<Extension<NamedApp>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RegistrationChallenge>, DfnsError> {
    let body: InitBody = parse_body(&body?)?;
    let code = required("registrationCode", &body.registration_code)?;
    let org = required("orgId", &body.org_id)?;
    let username = required("username", &body.username)?;
    // No account has an org id or address that does not parse: such requests get the answer
    // an unknown user gets, which is a wrong code's.
    let (Some(org_id), Ok(username)) = (OrgId::parse(org), EmailAddress::parse(username)) else {
        return Err(Error::CodeInvalid.into());
    };
    NamedApp::allows(app.as_deref(), &org_id)?;
    let started = state
        .enroll
        .start_registration(org_id, username, CodeSecret::from_user_input(code))
        .await?;
    let user = &started.user;
    let algorithm = |alg| PubKeyCredParam {
        kind: "public-key",
        alg,
    };
    Ok(Json(RegistrationChallenge {
        user: ChallengeUser {
            id: user.id.to_string(),
            display_name: user.username.as_str().to_owned(),
            name: user.username.as_str().to_owned(),
        },
        temporary_authentication_token: started.temporary_token,
        challenge: started.challenge,
        supported_credential_kinds: SupportedCredentialKinds {
            first_factor: vec!["Key"],
            second_factor: Vec::new(),
        },
        authenticator_selection: AuthenticatorSelection {
            resident_key: "required",
            require_resident_key: true,
            user_verification: "required",
        },
        attestation: "direct",
        pub_key_cred_params: vec![algorithm(-7), algorithm(-8), algorithm(-257)],
        exclude_credentials: Vec::new(),
        otp_url: "",
    }))
}

/// A Key credential's attestation (base64url fields).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsKeyCredentialInfo)]
pub struct CredentialInfo {
    cred_id: String,
    client_data: String,
    attestation_data: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsCredentialAttestation)]
pub struct AttestationBody {
    #[schema(value_type = KeyKind)]
    credential_kind: String,
    /// Read once the kind is known to be Key: other kinds carry other fields.
    #[schema(value_type = CredentialInfo, required = true)]
    credential_info: Option<Value>,
    #[serde(default)]
    credential_name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = DfnsRegistrationRequest)]
pub struct RegisterBody {
    first_factor_credential: AttestationBody,
    #[serde(default)]
    #[schema(value_type = Unsupported)]
    second_factor_credential: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Unsupported)]
    recovery_credential: Option<Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsRegisteredCredential)]
pub struct RegisteredCredential {
    uuid: String,
    kind: &'static str,
    credential_kind: &'static str,
    name: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DfnsRegisteredUser)]
pub struct RegisteredUser {
    id: String,
    username: String,
    org_id: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DfnsRegistrationResponse)]
pub struct Registration {
    credential: RegisteredCredential,
    user: RegisteredUser,
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

/// The attested key becomes the user's credential and the user is registered; the code is used.
#[utoipa::path(post, path = "/auth/registration", tag = "Dfns", operation_id = "DfnsRegistration",
    request_body = RegisterBody,
    responses(
        (status = 200, description = "Registered", body = Registration),
        (status = 400, description = "`Invalid request body: …`, an unsupported credential kind or second factor, a `credId` or attestation that does not parse; `Registration code expired`", body = DfnsErrorResponse),
        (status = 401, description = "`Not Authorized.`: the bearer is not a live `temporaryAuthenticationToken` of `registration/init` (any other token included); `Credential signature is not valid.`; `Invalid registration code` when the code was replaced, used or exhausted meanwhile; `User already exists.` when the user registered meanwhile; with `X-DFNS-APPID`, an unknown app or a wrong secret or signature", body = DfnsErrorResponse),
        (status = 413, description = "The body is larger than 64 KiB", body = DfnsErrorResponse),
        (status = 500, description = "`Internal Server Error`", body = DfnsErrorResponse),
        (status = 503, description = "`Service Unavailable`", body = DfnsErrorResponse),
    ),
    security(("bearer" = []), ("bearer" = [], "dfns_app_id" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Registration>, DfnsError> {
    let token = bearer(&headers).ok_or(Error::Unauthenticated)?.to_owned();
    let attestation = attestation(&body?)?;
    let registered = state
        .enroll
        .complete_registration(&token, attestation)
        .await?;
    let (user, credential) = (&registered.user, &registered.credential);
    Ok(Json(Registration {
        credential: RegisteredCredential {
            uuid: credential.id.to_string(),
            kind: "Key",
            credential_kind: "Key",
            name: credential.name.clone(),
        },
        user: RegisteredUser {
            id: user.id.to_string(),
            username: user.username.as_str().to_owned(),
            org_id: user.org_id.to_string(),
        },
    }))
}
