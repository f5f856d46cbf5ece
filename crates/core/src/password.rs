//! Passwords: the rules a new one must meet, and how one is kept (an Argon2id hash, never the
//! password). Hashing is slow on purpose; callers run it off the async workers
//! ([`crate::ports::PasswordHasher`]).

use std::fmt;

use argon2::password_hash::{PasswordHash as PhcString, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};

use crate::email::EmailAddress;
use crate::error::{Error, Result};

/// Shorter passwords fall to guessing; NIST SP 800-63B asks for at least 8.
pub const MIN_LENGTH: usize = 8;
/// Long enough for any passphrase, short enough that hashing it costs nothing extra.
pub const MAX_LENGTH: usize = 128;

/// Passwords that lead every breached-password list; refused whatever their case.
const COMMON: &str = include_str!("common_passwords.txt");

/// A password as typed: it exists only in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

/// Why a new password is refused; each reason is one a person can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("The password must have at least {MIN_LENGTH} characters.")]
    TooShort,
    #[error("The password must have at most {MAX_LENGTH} characters.")]
    TooLong,
    #[error("The password is one of the most common passwords; choose another.")]
    Common,
    #[error("The password must not contain the email address or its name part.")]
    ContainsEmail,
    #[error("The password must not be a single character repeated.")]
    Repeated,
}

impl PasswordError {
    /// A stable name for the reason, for the faces' error codes.
    pub const fn code(self) -> &'static str {
        match self {
            Self::TooShort => "PASSWORD_TOO_SHORT",
            Self::TooLong => "PASSWORD_TOO_LONG",
            Self::Common => "PASSWORD_TOO_COMMON",
            Self::ContainsEmail => "PASSWORD_CONTAINS_EMAIL",
            Self::Repeated => "PASSWORD_REPEATED_CHARACTER",
        }
    }
}

impl Password {
    /// A password presented to log in: no rules, only a bound on its length so that nobody
    /// makes the server hash megabytes.
    pub fn presented(input: &str) -> Self {
        Self(input.chars().take(MAX_LENGTH + 1).collect())
    }

    /// A new password for the account of `email`, checked against the rules.
    pub fn new_for(input: &str, email: &EmailAddress) -> Result<Self, PasswordError> {
        let length = input.chars().count();
        if length < MIN_LENGTH {
            return Err(PasswordError::TooShort);
        }
        if length > MAX_LENGTH {
            return Err(PasswordError::TooLong);
        }
        let lowered = input.to_lowercase();
        if COMMON.lines().any(|common| common == lowered) {
            return Err(PasswordError::Common);
        }
        let address = email.as_str().to_lowercase();
        let local = address.split('@').next().unwrap_or_default();
        if lowered.contains(&address) || (local.chars().count() >= 4 && lowered.contains(local)) {
            return Err(PasswordError::ContainsEmail);
        }
        let mut chars = input.chars();
        let first = chars.next();
        if chars.all(|c| Some(c) == first) {
            return Err(PasswordError::Repeated);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A password as stored: a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(…)")
    }
}

impl PasswordHash {
    pub fn from_trusted(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// OWASP's Argon2id parameters: 19 MiB, two passes, one lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .unwrap_or_else(|_| unreachable!("the parameters are within Argon2's bounds"));
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with a fresh salt. Slow (tens of milliseconds): call it off the async
/// workers.
pub fn hash(password: &Password) -> Result<PasswordHash> {
    let salt = SaltString::encode_b64(&crate::random::bytes::<16>())
        .map_err(|error| Error::internal("could not encode a salt", error.to_string()))?;
    argon2()
        .hash_password(password.0.as_bytes(), &salt)
        .map(|phc| PasswordHash(phc.to_string()))
        .map_err(|error| Error::internal("could not hash a password", error.to_string()))
}

/// Whether `password` is the one `stored` was made from. Without a stored hash (an unknown
/// account) the same work is done against a stand-in, so the answer takes as long either way.
pub fn verify(password: &Password, stored: Option<&PasswordHash>) -> bool {
    static STAND_IN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stand_in = STAND_IN.get_or_init(|| {
        hash(&Password("stand-in for unknown accounts".to_owned()))
            .map(|hash| hash.0)
            .unwrap_or_default()
    });
    let phc = stored.map_or(stand_in.as_str(), PasswordHash::as_str);
    let matches = PhcString::new(phc).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.0.as_bytes(), &parsed)
            .is_ok()
    });
    matches && stored.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jane() -> EmailAddress {
        EmailAddress::parse("jane.doe@example.com").unwrap()
    }

    #[test]
    fn new_passwords_meet_the_rules() {
        let email = jane();
        assert_eq!(
            Password::new_for("short", &email),
            Err(PasswordError::TooShort)
        );
        let long = "x".repeat(MAX_LENGTH) + "y";
        assert_eq!(
            Password::new_for(&long, &email),
            Err(PasswordError::TooLong)
        );
        assert_eq!(
            Password::new_for("PassWord1", &email),
            Err(PasswordError::Common)
        );
        assert_eq!(
            Password::new_for("my jane.doe secret", &email),
            Err(PasswordError::ContainsEmail)
        );
        assert_eq!(
            Password::new_for("zzzzzzzzzz", &email),
            Err(PasswordError::Repeated)
        );
        assert!(Password::new_for("correct horse battery", &email).is_ok());
        // Length counts characters, not bytes.
        assert!(Password::new_for("äöüßéèàç", &email).is_ok());
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let password = Password::new_for("correct horse battery", &jane()).unwrap();
        let stored = hash(&password).unwrap();
        assert!(
            stored
                .as_str()
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        );
        assert!(verify(&password, Some(&stored)));
        assert!(!verify(
            &Password::presented("correct horse batterY"),
            Some(&stored)
        ));
        assert!(!verify(&password, None), "no account, no match");
        assert_ne!(
            hash(&password).unwrap(),
            stored,
            "every hash has its own salt"
        );
    }

    #[test]
    fn a_presented_password_is_bounded() {
        let huge = "x".repeat(10_000);
        assert_eq!(Password::presented(&huge).expose().len(), MAX_LENGTH + 1);
    }
}
