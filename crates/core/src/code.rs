//! One-time codes: how they look, how they are made, and how they are kept (only as an HMAC).

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::email::EmailAddress;
use crate::ids::{CodeId, OrgId};
use crate::random;

/// What a code proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodePurpose {
    /// Dfns registration: control of the address the account was created for.
    Registration,
    /// Control of an address (ZITADEL, Singularity).
    EmailVerification,
    PasswordReset,
}

impl CodePurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Registration,
            Self::EmailVerification,
            Self::PasswordReset,
        ]
        .into_iter()
        .find(|purpose| purpose.as_str() == value)
    }
}

/// Where a code is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeState {
    Active,
    /// A newer code for the same user and purpose was issued.
    Superseded,
    Used,
    Expired,
    /// Too many wrong attempts.
    Exhausted,
}

impl CodeState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Superseded => "superseded",
            Self::Used => "used",
            Self::Expired => "expired",
            Self::Exhausted => "exhausted",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Active,
            Self::Superseded,
            Self::Used,
            Self::Expired,
            Self::Exhausted,
        ]
        .into_iter()
        .find(|state| state.as_str() == value)
    }
}

/// Registration codes avoid characters people confuse when they copy them: no 0/O, no 1/I.
const REGISTRATION_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Email verification codes are ZITADEL's: six upper-case letters and digits.
const EMAIL_CODE_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const EMAIL_CODE_LENGTH: usize = 6;

/// A code in clear: it exists only in memory and, sealed, in the outbox until delivery.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CodeSecret(String);

impl CodeSecret {
    /// A new code in the form its purpose uses.
    pub fn generate(purpose: CodePurpose) -> Self {
        match purpose {
            CodePurpose::Registration => Self::generate_registration(),
            CodePurpose::EmailVerification | CodePurpose::PasswordReset => {
                Self(random::characters(EMAIL_CODE_ALPHABET, EMAIL_CODE_LENGTH))
            }
        }
    }

    /// A secret for a link (Singularity's tokens): 32 upper-case letters and digits (165
    /// bits), already in the canonical form the hash uses.
    pub fn generate_link_secret() -> Self {
        Self(random::characters(EMAIL_CODE_ALPHABET, 32))
    }

    /// 16 characters in four dash-separated groups (80 bits): `7KQX-M2RD-9HTV-PW4C`.
    pub fn generate_registration() -> Self {
        let chars = random::characters(REGISTRATION_ALPHABET, 16);
        Self(format!(
            "{}-{}-{}-{}",
            &chars[0..4],
            &chars[4..8],
            &chars[8..12],
            &chars[12..16]
        ))
    }

    /// As a person may type it: case and separators do not matter.
    pub fn from_user_input(input: &str) -> Self {
        Self(input.trim().to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The form that is hashed, so `7kqx m2rd…` and `7KQX-M2RD-…` are the same code.
    fn canonical(&self) -> String {
        self.0
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect()
    }
}

impl fmt::Debug for CodeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeSecret(<redacted>)")
    }
}

/// HMAC-SHA256 of a code, bound to the code's id and purpose.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeHash(pub [u8; 32]);

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHash(..)")
    }
}

/// The key codes are hashed under; derived from the server secret, never stored.
#[derive(Clone)]
pub struct CodeHasher {
    key: [u8; 32],
}

impl fmt::Debug for CodeHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHasher(<key>)")
    }
}

impl CodeHasher {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    pub fn hash(&self, id: &CodeId, purpose: CodePurpose, secret: &CodeSecret) -> CodeHash {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        for part in [id.as_str(), purpose.as_str(), &secret.canonical()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        CodeHash(mac.finalize().into_bytes().into())
    }

    /// The key a cooldown is kept under: the same for an address whether or not it has an
    /// account, so a refused resend tells nothing about the account; keyed, so the table
    /// holds no addresses.
    pub fn cooldown_subject(&self, org: &OrgId, username: &EmailAddress) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        for part in ["cooldown-subject", org.as_str(), username.as_str()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .take(16)
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Constant-time: how much of a guess is right must not show in the time it takes.
    pub fn matches(
        &self,
        id: &CodeId,
        purpose: CodePurpose,
        stored: &CodeHash,
        submitted: &CodeSecret,
    ) -> bool {
        let candidate = self.hash(id, purpose, submitted);
        bool::from(candidate.0.ct_eq(&stored.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_codes_are_four_groups_of_unambiguous_characters() {
        for _ in 0..1_000 {
            let code = CodeSecret::generate_registration();
            let text = code.expose();
            assert_eq!(text.len(), 19);
            let groups: Vec<&str> = text.split('-').collect();
            assert_eq!(groups.len(), 4);
            assert!(groups.iter().all(|group| group.len() == 4));
            assert!(
                text.chars()
                    .filter(|&c| c != '-')
                    .all(|c| REGISTRATION_ALPHABET.contains(&(c as u8))),
                "{text}"
            );
        }
    }

    #[test]
    fn email_codes_are_six_upper_case_letters_and_digits() {
        let codes: Vec<CodeSecret> = (0..1_000)
            .map(|_| CodeSecret::generate(CodePurpose::EmailVerification))
            .collect();
        for code in &codes {
            let text = code.expose();
            assert_eq!(text.len(), 6);
            assert!(text.bytes().all(|b| EMAIL_CODE_ALPHABET.contains(&b)));
        }
        let digits = codes
            .iter()
            .filter(|code| code.expose().bytes().any(|b| b.is_ascii_digit()))
            .count();
        assert!(digits > 500, "digits are drawn too: {digits}");
    }

    #[test]
    fn the_hash_is_bound_to_id_and_purpose_and_tolerates_typing() {
        let hasher = CodeHasher::new([7; 32]);
        let id = CodeId::generate();
        let code = CodeSecret::from_user_input("7KQX-M2RD-9HTV-PW4C");
        let stored = hasher.hash(&id, CodePurpose::Registration, &code);
        let typed = CodeSecret::from_user_input(" 7kqx m2rd 9htv pw4c ");
        assert!(hasher.matches(&id, CodePurpose::Registration, &stored, &typed));
        assert!(!hasher.matches(&id, CodePurpose::PasswordReset, &stored, &typed));
        assert!(!hasher.matches(
            &CodeId::generate(),
            CodePurpose::Registration,
            &stored,
            &typed
        ));
        let other_key = CodeHasher::new([8; 32]);
        assert!(!other_key.matches(&id, CodePurpose::Registration, &stored, &typed));
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let code = CodeSecret::generate_registration();
        assert!(!format!("{code:?}").contains(code.expose()));
    }
}
