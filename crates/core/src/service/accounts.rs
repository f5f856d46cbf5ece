//! Accounts that sign in with a password, as Singularity's authentication API has them:
//! sign-up, login and sessions, the verification email and its link, and password resets.

use std::time::Duration;

use crate::audit::{Action, SecurityEvent};
use crate::clock::Timestamp;
use crate::code::{CodePurpose, CodeSecret};
use crate::email::EmailAddress;
use crate::error::{Error, Result};
use crate::ids::{CodeId, MessageId, OrgId, TokenId, UserId};
use crate::model::{
    AccessToken, Locale, MailTemplate, MessageSummary, Principal, TokenKind, User, UserKind,
    UserState,
};
use crate::password::{Password, PasswordHash};
use crate::ports::{MessageFilter, TokenKey};
use crate::rules::{
    Actor, CodeUse, CreateUser, Delivery, EmailUpdate, LoginAttempt, NewCode, PreparedCode,
    PreparedMessage, RequestPasswordReset, ResetPassword, SignUp, SignedUp, UpdateEmail, UserKey,
    login_throttled, reset_code_check,
};
use crate::secret::TokenSecret;
use crate::token::{RefreshClaims, Refused, SessionClaims};

use super::{Enroll, SealedContent};

/// Where the links in account emails lead: pages of the application's frontend. The
/// verification and reset links get `?token=…` appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLinks {
    pub verify_email: String,
    pub reset_password: String,
    /// Where an account's owner may log in or ask for a reset (the sign-up attempt email).
    pub forgot_password: String,
    /// Where an address without an account may sign up (the "no account" email).
    pub sign_up: String,
}

/// A sign-up as received.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub org_id: OrgId,
    pub email: EmailAddress,
    pub password: String,
    pub name: String,
    /// The language the request asked for (`?locale=`), and the browser's.
    pub locale: Option<Locale>,
    pub browser_locale: Option<Locale>,
}

/// The longest name a person is addressed by.
pub const MAX_NAME_LENGTH: usize = 100;

/// A password login's session: a short-lived access token and the refresh token that renews it.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub access_token: String,
    pub access_expires_at: Timestamp,
    /// `<session id>.<secret>`: only its digest is stored, and each refresh replaces it.
    pub refresh_token: String,
    pub refresh_expires_at: Timestamp,
}

/// Where the verification email of an account stands.
#[derive(Debug, Clone)]
pub struct SendStatus {
    /// Until the cooldown ends (zero when none runs).
    pub remaining: Duration,
    pub next_send_at: Timestamp,
    /// The newest email of the kind, if any was sent.
    pub last_message: Option<MessageSummary>,
}

impl Enroll {
    /// Signs up: a new account and its verification email (no email when `links` is `None`,
    /// mail being off), or, for an address that has an account, a note to its owner. Both
    /// answer alike, and both hash the password, so neither the answer nor its time tells
    /// which happened.
    pub async fn sign_up(&self, new: NewAccount, links: Option<&AccountLinks>) -> Result<SignedUp> {
        let password = Password::new_for(&new.password, &new.email)?;
        let name = account_name(&new.name)?;
        self.org_may_send(&new.org_id)?;
        let password_hash = self.passwords.hash(password).await?;
        let user_id = UserId::generate();
        // With mail off the code is made but not sent: the address stays unverified, and a
        // send once mail is on replaces it.
        let mut code = self.link_code(
            CodePurpose::EmailVerification,
            MailTemplate::AccountVerification,
            links.map_or("", |links| &links.verify_email),
            None,
        );
        if links.is_none() {
            code.delivery = Delivery::Returned;
        }
        let attempt = self.account_message(links.map(|links| links.forgot_password.as_str()));
        let cooldown_subject = self.hasher.cooldown_subject(&new.org_id, &new.email);
        let org_id = new.org_id.clone();
        let command = SignUp {
            user: CreateUser {
                user_id,
                cooldown_subject: cooldown_subject.clone(),
                org_id: new.org_id,
                username: new.email,
                name: Some(name),
                kind: UserKind::EndUser,
                state: UserState::Registered,
                // Saved for later emails; the first one follows it too.
                locale: new.locale.clone().or(new.browser_locale.clone()),
                code: Some(code),
                user_action: None,
                now: self.clock.now(),
                policy: self.policy,
            },
            password_hash,
            attempt,
            explicit_locale: new.locale,
            browser_locale: new.browser_locale,
        };
        let signed_up = self.store.sign_up(command).await;
        let event = SecurityEvent::new(Action::SignUp).org(&org_id);
        match &signed_up {
            Ok(SignedUp::Created { user, .. }) => event.user(&user.id).succeeded(),
            // The address has an account: its owner is told, and the caller cannot tell.
            Ok(SignedUp::Existing { .. }) => {
                event.subject(&cooldown_subject).refused(&Error::UserExists)
            }
            Err(error) => event.subject(&cooldown_subject).refused(error),
        }
        let signed_up = signed_up?;
        let emailed = match &signed_up {
            SignedUp::Created { message_id, .. } | SignedUp::Existing { message_id } => {
                message_id.is_some()
            }
        };
        if emailed && links.is_some() {
            self.org_sent(&org_id);
            self.signal.message_enqueued();
        }
        Ok(signed_up)
    }

    /// Logs in with an address and a password. Failures count per address (in the store, for
    /// every instance) and per client address (here); past the limit, logins are refused
    /// until the window ends, before any hashing. A malformed address fails like a wrong
    /// password.
    pub async fn log_in(
        &self,
        org_id: &OrgId,
        email: &str,
        password: &str,
        client: Option<&str>,
    ) -> Result<Session> {
        let logged_in = self
            .check_password_login(org_id, email, password, client)
            .await;
        let event = SecurityEvent::new(Action::Login).org(org_id);
        match &logged_in {
            Ok(session) => event.user(&session.user.id).succeeded(),
            Err(error) => event.refused(error),
        }
        logged_in
    }

    async fn check_password_login(
        &self,
        org_id: &OrgId,
        email: &str,
        password: &str,
        client: Option<&str>,
    ) -> Result<Session> {
        let now = self.clock.now();
        if let Some(client) = client
            && let Some(retry_after) =
                self.client_failures
                    .refused(client, now, self.policy.client_login_limit())
        {
            return Err(Error::LoginThrottled { retry_after });
        }
        let email = EmailAddress::parse(email).ok();
        let subject = match &email {
            Some(email) => self.hasher.cooldown_subject(org_id, email),
            // Counted under a subject no address has, so that it still costs the same.
            None => self.hasher.cooldown_subject(
                org_id,
                &EmailAddress::from_trusted("invalid@invalid".to_owned()),
            ),
        };
        if let Some(error) = login_throttled(
            self.store.login_failures(&subject).await?,
            now,
            &self.policy,
        ) {
            return Err(error);
        }
        let user = match &email {
            Some(email) => self.store.user_by_username(org_id, email).await?,
            None => None,
        };
        let stored = match &user {
            Some(user) => self.store.password_hash(&user.id).await?,
            None => None,
        };
        let matched = self
            .passwords
            .verify(Password::presented(password), stored)
            .await;
        let (session, refresh_token) = self.new_session(org_id, user.as_ref().map(|u| &u.id));
        let recorded = self
            .store
            .record_login(LoginAttempt {
                subject,
                user_id: user.map(|user| user.id),
                password_matched: matched,
                session,
                now,
                policy: self.policy,
            })
            .await;
        match recorded {
            // A success does not clear the client's failures: one account of its own must not
            // let a client guess at the others.
            Ok(recorded) => {
                Ok(self.session_answer(recorded.user, &recorded.session, refresh_token))
            }
            Err(error) => {
                if matches!(error, Error::InvalidCredentials)
                    && let Some(client) = client
                {
                    self.client_failures
                        .count(client, now, self.policy.client_login_limit());
                }
                Err(error)
            }
        }
    }

    /// A new access token and refresh token for a refresh token, which stops working. A
    /// refresh token of ours presented after it was replaced was copied: the session ends.
    /// Anything else that is not the current refresh token is refused and changes nothing.
    pub async fn refresh_session(&self, refresh_token: &str) -> Result<Session> {
        let refreshed = self.rotate_session(refresh_token).await;
        let event = SecurityEvent::new(Action::SessionRefresh);
        match &refreshed {
            Ok(session) => event
                .org(&session.user.org_id)
                .user(&session.user.id)
                .succeeded(),
            Err(error) => event.refused(error),
        }
        refreshed
    }

    async fn rotate_session(&self, refresh_token: &str) -> Result<Session> {
        let now = self.clock.now();
        let refresh_token = refresh_token.trim();
        let opened = self
            .tokens
            .open_checked::<RefreshClaims>(refresh_token, now)
            .map_err(|refused| match refused {
                Refused::Expired => Error::TokenExpired,
                Refused::Invalid => Error::Unauthenticated,
            })?;
        let id = &opened.body.session_id;
        let session = self
            .store
            .token(id)
            .await?
            .filter(|token| {
                token.kind == TokenKind::Session
                    && token.is_live(now)
                    && token.user_id.as_ref() == Some(&opened.body.user_id)
            })
            .ok_or(Error::Unauthenticated)?;
        let renewed = self.refresh_token_for(&session, now);
        let presented = TokenSecret::from_presented(refresh_token).digest();
        let renewed_digest = TokenSecret::from_presented(&renewed).digest();
        if !self
            .store
            .rotate_token(id, &presented, &renewed_digest, now)
            .await?
        {
            self.store
                .revoke_tokens(&opened.body.user_id, Some(id), now)
                .await?;
            SecurityEvent::new(Action::SessionRefresh)
                .org(&session.org_id)
                .user(&opened.body.user_id)
                .refused_because("refresh_token_replayed");
            return Err(Error::Unauthenticated);
        }
        let user = self
            .store
            .user(&opened.body.user_id)
            .await?
            .ok_or(Error::Unauthenticated)?;
        Ok(self.session_answer(user, &session, renewed))
    }

    /// Who presents this access token, if its session is live: a password login's caller.
    pub async fn authenticate_session(&self, access_token: &str) -> Result<Principal> {
        let now = self.clock.now();
        let opened = self
            .tokens
            .open_checked::<SessionClaims>(access_token, now)
            .map_err(|refused| match refused {
                Refused::Expired => Error::TokenExpired,
                Refused::Invalid => Error::Unauthenticated,
            })?;
        let (token, user) = self
            .store
            .token_with_user(TokenKey::Id(&opened.body.session_id))
            .await?
            .filter(|(token, _)| {
                token.is_live(now) && token.user_id.as_ref() == Some(&opened.body.user_id)
            })
            .ok_or(Error::Unauthenticated)?;
        let user = user.ok_or(Error::UserNotFound)?;
        Ok(Principal {
            token,
            user,
            permissions: Vec::new(),
        })
    }

    /// Sends the caller a new verification email, voiding the link of the previous one;
    /// refused while the cooldown of its address runs, and for a verified address.
    pub async fn send_account_verification(
        &self,
        caller: &Principal,
        locale: Option<Locale>,
        links: &AccountLinks,
    ) -> Result<User> {
        self.org_may_send(&caller.user.org_id)?;
        let code = self.link_code(
            CodePurpose::EmailVerification,
            MailTemplate::AccountVerification,
            &links.verify_email,
            locale,
        );
        let command = UpdateEmail {
            user_id: caller.user.id.clone(),
            actor: Actor::the_user(caller.user.id.clone()),
            update: EmailUpdate::SendCode {
                code,
                require_pending: false,
            },
            hasher: self.hasher.clone(),
            now: self.clock.now(),
            policy: self.policy,
        };
        let updated = self.store.update_email(command).await;
        SecurityEvent::new(Action::CodeSend)
            .org(&caller.user.org_id)
            .user(&caller.user.id)
            .record(&updated);
        let updated = updated?;
        self.org_sent(&caller.user.org_id);
        self.signal.message_enqueued();
        Ok(updated.user)
    }

    /// How long until `user` may be sent another email of `purpose`, and how the last one
    /// of `template` fared.
    pub async fn send_status(
        &self,
        org_id: &OrgId,
        email: &EmailAddress,
        user_id: Option<&UserId>,
        purpose: CodePurpose,
        template: MailTemplate,
    ) -> Result<SendStatus> {
        let now = self.clock.now();
        let subject = self.hasher.cooldown_subject(org_id, email);
        let until = self
            .store
            .sends(&subject, purpose)
            .await?
            .map(|sends| sends.next_send_at(&self.policy))
            .filter(|&until| until > now);
        let last_message = match user_id {
            Some(user_id) => self
                .store
                .messages(&MessageFilter {
                    user_id: Some(user_id.clone()),
                    org_id: Some(org_id.clone()),
                    ..MessageFilter::default()
                })
                .await?
                .into_iter()
                .filter(|message| message.template == template)
                .max_by_key(|message| message.created_at),
            None => None,
        };
        Ok(SendStatus {
            remaining: until.map_or(Duration::ZERO, |until| now.until(until)),
            next_send_at: until.unwrap_or(now),
            last_message,
        })
    }

    /// Verifies an address with the token of its newest verification link. It logs no one in.
    /// A token that no longer works because the address is verified answers so.
    pub async fn verify_account(&self, token: &str) -> Result<User> {
        let (user_id, secret) = self
            .open_link_token(token)
            .await
            .inspect_err(|error| SecurityEvent::new(Action::CodeVerify).refused(error))?;
        let verified = self
            .verify_code(
                UserKey::Id(user_id.clone()),
                CodePurpose::EmailVerification,
                secret,
                CodeUse::Consume,
            )
            .await;
        match verified {
            Ok(verified) => Ok(verified.user),
            Err(Error::UserNotFound) => Err(Error::CodeInvalid),
            Err(Error::CodeInvalid) => {
                let verified_already = self
                    .store
                    .user(&user_id)
                    .await?
                    .is_some_and(|user| user.email_verified_at.is_some());
                Err(if verified_already {
                    Error::EmailAlreadyVerified
                } else {
                    Error::CodeInvalid
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Asks for a password reset for any address: one with an account gets a reset link, one
    /// without gets the "no account" email (if its organisation sends those), and the answer
    /// is the same.
    pub async fn request_password_reset(
        &self,
        org_id: OrgId,
        email: EmailAddress,
        locale: Option<Locale>,
        browser_locale: Option<Locale>,
        links: Option<&AccountLinks>,
    ) -> Result<()> {
        let links = links.ok_or(Error::MailDisabled)?;
        self.org_may_send(&org_id)?;
        let cooldown_subject = self.hasher.cooldown_subject(&org_id, &email);
        let event_org = org_id.clone();
        let command = RequestPasswordReset {
            cooldown_subject: cooldown_subject.clone(),
            org_id,
            email,
            code: self.link_code(
                CodePurpose::PasswordReset,
                MailTemplate::PasswordReset,
                &links.reset_password,
                locale,
            ),
            no_account: self.account_message(Some(&links.sign_up)),
            browser_locale,
            now: self.clock.now(),
            policy: self.policy,
        };
        let requested = self.store.request_password_reset(command).await;
        // The subject, not the user: whether the address has an account is not for the log
        // of an endpoint open to anyone to tell apart either.
        SecurityEvent::new(Action::CodeSend)
            .org(&event_org)
            .subject(&cooldown_subject)
            .record(&requested);
        let requested = requested?;
        if requested.message_id.is_some() {
            self.org_sent(&event_org);
            self.signal.message_enqueued();
        }
        Ok(())
    }

    /// Sets a new password with the token of the newest reset link; every session ends.
    pub async fn reset_password(&self, token: &str, new_password: &str) -> Result<User> {
        let reset = self.set_password_from_link(token, new_password).await;
        let event = SecurityEvent::new(Action::PasswordReset);
        match &reset {
            Ok(user) => event.org(&user.org_id).user(&user.id).succeeded(),
            Err(error) => event.refused(error),
        }
        reset
    }

    async fn set_password_from_link(&self, token: &str, new_password: &str) -> Result<User> {
        let (user_id, secret) = self.open_link_token(token).await?;
        let user = self.store.user(&user_id).await?.ok_or(Error::CodeInvalid)?;
        let password = Password::new_for(new_password, &user.username)?;
        let password_hash: PasswordHash = self.passwords.hash(password).await?;
        let command = ResetPassword {
            user_id: user_id.clone(),
            verify: reset_code_check(
                user_id,
                secret,
                self.hasher.clone(),
                self.clock.now(),
                self.policy,
            ),
            password_hash,
        };
        self.store.reset_password(command).await
    }

    /// The user a link's token names, if it names one; nothing is checked or used up (for a
    /// page's language).
    pub async fn link_token_user(&self, token: &str) -> Result<Option<User>> {
        match self.open_link_token(token).await {
            Ok((user_id, _)) => self.store.user(&user_id).await,
            Err(Error::CodeInvalid) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The user and the secret a link token (`<code id>.<secret>`) names; a token naming no
    /// code is as wrong as a wrong secret.
    async fn open_link_token(&self, token: &str) -> Result<(UserId, CodeSecret)> {
        let (code_id, secret) = token
            .trim()
            .split_once('.')
            .and_then(|(id, secret)| Some((CodeId::parse(id)?, secret)))
            .filter(|(_, secret)| !secret.is_empty() && secret.len() <= 64)
            .ok_or(Error::CodeInvalid)?;
        let code = self.store.code(&code_id).await?.ok_or(Error::CodeInvalid)?;
        Ok((code.user_id, CodeSecret::from_user_input(secret)))
    }

    /// A code sent as a link: `<page>?token=<code id>.<secret>`, sealed in its email.
    fn link_code(
        &self,
        purpose: CodePurpose,
        template: MailTemplate,
        page: &str,
        locale: Option<Locale>,
    ) -> NewCode {
        let now = self.clock.now();
        let code_id = CodeId::generate_at(now);
        let message_id = MessageId::generate_at(now);
        let secret = CodeSecret::generate_link_secret();
        let hash = self.hasher.hash(&code_id, purpose, &secret);
        let link = with_query(page, "token", &format!("{code_id}.{}", secret.expose()));
        let sealed = self.seal(
            &message_id,
            &SealedContent {
                code: Some(secret),
                url_template: None,
                link: Some(link),
            },
        );
        NewCode {
            purpose,
            prepared: PreparedCode {
                code_id,
                hash,
                message_id,
                sealed,
            },
            delivery: Delivery::Email,
            template,
            locale,
        }
    }

    /// An email without a code, linking to `page`.
    fn account_message(&self, page: Option<&str>) -> PreparedMessage {
        let id = MessageId::generate();
        let sealed = self.seal(
            &id,
            &SealedContent {
                code: None,
                url_template: None,
                link: page.map(str::to_owned),
            },
        );
        PreparedMessage { id, sealed }
    }

    /// A session for `user_id` (a stand-in id when the login is bound to fail, so both cost
    /// the same), and its refresh token.
    fn new_session(&self, org_id: &OrgId, user_id: Option<&UserId>) -> (AccessToken, String) {
        let now = self.clock.now();
        let mut session = AccessToken {
            id: TokenId::generate(),
            org_id: org_id.clone(),
            user_id: Some(user_id.cloned().unwrap_or_else(UserId::generate)),
            kind: TokenKind::Session,
            digest: [0; 32],
            permissions: Vec::new(),
            created_at: now,
            expires_at: Some(now.plus(self.policy.session_ttl)),
            revoked_at: None,
        };
        let refresh = self.refresh_token_for(&session, now);
        session.digest = TokenSecret::from_presented(&refresh).digest();
        (session, refresh)
    }

    /// A new refresh token of `session`: signed, so that a copy presented after its
    /// replacement is known for one of ours; the session stores only its digest.
    fn refresh_token_for(&self, session: &AccessToken, now: Timestamp) -> String {
        let claims = RefreshClaims {
            org_id: session.org_id.clone(),
            user_id: session.user_id.clone().unwrap_or_else(UserId::generate),
            session_id: session.id.clone(),
        };
        let expires_at = session.expires_at.unwrap_or(now);
        // A fresh id makes every refresh token of a session a different one.
        self.tokens
            .issue(TokenId::generate().as_str(), claims, now, expires_at)
    }

    fn session_answer(&self, user: User, session: &AccessToken, refresh_token: String) -> Session {
        let now = self.clock.now();
        let refresh_expires_at = session.expires_at.unwrap_or(now);
        let access_expires_at = now
            .plus(self.policy.access_token_ttl)
            .min(refresh_expires_at);
        let claims = SessionClaims {
            org_id: user.org_id.clone(),
            user_id: user.id.clone(),
            session_id: session.id.clone(),
        };
        let access_token =
            self.tokens
                .issue(TokenId::generate().as_str(), claims, now, access_expires_at);
        Session {
            user,
            access_token,
            access_expires_at,
            refresh_token,
            refresh_expires_at,
        }
    }
}

/// A name to address the user by: trimmed, 1 to [`MAX_NAME_LENGTH`] characters, no control
/// characters (it goes into email greetings).
fn account_name(name: &str) -> Result<String> {
    let name = name.trim();
    let length = name.chars().count();
    if length == 0 || length > MAX_NAME_LENGTH || name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "the name must have 1 to {MAX_NAME_LENGTH} characters and no control characters"
        )));
    }
    Ok(name.to_owned())
}

/// `page` with `key=value` added to its query.
fn with_query(page: &str, key: &str, value: &str) -> String {
    let separator = if page.contains('?') { '&' } else { '?' };
    let pair = form_urlencoded_pair(key, value);
    format!("{page}{separator}{pair}")
}

fn form_urlencoded_pair(key: &str, value: &str) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(byte).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    format!("{}={}", encode(key), encode(value))
}
