//! The rules, as pure decisions: given what the store holds now and a command, which writes to
//! make and what to answer. Stores load the state, call these inside one transaction, and apply
//! the effects; they decide nothing themselves.

use serde_json::json;

use crate::clock::Timestamp;
use crate::code::{CodeHash, CodeHasher, CodePurpose, CodeSecret, CodeState};
use crate::credential::Credential;
use crate::email::EmailAddress;
use crate::error::Error;
use crate::ids::{AppId, CodeId, MessageId, OrgId, UserId};
use crate::model::{
    AccessToken, App, CodeRecord, Event, Locale, MailTemplate, NewMessage, Org, Permission,
    SingleUse, User, UserKind, UserState,
};
use crate::password::PasswordHash;
use crate::policy::Policy;

mod accounts;

pub use accounts::{
    LoginAttempt, LoginRecorded, LoginState, PasswordResetRequested, PreparedMessage,
    RequestPasswordReset, RequestPasswordResetState, ResetPassword, SignUp, SignUpState, SignedUp,
    login_throttled, record_login, request_password_reset, reset_code_check, reset_password,
    sign_up,
};

/// One write a decision asks the store to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    InsertUser(User),
    /// Rewrites the user's state, locale, sequence and update time.
    UpdateUser(User),
    InsertCode(CodeRecord),
    InsertCredential(Credential),
    InsertToken(AccessToken),
    SetPermissions {
        user_id: UserId,
        permissions: Vec<Permission>,
    },
    /// A change to the current code of its user and purpose: a code replaced by a newer one
    /// does not change.
    UpdateCode {
        id: CodeId,
        user_id: UserId,
        purpose: CodePurpose,
        state: CodeState,
        failed_attempts: u32,
    },
    AppendEvent(Event),
    EnqueueMessage(NewMessage),
    /// Keyed by [`crate::code::CodeHasher::cooldown_subject`], not by user, so that unknown
    /// addresses have cooldowns too.
    SetCooldown {
        subject: String,
        purpose: CodePurpose,
        record: SendRecord,
    },
    SetPassword {
        user_id: UserId,
        hash: PasswordHash,
    },
    /// Ends every live session token of the user.
    RevokeSessions {
        user_id: UserId,
        at: Timestamp,
    },
    /// Failed logins of a cooldown subject within the window ending at `window_ends_at`;
    /// zero failures forget the subject.
    SetLoginFailures {
        subject: String,
        failures: u32,
        window_ends_at: Timestamp,
    },
}

/// What a decision writes, and what it answers; an error answer may still write
/// (a wrong code counts an attempt).
#[derive(Debug)]
pub struct Plan<T> {
    pub effects: Vec<Effect>,
    pub outcome: Result<T, Error>,
}

impl<T> Plan<T> {
    fn refuse(error: Error) -> Self {
        Self {
            effects: Vec::new(),
            outcome: Err(error),
        }
    }
}

/// A freshly made code and its message, prepared before the transaction so the transaction
/// does no cryptography and unknown users cost the same work as known ones.
#[derive(Debug, Clone)]
pub struct PreparedCode {
    pub code_id: CodeId,
    pub hash: CodeHash,
    pub message_id: MessageId,
    pub sealed: Vec<u8>,
}

/// Which app made the request, when one identified itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCheck {
    pub app_id: AppId,
    /// Legacy endpoint: the app must hold `Auth:Users:Create` and the type permission of the
    /// user's kind.
    pub require_user_permissions: bool,
}

/// How a new code reaches its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued as an email, which starts the cooldown.
    Email,
    /// Handed to the caller, who delivers it; nothing is sent and no cooldown starts.
    Returned,
}

/// A code about to be issued.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub purpose: CodePurpose,
    pub prepared: PreparedCode,
    pub delivery: Delivery,
    /// The email that carries it.
    pub template: MailTemplate,
    /// The email's language when the request named one; else the user's, else the org's.
    pub locale: Option<Locale>,
}

impl NewCode {
    /// A code of `purpose` sent in its usual email.
    pub fn emailed(purpose: CodePurpose, prepared: PreparedCode) -> Self {
        Self {
            purpose,
            prepared,
            delivery: Delivery::Email,
            template: template_for(purpose),
            locale: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CreateUser {
    pub user_id: UserId,
    pub cooldown_subject: String,
    pub org_id: OrgId,
    pub username: EmailAddress,
    pub name: Option<String>,
    pub kind: UserKind,
    /// `Pending` until a credential is registered; `Registered` when the user comes with one
    /// (a password).
    pub state: UserState,
    pub locale: Option<Locale>,
    /// The user's first code; without one the address counts as verified from the start.
    pub code: Option<NewCode>,
    /// The signed user action that asked for the user, spent in the same transaction.
    pub user_action: Option<SingleUse>,
    pub now: Timestamp,
    pub policy: Policy,
}

#[derive(Debug, Clone)]
pub struct CreateUserState {
    pub org: Option<Org>,
    pub existing: Option<User>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCreated {
    pub user: User,
    /// The email of the first code, when one was sent.
    pub message_id: Option<MessageId>,
}

#[derive(Debug, Clone)]
pub struct IssueCode {
    pub org_id: OrgId,
    pub username: EmailAddress,
    pub cooldown_subject: String,
    pub purpose: CodePurpose,
    /// An explicit locale for this email; else the user's, else the org's.
    pub locale: Option<Locale>,
    pub app: Option<AppCheck>,
    pub code: PreparedCode,
    pub now: Timestamp,
    pub policy: Policy,
}

#[derive(Debug, Clone)]
pub struct IssueCodeState {
    pub org: Option<Org>,
    pub user: Option<User>,
    /// Loaded when the command names an app; `None` then means the app is unknown.
    pub app: Option<App>,
    pub active_code: Option<CodeRecord>,
    /// Loaded by the command's cooldown subject and purpose, whether or not the user exists.
    pub sends: Option<SendRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeIssued {
    pub user: User,
    pub code_id: CodeId,
    pub message_id: MessageId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeUse {
    /// Checks the code (a wrong one still counts) and leaves it active.
    Check,
    /// Uses the code up; for a registration code the user becomes `Registered`.
    Consume,
}

/// How a command names its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserKey {
    Username {
        org_id: OrgId,
        username: EmailAddress,
    },
    Id(UserId),
}

impl UserKey {
    fn names(&self, user: &User) -> bool {
        match self {
            Self::Username { org_id, username } => {
                &user.org_id == org_id && &user.username == username
            }
            Self::Id(id) => &user.id == id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VerifyCode {
    pub user: UserKey,
    pub purpose: CodePurpose,
    pub submitted: CodeSecret,
    pub usage: CodeUse,
    pub hasher: CodeHasher,
    pub now: Timestamp,
    pub policy: Policy,
}

/// A code that matched: whose, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeVerified {
    pub user: User,
    pub code_id: CodeId,
}

#[derive(Debug, Clone)]
pub struct VerifyCodeState {
    pub user: Option<User>,
    /// The newest code of the user for the purpose, whatever its state.
    pub latest_code: Option<CodeRecord>,
}

fn template_for(purpose: CodePurpose) -> MailTemplate {
    match purpose {
        CodePurpose::Registration => MailTemplate::Registration,
        CodePurpose::EmailVerification => MailTemplate::EmailVerification,
        CodePurpose::PasswordReset => MailTemplate::PasswordReset,
    }
}

fn event(user: &User, kind: &str, payload: serde_json::Value, at: Timestamp) -> Event {
    Event {
        aggregate_id: user.id.as_str().to_owned(),
        sequence: user.sequence,
        kind: kind.to_owned(),
        payload,
        org_id: user.org_id.clone(),
        at,
    }
}

/// Bumps the user's sequence and returns the event at the new sequence.
fn record(user: &mut User, kind: &str, payload: serde_json::Value, at: Timestamp) -> Event {
    user.sequence += 1;
    user.updated_at = at;
    event(user, kind, payload, at)
}

/// Effects that issue a code to `user`: a new active code and, when it is emailed, its
/// message and a cooldown.
fn issue_effects(
    user: &mut User,
    cooldown_subject: &str,
    sends: Option<&SendRecord>,
    code: &NewCode,
    locale: Locale,
    now: Timestamp,
    policy: &Policy,
) -> Vec<Effect> {
    let purpose = code.purpose;
    let prepared = &code.prepared;
    let expires_at = now.plus(policy.code_ttl(purpose));
    let emailed = code.delivery == Delivery::Email;
    let mut payload = json!({
        "purpose": purpose.as_str(),
        "codeId": prepared.code_id,
        "expiresAt": expires_at.to_rfc3339(),
    });
    if emailed {
        payload["messageId"] = json!(prepared.message_id);
    } else {
        payload["codeReturned"] = json!(true);
    }
    let issued = record(user, "user.code.issued", payload, now);
    let mut effects = vec![
        Effect::InsertCode(CodeRecord {
            id: prepared.code_id.clone(),
            user_id: user.id.clone(),
            purpose,
            hash: prepared.hash.clone(),
            state: CodeState::Active,
            failed_attempts: 0,
            created_at: now,
            expires_at,
        }),
        Effect::AppendEvent(issued),
    ];
    if emailed {
        effects.push(Effect::EnqueueMessage(NewMessage {
            id: prepared.message_id.clone(),
            org_id: user.org_id.clone(),
            user_id: Some(user.id.clone()),
            code_id: Some(prepared.code_id.clone()),
            template: code.template,
            locale: code.locale.clone().unwrap_or(locale),
            recipient: user.username.clone(),
            sealed: prepared.sealed.clone(),
            created_at: now,
        }));
        effects.push(count_send(cooldown_subject, purpose, sends, now, policy));
    }
    effects
}

/// What is kept of the emails of one purpose to one address (its cooldown subject): when the
/// next may go, and how many went in the current window, which is capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRecord {
    pub cooldown_until: Timestamp,
    pub window_started_at: Timestamp,
    pub sends: u32,
}

impl SendRecord {
    /// When the next email may go: after the cooldown and, once the window's cap is reached,
    /// after the window.
    pub fn next_send_at(&self, policy: &Policy) -> Timestamp {
        let window_ends_at = self.window_started_at.plus(policy.send_window);
        if self.sends >= policy.max_sends_per_window && window_ends_at > self.cooldown_until {
            window_ends_at
        } else {
            self.cooldown_until
        }
    }

    /// The record once one more email goes at `now`.
    fn after_send(previous: Option<&Self>, now: Timestamp, policy: &Policy) -> Self {
        let window = previous
            .filter(|record| record.window_started_at.plus(policy.send_window) > now)
            .map_or((now, 1), |record| {
                (record.window_started_at, record.sends.saturating_add(1))
            });
        Self {
            cooldown_until: now.plus(policy.cooldown),
            window_started_at: window.0,
            sends: window.1,
        }
    }
}

/// A send refused, and the write that corrects a record set by a clock ahead of this one.
struct SendRefusal {
    error: Error,
    correction: Option<Effect>,
}

impl SendRefusal {
    fn into_plan<T>(self) -> Plan<T> {
        Plan {
            effects: self.correction.into_iter().collect(),
            outcome: Err(self.error),
        }
    }
}

/// The refusal an email to an address meets while its cooldown runs or its window is full.
///
/// A record whose cooldown ends more than one cooldown from now, or whose window starts after
/// now, was set by a clock ahead of this one (another instance's, or this one before it was set
/// back). It holds the address for one cooldown from now, and is written back so: otherwise
/// the address would wait for the difference between the clocks.
fn send_refused(
    record: Option<&SendRecord>,
    subject: &str,
    purpose: CodePurpose,
    now: Timestamp,
    policy: &Policy,
) -> Option<SendRefusal> {
    let stored = *record?;
    let seen = SendRecord {
        cooldown_until: stored.cooldown_until.min(now.plus(policy.cooldown)),
        window_started_at: stored.window_started_at.min(now),
        sends: stored.sends,
    };
    let next = seen.next_send_at(policy);
    (next > now).then(|| SendRefusal {
        error: Error::Cooldown {
            retry_after: now.until(next),
        },
        correction: (seen != stored).then(|| Effect::SetCooldown {
            subject: subject.to_owned(),
            purpose,
            record: seen,
        }),
    })
}

/// The effect that records one more email to an address.
fn count_send(
    subject: &str,
    purpose: CodePurpose,
    previous: Option<&SendRecord>,
    now: Timestamp,
    policy: &Policy,
) -> Effect {
    Effect::SetCooldown {
        subject: subject.to_owned(),
        purpose,
        record: SendRecord::after_send(previous, now, policy),
    }
}

/// The write that voids the active code a new one replaces.
fn supersede(active: Option<&CodeRecord>) -> Option<Effect> {
    active.map(|previous| Effect::UpdateCode {
        id: previous.id.clone(),
        user_id: previous.user_id.clone(),
        purpose: previous.purpose,
        state: CodeState::Superseded,
        failed_attempts: previous.failed_attempts,
    })
}

/// Locale chain: explicit → user's → organisation default (→ `en` inside the org default).
fn resolve_locale(explicit: Option<&Locale>, user: &User, org: Option<&Org>) -> Locale {
    explicit
        .or(user.locale.as_ref())
        .or(org.map(|org| &org.default_locale))
        .cloned()
        .unwrap_or_else(Locale::english)
}

/// A new pending user, with its first code on its way (or handed back), or with its address
/// verified from the start.
pub fn create_user(state: &CreateUserState, command: &CreateUser) -> Plan<UserCreated> {
    let Some(org) = &state.org else {
        return Plan::refuse(Error::OrgNotFound);
    };
    if state.existing.is_some() {
        return Plan::refuse(Error::UserExists);
    }
    let now = command.now;
    let mut user = User {
        id: command.user_id.clone(),
        org_id: org.id.clone(),
        username: command.username.clone(),
        name: command.name.clone(),
        kind: command.kind,
        state: command.state,
        locale: command.locale.clone(),
        email_verified_at: None,
        sequence: 0,
        created_at: now,
        updated_at: now,
    };
    let created_payload = json!({ "username": user.username, "kind": user.kind.as_str() });
    let mut events = vec![record(&mut user, "user.created", created_payload, now)];
    let mut issued = Vec::new();
    match &command.code {
        Some(code) => {
            let locale = resolve_locale(None, &user, Some(org));
            // A new user's address starts a new window: creating users is for their
            // organisation's administrators.
            issued = issue_effects(
                &mut user,
                &command.cooldown_subject,
                None,
                code,
                locale,
                now,
                &command.policy,
            );
        }
        None => {
            user.email_verified_at = Some(now);
            events.push(record(&mut user, "user.email.verified", json!({}), now));
        }
    }
    // Cloned after the events were numbered, so the row carries the final sequence.
    let mut effects = vec![Effect::InsertUser(user.clone())];
    effects.extend(events.into_iter().map(Effect::AppendEvent));
    effects.extend(issued);
    let message_id = command
        .code
        .as_ref()
        .filter(|code| code.delivery == Delivery::Email)
        .map(|code| code.prepared.message_id.clone());
    Plan {
        effects,
        outcome: Ok(UserCreated { user, message_id }),
    }
}

/// A new code for a pending user; the previous one stops working in the same transaction.
pub fn issue_code(state: &IssueCodeState, command: &IssueCode) -> Plan<CodeIssued> {
    if let Some(check) = &command.app {
        // An app of another organisation is as unknown as no app at all.
        let Some(app) = state
            .app
            .as_ref()
            .filter(|app| app.id == check.app_id && app.org_id == command.org_id)
        else {
            return Plan::refuse(Error::UnknownApp);
        };
        if check.require_user_permissions {
            // Checked whether or not the user exists, so the answer tells nothing about them;
            // the type permission can only be checked for a user that exists.
            let kind_permission = state.user.as_ref().map(|user| user.kind.type_permission());
            for permission in std::iter::once(Permission::AUTH_USERS_CREATE).chain(kind_permission)
            {
                if !app.holds(&permission) {
                    return Plan::refuse(Error::PermissionDenied {
                        principal: format!("Application {}", app.id),
                        permission,
                    });
                }
            }
        }
    }
    let now = command.now;
    // The cooldown comes first and is set whatever follows, so that a known, an unknown and a
    // registered address answer a second request alike.
    if let Some(refused) = send_refused(
        state.sends.as_ref(),
        &command.cooldown_subject,
        command.purpose,
        now,
        &command.policy,
    ) {
        return refused.into_plan();
    }
    let cooldown = count_send(
        &command.cooldown_subject,
        command.purpose,
        state.sends.as_ref(),
        now,
        &command.policy,
    );
    let Some(user) = state
        .user
        .as_ref()
        .filter(|user| user.org_id == command.org_id)
    else {
        return Plan {
            effects: vec![cooldown],
            outcome: Err(Error::UserNotFound),
        };
    };
    if user.state == UserState::Registered && command.purpose == CodePurpose::Registration {
        return Plan {
            effects: vec![cooldown],
            outcome: Err(Error::AlreadyRegistered),
        };
    }
    let mut user = user.clone();
    let mut effects = Vec::new();
    effects.extend(supersede(state.active_code.as_ref()));
    let locale = resolve_locale(command.locale.as_ref(), &user, state.org.as_ref());
    let code = NewCode {
        locale: command.locale.clone(),
        ..NewCode::emailed(command.purpose, command.code.clone())
    };
    effects.extend(issue_effects(
        &mut user,
        &command.cooldown_subject,
        state.sends.as_ref(),
        &code,
        locale,
        now,
        &command.policy,
    ));
    effects.push(Effect::UpdateUser(user.clone()));
    Plan {
        effects,
        outcome: Ok(CodeIssued {
            user,
            code_id: command.code.code_id.clone(),
            message_id: command.code.message_id.clone(),
        }),
    }
}

/// Checks a submitted code against the newest one; wrong guesses count, and the limit kills
/// the code.
pub fn verify_code(state: &VerifyCodeState, command: &VerifyCode) -> Plan<CodeVerified> {
    let Some(user) = state.user.as_ref().filter(|user| command.user.names(user)) else {
        return Plan::refuse(Error::UserNotFound);
    };
    let Some(code) = &state.latest_code else {
        return Plan::refuse(Error::CodeInvalid);
    };
    if command.purpose == CodePurpose::Registration && user.state == UserState::Registered {
        // Only the holder of the code that registered the user learns that; anyone else gets
        // the answer a wrong code gets, and counts nothing on a code that is used anyway.
        let holder = command
            .hasher
            .matches(&code.id, code.purpose, &code.hash, &command.submitted);
        return Plan::refuse(if holder {
            Error::AlreadyRegistered
        } else {
            Error::CodeInvalid
        });
    }
    match code.state {
        CodeState::Active => {}
        CodeState::Exhausted => return Plan::refuse(Error::CodeExhausted),
        CodeState::Expired => return Plan::refuse(Error::CodeExpired),
        CodeState::Superseded | CodeState::Used => return Plan::refuse(Error::CodeInvalid),
    }
    let now = command.now;
    let mut user = user.clone();
    if now >= code.expires_at {
        let expired = record(
            &mut user,
            "user.code.expired",
            json!({ "purpose": code.purpose.as_str(), "codeId": code.id }),
            now,
        );
        return Plan {
            effects: vec![
                Effect::UpdateCode {
                    id: code.id.clone(),
                    user_id: code.user_id.clone(),
                    purpose: code.purpose,
                    state: CodeState::Expired,
                    failed_attempts: code.failed_attempts,
                },
                Effect::AppendEvent(expired),
                Effect::UpdateUser(user),
            ],
            outcome: Err(Error::CodeExpired),
        };
    }
    if !command
        .hasher
        .matches(&code.id, code.purpose, &code.hash, &command.submitted)
    {
        let failed_attempts = code.failed_attempts + 1;
        let exhausted = failed_attempts >= command.policy.max_failed_attempts;
        let failed = record(
            &mut user,
            if exhausted {
                "user.code.exhausted"
            } else {
                "user.code.failed"
            },
            json!({
                "purpose": code.purpose.as_str(),
                "codeId": code.id,
                "failedAttempts": failed_attempts,
            }),
            now,
        );
        return Plan {
            effects: vec![
                Effect::UpdateCode {
                    id: code.id.clone(),
                    user_id: code.user_id.clone(),
                    purpose: code.purpose,
                    state: if exhausted {
                        CodeState::Exhausted
                    } else {
                        CodeState::Active
                    },
                    failed_attempts,
                },
                Effect::AppendEvent(failed),
                Effect::UpdateUser(user),
            ],
            outcome: Err(Error::CodeInvalid),
        };
    }
    match command.usage {
        CodeUse::Check => Plan {
            effects: Vec::new(),
            outcome: Ok(CodeVerified {
                user,
                code_id: code.id.clone(),
            }),
        },
        CodeUse::Consume => {
            let verified = record(
                &mut user,
                "user.code.verified",
                json!({ "purpose": code.purpose.as_str(), "codeId": code.id }),
                now,
            );
            let mut effects = vec![
                Effect::UpdateCode {
                    id: code.id.clone(),
                    user_id: code.user_id.clone(),
                    purpose: code.purpose,
                    state: CodeState::Used,
                    failed_attempts: code.failed_attempts,
                },
                Effect::AppendEvent(verified),
            ];
            match command.purpose {
                CodePurpose::Registration => {
                    user.state = UserState::Registered;
                    let registered = record(&mut user, "user.registered", json!({}), now);
                    effects.push(Effect::AppendEvent(registered));
                }
                CodePurpose::EmailVerification => {
                    user.email_verified_at = Some(now);
                    let verified = record(&mut user, "user.email.verified", json!({}), now);
                    effects.push(Effect::AppendEvent(verified));
                }
                CodePurpose::PasswordReset => {}
            }
            effects.push(Effect::UpdateUser(user.clone()));
            Plan {
                effects,
                outcome: Ok(CodeVerified {
                    user,
                    code_id: code.id.clone(),
                }),
            }
        }
    }
}

/// Who asks for a change to a user, as the permission check needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: UserId,
    /// The organisation whose users the actor may change (it holds `user.write` there).
    pub writes_users_of: Option<OrgId>,
    /// How errors name the actor.
    pub described: String,
}

impl Actor {
    /// The user, acting on itself (through a link it was sent).
    pub fn the_user(user_id: UserId) -> Self {
        Self {
            described: format!("User {user_id}"),
            user_id,
            writes_users_of: None,
        }
    }

    /// Users manage themselves; anyone else needs `user.write` in the user's organisation.
    fn may_update(&self, user: &User) -> bool {
        self.user_id == user.id || self.writes_users_of.as_ref() == Some(&user.org_id)
    }

    /// The answer when the actor may not act.
    pub fn refusal(&self) -> Error {
        Error::PermissionDenied {
            principal: self.described.clone(),
            permission: Permission::USER_WRITE,
        }
    }
}

/// A change to a user's address, or a new code to verify it.
#[derive(Debug, Clone)]
pub enum EmailUpdate {
    /// A new verification code; with `require_pending` only if one is pending already (a
    /// resend), else whenever the address is unverified.
    SendCode {
        code: NewCode,
        require_pending: bool,
    },
    /// A new address; without a code it counts as verified as it is set.
    ChangeAddress {
        email: EmailAddress,
        code: Option<NewCode>,
    },
}

#[derive(Debug, Clone)]
pub struct UpdateEmail {
    pub user_id: UserId,
    pub actor: Actor,
    pub update: EmailUpdate,
    /// Derives the cooldown subject of the address the code goes to (see
    /// [`UpdateEmail::cooldown_subject`]).
    pub hasher: CodeHasher,
    pub now: Timestamp,
    pub policy: Policy,
}

impl UpdateEmail {
    /// The address a code goes to: the new one for a change, else the user's.
    pub fn recipient<'a>(&'a self, user: &'a User) -> &'a EmailAddress {
        match &self.update {
            EmailUpdate::ChangeAddress { email, .. } => email,
            EmailUpdate::SendCode { .. } => &user.username,
        }
    }

    /// The cooldown subject for `user`'s code: the same one other faces use for the address.
    pub fn cooldown_subject(&self, user: &User) -> String {
        self.hasher
            .cooldown_subject(&user.org_id, self.recipient(user))
    }
}

#[derive(Debug, Clone)]
pub struct UpdateEmailState {
    pub user: Option<User>,
    pub org: Option<Org>,
    /// The user's newest email verification code, whatever its state.
    pub latest_code: Option<CodeRecord>,
    /// Of [`UpdateEmail::cooldown_subject`].
    pub sends: Option<SendRecord>,
    /// For a change: whether another user of the organisation has the new address.
    pub address_taken: bool,
}

/// The user after the change: its sequence and update time are the change's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailUpdated {
    pub user: User,
}

/// Checks in ZITADEL's order: the user exists, the actor may change it, then the change's own
/// conditions, then the cooldown of an emailed code.
pub fn update_email(state: &UpdateEmailState, command: &UpdateEmail) -> Plan<EmailUpdated> {
    let Some(user) = state
        .user
        .as_ref()
        .filter(|user| user.id == command.user_id)
    else {
        return Plan::refuse(Error::UserNotFound);
    };
    if !command.actor.may_update(user) {
        return Plan::refuse(command.actor.refusal());
    }
    let now = command.now;
    let mut user = user.clone();
    let mut effects = Vec::new();
    let active = state
        .latest_code
        .as_ref()
        .filter(|code| code.state == CodeState::Active);
    let code = match &command.update {
        EmailUpdate::SendCode {
            code,
            require_pending,
        } => {
            // A code that expired or ran out of attempts is still pending: a resend replaces it.
            let pending = user.email_verified_at.is_none()
                && state.latest_code.as_ref().is_some_and(|code| {
                    !matches!(code.state, CodeState::Used | CodeState::Superseded)
                });
            if *require_pending && !pending {
                return Plan::refuse(Error::NoCodePending);
            }
            if user.email_verified_at.is_some() {
                return Plan::refuse(Error::EmailAlreadyVerified);
            }
            Some(code)
        }
        EmailUpdate::ChangeAddress { email, code } => {
            if email == &user.username {
                return Plan::refuse(Error::EmailUnchanged);
            }
            if state.address_taken {
                return Plan::refuse(Error::UserExists);
            }
            user.username = email.clone();
            user.email_verified_at = None;
            effects.push(Effect::AppendEvent(record(
                &mut user,
                "user.email.changed",
                json!({ "email": email }),
                now,
            )));
            code.as_ref()
        }
    };
    if let Some(code) = code
        && code.delivery == Delivery::Email
        && let Some(refused) = send_refused(
            state.sends.as_ref(),
            &command.cooldown_subject(&user),
            code.purpose,
            now,
            &command.policy,
        )
    {
        return refused.into_plan();
    }
    effects.extend(supersede(active));
    match code {
        Some(code) => {
            let subject = command.cooldown_subject(&user);
            let locale = resolve_locale(None, &user, state.org.as_ref());
            effects.extend(issue_effects(
                &mut user,
                &subject,
                state.sends.as_ref(),
                code,
                locale,
                now,
                &command.policy,
            ));
        }
        None => {
            user.email_verified_at = Some(now);
            effects.push(Effect::AppendEvent(record(
                &mut user,
                "user.email.verified",
                json!({}),
                now,
            )));
        }
    }
    effects.push(Effect::UpdateUser(user.clone()));
    Plan {
        effects,
        outcome: Ok(EmailUpdated { user }),
    }
}

/// Completes a registration: the key was verified against the challenge of the temporary token;
/// this binds it to the user, uses the code and registers the user, all or nothing.
#[derive(Debug, Clone)]
pub struct RegisterCredential {
    pub org_id: OrgId,
    pub user_id: UserId,
    /// The code checked when the registration began; it must still be the user's active code.
    pub code_id: CodeId,
    pub credential: Credential,
    pub now: Timestamp,
}

#[derive(Debug, Clone)]
pub struct RegisterCredentialState {
    pub user: Option<User>,
    pub code: Option<CodeRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRegistered {
    pub user: User,
    pub credential: Credential,
}

pub fn register_credential(
    state: &RegisterCredentialState,
    command: &RegisterCredential,
) -> Plan<CredentialRegistered> {
    let Some(user) = state
        .user
        .as_ref()
        .filter(|user| user.id == command.user_id && user.org_id == command.org_id)
    else {
        return Plan::refuse(Error::Unauthenticated);
    };
    if user.state == UserState::Registered {
        return Plan::refuse(Error::AlreadyRegistered);
    }
    let Some(code) = state
        .code
        .as_ref()
        .filter(|code| code.id == command.code_id && code.user_id == user.id)
    else {
        return Plan::refuse(Error::CodeInvalid);
    };
    let now = command.now;
    match code.state {
        CodeState::Active if now < code.expires_at => {}
        CodeState::Active | CodeState::Expired => return Plan::refuse(Error::CodeExpired),
        CodeState::Exhausted => return Plan::refuse(Error::CodeExhausted),
        // A resend after the registration began voids this code, as any newer code does.
        CodeState::Superseded | CodeState::Used => return Plan::refuse(Error::CodeInvalid),
    }
    let mut user = user.clone();
    let credential = &command.credential;
    let verified = record(
        &mut user,
        "user.code.verified",
        json!({ "purpose": code.purpose.as_str(), "codeId": code.id }),
        now,
    );
    let added = record(
        &mut user,
        "user.credential.added",
        json!({
            "credentialId": credential.id,
            "kind": "Key",
            "algorithm": credential.public_key.algorithm().as_str(),
        }),
        now,
    );
    user.state = UserState::Registered;
    // The registration code was mailed to the address: using it proves control of it.
    user.email_verified_at.get_or_insert(now);
    let registered = record(&mut user, "user.registered", json!({}), now);
    Plan {
        effects: vec![
            Effect::UpdateCode {
                id: code.id.clone(),
                user_id: code.user_id.clone(),
                purpose: code.purpose,
                state: CodeState::Used,
                failed_attempts: code.failed_attempts,
            },
            Effect::InsertCredential(credential.clone()),
            Effect::AppendEvent(verified),
            Effect::AppendEvent(added),
            Effect::AppendEvent(registered),
            Effect::UpdateUser(user.clone()),
        ],
        outcome: Ok(CredentialRegistered {
            user,
            credential: credential.clone(),
        }),
    }
}

/// A service account: registered from the start, with a long-lived token and, to sign with,
/// a key (a machine user acting only through a personal access token has none).
#[derive(Debug, Clone)]
pub struct CreateServiceAccount {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub username: EmailAddress,
    pub credential: Option<Credential>,
    pub token: AccessToken,
    pub permissions: Vec<Permission>,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountCreated {
    pub user: User,
    pub credential: Option<Credential>,
    pub token: AccessToken,
}

pub fn create_service_account(
    state: &CreateUserState,
    command: &CreateServiceAccount,
) -> Plan<ServiceAccountCreated> {
    let Some(org) = &state.org else {
        return Plan::refuse(Error::OrgNotFound);
    };
    if state.existing.is_some() {
        return Plan::refuse(Error::UserExists);
    }
    let now = command.now;
    let mut user = User {
        id: command.user_id.clone(),
        org_id: org.id.clone(),
        username: command.username.clone(),
        name: None,
        kind: UserKind::ServiceAccount,
        state: UserState::Registered,
        locale: None,
        email_verified_at: None,
        sequence: 0,
        created_at: now,
        updated_at: now,
    };
    let created_payload = json!({ "username": user.username, "kind": user.kind.as_str() });
    let created = record(&mut user, "user.created", created_payload, now);
    let mut effects = vec![Effect::AppendEvent(created)];
    if let Some(credential) = &command.credential {
        let added = record(
            &mut user,
            "user.credential.added",
            json!({
                "credentialId": credential.id,
                "kind": "Key",
                "algorithm": credential.public_key.algorithm().as_str(),
            }),
            now,
        );
        effects.push(Effect::AppendEvent(added));
        effects.push(Effect::InsertCredential(credential.clone()));
    }
    // Cloned after the events were numbered, so the row carries the final sequence.
    effects.splice(
        0..0,
        [
            Effect::InsertUser(user.clone()),
            Effect::SetPermissions {
                user_id: user.id.clone(),
                permissions: command.permissions.clone(),
            },
        ],
    );
    effects.push(Effect::InsertToken(command.token.clone()));
    Plan {
        effects,
        outcome: Ok(ServiceAccountCreated {
            user,
            credential: command.credential.clone(),
            token: command.token.clone(),
        }),
    }
}

/// Completes a login whose assertion was verified: the challenge is spent (by the store, in the
/// same transaction) and a session token is stored.
#[derive(Debug, Clone)]
pub struct CompleteLogin {
    pub challenge: SingleUse,
    pub user_id: UserId,
    pub credential_id: crate::ids::CredentialId,
    pub token: AccessToken,
}

#[derive(Debug, Clone)]
pub struct CompleteLoginState {
    pub user: Option<User>,
    /// Whether the credential that answered still belongs to the user.
    pub credential_held: bool,
}

pub fn complete_login(state: &CompleteLoginState, command: &CompleteLogin) -> Plan<AccessToken> {
    let Some(_user) = state
        .user
        .as_ref()
        .filter(|user| user.id == command.user_id && user.state == UserState::Registered)
    else {
        return Plan::refuse(Error::UserNotFound);
    };
    if !state.credential_held {
        return Plan::refuse(Error::NoCredential);
    }
    Plan {
        effects: vec![Effect::InsertToken(command.token.clone())],
        outcome: Ok(command.token.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::UserKind;

    pub(super) const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    pub(super) fn org() -> Org {
        Org {
            id: OrgId::generate(),
            name: "Acme".into(),
            default_locale: Locale::parse("de").unwrap(),
            unknown_address_mail: true,
            created_at: NOW,
        }
    }

    pub(super) fn prepared() -> PreparedCode {
        PreparedCode {
            code_id: CodeId::generate(),
            hash: CodeHash([1; 32]),
            message_id: MessageId::generate(),
            sealed: vec![9; 8],
        }
    }

    pub(super) fn pending_user(org: &Org) -> User {
        User {
            id: UserId::generate(),
            org_id: org.id.clone(),
            username: EmailAddress::parse("jane@example.com").unwrap(),
            name: None,
            kind: UserKind::CustomerEmployee,
            state: UserState::Pending,
            locale: None,
            email_verified_at: None,
            sequence: 2,
            created_at: NOW,
            updated_at: NOW,
        }
    }

    fn issue(org: &Org, user: &User) -> IssueCode {
        IssueCode {
            org_id: org.id.clone(),
            username: user.username.clone(),
            cooldown_subject: "subject".into(),
            purpose: CodePurpose::Registration,
            locale: None,
            app: None,
            code: prepared(),
            now: NOW,
            policy: Policy::default(),
        }
    }

    fn state(org: &Org, user: Option<User>) -> IssueCodeState {
        IssueCodeState {
            org: Some(org.clone()),
            user,
            app: None,
            active_code: None,
            sends: None,
        }
    }

    #[test]
    fn a_new_user_gets_a_code_an_email_and_a_cooldown_with_numbered_events() {
        let org = org();
        let command = CreateUser {
            user_id: UserId::generate(),
            cooldown_subject: "subject".into(),
            org_id: org.id.clone(),
            username: EmailAddress::parse("jane@example.com").unwrap(),
            name: None,
            kind: UserKind::EndUser,
            state: UserState::Pending,
            locale: None,
            code: Some(NewCode::emailed(CodePurpose::Registration, prepared())),
            user_action: None,
            now: NOW,
            policy: Policy::default(),
        };
        let plan = create_user(
            &CreateUserState {
                org: Some(org.clone()),
                existing: None,
            },
            &command,
        );
        let created = plan.outcome.unwrap();
        assert_eq!(created.user.sequence, 2);
        let kinds: Vec<&str> = plan
            .effects
            .iter()
            .map(|effect| match effect {
                Effect::InsertUser(_) => "user",
                Effect::AppendEvent(_) => "event",
                Effect::InsertCode(_) => "code",
                Effect::EnqueueMessage(_) => "message",
                Effect::SetCooldown { .. } => "cooldown",
                Effect::UpdateUser(_) | Effect::UpdateCode { .. } => "update",
                Effect::InsertCredential(_)
                | Effect::InsertToken(_)
                | Effect::SetPermissions { .. }
                | Effect::SetPassword { .. }
                | Effect::RevokeSessions { .. }
                | Effect::SetLoginFailures { .. } => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["user", "event", "code", "event", "message", "cooldown"]
        );
        let Effect::InsertUser(inserted) = &plan.effects[0] else {
            unreachable!()
        };
        assert_eq!(inserted.sequence, 2, "the row carries the final sequence");
        let Effect::EnqueueMessage(message) = &plan.effects[4] else {
            unreachable!()
        };
        assert_eq!(message.locale.as_str(), "de", "the org default applies");
        let Effect::InsertCode(code) = &plan.effects[2] else {
            unreachable!()
        };
        assert_eq!(code.expires_at, NOW.plus(Duration::from_secs(86_400)));
    }

    #[test]
    fn creating_twice_or_in_an_unknown_org_is_refused_without_writes() {
        let org = org();
        let user = pending_user(&org);
        let command = CreateUser {
            user_id: UserId::generate(),
            cooldown_subject: "subject".into(),
            org_id: org.id.clone(),
            username: user.username.clone(),
            name: None,
            kind: UserKind::EndUser,
            state: UserState::Pending,
            locale: None,
            code: Some(NewCode::emailed(CodePurpose::Registration, prepared())),
            user_action: None,
            now: NOW,
            policy: Policy::default(),
        };
        let twice = create_user(
            &CreateUserState {
                org: Some(org),
                existing: Some(user),
            },
            &command,
        );
        assert!(matches!(twice.outcome, Err(Error::UserExists)) && twice.effects.is_empty());
        let nowhere = create_user(
            &CreateUserState {
                org: None,
                existing: None,
            },
            &command,
        );
        assert!(matches!(nowhere.outcome, Err(Error::OrgNotFound)) && nowhere.effects.is_empty());
    }

    #[test]
    fn issuing_supersedes_the_active_code_keeping_its_attempts() {
        let org = org();
        let user = pending_user(&org);
        let mut current = state(&org, Some(user.clone()));
        let previous = CodeRecord {
            id: CodeId::generate(),
            user_id: user.id.clone(),
            purpose: CodePurpose::Registration,
            hash: CodeHash([2; 32]),
            state: CodeState::Active,
            failed_attempts: 3,
            created_at: NOW,
            expires_at: NOW,
        };
        current.active_code = Some(previous.clone());
        let plan = issue_code(&current, &issue(&org, &user));
        let issued = plan.outcome.unwrap();
        assert_eq!(issued.user.sequence, 3);
        assert_eq!(
            plan.effects[0],
            Effect::UpdateCode {
                id: previous.id,
                user_id: user.id,
                purpose: CodePurpose::Registration,
                state: CodeState::Superseded,
                failed_attempts: 3
            }
        );
    }

    #[test]
    fn the_cooldown_refuses_with_the_time_left_and_applies_to_unknown_addresses() {
        let org = org();
        let user = pending_user(&org);
        let mut cooling = state(&org, Some(user.clone()));
        cooling.sends = Some(SendRecord {
            cooldown_until: NOW.plus(Duration::from_millis(12_300)),
            window_started_at: NOW,
            sends: 1,
        });
        let plan = issue_code(&cooling, &issue(&org, &user));
        assert!(plan.effects.is_empty());
        assert!(
            matches!(plan.outcome, Err(Error::Cooldown { retry_after }) if retry_after == Duration::from_millis(12_300))
        );

        let unknown = issue_code(&state(&org, None), &issue(&org, &user));
        assert!(matches!(unknown.outcome, Err(Error::UserNotFound)));
        assert!(matches!(
            unknown.effects.as_slice(),
            [Effect::SetCooldown { .. }]
        ));
    }

    /// Fault plan F8: after the clock jumps back an hour, a cooldown set before the jump holds
    /// the address for one cooldown from the new time (the record is written back so), not for
    /// the hour and the cooldown.
    #[test]
    fn a_clock_jumping_back_holds_an_address_for_one_cooldown_at_most() {
        let org = org();
        let user = pending_user(&org);
        let policy = Policy::default();
        let mut jumped = state(&org, Some(user.clone()));
        jumped.sends = Some(SendRecord {
            cooldown_until: NOW.plus(Duration::from_secs(3600) + policy.cooldown),
            window_started_at: NOW.plus(Duration::from_secs(3600)),
            sends: 1,
        });
        let plan = issue_code(&jumped, &issue(&org, &user));
        assert!(
            matches!(plan.outcome, Err(Error::Cooldown { retry_after }) if retry_after == policy.cooldown),
            "{:?}",
            plan.outcome
        );
        let [Effect::SetCooldown { record, .. }] = plan.effects.as_slice() else {
            panic!("the record is corrected: {:?}", plan.effects);
        };
        assert_eq!(
            (
                record.cooldown_until,
                record.window_started_at,
                record.sends
            ),
            (NOW.plus(policy.cooldown), NOW, 1)
        );
        jumped.sends = Some(*record);
        let mut later = issue(&org, &user);
        later.now = NOW.plus(policy.cooldown);
        assert!(issue_code(&jumped, &later).outcome.is_ok());
    }

    /// Reliability target 12: the eleventh email to one address within a day is refused until
    /// the day's window ends, whatever the cooldown says; known and unknown addresses alike.
    #[test]
    fn an_address_gets_at_most_ten_emails_a_day() {
        let org = org();
        let user = pending_user(&org);
        let policy = Policy {
            cooldown: Duration::from_secs(60),
            ..Policy::default()
        };
        for known in [Some(user.clone()), None] {
            let mut state = state(&org, known);
            let mut now = NOW;
            for sent in 1..=policy.max_sends_per_window {
                let mut command = issue(&org, &user);
                command.now = now;
                command.policy = policy;
                let plan = issue_code(&state, &command);
                let record = plan
                    .effects
                    .iter()
                    .find_map(|effect| match effect {
                        Effect::SetCooldown { record, .. } => Some(*record),
                        _ => None,
                    })
                    .unwrap_or_else(|| panic!("email {sent} goes: {:?}", plan.outcome));
                assert_eq!((record.sends, record.window_started_at), (sent, NOW));
                state.sends = Some(record);
                now = now.plus(policy.cooldown);
            }
            let mut eleventh = issue(&org, &user);
            eleventh.now = now;
            eleventh.policy = policy;
            let plan = issue_code(&state, &eleventh);
            let window_left = now.until(NOW.plus(policy.send_window));
            assert!(plan.effects.is_empty());
            assert!(
                matches!(plan.outcome, Err(Error::Cooldown { retry_after }) if retry_after == window_left),
                "{:?}",
                plan.outcome
            );

            let mut next_day = eleventh;
            next_day.now = NOW.plus(policy.send_window);
            let plan = issue_code(&state, &next_day);
            let record = plan.effects.iter().find_map(|effect| match effect {
                Effect::SetCooldown { record, .. } => Some(*record),
                _ => None,
            });
            assert_eq!(
                record.map(|record| (record.sends, record.window_started_at)),
                Some((1, next_day.now)),
                "a new window"
            );
        }
    }

    #[test]
    fn a_registered_user_gets_no_code() {
        let org = org();
        let mut user = pending_user(&org);
        user.state = UserState::Registered;
        let plan = issue_code(&state(&org, Some(user.clone())), &issue(&org, &user));
        assert!(matches!(plan.outcome, Err(Error::AlreadyRegistered)));
        assert!(
            !plan
                .effects
                .iter()
                .any(|effect| matches!(effect, Effect::InsertCode(_) | Effect::EnqueueMessage(_)))
        );
    }

    #[test]
    fn legacy_apps_need_the_permissions_of_the_users_kind() {
        let org = org();
        let user = pending_user(&org);
        let app = App {
            id: AppId::generate(),
            org_id: org.id.clone(),
            name: "legacy".into(),
            permissions: vec![
                Permission::AUTH_USERS_CREATE,
                Permission::AUTH_TYPES_END_USER,
            ],
            created_at: NOW,
            secret_digest: None,
            public_key: None,
            retired_secret: None,
        };
        let mut with_app = state(&org, Some(user.clone()));
        with_app.app = Some(app.clone());
        let mut command = issue(&org, &user);
        command.app = Some(AppCheck {
            app_id: app.id.clone(),
            require_user_permissions: true,
        });
        let plan = issue_code(&with_app, &command);
        assert!(matches!(
            &plan.outcome,
            Err(Error::PermissionDenied { permission, .. }) if *permission == Permission::AUTH_TYPES_EMPLOYEE
        ));
        command.app = Some(AppCheck {
            app_id: app.id.clone(),
            require_user_permissions: false,
        });
        assert!(issue_code(&with_app, &command).outcome.is_ok());
        command.app = Some(AppCheck {
            app_id: AppId::generate(),
            require_user_permissions: false,
        });
        assert!(matches!(
            issue_code(&with_app, &command).outcome,
            Err(Error::UnknownApp)
        ));
    }

    #[test]
    fn apps_of_other_organisations_are_unknown() {
        let org = org();
        let user = pending_user(&org);
        let app = App {
            id: AppId::generate(),
            org_id: OrgId::generate(),
            name: "elsewhere".into(),
            permissions: Permission::all(),
            created_at: NOW,
            secret_digest: None,
            public_key: None,
            retired_secret: None,
        };
        let mut with_app = state(&org, Some(user.clone()));
        with_app.app = Some(app.clone());
        let mut command = issue(&org, &user);
        command.app = Some(AppCheck {
            app_id: app.id,
            require_user_permissions: false,
        });
        assert!(matches!(
            issue_code(&with_app, &command).outcome,
            Err(Error::UnknownApp)
        ));
    }

    #[test]
    fn a_legacy_app_without_the_create_permission_is_refused_for_known_and_unknown_users_alike() {
        let org = org();
        let user = pending_user(&org);
        let app = App {
            id: AppId::generate(),
            org_id: org.id.clone(),
            name: "reader".into(),
            permissions: vec![Permission::AUTH_USERS_READ],
            created_at: NOW,
            secret_digest: None,
            public_key: None,
            retired_secret: None,
        };
        let mut command = issue(&org, &user);
        command.app = Some(AppCheck {
            app_id: app.id.clone(),
            require_user_permissions: true,
        });
        for user in [Some(user.clone()), None] {
            let mut current = state(&org, user);
            current.app = Some(app.clone());
            let plan = issue_code(&current, &command);
            assert!(matches!(
                &plan.outcome,
                Err(Error::PermissionDenied { permission, .. }) if *permission == Permission::AUTH_USERS_CREATE
            ));
        }
    }

    fn verify_state(
        org: &Org,
        secret: &CodeSecret,
        hasher: &CodeHasher,
    ) -> (VerifyCodeState, User) {
        let user = pending_user(org);
        let id = CodeId::generate();
        let code = CodeRecord {
            hash: hasher.hash(&id, CodePurpose::Registration, secret),
            id,
            user_id: user.id.clone(),
            purpose: CodePurpose::Registration,
            state: CodeState::Active,
            failed_attempts: 0,
            created_at: NOW,
            expires_at: NOW.plus(Duration::from_secs(600)),
        };
        (
            VerifyCodeState {
                user: Some(user.clone()),
                latest_code: Some(code),
            },
            user,
        )
    }

    fn verify(
        org: &Org,
        user: &User,
        submitted: &str,
        hasher: &CodeHasher,
        now: Timestamp,
    ) -> VerifyCode {
        VerifyCode {
            user: UserKey::Username {
                org_id: org.id.clone(),
                username: user.username.clone(),
            },
            purpose: CodePurpose::Registration,
            submitted: CodeSecret::from_user_input(submitted),
            usage: CodeUse::Consume,
            hasher: hasher.clone(),
            now,
            policy: Policy::default(),
        }
    }

    #[test]
    fn wrong_codes_count_and_the_fifth_exhausts_the_code() {
        let org = org();
        let hasher = CodeHasher::new([3; 32]);
        let secret = CodeSecret::generate_registration();
        let (mut current, user) = verify_state(&org, &secret, &hasher);
        for attempt in 1..=5 {
            let plan = verify_code(&current, &verify(&org, &user, "WRONG-CODE", &hasher, NOW));
            assert!(
                matches!(plan.outcome, Err(Error::CodeInvalid)),
                "attempt {attempt}"
            );
            let Some(Effect::UpdateCode {
                state,
                failed_attempts,
                ..
            }) = plan.effects.first()
            else {
                panic!("the attempt is counted")
            };
            assert_eq!(*failed_attempts, attempt);
            let code = current.latest_code.as_mut().unwrap();
            code.failed_attempts = *failed_attempts;
            code.state = *state;
        }
        assert_eq!(
            current.latest_code.as_ref().unwrap().state,
            CodeState::Exhausted
        );
        let plan = verify_code(
            &current,
            &verify(&org, &user, secret.expose(), &hasher, NOW),
        );
        assert!(matches!(plan.outcome, Err(Error::CodeExhausted)));
    }

    #[test]
    fn the_right_code_registers_once_and_expiry_is_exact() {
        let org = org();
        let hasher = CodeHasher::new([3; 32]);
        let secret = CodeSecret::generate_registration();
        let (current, user) = verify_state(&org, &secret, &hasher);
        let just_in_time = NOW.plus(Duration::from_secs(599));
        let plan = verify_code(
            &current,
            &verify(&org, &user, secret.expose(), &hasher, just_in_time),
        );
        assert_eq!(plan.outcome.unwrap().user.state, UserState::Registered);
        let too_late = NOW.plus(Duration::from_secs(600));
        let plan = verify_code(
            &current,
            &verify(&org, &user, secret.expose(), &hasher, too_late),
        );
        assert!(matches!(plan.outcome, Err(Error::CodeExpired)));
    }

    fn email_code(delivery: Delivery) -> NewCode {
        NewCode {
            delivery,
            ..NewCode::emailed(CodePurpose::EmailVerification, prepared())
        }
    }

    fn actor_for(user: &User, may_write_users: bool) -> Actor {
        Actor {
            user_id: user.id.clone(),
            writes_users_of: may_write_users.then(|| user.org_id.clone()),
            described: format!("EndUser {}", user.id),
        }
    }

    fn update(user: &User, actor: Actor, update: EmailUpdate) -> UpdateEmail {
        UpdateEmail {
            user_id: user.id.clone(),
            actor,
            update,
            hasher: CodeHasher::new([5; 32]),
            now: NOW,
            policy: Policy::default(),
        }
    }

    fn email_state(user: &User, latest_code: Option<CodeRecord>) -> UpdateEmailState {
        UpdateEmailState {
            user: Some(user.clone()),
            org: None,
            latest_code,
            sends: None,
            address_taken: false,
        }
    }

    fn email_code_record(user: &User, state: CodeState) -> CodeRecord {
        CodeRecord {
            id: CodeId::generate(),
            user_id: user.id.clone(),
            purpose: CodePurpose::EmailVerification,
            hash: CodeHash([2; 32]),
            state,
            failed_attempts: 3,
            created_at: NOW,
            expires_at: NOW,
        }
    }

    fn resend(delivery: Delivery) -> EmailUpdate {
        EmailUpdate::SendCode {
            code: email_code(delivery),
            require_pending: true,
        }
    }

    #[test]
    fn a_resend_needs_a_pending_code_and_an_unverified_address() {
        let org = org();
        let user = pending_user(&org);
        let me = actor_for(&user, false);
        let none = update_email(
            &email_state(&user, None),
            &update(&user, me.clone(), resend(Delivery::Email)),
        );
        assert!(matches!(none.outcome, Err(Error::NoCodePending)));
        for state in [CodeState::Used, CodeState::Superseded] {
            let plan = update_email(
                &email_state(&user, Some(email_code_record(&user, state))),
                &update(&user, me.clone(), resend(Delivery::Email)),
            );
            assert!(
                matches!(plan.outcome, Err(Error::NoCodePending)),
                "{state:?}"
            );
        }
        let mut verified = user.clone();
        verified.email_verified_at = Some(NOW);
        let send = EmailUpdate::SendCode {
            code: email_code(Delivery::Email),
            require_pending: false,
        };
        let plan = update_email(
            &email_state(&verified, None),
            &update(&verified, me.clone(), send),
        );
        assert!(matches!(plan.outcome, Err(Error::EmailAlreadyVerified)));
        // Expired and exhausted codes are still pending: the resend replaces them.
        for state in [CodeState::Expired, CodeState::Exhausted, CodeState::Active] {
            let plan = update_email(
                &email_state(&user, Some(email_code_record(&user, state))),
                &update(&user, me.clone(), resend(Delivery::Email)),
            );
            let updated = plan.outcome.unwrap();
            assert_eq!(updated.user.sequence, user.sequence + 1);
            let superseded = plan.effects.iter().any(|effect| {
                matches!(
                    effect,
                    Effect::UpdateCode {
                        state: CodeState::Superseded,
                        ..
                    }
                )
            });
            assert_eq!(superseded, state == CodeState::Active, "{state:?}");
        }
    }

    #[test]
    fn users_update_themselves_and_others_need_user_write_in_their_org() {
        let org = org();
        let user = pending_user(&org);
        let pending = Some(email_code_record(&user, CodeState::Active));
        let other = pending_user(&org);
        let outsider = pending_user(&self::org());
        for (actor, allowed) in [
            (actor_for(&user, false), true),
            (actor_for(&other, true), true),
            (actor_for(&other, false), false),
            (actor_for(&outsider, true), false),
        ] {
            let plan = update_email(
                &email_state(&user, pending.clone()),
                &update(&user, actor, resend(Delivery::Returned)),
            );
            match plan.outcome {
                Ok(_) => assert!(allowed),
                Err(Error::PermissionDenied { permission, .. }) => {
                    assert!(!allowed);
                    assert_eq!(permission, Permission::USER_WRITE);
                    assert!(plan.effects.is_empty());
                }
                Err(other) => panic!("{other}"),
            }
        }
        let unknown = update_email(
            &UpdateEmailState {
                user: None,
                ..email_state(&user, None)
            },
            &update(&user, actor_for(&other, false), resend(Delivery::Email)),
        );
        assert!(
            matches!(unknown.outcome, Err(Error::UserNotFound)),
            "not found comes first"
        );
    }

    #[test]
    fn only_an_emailed_code_sends_mail_and_minds_the_cooldown() {
        let org = org();
        let user = pending_user(&org);
        let me = actor_for(&user, false);
        let in_cooldown = UpdateEmailState {
            sends: Some(SendRecord {
                cooldown_until: NOW.plus(Duration::from_secs(30)),
                window_started_at: NOW,
                sends: 1,
            }),
            ..email_state(&user, Some(email_code_record(&user, CodeState::Active)))
        };
        let emailed = update_email(
            &in_cooldown,
            &update(&user, me.clone(), resend(Delivery::Email)),
        );
        assert!(matches!(
            emailed.outcome,
            Err(Error::Cooldown { retry_after }) if retry_after == Duration::from_secs(30)
        ));
        let returned = update_email(&in_cooldown, &update(&user, me, resend(Delivery::Returned)));
        assert!(returned.outcome.is_ok());
        assert!(!returned.effects.iter().any(|effect| matches!(
            effect,
            Effect::EnqueueMessage(_) | Effect::SetCooldown { .. }
        )));
        let Some(Effect::InsertCode(code)) = returned
            .effects
            .iter()
            .find(|effect| matches!(effect, Effect::InsertCode(_)))
        else {
            panic!("a code is issued")
        };
        assert_eq!(code.expires_at, NOW.plus(Duration::from_secs(3600)));
    }

    #[test]
    fn a_new_address_voids_the_pending_code_and_may_be_verified_at_once() {
        let org = org();
        let user = pending_user(&org);
        let me = actor_for(&user, false);
        let change = |email: &str, code: Option<NewCode>| EmailUpdate::ChangeAddress {
            email: EmailAddress::parse(email).unwrap(),
            code,
        };
        let pending = email_state(&user, Some(email_code_record(&user, CodeState::Active)));
        let same = update_email(
            &pending,
            &update(&user, me.clone(), change("jane@example.com", None)),
        );
        assert!(matches!(same.outcome, Err(Error::EmailUnchanged)));
        let taken = update_email(
            &UpdateEmailState {
                address_taken: true,
                ..pending.clone()
            },
            &update(&user, me.clone(), change("joe@example.com", None)),
        );
        assert!(matches!(taken.outcome, Err(Error::UserExists)));
        let verified = update_email(
            &pending,
            &update(&user, me.clone(), change("new@example.com", None)),
        );
        let changed = verified.outcome.unwrap().user;
        assert_eq!(changed.username.as_str(), "new@example.com");
        assert_eq!(changed.email_verified_at, Some(NOW));
        assert_eq!(
            changed.sequence,
            user.sequence + 2,
            "changed, then verified"
        );
        assert!(verified.effects.iter().any(|effect| matches!(
            effect,
            Effect::UpdateCode {
                state: CodeState::Superseded,
                ..
            }
        )));
        let coded = update_email(
            &pending,
            &update(
                &user,
                me,
                change("new@example.com", Some(email_code(Delivery::Email))),
            ),
        );
        let Some(Effect::EnqueueMessage(message)) = coded
            .effects
            .iter()
            .find(|effect| matches!(effect, Effect::EnqueueMessage(_)))
        else {
            panic!("the new address gets the code")
        };
        assert_eq!(message.recipient.as_str(), "new@example.com");
        assert_eq!(message.template, MailTemplate::EmailVerification);
        assert_eq!(coded.outcome.unwrap().user.email_verified_at, None);
    }
}
