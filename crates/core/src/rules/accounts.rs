//! Accounts that sign in with a password (the Singularity face): sign-up, logins and their
//! throttle, and password resets.

use serde_json::json;

use super::{
    CodeUse, CreateUser, CreateUserState, Effect, NewCode, Plan, SendRecord, VerifyCode,
    VerifyCodeState, count_send, create_user, issue_effects, record, send_refused, supersede,
    verify_code,
};
use crate::clock::Timestamp;
use crate::code::CodePurpose;
use crate::email::EmailAddress;
use crate::error::Error;
use crate::ids::{MessageId, OrgId, UserId};
use crate::model::{
    AccessToken, CodeRecord, Locale, MailTemplate, NewMessage, Org, User, choose_locale,
};
use crate::password::PasswordHash;
use crate::policy::Policy;

/// An email without a code, prepared before the transaction: its id and sealed content.
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    pub id: MessageId,
    pub sealed: Vec<u8>,
}

/// A sign-up: a new account with a password and its verification email, or, when the address
/// already has an account, an email telling its owner, and the same answer either way.
#[derive(Debug, Clone)]
pub struct SignUp {
    /// The account to create; its code is the verification email (none when mail is off).
    pub user: CreateUser,
    pub password_hash: PasswordHash,
    /// What an existing account's owner is sent instead.
    pub attempt: PreparedMessage,
    /// The language the request asked for, and the browser's: for the owner's email.
    pub explicit_locale: Option<Locale>,
    pub browser_locale: Option<Locale>,
}

#[derive(Debug, Clone)]
pub struct SignUpState {
    pub create: CreateUserState,
    /// Of the address, for verification emails: the attempt email shares them.
    pub sends: Option<SendRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedUp {
    Created {
        user: User,
        message_id: Option<MessageId>,
    },
    /// The address has an account; its owner was told unless an email went there within the
    /// cooldown.
    Existing { message_id: Option<MessageId> },
}

pub fn sign_up(state: &SignUpState, command: &SignUp) -> Plan<SignedUp> {
    let created = create_user(&state.create, &command.user);
    match created.outcome {
        Ok(outcome) => {
            let mut effects = created.effects;
            effects.push(Effect::SetPassword {
                user_id: outcome.user.id.clone(),
                hash: command.password_hash.clone(),
            });
            Plan {
                effects,
                outcome: Ok(SignedUp::Created {
                    user: outcome.user,
                    message_id: outcome.message_id,
                }),
            }
        }
        Err(Error::UserExists) => {
            let now = command.user.now;
            let (Some(existing), org) = (&state.create.existing, state.create.org.as_ref()) else {
                return Plan::refuse(Error::UserExists);
            };
            if let Some(refused) = send_refused(
                state.sends.as_ref(),
                &command.user.cooldown_subject,
                CodePurpose::EmailVerification,
                now,
                &command.user.policy,
            ) {
                return Plan {
                    effects: refused.correction.into_iter().collect(),
                    outcome: Ok(SignedUp::Existing { message_id: None }),
                };
            }
            let mut user = existing.clone();
            let attempted = record(
                &mut user,
                "user.signup.attempted",
                json!({ "messageId": command.attempt.id }),
                now,
            );
            let locale = choose_locale(
                command.explicit_locale.as_ref(),
                user.locale.as_ref(),
                command.browser_locale.as_ref(),
                org,
            );
            let effects = vec![
                Effect::AppendEvent(attempted),
                Effect::EnqueueMessage(account_message(
                    &command.attempt,
                    &user.org_id,
                    Some(&user.id),
                    &user.username,
                    MailTemplate::RegistrationAttempt,
                    locale,
                    now,
                )),
                count_send(
                    &command.user.cooldown_subject,
                    CodePurpose::EmailVerification,
                    state.sends.as_ref(),
                    now,
                    &command.user.policy,
                ),
                Effect::UpdateUser(user),
            ];
            Plan {
                effects,
                outcome: Ok(SignedUp::Existing {
                    message_id: Some(command.attempt.id.clone()),
                }),
            }
        }
        Err(error) => Plan::refuse(error),
    }
}

fn account_message(
    prepared: &PreparedMessage,
    org_id: &OrgId,
    user_id: Option<&UserId>,
    recipient: &EmailAddress,
    template: MailTemplate,
    locale: Locale,
    now: Timestamp,
) -> NewMessage {
    NewMessage {
        id: prepared.id.clone(),
        org_id: org_id.clone(),
        user_id: user_id.cloned(),
        code_id: None,
        template,
        locale,
        recipient: recipient.clone(),
        sealed: prepared.sealed.clone(),
        created_at: now,
    }
}

/// A login whose password was checked before the transaction (hashing is slow); the
/// transaction counts a failure or stores the session.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    /// The cooldown subject of the address typed: unknown addresses are throttled alike.
    pub subject: String,
    /// The account whose password was checked, if the address has one.
    pub user_id: Option<UserId>,
    pub password_matched: bool,
    /// Stored when the login succeeds.
    pub session: AccessToken,
    pub now: Timestamp,
    pub policy: Policy,
}

#[derive(Debug, Clone)]
pub struct LoginState {
    pub user: Option<User>,
    /// Failed logins of the subject and when their window ends.
    pub failures: Option<(u32, Timestamp)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecorded {
    pub user: User,
    pub session: AccessToken,
}

/// When the subject's failures reached the limit within their window, the answer until the
/// window ends; checked before the password too, so a throttled login costs no hashing.
pub fn login_throttled(
    failures: Option<(u32, Timestamp)>,
    now: Timestamp,
    policy: &Policy,
) -> Option<Error> {
    let (count, window_ends_at) = failures?;
    (count >= policy.login_max_failures && window_ends_at > now).then(|| Error::LoginThrottled {
        retry_after: now.until(window_ends_at),
    })
}

pub fn record_login(state: &LoginState, command: &LoginAttempt) -> Plan<LoginRecorded> {
    let now = command.now;
    if let Some(error) = login_throttled(state.failures, now, &command.policy) {
        return Plan::refuse(error);
    }
    let user = state
        .user
        .as_ref()
        .filter(|user| Some(&user.id) == command.user_id.as_ref());
    let Some(user) = user.filter(|_| command.password_matched) else {
        let (failures, window_ends_at) = match state.failures {
            Some((count, ends)) if ends > now => (count + 1, ends),
            _ => (1, now.plus(command.policy.login_failure_window)),
        };
        return Plan {
            effects: vec![Effect::SetLoginFailures {
                subject: command.subject.clone(),
                failures,
                window_ends_at,
            }],
            outcome: Err(Error::InvalidCredentials),
        };
    };
    let mut effects = Vec::new();
    if state.failures.is_some() {
        effects.push(Effect::SetLoginFailures {
            subject: command.subject.clone(),
            failures: 0,
            window_ends_at: now,
        });
    }
    effects.push(Effect::InsertToken(command.session.clone()));
    Plan {
        effects,
        outcome: Ok(LoginRecorded {
            user: user.clone(),
            session: command.session.clone(),
        }),
    }
}

/// A request to reset the password of an address, known or not.
#[derive(Debug, Clone)]
pub struct RequestPasswordReset {
    pub org_id: OrgId,
    pub email: EmailAddress,
    pub cooldown_subject: String,
    /// The reset link's code, for an address with an account.
    pub code: NewCode,
    /// The "no account" email, for an address without one.
    pub no_account: PreparedMessage,
    /// The browser's language, after the request's (`code.locale`) and the user's.
    pub browser_locale: Option<Locale>,
    pub now: Timestamp,
    pub policy: Policy,
}

#[derive(Debug, Clone)]
pub struct RequestPasswordResetState {
    pub org: Option<Org>,
    pub user: Option<User>,
    pub active_code: Option<CodeRecord>,
    pub sends: Option<SendRecord>,
}

/// The email on its way, if one was sent (an unknown address in an organisation that does not
/// write to unknown addresses gets none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordResetRequested {
    pub message_id: Option<MessageId>,
}

pub fn request_password_reset(
    state: &RequestPasswordResetState,
    command: &RequestPasswordReset,
) -> Plan<PasswordResetRequested> {
    let Some(org) = state.org.as_ref().filter(|org| org.id == command.org_id) else {
        return Plan::refuse(Error::OrgNotFound);
    };
    let now = command.now;
    // As for every other send, the cooldown is the address's, known or not.
    if let Some(refused) = send_refused(
        state.sends.as_ref(),
        &command.cooldown_subject,
        CodePurpose::PasswordReset,
        now,
        &command.policy,
    ) {
        return refused.into_plan();
    }
    let cooldown = count_send(
        &command.cooldown_subject,
        CodePurpose::PasswordReset,
        state.sends.as_ref(),
        now,
        &command.policy,
    );
    let Some(user) = state
        .user
        .as_ref()
        .filter(|user| user.org_id == org.id && user.username == command.email)
    else {
        if !org.unknown_address_mail {
            return Plan {
                effects: vec![cooldown],
                outcome: Ok(PasswordResetRequested { message_id: None }),
            };
        }
        let locale = choose_locale(
            command.code.locale.as_ref(),
            None,
            command.browser_locale.as_ref(),
            Some(org),
        );
        let message = account_message(
            &command.no_account,
            &org.id,
            None,
            &command.email,
            MailTemplate::NoAccount,
            locale,
            now,
        );
        return Plan {
            effects: vec![Effect::EnqueueMessage(message), cooldown],
            outcome: Ok(PasswordResetRequested {
                message_id: Some(command.no_account.id.clone()),
            }),
        };
    };
    let mut user = user.clone();
    let mut effects = Vec::new();
    effects.extend(supersede(state.active_code.as_ref()));
    let locale = choose_locale(
        command.code.locale.as_ref(),
        user.locale.as_ref(),
        command.browser_locale.as_ref(),
        Some(org),
    );
    effects.extend(issue_effects(
        &mut user,
        &command.cooldown_subject,
        state.sends.as_ref(),
        &command.code,
        locale,
        now,
        &command.policy,
    ));
    effects.push(Effect::UpdateUser(user));
    Plan {
        effects,
        outcome: Ok(PasswordResetRequested {
            message_id: Some(command.code.prepared.message_id.clone()),
        }),
    }
}

/// A new password, proved by the newest reset code; every session ends with it.
#[derive(Debug, Clone)]
pub struct ResetPassword {
    pub user_id: UserId,
    pub verify: VerifyCode,
    pub password_hash: PasswordHash,
}

pub fn reset_password(state: &VerifyCodeState, command: &ResetPassword) -> Plan<User> {
    let verified = verify_code(state, &command.verify);
    let mut effects = verified.effects;
    let verified = match verified.outcome {
        Ok(verified) if verified.user.id == command.user_id => verified,
        Ok(_) => return Plan::refuse(Error::CodeInvalid),
        Err(error) => {
            return Plan {
                effects,
                outcome: Err(error),
            };
        }
    };
    let now = command.verify.now;
    let mut user = verified.user;
    let changed = record(&mut user, "user.password.changed", json!({}), now);
    // The user row is written once, with the last event's sequence.
    effects.retain(|effect| !matches!(effect, Effect::UpdateUser(_)));
    effects.extend([
        Effect::AppendEvent(changed),
        Effect::SetPassword {
            user_id: user.id.clone(),
            hash: command.password_hash.clone(),
        },
        Effect::RevokeSessions {
            user_id: user.id.clone(),
            at: now,
        },
        Effect::UpdateUser(user.clone()),
    ]);
    Plan {
        effects,
        outcome: Ok(user),
    }
}

/// The verification of a reset code, as [`ResetPassword`] runs it.
pub fn reset_code_check(
    user_id: UserId,
    submitted: crate::code::CodeSecret,
    hasher: crate::code::CodeHasher,
    now: Timestamp,
    policy: Policy,
) -> VerifyCode {
    VerifyCode {
        user: super::UserKey::Id(user_id),
        purpose: CodePurpose::PasswordReset,
        submitted,
        usage: CodeUse::Consume,
        hasher,
        now,
        policy,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{NOW, org, pending_user, prepared};
    use super::*;
    use crate::code::{CodeHasher, CodeState};
    use crate::ids::TokenId;
    use crate::model::{TokenKind, UserKind, UserState};

    fn prepared_message() -> PreparedMessage {
        PreparedMessage {
            id: MessageId::generate(),
            sealed: vec![7; 8],
        }
    }

    fn sign_up_of(org: &Org, email: &str) -> SignUp {
        SignUp {
            user: CreateUser {
                user_id: UserId::generate(),
                cooldown_subject: "subject".into(),
                org_id: org.id.clone(),
                username: EmailAddress::parse(email).unwrap(),
                name: Some("Jane".into()),
                kind: UserKind::EndUser,
                state: UserState::Registered,
                locale: None,
                code: Some(NewCode {
                    template: MailTemplate::AccountVerification,
                    ..NewCode::emailed(CodePurpose::EmailVerification, prepared())
                }),
                user_action: None,
                now: NOW,
                policy: Policy::default(),
            },
            password_hash: PasswordHash::from_trusted("$argon2id$stand-in".into()),
            attempt: prepared_message(),
            explicit_locale: None,
            browser_locale: None,
        }
    }

    fn messages(effects: &[Effect]) -> Vec<&NewMessage> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::EnqueueMessage(message) => Some(message),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_address_gets_an_account_its_password_and_the_verification_email() {
        let org = org();
        let state = SignUpState {
            create: CreateUserState {
                org: Some(org.clone()),
                existing: None,
            },
            sends: None,
        };
        let plan = sign_up(&state, &sign_up_of(&org, "jane@example.com"));
        let Ok(SignedUp::Created { user, message_id }) = plan.outcome else {
            panic!("{:?}", plan.outcome);
        };
        assert_eq!(user.state, UserState::Registered);
        assert_eq!(user.name.as_deref(), Some("Jane"));
        assert!(message_id.is_some());
        let sent = messages(&plan.effects);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].template, MailTemplate::AccountVerification);
        assert!(
            plan.effects
                .iter()
                .any(|effect| matches!(effect, Effect::SetPassword { .. }))
        );
    }

    #[test]
    fn an_address_with_an_account_tells_its_owner_once_per_cooldown() {
        let org = org();
        let owner = pending_user(&org);
        let mut state = SignUpState {
            create: CreateUserState {
                org: Some(org.clone()),
                existing: Some(owner.clone()),
            },
            sends: None,
        };
        let command = sign_up_of(&org, owner.username.as_str());
        let plan = sign_up(&state, &command);
        assert_eq!(
            plan.outcome.unwrap(),
            SignedUp::Existing {
                message_id: Some(command.attempt.id.clone())
            }
        );
        let sent = messages(&plan.effects);
        assert_eq!(sent[0].template, MailTemplate::RegistrationAttempt);
        assert_eq!(sent[0].user_id.as_ref(), Some(&owner.id));
        assert!(
            !plan
                .effects
                .iter()
                .any(|effect| matches!(effect, Effect::SetPassword { .. })),
            "the owner's password stays"
        );

        state.sends = Some(SendRecord {
            cooldown_until: NOW.plus(Duration::from_secs(30)),
            window_started_at: NOW,
            sends: 1,
        });
        let plan = sign_up(&state, &command);
        assert_eq!(
            plan.outcome.unwrap(),
            SignedUp::Existing { message_id: None }
        );
        assert!(plan.effects.is_empty());
    }

    fn attempt(user: Option<&User>, matched: bool) -> LoginAttempt {
        LoginAttempt {
            subject: "subject".into(),
            user_id: user.map(|user| user.id.clone()),
            password_matched: matched,
            session: AccessToken {
                id: TokenId::generate(),
                org_id: OrgId::generate(),
                user_id: user.map(|user| user.id.clone()),
                kind: TokenKind::Session,
                digest: [3; 32],
                permissions: Vec::new(),
                created_at: NOW,
                expires_at: Some(NOW.plus(Duration::from_secs(3600))),
                revoked_at: None,
            },
            now: NOW,
            policy: Policy::default(),
        }
    }

    #[test]
    fn failed_logins_count_until_the_limit_then_refuse_even_the_right_password() {
        let org = org();
        let user = pending_user(&org);
        let policy = Policy::default();
        let mut state = LoginState {
            user: Some(user.clone()),
            failures: None,
        };
        for expected in 1..=policy.login_max_failures {
            let plan = record_login(&state, &attempt(Some(&user), false));
            assert!(matches!(plan.outcome, Err(Error::InvalidCredentials)));
            let [
                Effect::SetLoginFailures {
                    failures,
                    window_ends_at,
                    ..
                },
            ] = plan.effects[..]
            else {
                panic!("{:?}", plan.effects);
            };
            assert_eq!(failures, expected);
            assert_eq!(window_ends_at, NOW.plus(policy.login_failure_window));
            state.failures = Some((failures, window_ends_at));
        }
        let plan = record_login(&state, &attempt(Some(&user), true));
        assert!(
            matches!(plan.outcome, Err(Error::LoginThrottled { retry_after }) if retry_after == policy.login_failure_window)
        );
        assert!(plan.effects.is_empty());

        state.failures = Some((2, NOW.plus(Duration::from_secs(1))));
        let plan = record_login(&state, &attempt(Some(&user), true));
        assert!(plan.outcome.is_ok());
        assert!(matches!(
            plan.effects[..],
            [
                Effect::SetLoginFailures { failures: 0, .. },
                Effect::InsertToken(_)
            ]
        ));
    }

    #[test]
    fn an_unknown_address_fails_like_a_wrong_password() {
        let plan = record_login(
            &LoginState {
                user: None,
                failures: None,
            },
            &attempt(None, true),
        );
        assert!(matches!(plan.outcome, Err(Error::InvalidCredentials)));
        assert!(matches!(
            plan.effects[..],
            [Effect::SetLoginFailures { failures: 1, .. }]
        ));
    }

    fn reset_request(org: &Org, email: &str) -> RequestPasswordReset {
        RequestPasswordReset {
            org_id: org.id.clone(),
            email: EmailAddress::parse(email).unwrap(),
            cooldown_subject: "subject".into(),
            code: NewCode::emailed(CodePurpose::PasswordReset, prepared()),
            no_account: prepared_message(),
            browser_locale: None,
            now: NOW,
            policy: Policy::default(),
        }
    }

    #[test]
    fn a_reset_for_an_unknown_address_sends_the_no_account_email_unless_switched_off() {
        let mut org = org();
        let mut state = RequestPasswordResetState {
            org: Some(org.clone()),
            user: None,
            active_code: None,
            sends: None,
        };
        let command = reset_request(&org, "nobody@example.com");
        let plan = request_password_reset(&state, &command);
        assert_eq!(
            plan.outcome.unwrap().message_id,
            Some(command.no_account.id.clone())
        );
        let sent = messages(&plan.effects);
        assert_eq!(sent[0].template, MailTemplate::NoAccount);
        assert_eq!(sent[0].user_id, None);
        assert_eq!(sent[0].locale, org.default_locale);

        org.unknown_address_mail = false;
        state.org = Some(org);
        let plan = request_password_reset(&state, &command);
        assert_eq!(plan.outcome.unwrap().message_id, None);
        assert!(matches!(plan.effects[..], [Effect::SetCooldown { .. }]));

        state.sends = Some(SendRecord {
            cooldown_until: NOW.plus(Duration::from_secs(5)),
            window_started_at: NOW,
            sends: 1,
        });
        let plan = request_password_reset(&state, &command);
        assert!(matches!(plan.outcome, Err(Error::Cooldown { .. })));
    }

    #[test]
    fn a_reset_ends_every_session_and_sets_the_password_with_the_code_used() {
        let org = org();
        let user = pending_user(&org);
        let hasher = CodeHasher::new([5; 32]);
        let secret = crate::code::CodeSecret::generate_link_secret();
        let code_id = crate::ids::CodeId::generate();
        let code = CodeRecord {
            id: code_id.clone(),
            user_id: user.id.clone(),
            purpose: CodePurpose::PasswordReset,
            hash: hasher.hash(&code_id, CodePurpose::PasswordReset, &secret),
            state: CodeState::Active,
            failed_attempts: 0,
            created_at: NOW,
            expires_at: NOW.plus(Duration::from_secs(3600)),
        };
        let state = VerifyCodeState {
            user: Some(user.clone()),
            latest_code: Some(code),
        };
        let command = ResetPassword {
            user_id: user.id.clone(),
            verify: reset_code_check(user.id.clone(), secret, hasher, NOW, Policy::default()),
            password_hash: PasswordHash::from_trusted("$argon2id$new".into()),
        };
        let plan = reset_password(&state, &command);
        let changed = plan.outcome.unwrap();
        assert!(
            plan.effects
                .iter()
                .any(|effect| matches!(effect, Effect::RevokeSessions { .. }))
        );
        assert!(
            plan.effects
                .iter()
                .any(|effect| matches!(effect, Effect::SetPassword { .. }))
        );
        let updates: Vec<_> = plan
            .effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::UpdateUser(user) => Some(user),
                _ => None,
            })
            .collect();
        assert_eq!(
            updates,
            vec![&changed],
            "one write of the user, at its last sequence"
        );
        assert!(matches!(plan.effects.last(), Some(Effect::UpdateUser(_))));
    }
}
