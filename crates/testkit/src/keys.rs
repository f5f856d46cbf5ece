//! Key credentials for tests: a key pair that registers and answers challenges exactly as the
//! Dfns signers do (see `enroll_core::credential`).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use enroll_core::credential::{KeyAlgorithm, PublicKey};
use enroll_core::service::{KeyAssertion, KeyAttestation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use sha2::{Digest, Sha256};

enum Pair {
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A test key with its client-side credential id.
pub struct TestKey {
    pair: Pair,
    pub cred_id: String,
    pub public_pem: String,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("cred_id", &self.cred_id)
            .finish_non_exhaustive()
    }
}

/// The SPKI PEM of a raw public key.
fn pem(algorithm: KeyAlgorithm, key: &[u8]) -> String {
    PublicKey::from_raw(algorithm, key)
        .expect("ring makes valid keys")
        .pem()
        .to_owned()
}

fn cred_id() -> String {
    URL_SAFE_NO_PAD.encode(enroll_core::random::bytes::<32>())
}

impl TestKey {
    pub fn p256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("its own PKCS#8");
        Self {
            public_pem: pem(KeyAlgorithm::EcdsaP256, pair.public_key().as_ref()),
            pair: Pair::P256(pair),
            cred_id: cred_id(),
        }
    }

    pub fn ed25519() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("an Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("its own PKCS#8");
        Self {
            public_pem: pem(KeyAlgorithm::Ed25519, pair.public_key().as_ref()),
            pair: Pair::Ed25519(pair),
            cred_id: cred_id(),
        }
    }

    /// A P-256 key from its PKCS#8 PEM (as `bootstrap.json` holds the admin's).
    pub fn p256_from_pem(private_pem: &str, cred_id: &str) -> Self {
        let body: String = private_pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).expect("PEM is base64");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &SystemRandom::new())
                .expect("a P-256 PKCS#8 key");
        Self {
            public_pem: pem(KeyAlgorithm::EcdsaP256, pair.public_key().as_ref()),
            pair: Pair::P256(pair),
            cred_id: cred_id.to_owned(),
        }
    }

    /// Another key answering under this one's credential id.
    pub fn impostor(&self) -> Self {
        Self {
            cred_id: self.cred_id.clone(),
            ..Self::p256()
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.pair {
            Pair::P256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .expect("signing works")
                .as_ref()
                .to_vec(),
            Pair::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }

    /// Registers this key for `challenge`, as the Dfns BrowserKeySigner does.
    pub fn attest(&self, challenge: &str) -> KeyAttestation {
        let client_data = format!(r#"{{"type":"key.create","challenge":"{challenge}"}}"#);
        let hash: String = Sha256::digest(client_data.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let fingerprint =
            serde_json::json!({ "clientDataHash": hash, "publicKey": self.public_pem });
        let signature: String = self
            .sign(fingerprint.to_string().as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let attestation =
            serde_json::json!({ "publicKey": self.public_pem, "signature": signature });
        KeyAttestation {
            cred_id: self.cred_id.clone(),
            client_data: URL_SAFE_NO_PAD.encode(client_data),
            attestation_data: URL_SAFE_NO_PAD.encode(attestation.to_string()),
            name: None,
        }
    }

    /// Answers `challenge`, as the Dfns AsymmetricKeySigner does.
    pub fn assert(&self, challenge: &str) -> KeyAssertion {
        let client_data = format!(r#"{{"type":"key.get","challenge":"{challenge}"}}"#);
        KeyAssertion {
            cred_id: self.cred_id.clone(),
            client_data: URL_SAFE_NO_PAD.encode(&client_data),
            signature: URL_SAFE_NO_PAD.encode(self.sign(client_data.as_bytes())),
        }
    }
}
