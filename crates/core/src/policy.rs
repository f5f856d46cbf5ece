//! The limits codes live by (lifetime, cooldown, attempts), and those of nonces, challenges and
//! sessions.

use std::time::Duration;

use crate::code::CodePurpose;
use crate::throttle::Limit;

/// NIST SP 800-63A-4 §5.1.6: an enrollment code sent by email lives at most 24 hours.
pub const MAX_CODE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub registration_code_ttl: Duration,
    /// Lifetime of an email verification code (ZITADEL's default: one hour).
    pub email_code_ttl: Duration,
    pub cooldown: Duration,
    pub max_failed_attempts: u32,
    /// How far a request nonce's date may be from now, either way.
    pub nonce_window: Duration,
    /// How long a registration, login or user-action challenge may be answered, and how long
    /// a signed user action may be used.
    pub challenge_ttl: Duration,
    /// How long a login session token lives (for password logins: the refresh token).
    pub session_ttl: Duration,
    /// How long a password login's access token lives; refreshing gives a new one.
    pub access_token_ttl: Duration,
    /// Failed password logins per address (and per client address) within the window…
    pub login_max_failures: u32,
    /// …after which logins are refused until the window ends.
    pub login_failure_window: Duration,
    /// Failed logins from one client address within the window (several people may share
    /// one, so more than per account).
    pub login_max_failures_per_client: u32,
    /// Emails of one purpose to one address within a window…
    pub max_sends_per_window: u32,
    /// …after which that address gets no more until the window ends.
    pub send_window: Duration,
    /// Emails one client address may cause through the endpoints anyone may call, in this
    /// instance; `events: 0` turns the cap off.
    pub client_send_limit: Limit,
    /// Emails one organisation's users may be sent, in this instance; `events: 0` turns the
    /// cap off.
    pub org_send_limit: Limit,
}

impl Policy {
    /// Failed logins one client address may have within the window.
    pub fn client_login_limit(&self) -> Limit {
        Limit {
            events: self.login_max_failures_per_client,
            window: self.login_failure_window,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            registration_code_ttl: MAX_CODE_TTL,
            email_code_ttl: Duration::from_secs(60 * 60),
            cooldown: Duration::from_secs(60),
            max_failed_attempts: 5,
            nonce_window: Duration::from_secs(5 * 60),
            challenge_ttl: Duration::from_secs(5 * 60),
            session_ttl: Duration::from_secs(24 * 60 * 60),
            access_token_ttl: Duration::from_secs(15 * 60),
            login_max_failures: 5,
            login_failure_window: Duration::from_secs(15 * 60),
            login_max_failures_per_client: 20,
            max_sends_per_window: 10,
            send_window: Duration::from_secs(24 * 60 * 60),
            client_send_limit: Limit {
                events: 100,
                window: Duration::from_secs(60 * 60),
            },
            org_send_limit: Limit {
                events: 100_000,
                window: Duration::from_secs(60 * 60),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("a code lifetime must be between 1 second and 24 hours, got {0} s")]
    CodeTtl(u64),
    #[error("the number of failed attempts per code must be between 1 and 100, got {0}")]
    Attempts(u32),
    #[error("the nonce window must be between 1 second and 1 hour, got {0} s")]
    NonceWindow(u64),
    #[error("the cooldown must be at most 24 hours, got {0} s")]
    Cooldown(u64),
    #[error("a challenge must live between 10 seconds and 1 hour, got {0} s")]
    ChallengeTtl(u64),
    #[error("a session must live between 1 minute and 30 days, got {0} s")]
    SessionTtl(u64),
    #[error(
        "an access token must live between 1 minute and 1 day, and not longer than its session, got {0} s"
    )]
    AccessTokenTtl(u64),
    #[error("the failed logins allowed must be between 1 and 1000, got {0}")]
    LoginFailures(u32),
    #[error("the failed-login window must be between 1 second and 1 day, got {0} s")]
    LoginWindow(u64),
}

impl Policy {
    /// How long a code of `purpose` lives.
    pub const fn code_ttl(&self, purpose: CodePurpose) -> Duration {
        match purpose {
            CodePurpose::Registration => self.registration_code_ttl,
            CodePurpose::EmailVerification | CodePurpose::PasswordReset => self.email_code_ttl,
        }
    }

    pub fn validate(self) -> Result<Self, PolicyError> {
        for ttl in [self.registration_code_ttl, self.email_code_ttl] {
            if ttl.is_zero() || ttl > MAX_CODE_TTL {
                return Err(PolicyError::CodeTtl(ttl.as_secs()));
            }
        }
        if !(1..=100).contains(&self.max_failed_attempts) {
            return Err(PolicyError::Attempts(self.max_failed_attempts));
        }
        if self.nonce_window.is_zero() || self.nonce_window > Duration::from_secs(3600) {
            return Err(PolicyError::NonceWindow(self.nonce_window.as_secs()));
        }
        if self.cooldown > MAX_CODE_TTL {
            return Err(PolicyError::Cooldown(self.cooldown.as_secs()));
        }
        let challenge = self.challenge_ttl.as_secs();
        if !(10..=3600).contains(&challenge) {
            return Err(PolicyError::ChallengeTtl(challenge));
        }
        let session = self.session_ttl.as_secs();
        if !(60..=30 * 24 * 3600).contains(&session) {
            return Err(PolicyError::SessionTtl(session));
        }
        let access = self.access_token_ttl.as_secs();
        if !(60..=24 * 3600).contains(&access) || access > session {
            return Err(PolicyError::AccessTokenTtl(access));
        }
        for limit in [self.login_max_failures, self.login_max_failures_per_client] {
            if !(1..=1000).contains(&limit) {
                return Err(PolicyError::LoginFailures(limit));
            }
        }
        let window = self.login_failure_window.as_secs();
        if !(1..=24 * 3600).contains(&window) {
            return Err(PolicyError::LoginWindow(window));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Policy::default().validate().is_ok());
    }

    #[test]
    fn a_code_may_not_outlive_a_day() {
        let policy = Policy {
            registration_code_ttl: MAX_CODE_TTL + Duration::from_secs(1),
            ..Policy::default()
        };
        assert_eq!(policy.validate(), Err(PolicyError::CodeTtl(86_401)));
    }
}
