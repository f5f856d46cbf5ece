//! The server secret and the keys derived from it; sealing outbox content at rest.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::code::CodeHasher;
use crate::random;
use crate::token::TokenSigner;

/// 32 bytes the server keeps outside the database; every key is derived from it.
#[derive(Clone)]
pub struct ServerSecret([u8; 32]);

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the server secret must be 64 hexadecimal characters (32 bytes)")]
pub struct SecretFormatError;

impl ServerSecret {
    pub fn generate() -> Self {
        Self(random::bytes())
    }

    pub fn from_hex(text: &str) -> Result<Self, SecretFormatError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(SecretFormatError);
        }
        let mut out = [0u8; 32];
        for (index, pair) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).map_err(|_| SecretFormatError)?;
            out[index] = u8::from_str_radix(pair, 16).map_err(|_| SecretFormatError)?;
        }
        Ok(Self(out))
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"enroll/v1/");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn code_hasher(&self) -> CodeHasher {
        CodeHasher::new(self.derive("code-hmac"))
    }

    pub fn token_signer(&self) -> TokenSigner {
        TokenSigner::new(&self.derive("token-hs256"))
    }

    pub fn sealer(&self) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(&self.derive("outbox-seal").into()),
        }
    }
}

/// Encrypts outbox content at rest, bound to the message it belongs to.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("sealed content could not be opened (wrong server secret, or tampered with)")]
pub struct UnsealError;

impl Sealer {
    /// `nonce ‖ ciphertext`, with `context` (the message id) as associated data.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = random::bytes::<24>();
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_else(|_| unreachable!("encryption with a valid key cannot fail"));
        let mut out = Vec::with_capacity(24 + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, UnsealError> {
        if sealed.len() < 24 {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| UnsealError)
    }
}

/// A bearer token in clear: shown once, stored only as its SHA-256.
#[derive(Clone)]
pub struct TokenSecret(String);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

impl TokenSecret {
    /// 256 bits; a plain hash suffices for storage at that strength.
    pub fn generate() -> Self {
        Self(format!(
            "enr_{}",
            URL_SAFE_NO_PAD.encode(random::bytes::<32>())
        ))
    }

    pub fn from_presented(value: &str) -> Self {
        Self(value.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let secret = ServerSecret::generate();
        let again = ServerSecret::from_hex(&secret.to_hex()).unwrap();
        assert_eq!(secret.0, again.0);
        assert!(ServerSecret::from_hex("zz").is_err());
    }

    #[test]
    fn sealed_content_opens_only_in_its_context_under_its_key() {
        let secret = ServerSecret::generate();
        let sealer = secret.sealer();
        let sealed = sealer.seal("ms-1", b"7KQX-M2RD-9HTV-PW4C");
        assert!(!sealed.windows(4).any(|w| w == b"7KQX"));
        assert_eq!(
            sealer.open("ms-1", &sealed).unwrap(),
            b"7KQX-M2RD-9HTV-PW4C"
        );
        assert!(sealer.open("ms-2", &sealed).is_err());
        assert!(
            ServerSecret::generate()
                .sealer()
                .open("ms-1", &sealed)
                .is_err()
        );
    }

    #[test]
    fn derived_keys_differ_by_purpose() {
        let secret = ServerSecret::generate();
        assert_ne!(secret.derive("code-hmac"), secret.derive("outbox-seal"));
    }
}
