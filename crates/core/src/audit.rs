//! The security event log: one structured event for each decision an auditor asks about (a code
//! sent, a code checked, a login, a throttle, a refused signature, nonce or permission).
//!
//! Events go to `tracing` under the target [`TARGET`]; the server's subscriber writes them with
//! a UTC timestamp and the request's span, which carries its request id. An event names ids and
//! reasons only: never a code, secret, signature, password or address. Where no user is known
//! (an address without an account), it names the address's keyed cooldown subject instead.

use crate::error::Error;
use crate::ids::{AppId, OrgId, UserId};

/// The `tracing` target of security events, for filters such as `ENROLL_LOG=enroll::security=info`.
pub const TARGET: &str = "enroll::security";

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A user created, with a registration code on its way.
    UserCreate,
    /// A code or link emailed: a first send or a resend, which voids the previous one.
    CodeSend,
    /// A submitted code or link checked (and, when it is right, used).
    CodeVerify,
    /// A password sign-up.
    SignUp,
    /// A password or key login.
    Login,
    /// A refresh token exchanged for a new session pair.
    SessionRefresh,
    /// A password set through a reset link.
    PasswordReset,
    /// An app naming itself: its secret and its request signature.
    AppCheck,
    /// A bearer token presented.
    TokenCheck,
    /// A caller's permissions checked against an operation.
    PermissionCheck,
    /// A signed user action presented, or a user-action challenge answered.
    UserAction,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserCreate => "user.create",
            Self::CodeSend => "code.send",
            Self::CodeVerify => "code.verify",
            Self::SignUp => "account.sign_up",
            Self::Login => "session.login",
            Self::SessionRefresh => "session.refresh",
            Self::PasswordReset => "password.reset",
            Self::AppCheck => "app.check",
            Self::TokenCheck => "token.check",
            Self::PermissionCheck => "permission.check",
            Self::UserAction => "user_action.check",
        }
    }
}

/// How it ended: `ok`, `refused` (the rules said no, and [`Error::kind`] says why), or `error`
/// (the store or the server failed, and nothing was decided).
pub fn outcome(error: Option<&Error>) -> &'static str {
    match error {
        None => "ok",
        Some(Error::Unavailable(_) | Error::Internal { .. }) => "error",
        Some(_) => "refused",
    }
}

/// One event, built up with the ids its action knows, then recorded with how it ended.
#[derive(Debug, Clone, Copy)]
#[must_use = "an event is only written by `record` or `refused`"]
pub struct SecurityEvent<'a> {
    action: Action,
    org_id: Option<&'a OrgId>,
    app_id: Option<&'a AppId>,
    user_id: Option<&'a UserId>,
    subject: Option<&'a str>,
}

impl<'a> SecurityEvent<'a> {
    pub fn new(action: Action) -> Self {
        Self {
            action,
            org_id: None,
            app_id: None,
            user_id: None,
            subject: None,
        }
    }

    pub fn org(mut self, org_id: &'a OrgId) -> Self {
        self.org_id = Some(org_id);
        self
    }

    pub fn app(mut self, app_id: Option<&'a AppId>) -> Self {
        self.app_id = app_id;
        self
    }

    pub fn user(mut self, user_id: &'a UserId) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// The keyed hash standing for an address, when no user id is known.
    pub fn subject(mut self, subject: &'a str) -> Self {
        self.subject = Some(subject);
        self
    }

    /// Writes the event with the outcome of `result`.
    pub fn record<T>(self, result: &Result<T, Error>) {
        self.write(result.as_ref().err());
    }

    pub fn succeeded(self) {
        self.write(None);
    }

    pub fn refused(self, error: &Error) {
        self.write(Some(error));
    }

    /// A refusal the error type has no name for (the answer itself stays generic).
    pub fn refused_because(self, reason: &'static str) {
        self.write_with("refused", Some(reason));
    }

    fn write(self, error: Option<&Error>) {
        self.write_with(outcome(error), error.map(Error::kind));
    }

    fn write_with(self, outcome: &'static str, reason: Option<&'static str>) {
        tracing::info!(
            target: TARGET,
            action = self.action.as_str(),
            outcome,
            reason,
            org_id = self.org_id.map(OrgId::as_str),
            app_id = self.app_id.map(AppId::as_str),
            user_id = self.user_id.map(UserId::as_str),
            subject = self.subject,
            "security event"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_are_errors_and_rule_refusals_are_refusals() {
        assert_eq!(outcome(None), "ok");
        assert_eq!(outcome(Some(&Error::CodeInvalid)), "refused");
        assert_eq!(outcome(Some(&Error::Unavailable("down".into()))), "error");
    }

    #[test]
    fn action_names_are_distinct() {
        let names = [
            Action::UserCreate,
            Action::CodeSend,
            Action::CodeVerify,
            Action::SignUp,
            Action::Login,
            Action::SessionRefresh,
            Action::PasswordReset,
            Action::AppCheck,
            Action::TokenCheck,
            Action::PermissionCheck,
            Action::UserAction,
        ]
        .map(Action::as_str);
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }
}
