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
    pub const ALL: [Self; 3] = [
        Self::Registration,
        Self::EmailVerification,
        Self::PasswordReset,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
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
        crate::hex::encode(&mac.finalize().into_bytes()[..16])
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

    /// Reliability target 15: secrets are compared with `subtle`'s constant-time equality,
    /// and no source of the workspace compares a digest, hash or exposed secret with `==`.
    #[test]
    fn secrets_are_compared_in_constant_time() {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut sources = Vec::new();
        let mut folders: Vec<_> = ["core", "store-sqlite", "store-postgres", "server", "mail"]
            .iter()
            .map(|name| crates.join(name).join("src"))
            .collect();
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|extension| extension == "rs") {
                    sources.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
        assert!(sources.len() > 40, "the sources are found");
        // Built here, so that this test does not find itself.
        let suspicious =
            ["digest", "digest[..]", "hash", ".expose()"].map(|left| format!("{left} =="));
        for (path, source) in &sources {
            for line in source
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
            {
                for pattern in &suspicious {
                    assert!(
                        !line.contains(pattern.as_str()),
                        "{}: {line}",
                        path.display()
                    );
                }
            }
        }
        let uses = |file: &str| {
            sources
                .iter()
                .any(|(path, source)| path.ends_with(file) && source.contains("ct_eq("))
        };
        assert!(uses("code.rs"), "codes are matched with ct_eq");
        assert!(uses("service/mod.rs"), "app secrets are matched with ct_eq");
        let hasher = CodeHasher::new([7; 32]);
        let id = CodeId::generate();
        let code = CodeSecret::generate(CodePurpose::EmailVerification);
        let stored = hasher.hash(&id, CodePurpose::EmailVerification, &code);
        assert!(hasher.matches(&id, CodePurpose::EmailVerification, &stored, &code));
    }

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

    /// χ² of `counts` against the uniform distribution over its categories.
    fn chi_square(counts: &[u64]) -> f64 {
        let total: u64 = counts.iter().sum();
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&observed| {
                let difference = observed as f64 - expected;
                difference * difference / expected
            })
            .sum()
    }

    /// The χ² a uniform source reaches with probability 0.001, with `categories` − 1 degrees
    /// of freedom (from the tables of the χ² distribution).
    fn critical_value(categories: usize) -> f64 {
        match categories - 1 {
            31 => 61.098,
            35 => 66.619,
            other => panic!("no critical value for {other} degrees of freedom"),
        }
    }

    /// Draws `count` codes and counts, per position, each character of `alphabet`; every code
    /// must be `length` characters of `alphabet` (registration codes' dashes left out).
    fn counts_per_position(
        count: usize,
        alphabet: &[u8],
        length: usize,
        generate: fn() -> CodeSecret,
    ) -> Vec<Vec<u64>> {
        let mut index = [usize::MAX; 256];
        for (position, &letter) in alphabet.iter().enumerate() {
            index[usize::from(letter)] = position;
        }
        let mut counts = vec![vec![0u64; alphabet.len()]; length];
        for _ in 0..count {
            let code = generate();
            let mut position = 0;
            for byte in code.expose().bytes().filter(|&byte| byte != b'-') {
                let letter = index[usize::from(byte)];
                assert!(letter != usize::MAX && position < length, "{code:?}");
                counts[position][letter] += 1;
                position += 1;
            }
            assert_eq!(position, length, "a code of {length} characters");
        }
        counts
    }

    /// The positions whose χ² reaches the critical value (p ≤ 0.001), with their χ².
    fn biased_positions(counts: &[Vec<u64>]) -> Vec<(usize, f64)> {
        counts
            .iter()
            .map(|counts| (chi_square(counts), critical_value(counts.len())))
            .enumerate()
            .filter(|(_, (statistic, critical))| statistic >= critical)
            .map(|(position, (statistic, _))| (position, statistic))
            .collect()
    }

    fn email_code() -> CodeSecret {
        CodeSecret::generate(CodePurpose::EmailVerification)
    }

    /// Reliability row 1: 10⁶ codes of each form through the production generator, χ² per
    /// character position against the uniform distribution, p > 0.001. Testing 22 positions at
    /// that level would fail about one run in 45 by chance alone, so a position that fails is
    /// drawn again (another 10⁶ codes) and must fail again: a real bias does, every time.
    #[test]
    fn codes_are_uniform_per_position_over_a_million_draws() {
        const DRAWS: usize = 1_000_000;
        type Form = (&'static str, &'static [u8], usize, fn() -> CodeSecret);
        let forms: [Form; 2] = [
            ("email", EMAIL_CODE_ALPHABET, EMAIL_CODE_LENGTH, email_code),
            (
                "registration",
                REGISTRATION_ALPHABET,
                16,
                CodeSecret::generate_registration,
            ),
        ];
        for (form, alphabet, length, generate) in forms {
            let counts = counts_per_position(DRAWS, alphabet, length, generate);
            let largest = counts
                .iter()
                .map(|counts| chi_square(counts))
                .fold(0.0, f64::max);
            println!(
                "{form} codes: {DRAWS} drawn, largest χ² over {length} positions {largest:.1} \
                 (critical at p = 0.001: {})",
                critical_value(alphabet.len())
            );
            let suspects = biased_positions(&counts);
            if suspects.is_empty() {
                continue;
            }
            let again = counts_per_position(DRAWS, alphabet, length, generate);
            let confirmed: Vec<_> = biased_positions(&again)
                .into_iter()
                .filter(|(position, _)| suspects.iter().any(|(seen, _)| seen == position))
                .collect();
            assert!(
                confirmed.is_empty(),
                "{form} codes are biased at (position, χ²) {suspects:?}, again {confirmed:?}"
            );
        }
    }

    /// The test above has the power to see the bias `byte % 36` would give (the first four
    /// characters drawn 8 times in 256, the others 7): χ² in the thousands for 10⁶ draws.
    #[test]
    fn the_uniformity_test_sees_a_modulo_bias() {
        let mut counts = vec![0u64; EMAIL_CODE_ALPHABET.len()];
        for _ in 0..1_000_000 / 64 {
            for byte in random::bytes::<64>() {
                counts[usize::from(byte) % EMAIL_CODE_ALPHABET.len()] += 1;
            }
        }
        let statistic = chi_square(&counts);
        assert!(
            statistic > 10.0 * critical_value(counts.len()),
            "χ² {statistic}"
        );
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let code = CodeSecret::generate_registration();
        assert!(!format!("{code:?}").contains(code.expose()));
    }
}
