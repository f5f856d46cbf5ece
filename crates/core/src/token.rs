//! The tokens the server hands out, as signed JWTs (HS256 under a key derived from the server
//! secret): access tokens, the temporary registration token, login and user-action challenges,
//! and signed user actions.
//!
//! Each carries Dfns's `https://custom/app_metadata` claim, which the Dfns SDK reads to check
//! the organisation, with a `tokenKind` so that a token made for one use is refused for all
//! others. Whether a token is still good beyond its signature and expiry (revoked, already
//! spent) is the store's to say.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::ids::{CodeId, OrgId, TokenId, UserId};

const ISSUER: &str = "enroll";
const AUDIENCE: &str = "dfns:auth:user";

/// What a token body is for; its `KIND` is the `tokenKind` claim.
pub trait TokenBody: Serialize + DeserializeOwned {
    const KIND: &'static str;
    fn org_id(&self) -> &OrgId;
    fn user_id(&self) -> &UserId;
}

/// An access token: `Authorization: Bearer …`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessClaims {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub token_id: TokenId,
}

/// A password login's access token: short-lived, tied to its session (the refresh token's
/// stored row), which logout and a password reset end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionClaims {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub session_id: TokenId,
}

/// A password login's refresh token: which session it renews. Only the newest of a session
/// is stored (as a digest); an older one that verifies was copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshClaims {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub session_id: TokenId,
}

/// The temporary token of a registration: which user, which code, which challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationClaims {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub code_id: CodeId,
    pub challenge: String,
}

/// A login challenge (`challengeIdentifier`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginClaims {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub challenge: String,
}

/// A request to be signed: method, path, and the SHA-256 of the exact body bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedRequest {
    pub method: String,
    pub path: String,
    /// Hex SHA-256 of the body.
    pub payload_sha256: String,
}

impl SignedRequest {
    pub fn new(method: &str, path: &str, payload: &[u8]) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            payload_sha256: crate::hex::encode(&Sha256::digest(payload)),
        }
    }
}

/// A user-action challenge: the request the caller asked to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionChallengeClaims {
    pub org_id: OrgId,
    pub user_id: UserId,
    /// The access token the challenge was asked with: only it may complete it.
    pub token_id: TokenId,
    pub challenge: String,
    pub request: SignedRequest,
}

/// A signed user action (`x-dfns-useraction`): good once, for one request, by one caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserActionClaims {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub token_id: TokenId,
    pub request: SignedRequest,
}

macro_rules! token_body {
    ($type:ty, $kind:literal) => {
        impl TokenBody for $type {
            const KIND: &'static str = $kind;
            fn org_id(&self) -> &OrgId {
                &self.org_id
            }
            fn user_id(&self) -> &UserId {
                &self.user_id
            }
        }
    };
}

token_body!(AccessClaims, "Auth");
token_body!(SessionClaims, "Access");
token_body!(RefreshClaims, "Refresh");
token_body!(RegistrationClaims, "Temp");
token_body!(LoginClaims, "LoginChallenge");
token_body!(ActionChallengeClaims, "ActionChallenge");
token_body!(UserActionClaims, "UserAction");

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<T> {
    token_kind: String,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    iss: String,
    aud: String,
    sub: String,
    jti: String,
    iat: i64,
    exp: i64,
    #[serde(rename = "https://custom/app_metadata")]
    metadata: Metadata<T>,
}

/// A verified token: its body, its id (`jti`) and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened<T> {
    pub id: String,
    pub body: T,
    pub expires_at: Timestamp,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Ours and of the right kind, but past its expiry.
    Expired,
    /// Not ours, not of this kind, tampered with, or not a token at all.
    Invalid,
}

/// Signs and verifies the server's tokens.
#[derive(Clone)]
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(<key>)")
    }
}

fn seconds(at: Timestamp) -> i64 {
    at.as_millis().div_euclid(1000)
}

impl TokenSigner {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
        }
    }

    /// A token with id `id`, good from `issued_at` until `expires_at`.
    pub fn issue<T: TokenBody>(
        &self,
        id: &str,
        body: T,
        issued_at: Timestamp,
        expires_at: Timestamp,
    ) -> String {
        let envelope = Envelope {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: format!("{}-{}", body.org_id(), body.user_id()),
            jti: id.to_owned(),
            iat: seconds(issued_at),
            exp: seconds(expires_at),
            metadata: Metadata {
                token_kind: T::KIND.to_owned(),
                body,
            },
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &envelope, &self.encoding)
            .unwrap_or_else(|_| unreachable!("HS256 signs any serialisable claims"))
    }

    /// The token's body, if it is one of ours, of kind `T`, and not expired at `now`.
    pub fn open<T: TokenBody>(&self, token: &str, now: Timestamp) -> Option<Opened<T>> {
        self.open_checked(token, now).ok()
    }

    /// As [`Self::open`], telling an expired token (genuine, of kind `T`) from any other refusal.
    pub fn open_checked<T: TokenBody>(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Opened<T>, Refused> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the server's clock below, not the system's.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        let envelope =
            jsonwebtoken::decode::<Envelope<T>>(token.trim(), &self.decoding, &validation)
                .map_err(|_| Refused::Invalid)?
                .claims;
        if envelope.metadata.token_kind != T::KIND {
            return Err(Refused::Invalid);
        }
        if envelope.exp <= seconds(now) {
            return Err(Refused::Expired);
        }
        Ok(Opened {
            id: envelope.jti,
            body: envelope.metadata.body,
            expires_at: Timestamp::from_millis(envelope.exp.saturating_mul(1000)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn access() -> AccessClaims {
        AccessClaims {
            org_id: OrgId::generate(),
            user_id: UserId::generate(),
            token_id: TokenId::generate(),
        }
    }

    #[test]
    fn tokens_carry_the_claim_the_dfns_sdk_reads() {
        let signer = TokenSigner::new(&[7; 32]);
        let claims = access();
        let token = signer.issue(
            "to-1",
            claims.clone(),
            NOW,
            NOW.plus(Duration::from_secs(60)),
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let metadata = &payload["https://custom/app_metadata"];
        assert_eq!(metadata["orgId"], claims.org_id.as_str());
        assert_eq!(metadata["userId"], claims.user_id.as_str());
        assert_eq!(metadata["tokenKind"], "Auth");
        let opened = signer.open::<AccessClaims>(&token, NOW).unwrap();
        assert_eq!(opened.body, claims);
        assert_eq!(opened.id, "to-1");
    }

    #[test]
    fn expired_foreign_tampered_and_other_kinds_are_refused() {
        let signer = TokenSigner::new(&[7; 32]);
        let expires = NOW.plus(Duration::from_secs(60));
        let token = signer.issue("to-1", access(), NOW, expires);
        assert!(signer.open::<AccessClaims>(&token, expires).is_none());
        assert_eq!(
            signer.open_checked::<AccessClaims>(&token, expires).err(),
            Some(Refused::Expired)
        );
        assert_eq!(
            signer.open_checked::<SessionClaims>(&token, NOW).err(),
            Some(Refused::Invalid),
            "a token of another kind is invalid, not expired"
        );
        assert!(
            TokenSigner::new(&[8; 32])
                .open::<AccessClaims>(&token, NOW)
                .is_none()
        );
        assert!(signer.open::<LoginClaims>(&token, NOW).is_none());
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 2, 'x');
        assert!(signer.open::<AccessClaims>(&tampered, NOW).is_none());
        for garbage in ["", "a.b.c", "not a token"] {
            assert!(signer.open::<AccessClaims>(garbage, NOW).is_none());
        }
    }

    #[test]
    fn a_signed_request_binds_method_path_and_exact_bytes() {
        let a = SignedRequest::new("post", "/auth/users", br#"{"email":"a@example.com"}"#);
        assert_eq!(a.method, "POST");
        let b = SignedRequest::new("POST", "/auth/users", br#"{"email": "a@example.com"}"#);
        assert_ne!(a, b);
    }
}
