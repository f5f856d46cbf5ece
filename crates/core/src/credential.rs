//! Key credentials: public keys as clients send them (SPKI PEM), and the two proofs made with
//! them — the attestation that registers a key and the assertion that answers a challenge.
//!
//! Signed bytes are always the bytes the client sent: client data is hashed and verified as
//! received, never re-serialised.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use ring::signature::{self, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spki::der::DecodePem as _;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned};

use crate::clock::Timestamp;
use crate::error::Error;
use crate::ids::{CredentialId, OrgId, UserId};

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The signature schemes a Key credential may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// ECDSA over P-256 with SHA-256, DER-encoded signatures.
    EcdsaP256,
    /// Pure Ed25519.
    Ed25519,
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 to 8192 bits.
    RsaPkcs1Sha256,
}

impl KeyAlgorithm {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::Ed25519 => "ed25519",
            Self::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::EcdsaP256, Self::Ed25519, Self::RsaPkcs1Sha256]
            .into_iter()
            .find(|algorithm| algorithm.as_str() == value)
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Self::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
            Self::Ed25519 => &signature::ED25519,
            Self::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        }
    }
}

/// A public key as a client sent it, parsed once.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: KeyAlgorithm,
    /// The key in the form the verifier takes: an uncompressed point, 32 bytes, or a DER
    /// `RSAPublicKey`.
    key: Vec<u8>,
    pem: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Parses a `-----BEGIN PUBLIC KEY-----` (SPKI) PEM of a P-256, Ed25519 or RSA key.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::Invalid(format!("publicKey: {reason}"));
        let info = SubjectPublicKeyInfoOwned::from_pem(pem.trim())
            .map_err(|_| invalid("not a PEM-encoded SPKI public key"))?;
        let key = info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| invalid("the key bits are not whole bytes"))?
            .to_vec();
        let oid = info.algorithm.oid;
        let algorithm = if oid == EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.decode_as::<ObjectIdentifier>().ok());
            if curve != Some(P256) {
                return Err(invalid(
                    "only the P-256 curve is supported for EC keys (or use Ed25519 or RSA)",
                ));
            }
            KeyAlgorithm::EcdsaP256
        } else if oid == ED25519 {
            KeyAlgorithm::Ed25519
        } else if oid == RSA_ENCRYPTION {
            KeyAlgorithm::RsaPkcs1Sha256
        } else {
            return Err(invalid(
                "unsupported key type; use ECDSA P-256, Ed25519 or RSA",
            ));
        };
        let length_ok = match algorithm {
            KeyAlgorithm::EcdsaP256 => key.len() == 65 && key[0] == 4,
            KeyAlgorithm::Ed25519 => key.len() == 32,
            // 2048 bits and more; the verifier checks the exact bounds.
            KeyAlgorithm::RsaPkcs1Sha256 => key.len() >= 256,
        };
        if !length_ok {
            return Err(invalid(match algorithm {
                KeyAlgorithm::RsaPkcs1Sha256 => "RSA keys need at least 2048 bits",
                _ => "the key has the wrong length",
            }));
        }
        Ok(Self {
            algorithm,
            key,
            pem: pem.to_owned(),
        })
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The PEM exactly as the client sent it.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(self.algorithm.verification(), &self.key)
            .verify(message, signature)
            .is_ok()
    }
}

/// Decodes base64url, with or without padding (the SDK strips it; other clients may not).
pub fn decode_base64url(field: &str, text: &str) -> Result<Vec<u8>, Error> {
    let text = text.trim();
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|_| Error::Invalid(format!("{field} is not valid base64url")))
}

/// Which ceremony client data was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceremony {
    /// `key.create`: registering a new key.
    Create,
    /// `key.get`: answering a login or user-action challenge.
    Get,
}

impl Ceremony {
    const fn client_data_type(self) -> &'static str {
        match self {
            Self::Create => "key.create",
            Self::Get => "key.get",
        }
    }
}

#[derive(Deserialize)]
struct ClientDataFields {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
}

/// Checks that client data (as received) was made for `ceremony` and `challenge`; other keys
/// (`origin`, `crossOrigin`) are allowed and ignored.
fn check_client_data(client_data: &[u8], ceremony: Ceremony, challenge: &str) -> Result<(), Error> {
    let fields: ClientDataFields = serde_json::from_slice(client_data).map_err(|_| {
        Error::Invalid("clientData is not a JSON object with type and challenge".into())
    })?;
    if fields.kind != ceremony.client_data_type() || fields.challenge != challenge {
        return Err(Error::SignatureInvalid);
    }
    Ok(())
}

#[derive(Deserialize)]
struct AttestationFields {
    #[serde(rename = "publicKey")]
    public_key: String,
    signature: String,
}

/// What the key signs when it is registered, byte for byte as the Dfns signers build it.
#[derive(Serialize)]
struct Fingerprint<'a> {
    #[serde(rename = "clientDataHash")]
    client_data_hash: String,
    #[serde(rename = "publicKey")]
    public_key: &'a str,
}

fn unhex(field: &str, text: &str) -> Result<Vec<u8>, Error> {
    let invalid = || Error::Invalid(format!("{field} is not hexadecimal"));
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return Err(invalid());
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).map_err(|_| invalid()))
        .collect()
}

/// Verifies a Key attestation: `clientData` and `attestationData` are base64url as sent.
/// Returns the registered public key.
pub fn verify_attestation(
    client_data: &str,
    attestation_data: &str,
    challenge: &str,
) -> Result<PublicKey, Error> {
    let client_data = decode_base64url("clientData", client_data)?;
    check_client_data(&client_data, Ceremony::Create, challenge)?;
    let attestation: AttestationFields = serde_json::from_slice(&decode_base64url(
        "attestationData",
        attestation_data,
    )?)
    .map_err(|_| {
        Error::Invalid("attestationData is not a JSON object with publicKey and signature".into())
    })?;
    let key = PublicKey::from_pem(&attestation.public_key)?;
    let signature = unhex("attestationData.signature", attestation.signature.trim())?;
    let fingerprint = serde_json::to_vec(&Fingerprint {
        client_data_hash: crate::hex::encode(&Sha256::digest(&client_data)),
        public_key: &attestation.public_key,
    })
    .unwrap_or_else(|_| unreachable!("two strings serialise"));
    if key.verify(&fingerprint, &signature) {
        Ok(key)
    } else {
        Err(Error::SignatureInvalid)
    }
}

/// Verifies a Key assertion: a signature (base64url) over the client data bytes (base64url).
pub fn verify_assertion(
    key: &PublicKey,
    client_data: &str,
    signature: &str,
    challenge: &str,
) -> Result<(), Error> {
    let client_data = decode_base64url("clientData", client_data)?;
    check_client_data(&client_data, Ceremony::Get, challenge)?;
    let signature = decode_base64url("signature", signature)?;
    if key.verify(&client_data, &signature) {
        Ok(())
    } else {
        Err(Error::SignatureInvalid)
    }
}

/// A registered Key credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The server's id (`cr-…`), Dfns's `credential.uuid`.
    pub id: CredentialId,
    /// The client's id for the key (base64url), Dfns's `credId`.
    pub cred_id: String,
    pub user_id: UserId,
    pub org_id: OrgId,
    pub name: String,
    pub public_key: PublicKey,
    pub created_at: Timestamp,
}

/// A request as a server-signed app sent it, to check its `X-DFNS-APISIGNATURE` against.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub path_and_query: &'a str,
    pub body: &'a [u8],
    /// The request's headers, names in lowercase.
    pub headers: &'a [(&'a str, &'a str)],
}

/// Verifies an app's API signature: a JWT (`RS256` for RSA keys, `EdDSA` for Ed25519) whose
/// claims are the request — `r-method`, `r-path`, `r-body` (base64url) and `h-<header>` values —
/// each of which must match the request as received.
pub fn verify_api_signature(
    key: &PublicKey,
    signature: &str,
    request: &ApiRequest<'_>,
) -> Result<(), Error> {
    let refused = || Error::UnknownApp;
    let signature = signature.trim();
    let (signed_part, signed) = signature.rsplit_once('.').ok_or_else(refused)?;
    let (header, payload) = signed_part.split_once('.').ok_or_else(refused)?;
    let header: serde_json::Value =
        serde_json::from_slice(&decode_base64url("signature", header).map_err(|_| refused())?)
            .map_err(|_| refused())?;
    let algorithm_fits = matches!(
        (header["alg"].as_str(), key.algorithm()),
        (Some("RS256"), KeyAlgorithm::RsaPkcs1Sha256) | (Some("EdDSA"), KeyAlgorithm::Ed25519)
    );
    let signature = decode_base64url("signature", signed).map_err(|_| refused())?;
    if !algorithm_fits || !key.verify(signed_part.as_bytes(), &signature) {
        return Err(refused());
    }
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&decode_base64url("signature", payload).map_err(|_| refused())?)
            .map_err(|_| refused())?;
    let claim = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
    let method_ok =
        claim("r-method").is_some_and(|method| method.eq_ignore_ascii_case(request.method));
    let path_ok =
        claim("r-path").is_some_and(|path| path == request.path || path == request.path_and_query);
    let body_ok = match claim("r-body") {
        Some(body) => decode_base64url("r-body", body).is_ok_and(|body| body == request.body),
        None => request.body.is_empty(),
    };
    let headers_ok = claims
        .iter()
        .all(|(name, value)| match name.strip_prefix("h-") {
            Some(header) => {
                let sent = request
                    .headers
                    .iter()
                    .find(|(name, _)| *name == header)
                    .map(|(_, value)| *value);
                value.as_str() == sent
            }
            None => true,
        });
    if method_ok && path_ok && body_ok && headers_ok {
        Ok(())
    } else {
        Err(refused())
    }
}

/// SubjectPublicKeyInfo headers, up to the key itself, of an uncompressed P-256 point and of
/// an Ed25519 key.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn to_pem(label: &str, der: &[u8]) -> String {
    spki::der::pem::encode_string(label, spki::der::pem::LineEnding::LF, der)
        .unwrap_or_else(|_| unreachable!("PEM encodes any bytes"))
}

impl PublicKey {
    /// A key from its raw bytes (an uncompressed P-256 point, or 32 Ed25519 bytes), as the
    /// SPKI PEM a client would send.
    pub fn from_raw(algorithm: KeyAlgorithm, key: &[u8]) -> Result<Self, Error> {
        let prefix: &[u8] = match algorithm {
            KeyAlgorithm::EcdsaP256 => &P256_SPKI_PREFIX,
            KeyAlgorithm::Ed25519 => &ED25519_SPKI_PREFIX,
            KeyAlgorithm::RsaPkcs1Sha256 => {
                return Err(Error::Invalid("RSA keys come as SPKI PEM".to_owned()));
            }
        };
        Self::from_pem(&to_pem("PUBLIC KEY", &[prefix, key].concat()))
    }
}

/// A new P-256 key pair for a service account: its public key and its private key as a
/// PKCS#8 PEM, which is shown once and never stored.
pub fn generate_p256_key() -> (PublicKey, String) {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .unwrap_or_else(|_| unreachable!("the system RNG works"));
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .unwrap_or_else(|_| unreachable!("ring reads its own PKCS#8"));
    let public_key = PublicKey::from_raw(KeyAlgorithm::EcdsaP256, pair.public_key().as_ref())
        .unwrap_or_else(|_| unreachable!("a P-256 point parses"));
    (public_key, to_pem("PRIVATE KEY", pkcs8.as_ref()))
}

/// A client's credential id: base64url, as Dfns signers make them.
pub fn parse_cred_id(text: &str) -> Result<String, Error> {
    let text = text.trim();
    let valid = (1..=512).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(Error::Invalid("credId must be a base64url string".into()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn vectors() -> Vec<Value> {
        serde_json::from_str(include_str!("testdata/key_vectors.json")).unwrap()
    }

    fn field<'a>(value: &'a Value, path: &[&str]) -> &'a str {
        path.iter()
            .fold(value, |value, key| &value[*key])
            .as_str()
            .unwrap_or_else(|| panic!("{path:?} in the vector"))
    }

    #[test]
    fn attestations_made_by_node_verify_for_every_key_type() {
        for vector in vectors() {
            let challenge = field(&vector, &["challenge"]);
            let client_data = field(&vector, &["attestation", "clientData"]);
            let attestation = field(&vector, &["attestation", "attestationData"]);
            let key = verify_attestation(client_data, attestation, challenge)
                .unwrap_or_else(|error| panic!("{}: {error}", vector["keyType"]));
            assert_eq!(key.pem(), field(&vector, &["publicKeyPem"]));
            assert!(matches!(
                verify_attestation(client_data, attestation, "another-challenge"),
                Err(Error::SignatureInvalid)
            ));
        }
    }

    #[test]
    fn assertions_made_by_node_verify_for_every_key_type() {
        for vector in vectors() {
            let key = PublicKey::from_pem(field(&vector, &["publicKeyPem"])).unwrap();
            let challenge = field(&vector, &["challenge"]);
            for assertion in ["assertion", "clientDataWithOrigin"] {
                let client_data = field(&vector, &[assertion, "clientData"]);
                let signature = field(&vector, &[assertion, "signature"]);
                verify_assertion(&key, client_data, signature, challenge)
                    .unwrap_or_else(|error| panic!("{} {assertion}: {error}", vector["keyType"]));
            }
        }
    }

    #[test]
    fn a_signature_over_other_bytes_or_by_another_key_fails() {
        let vectors = vectors();
        for (index, vector) in vectors.iter().enumerate() {
            let challenge = field(vector, &["challenge"]);
            let client_data = field(vector, &["assertion", "clientData"]);
            let signature = field(vector, &["assertion", "signature"]);
            let key = PublicKey::from_pem(field(vector, &["publicKeyPem"])).unwrap();
            // The same JSON, re-serialised with a space: other bytes, so no longer signed.
            let bytes = decode_base64url("clientData", client_data).unwrap();
            let value: Value = serde_json::from_slice(&bytes).unwrap();
            let reserialised = URL_SAFE_NO_PAD.encode(format!(
                "{{\"type\": \"key.get\",\"challenge\":{}}}",
                value["challenge"]
            ));
            assert!(matches!(
                verify_assertion(&key, &reserialised, signature, challenge),
                Err(Error::SignatureInvalid)
            ));
            let other = &vectors[(index + 1) % vectors.len()];
            let other_key = PublicKey::from_pem(field(other, &["publicKeyPem"])).unwrap();
            assert!(matches!(
                verify_assertion(&other_key, client_data, signature, challenge),
                Err(Error::SignatureInvalid)
            ));
        }
    }

    #[test]
    fn a_login_assertion_is_not_a_registration() {
        let vector = &vectors()[0];
        let challenge = field(vector, &["challenge"]);
        let key = PublicKey::from_pem(field(vector, &["publicKeyPem"])).unwrap();
        let create = field(vector, &["attestation", "clientData"]);
        let signature = field(vector, &["assertion", "signature"]);
        assert!(matches!(
            verify_assertion(&key, create, signature, challenge),
            Err(Error::SignatureInvalid)
        ));
    }

    #[test]
    fn malformed_input_is_invalid_not_a_panic() {
        let vector = &vectors()[0];
        let pem = field(vector, &["publicKeyPem"]);
        for bad_pem in [
            "",
            "-----BEGIN PUBLIC KEY-----\n%%%\n-----END PUBLIC KEY-----",
            &pem[..40],
        ] {
            assert!(
                matches!(PublicKey::from_pem(bad_pem), Err(Error::Invalid(_))),
                "{bad_pem:?}"
            );
        }
        let key = PublicKey::from_pem(pem).unwrap();
        for (client_data, signature) in [("%%%", "AA"), ("e30", "AA"), ("bnVsbA", "AA")] {
            assert!(matches!(
                verify_assertion(&key, client_data, signature, "c"),
                Err(Error::Invalid(_))
            ));
        }
        let client_data = field(vector, &["attestation", "clientData"]);
        let challenge = field(vector, &["challenge"]);
        let not_hex = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"publicKey":{},"signature":"zz"}}"#,
            Value::from(pem)
        ));
        assert!(matches!(
            verify_attestation(client_data, &not_hex, challenge),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            verify_attestation(client_data, "e30", challenge),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn an_api_signature_binds_the_request_and_names_its_algorithm() {
        use ring::signature::{Ed25519KeyPair, KeyPair as _};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let key = PublicKey::from_raw(KeyAlgorithm::Ed25519, pair.public_key().as_ref()).unwrap();
        let sign = |alg: &str, claims: &str| {
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#)),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let signature = URL_SAFE_NO_PAD.encode(pair.sign(signed.as_bytes()));
            format!("{signed}.{signature}")
        };
        let headers = [("x-dfns-appid", "ap-1")];
        let request = ApiRequest {
            method: "POST",
            path: "/auth/users",
            path_and_query: "/auth/users?x=1",
            body: b"{}",
            headers: &headers,
        };
        let claims =
            r#"{"r-method":"post","r-path":"/auth/users","r-body":"e30","h-x-dfns-appid":"ap-1"}"#;
        assert!(verify_api_signature(&key, &sign("EdDSA", claims), &request).is_ok());
        assert!(verify_api_signature(&key, &sign("RS256", claims), &request).is_err());
        for wrong in [
            claims.replace("post", "put"),
            claims.replace("e30", "e319"),
            claims.replace("ap-1", "ap-2"),
            r#"{"r-method":"post","r-body":"e30"}"#.to_owned(),
        ] {
            assert!(
                verify_api_signature(&key, &sign("EdDSA", &wrong), &request).is_err(),
                "{wrong}"
            );
        }
    }

    /// Reliability target 19: every single-byte change of a signed request, of its signature or
    /// of what it signs (method, path, body, a signed header) is refused.
    #[test]
    fn every_single_byte_change_of_a_signed_request_is_refused() {
        use ring::signature::{Ed25519KeyPair, KeyPair as _};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let key = PublicKey::from_raw(KeyAlgorithm::Ed25519, pair.public_key().as_ref()).unwrap();
        let body = br#"{"email":"jane@example.com","kind":"CustomerEmployee"}"#;
        let claims = format!(
            r#"{{"r-method":"POST","r-path":"/auth/users","r-body":"{}","h-x-dfns-appid":"ap-1"}}"#,
            URL_SAFE_NO_PAD.encode(body)
        );
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA"}"#),
            URL_SAFE_NO_PAD.encode(&claims)
        );
        let token = format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(pair.sign(signed.as_bytes()))
        );
        let check = |token: &str, method: &str, path: &str, body: &[u8], app: &str| {
            let headers = [("x-dfns-appid", app)];
            verify_api_signature(
                &key,
                token,
                &ApiRequest {
                    method,
                    path,
                    path_and_query: path,
                    body,
                    headers: &headers,
                },
            )
        };
        assert!(check(&token, "POST", "/auth/users", body, "ap-1").is_ok());
        let changed = |text: &[u8], at: usize| {
            let mut bytes = text.to_vec();
            bytes[at] = if bytes[at] == b'A' {
                b'B'
            } else {
                bytes[at] ^ 1
            };
            bytes
        };
        for at in 0..token.len() {
            let token = String::from_utf8(changed(token.as_bytes(), at)).unwrap();
            assert!(
                check(&token, "POST", "/auth/users", body, "ap-1").is_err(),
                "signature byte {at}"
            );
        }
        for at in 0..body.len() {
            let body = changed(body, at);
            assert!(
                check(&token, "POST", "/auth/users", &body, "ap-1").is_err(),
                "body byte {at}"
            );
        }
        for (at, part) in ["POST", "/auth/users", "ap-1"].iter().enumerate() {
            for byte in 0..part.len() {
                let mut parts = ["POST", "/auth/users", "ap-1"].map(str::to_owned);
                parts[at] = String::from_utf8(changed(part.as_bytes(), byte)).unwrap();
                if at == 0 && parts[0].eq_ignore_ascii_case("POST") {
                    // The method is compared without regard to case, as HTTP methods are
                    // sent in capitals.
                    continue;
                }
                assert!(
                    check(&token, &parts[0], &parts[1], body, &parts[2]).is_err(),
                    "{parts:?}"
                );
            }
        }
    }

    #[test]
    fn other_curves_and_short_rsa_keys_are_refused_with_a_reason() {
        // A P-384 key and a 1024-bit RSA key (SPKI), which Key credentials do not take.
        let p384 = "-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEfjK0HgW4HjImoZ3X5gzWDBWqhfEi6LgH\nTwxaS9L/qFyOrPNAcaflCGCq9HCJWF+ZjF1v6D/JSS+zIR2uwQp9uPM/989hrTQ0\n+5zQGqKvtjzPCs5zwyFhcUR0ZtcLR59x\n-----END PUBLIC KEY-----\n";
        let rsa1024 = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDX7m2a7SUswsoaZwL0jeDjOOx9\n3CSRo0H9E0QDDv5/UwDfHcFylu6IEMMxkn9S2oK7QUrsgmXwC5+a/JJD+1WxauR7\nTAtSCnwHjny5VY7/F1t724pBdwNzHXZVAqJCqcX0WZtAQTcmMGXncMjRtbkiX2ZU\nUnJ+yzruDX/CCfE1cwIDAQAB\n-----END PUBLIC KEY-----\n";
        for (pem, reason) in [(p384, "P-256"), (rsa1024, "2048")] {
            let Err(Error::Invalid(message)) = PublicKey::from_pem(pem) else {
                panic!("{reason}: refused");
            };
            assert!(message.contains(reason), "{message}");
        }
    }
}
