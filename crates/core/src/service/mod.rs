//! The use cases every face calls: they prepare what needs cryptography, run the rules in the
//! store, and tell the outbox worker.

mod accounts;
mod email;

pub use accounts::{AccountLinks, MAX_NAME_LENGTH, NewAccount, SendStatus, Session};
pub use email::{CodeDelivery, EmailVerification, EmailWithCode, NewHuman};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::audit::{Action, SecurityEvent};
use crate::clock::{Clock, Timestamp};
use crate::code::{CodeHasher, CodePurpose, CodeSecret};
use crate::credential::{
    ApiRequest, Credential, PublicKey, parse_cred_id, verify_api_signature, verify_assertion,
    verify_attestation,
};
use crate::email::EmailAddress;
use crate::error::{Error, Result};
use crate::ids::{
    AppId, ChallengeId, CodeId, CredentialId, MessageId, OrgId, TokenId, UserActionId, UserId,
};
use crate::model::{
    AccessToken, App, Locale, Org, Permission, Principal, RetiredSecret, SingleUse, SingleUseKind,
    TokenKind, User, UserKind, UserState,
};
use crate::nonce::Nonce;
use crate::policy::Policy;
use crate::ports::{InlineHashing, OutboxSignal, PasswordHashing, Store, TokenKey};
use crate::rules::{
    AppCheck, CodeIssued, CodeUse, CodeVerified, CompleteLogin, CreateServiceAccount, CreateUser,
    CredentialRegistered, IssueCode, NewCode, PreparedCode, RegisterCredential,
    ServiceAccountCreated, UserKey, VerifyCode,
};
use crate::secret::{Sealer, ServerSecret, TokenSecret};
use crate::throttle::WindowCounts;
use crate::token::{
    AccessClaims, ActionChallengeClaims, LoginClaims, RegistrationClaims, SignedRequest, TokenBody,
    TokenSigner, UserActionClaims,
};
use crate::url_template::UrlTemplate;

/// What an outbox message keeps sealed until delivery.
#[derive(Debug, Serialize, Deserialize)]
pub struct SealedContent {
    /// Absent for emails that carry no code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeSecret>,
    /// The link template the request named (see [`crate::url_template`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_template: Option<String>,
    /// The email's link, complete (it may carry the code): for emails whose link the server
    /// made, not a request's template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// A user created with a registration code on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInvited {
    pub user: User,
    pub message_id: MessageId,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub org_id: OrgId,
    pub email: EmailAddress,
    pub kind: UserKind,
    pub locale: Option<Locale>,
    /// The signed user action that asked for it, spent with the creation.
    pub user_action: Option<SingleUse>,
}

#[derive(Debug, Clone)]
pub struct ResendCode {
    pub org_id: OrgId,
    pub username: EmailAddress,
    pub locale: Option<Locale>,
    pub nonce: Option<Nonce>,
    pub app: Option<AppCheck>,
}

/// The core, as the faces see it.
pub struct Enroll {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hasher: CodeHasher,
    tokens: TokenSigner,
    sealer: Sealer,
    policy: Policy,
    signal: Arc<dyn OutboxSignal>,
    passwords: Arc<dyn PasswordHashing>,
    client_failures: WindowCounts,
    client_sends: WindowCounts,
    org_sends: WindowCounts,
}

impl std::fmt::Debug for Enroll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enroll")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Enroll {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        secret: &ServerSecret,
        policy: Policy,
        signal: Arc<dyn OutboxSignal>,
    ) -> Self {
        Self {
            store,
            clock,
            hasher: secret.code_hasher(),
            tokens: secret.token_signer(),
            sealer: secret.sealer(),
            policy,
            signal,
            passwords: Arc::new(InlineHashing),
            client_failures: WindowCounts::default(),
            client_sends: WindowCounts::default(),
            org_sends: WindowCounts::default(),
        }
    }

    /// Hashes passwords with `passwords` instead of on the calling thread.
    #[must_use]
    pub fn with_password_hashing(mut self, passwords: Arc<dyn PasswordHashing>) -> Self {
        self.passwords = passwords;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    pub async fn create_org(&self, name: &str, default_locale: Locale) -> Result<Org> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::Invalid(
                "an organisation name has 1 to 200 characters".into(),
            ));
        }
        let org = Org {
            id: OrgId::generate(),
            name: name.to_owned(),
            default_locale,
            unknown_address_mail: true,
            created_at: self.clock.now(),
        };
        self.store.insert_org(&org).await?;
        Ok(org)
    }

    pub async fn create_app(
        &self,
        org_id: &OrgId,
        name: &str,
        permissions: Vec<Permission>,
    ) -> Result<App> {
        if self.store.org(org_id).await?.is_none() {
            return Err(Error::OrgNotFound);
        }
        let app = App {
            id: AppId::generate(),
            org_id: org_id.clone(),
            name: name.trim().to_owned(),
            permissions,
            created_at: self.clock.now(),
            secret_digest: None,
            public_key: None,
            retired_secret: None,
        };
        self.store.insert_app(&app).await?;
        Ok(app)
    }

    /// Gives an app a new secret (`X-DFNS-APPSECRET`); the secret is returned once and only
    /// its digest is kept. The one it replaces stays accepted for `overlap`, so that the app's
    /// instances can change over without a refused request.
    pub async fn issue_app_secret(
        &self,
        app: &AppId,
        overlap: std::time::Duration,
    ) -> Result<TokenSecret> {
        let current = self.store.app(app).await?.ok_or(Error::UnknownApp)?;
        let retired = current
            .secret_digest
            .filter(|_| !overlap.is_zero())
            .map(|digest| RetiredSecret {
                digest,
                expires_at: self.clock.now().plus(overlap),
            });
        let secret = TokenSecret::generate();
        self.store
            .set_app_secret(app, &secret.digest(), retired.as_ref())
            .await?;
        Ok(secret)
    }

    /// Sets the key an app signs its requests with; RSA and Ed25519 keys, as `RS256` and
    /// `EdDSA` signatures.
    pub async fn set_app_public_key(&self, app: &AppId, public_key: PublicKey) -> Result<()> {
        if public_key.algorithm() == crate::credential::KeyAlgorithm::EcdsaP256 {
            return Err(Error::Invalid(
                "API signatures take RSA or Ed25519 keys".to_owned(),
            ));
        }
        self.store.set_app_public_key(app, &public_key).await
    }

    /// The app a request names, which must exist; an app with a secret must be shown it.
    pub async fn check_app(&self, app_id: &AppId, presented_secret: Option<&str>) -> Result<App> {
        let checked = self.check_app_secret(app_id, presented_secret).await;
        let event = SecurityEvent::new(Action::AppCheck).app(Some(app_id));
        match &checked {
            Ok(app) => event.org(&app.org_id).succeeded(),
            Err(error) => event.refused(error),
        }
        checked
    }

    async fn check_app_secret(&self, app: &AppId, presented_secret: Option<&str>) -> Result<App> {
        let app = self.store.app(app).await?.ok_or(Error::UnknownApp)?;
        if let Some(digest) = &app.secret_digest {
            let presented = presented_secret
                .map(|secret| TokenSecret::from_presented(secret.trim()).digest())
                .ok_or(Error::UnknownApp)?;
            let now = self.clock.now();
            let retired = app
                .retired_secret
                .filter(|retired| retired.expires_at > now)
                .map_or(subtle::Choice::from(0), |retired| {
                    subtle::ConstantTimeEq::ct_eq(&presented[..], &retired.digest[..])
                });
            let current = subtle::ConstantTimeEq::ct_eq(&presented[..], &digest[..]);
            if !bool::from(current | retired) {
                return Err(Error::UnknownApp);
            }
        } else if presented_secret.is_some() {
            return Err(Error::UnknownApp);
        }
        Ok(app)
    }

    /// A new long-lived token acting as `user`; the secret is returned once and only its
    /// digest is kept.
    pub async fn create_token(
        &self,
        user: &User,
        kind: TokenKind,
        permissions: Vec<Permission>,
    ) -> Result<(AccessToken, TokenSecret)> {
        let (token, secret) = self.mint_token(&user.org_id, &user.id, kind, permissions, None);
        self.store.insert_token(&token).await?;
        Ok((token, secret))
    }

    /// A token acting as `user_id` of `org_id`, not yet stored.
    fn mint_token(
        &self,
        org_id: &OrgId,
        user_id: &UserId,
        kind: TokenKind,
        permissions: Vec<Permission>,
        expires_at: Option<Timestamp>,
    ) -> (AccessToken, TokenSecret) {
        let now = self.clock.now();
        let id = TokenId::generate();
        let claims = AccessClaims {
            org_id: org_id.clone(),
            user_id: user_id.clone(),
            token_id: id.clone(),
        };
        // Tokens without an end still carry one in the JWT; the stored row is what counts.
        let jwt_expiry = expires_at.unwrap_or(now.plus(LONG_LIVED));
        let secret =
            TokenSecret::from_presented(&self.tokens.issue(id.as_str(), claims, now, jwt_expiry));
        let token = AccessToken {
            id,
            org_id: org_id.clone(),
            user_id: Some(user_id.clone()),
            kind,
            digest: secret.digest(),
            permissions,
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        (token, secret)
    }

    /// A service account in `org_id` acting with `public_key`, and its long-lived token.
    pub async fn create_service_account(
        &self,
        org_id: &OrgId,
        username: EmailAddress,
        public_key: PublicKey,
        permissions: Vec<Permission>,
    ) -> Result<(ServiceAccountCreated, TokenSecret)> {
        self.create_account(
            org_id,
            username,
            Some(public_key),
            TokenKind::Admin,
            permissions,
        )
        .await
    }

    /// A machine user in `org_id` that acts only through the personal access token returned
    /// with it (ZITADEL's machine user with a PAT).
    pub async fn create_machine_user(
        &self,
        org_id: &OrgId,
        username: EmailAddress,
        permissions: Vec<Permission>,
    ) -> Result<(ServiceAccountCreated, TokenSecret)> {
        self.create_account(org_id, username, None, TokenKind::Personal, permissions)
            .await
    }

    async fn create_account(
        &self,
        org_id: &OrgId,
        username: EmailAddress,
        public_key: Option<PublicKey>,
        kind: TokenKind,
        permissions: Vec<Permission>,
    ) -> Result<(ServiceAccountCreated, TokenSecret)> {
        let now = self.clock.now();
        let user_id = UserId::generate();
        let credential = public_key.map(|public_key| Credential {
            id: CredentialId::generate(),
            cred_id: URL_SAFE_NO_PAD.encode(crate::random::bytes::<32>()),
            user_id: user_id.clone(),
            org_id: org_id.clone(),
            name: "Service account key".to_owned(),
            public_key,
            created_at: now,
        });
        let (token, secret) = self.mint_token(org_id, &user_id, kind, permissions.clone(), None);
        let created = self
            .store
            .create_service_account(CreateServiceAccount {
                user_id,
                org_id: org_id.clone(),
                username,
                credential,
                token,
                permissions,
                now,
            })
            .await?;
        Ok((created, secret))
    }

    /// Who presents this bearer token, if it is live.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal> {
        let authenticated = self.authenticate_bearer(bearer).await;
        if let Err(error) = &authenticated {
            // Successes are every authenticated request; only refusals are security events.
            SecurityEvent::new(Action::TokenCheck).refused(error);
        }
        authenticated
    }

    async fn authenticate_bearer(&self, bearer: &str) -> Result<Principal> {
        let now = self.clock.now();
        let opened = self
            .tokens
            .open::<AccessClaims>(bearer, now)
            .ok_or(Error::Unauthenticated)?;
        let digest = TokenSecret::from_presented(bearer.trim()).digest();
        let (token, user) = self
            .store
            .token_with_user(TokenKey::Digest(&digest))
            .await?
            .filter(|(token, _)| token.is_live(now) && token.id == opened.body.token_id)
            .ok_or(Error::Unauthenticated)?;
        let user = user.ok_or(Error::Unauthenticated)?;
        let permissions = match token.kind {
            TokenKind::Session => self.store.user_permissions(&user.id).await?,
            TokenKind::Admin | TokenKind::Personal => token.permissions.clone(),
        };
        Ok(Principal {
            token,
            user,
            permissions,
        })
    }

    /// Grants permissions to a user, keeping those it holds.
    pub async fn grant(
        &self,
        user: &UserId,
        permissions: &[Permission],
    ) -> Result<Vec<Permission>> {
        let mut held = self.store.user_permissions(user).await?;
        for permission in permissions {
            if !held.contains(permission) {
                held.push(permission.clone());
            }
        }
        held.sort();
        self.store.set_user_permissions(user, &held).await?;
        Ok(held)
    }

    /// A fresh code, hashed, with its sealed message; and the code, for a caller that hands
    /// it out itself.
    fn prepare_code(
        &self,
        purpose: CodePurpose,
        url_template: Option<&UrlTemplate>,
    ) -> (PreparedCode, CodeSecret) {
        let now = self.clock.now();
        let code_id = CodeId::generate_at(now);
        let message_id = MessageId::generate_at(now);
        let code = CodeSecret::generate(purpose);
        let hash = self.hasher.hash(&code_id, purpose, &code);
        let sealed = self.seal(
            &message_id,
            &SealedContent {
                code: Some(code.clone()),
                url_template: url_template.map(|template| template.as_str().to_owned()),
                link: None,
            },
        );
        let prepared = PreparedCode {
            code_id,
            hash,
            message_id,
            sealed,
        };
        (prepared, code)
    }

    /// A message's content, sealed under its id.
    fn seal(&self, message_id: &MessageId, content: &SealedContent) -> Vec<u8> {
        let content = serde_json::to_vec(content)
            .unwrap_or_else(|_| unreachable!("a struct of strings serialises"));
        self.sealer.seal(message_id.as_str(), &content)
    }

    /// Creates a pending user and queues the registration email.
    pub async fn create_user(&self, new: NewUser) -> Result<UserInvited> {
        let (prepared, _) = self.prepare_code(CodePurpose::Registration, None);
        let message_id = prepared.message_id.clone();
        let command = CreateUser {
            user_id: UserId::generate(),
            cooldown_subject: self.hasher.cooldown_subject(&new.org_id, &new.email),
            org_id: new.org_id,
            username: new.email,
            name: None,
            kind: new.kind,
            state: UserState::Pending,
            locale: new.locale,
            code: Some(NewCode::emailed(CodePurpose::Registration, prepared)),
            user_action: new.user_action,
            now: self.clock.now(),
            policy: self.policy,
        };
        let org_id = command.org_id.clone();
        self.org_may_send(&org_id)?;
        let created = self.store.create_user(command).await;
        let event = SecurityEvent::new(Action::UserCreate).org(&org_id);
        match &created {
            Ok(created) => event.user(&created.user.id).succeeded(),
            Err(error) => event.refused(error),
        }
        let created = created?;
        self.org_sent(&org_id);
        self.signal.message_enqueued();
        Ok(UserInvited {
            user: created.user,
            message_id,
        })
    }

    /// Issues a new registration code, voiding the previous one, and queues its email.
    /// Unknown and registered users cost the same work before the store answers.
    pub async fn resend_registration_code(&self, request: ResendCode) -> Result<CodeIssued> {
        let org_id = request.org_id.clone();
        let app_id = request.app.as_ref().map(|app| app.app_id.clone());
        let cooldown_subject = self
            .hasher
            .cooldown_subject(&request.org_id, &request.username);
        let issued = self
            .issue_registration_code(request, cooldown_subject.clone())
            .await;
        let event = SecurityEvent::new(Action::CodeSend)
            .org(&org_id)
            .app(app_id.as_ref());
        match &issued {
            Ok(issued) => event.user(&issued.user.id).succeeded(),
            Err(error) => event.subject(&cooldown_subject).refused(error),
        }
        issued
    }

    async fn issue_registration_code(
        &self,
        request: ResendCode,
        cooldown_subject: String,
    ) -> Result<CodeIssued> {
        let now = self.clock.now();
        if let Some(nonce) = &request.nonce {
            nonce.check(now, &self.policy)?;
        }
        self.org_may_send(&request.org_id)?;
        let command = IssueCode {
            cooldown_subject,
            org_id: request.org_id,
            username: request.username,
            purpose: CodePurpose::Registration,
            locale: request.locale,
            app: request.app,
            code: self.prepare_code(CodePurpose::Registration, None).0,
            now,
            policy: self.policy,
        };
        let issued = self.store.issue_code(command, request.nonce).await?;
        self.org_sent(&issued.user.org_id);
        self.signal.message_enqueued();
        Ok(issued)
    }

    /// Checks or uses a code (see [`CodeUse`]).
    pub async fn verify_code(
        &self,
        user: UserKey,
        purpose: CodePurpose,
        submitted: CodeSecret,
        usage: CodeUse,
    ) -> Result<CodeVerified> {
        let key = user.clone();
        let command = VerifyCode {
            user,
            purpose,
            submitted,
            usage,
            hasher: self.hasher.clone(),
            now: self.clock.now(),
            policy: self.policy,
        };
        let verified = self.store.verify_code(command).await;
        let event = SecurityEvent::new(Action::CodeVerify);
        match (&verified, &key) {
            (Ok(verified), _) => event
                .org(&verified.user.org_id)
                .user(&verified.user.id)
                .succeeded(),
            (Err(error), UserKey::Id(user_id)) => event.user(user_id).refused(error),
            (Err(error), UserKey::Username { org_id, username }) => {
                let subject = self.hasher.cooldown_subject(org_id, username);
                event.org(org_id).subject(&subject).refused(error);
            }
        }
        verified
    }

    /// `registration/init`: checks the code (a wrong one counts) and hands out a challenge, in
    /// a temporary token bound to the user and that code.
    pub async fn start_registration(
        &self,
        org_id: OrgId,
        username: EmailAddress,
        code: CodeSecret,
    ) -> Result<RegistrationStarted> {
        // An unknown user answers as a wrong code does, so the answer tells nothing of who has
        // an account.
        let verified = self
            .verify_code(
                UserKey::Username { org_id, username },
                CodePurpose::Registration,
                code,
                CodeUse::Check,
            )
            .await
            .map_err(|error| match error {
                Error::UserNotFound | Error::OrgNotFound => Error::CodeInvalid,
                other => other,
            })?;
        let now = self.clock.now();
        let challenge = new_challenge();
        let id = ChallengeId::generate();
        let claims = RegistrationClaims {
            org_id: verified.user.org_id.clone(),
            user_id: verified.user.id.clone(),
            code_id: verified.code_id,
            challenge: challenge.clone(),
        };
        let expires_at = now.plus(self.policy.challenge_ttl);
        let temporary_token = self.tokens.issue(id.as_str(), claims, now, expires_at);
        Ok(RegistrationStarted {
            user: verified.user,
            challenge,
            temporary_token,
            expires_at,
        })
    }

    /// `registration`: verifies the key's attestation against the challenge of the temporary
    /// token, then stores the credential, uses the code and registers the user at once.
    pub async fn complete_registration(
        &self,
        temporary_token: &str,
        attestation: KeyAttestation,
    ) -> Result<CredentialRegistered> {
        let registered = self.register_key(temporary_token, attestation).await;
        let event = SecurityEvent::new(Action::CodeVerify);
        match &registered {
            Ok(registered) => event
                .org(&registered.user.org_id)
                .user(&registered.user.id)
                .succeeded(),
            Err(error) => event.refused(error),
        }
        registered
    }

    async fn register_key(
        &self,
        temporary_token: &str,
        attestation: KeyAttestation,
    ) -> Result<CredentialRegistered> {
        let now = self.clock.now();
        let grant = self
            .tokens
            .open::<RegistrationClaims>(temporary_token, now)
            .ok_or(Error::Unauthenticated)?
            .body;
        let cred_id = parse_cred_id(&attestation.cred_id)?;
        let public_key = verify_attestation(
            &attestation.client_data,
            &attestation.attestation_data,
            &grant.challenge,
        )?;
        let credential = Credential {
            id: CredentialId::generate(),
            cred_id,
            user_id: grant.user_id.clone(),
            org_id: grant.org_id.clone(),
            name: attestation
                .name
                .map(|name| name.trim().chars().take(100).collect::<String>())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "Key".to_owned()),
            public_key,
            created_at: now,
        };
        self.store
            .register_credential(RegisterCredential {
                org_id: grant.org_id,
                user_id: grant.user_id,
                code_id: grant.code_id,
                credential,
                now,
            })
            .await
    }

    /// `login/init`: a challenge for a registered user, listing the keys that may answer it.
    pub async fn start_login(
        &self,
        org_id: &OrgId,
        username: &EmailAddress,
    ) -> Result<ChallengeIssued> {
        let user = self
            .store
            .user_by_username(org_id, username)
            .await?
            .filter(|user| user.state == UserState::Registered)
            .ok_or(Error::UserNotFound)?;
        let now = self.clock.now();
        let challenge = new_challenge();
        let claims = LoginClaims {
            org_id: user.org_id.clone(),
            user_id: user.id.clone(),
            challenge: challenge.clone(),
        };
        self.issue_challenge(&user, challenge, claims, now).await
    }

    async fn issue_challenge<T: TokenBody>(
        &self,
        user: &User,
        challenge: String,
        claims: T,
        now: Timestamp,
    ) -> Result<ChallengeIssued> {
        let credentials = self.store.credentials(&user.id).await?;
        if credentials.is_empty() {
            return Err(Error::NoCredential);
        }
        let expires_at = now.plus(self.policy.challenge_ttl);
        let identifier =
            self.tokens
                .issue(ChallengeId::generate().as_str(), claims, now, expires_at);
        Ok(ChallengeIssued {
            challenge,
            challenge_identifier: identifier,
            credentials,
            expires_at,
        })
    }

    /// The user's credential named by an assertion, which must verify for `challenge`.
    async fn check_assertion(
        &self,
        user: &UserId,
        challenge: &str,
        assertion: &KeyAssertion,
    ) -> Result<Credential> {
        let cred_id = parse_cred_id(&assertion.cred_id)?;
        let credential = self
            .store
            .credentials(user)
            .await?
            .into_iter()
            .find(|credential| credential.cred_id == cred_id)
            .ok_or(Error::NoCredential)?;
        verify_assertion(
            &credential.public_key,
            &assertion.client_data,
            &assertion.signature,
            challenge,
        )?;
        Ok(credential)
    }

    /// `login`: a verified answer to a login challenge gives a session token, once.
    pub async fn complete_login(
        &self,
        challenge_identifier: &str,
        assertion: KeyAssertion,
    ) -> Result<(AccessToken, TokenSecret)> {
        let logged_in = self.answer_login(challenge_identifier, assertion).await;
        let event = SecurityEvent::new(Action::Login);
        match &logged_in {
            Ok((token, _)) => {
                let event = event.org(&token.org_id);
                match &token.user_id {
                    Some(user_id) => event.user(user_id).succeeded(),
                    None => event.succeeded(),
                }
            }
            Err(error) => event.refused(error),
        }
        logged_in
    }

    async fn answer_login(
        &self,
        challenge_identifier: &str,
        assertion: KeyAssertion,
    ) -> Result<(AccessToken, TokenSecret)> {
        let now = self.clock.now();
        let opened = self
            .tokens
            .open::<LoginClaims>(challenge_identifier, now)
            .ok_or(Error::ChallengeInvalid)?;
        let credential = self
            .check_assertion(&opened.body.user_id, &opened.body.challenge, &assertion)
            .await?;
        // Whether the user is still registered is the transaction's to check.
        let (org_id, user_id) = (&opened.body.org_id, &opened.body.user_id);
        let (token, secret) = self.mint_token(
            org_id,
            user_id,
            TokenKind::Session,
            Vec::new(),
            Some(now.plus(self.policy.session_ttl)),
        );
        let token = self
            .store
            .complete_login(CompleteLogin {
                challenge: SingleUse {
                    id: opened.id,
                    kind: SingleUseKind::LoginChallenge,
                    expires_at: opened.expires_at,
                },
                user_id: user_id.clone(),
                credential_id: credential.id,
                token,
            })
            .await?;
        Ok((token, secret))
    }

    /// The organisation a login challenge was issued in, if the identifier is one of ours and
    /// live; nothing is checked or spent.
    pub fn login_challenge_org(&self, challenge_identifier: &str) -> Option<OrgId> {
        self.tokens
            .open::<LoginClaims>(challenge_identifier, self.clock.now())
            .map(|opened| opened.body.org_id)
    }

    /// `action/init`: a challenge to sign `request` as `caller`.
    pub async fn start_user_action(
        &self,
        caller: &Principal,
        request: SignedRequest,
    ) -> Result<ChallengeIssued> {
        let challenge = new_challenge();
        let claims = ActionChallengeClaims {
            org_id: caller.user.org_id.clone(),
            user_id: caller.user.id.clone(),
            token_id: caller.token.id.clone(),
            challenge: challenge.clone(),
            request,
        };
        self.issue_challenge(&caller.user, challenge, claims, self.clock.now())
            .await
    }

    /// `action`: a verified answer to the caller's user-action challenge gives a user action
    /// for that one request.
    pub async fn sign_user_action(
        &self,
        caller: &Principal,
        challenge_identifier: &str,
        assertion: KeyAssertion,
    ) -> Result<String> {
        let signed = self
            .answer_action_challenge(caller, challenge_identifier, assertion)
            .await;
        SecurityEvent::new(Action::UserAction)
            .org(&caller.user.org_id)
            .user(&caller.user.id)
            .record(&signed);
        signed
    }

    async fn answer_action_challenge(
        &self,
        caller: &Principal,
        challenge_identifier: &str,
        assertion: KeyAssertion,
    ) -> Result<String> {
        let now = self.clock.now();
        let opened = self
            .tokens
            .open::<ActionChallengeClaims>(challenge_identifier, now)
            .filter(|opened| {
                opened.body.user_id == caller.user.id && opened.body.token_id == caller.token.id
            })
            .ok_or(Error::ChallengeInvalid)?;
        self.check_assertion(&caller.user.id, &opened.body.challenge, &assertion)
            .await?;
        self.store
            .spend(SingleUse {
                id: opened.id,
                kind: SingleUseKind::ActionChallenge,
                expires_at: opened.expires_at,
            })
            .await?;
        let claims = UserActionClaims {
            org_id: caller.user.org_id.clone(),
            user_id: caller.user.id.clone(),
            token_id: caller.token.id.clone(),
            request: opened.body.request,
        };
        let expires_at = now.plus(self.policy.challenge_ttl);
        Ok(self
            .tokens
            .issue(UserActionId::generate().as_str(), claims, now, expires_at))
    }

    /// Checks that `user_action` was signed by `caller` for exactly this request; what it
    /// returns is spent in the transaction of the action itself.
    pub fn check_user_action(
        &self,
        caller: &Principal,
        user_action: Option<&str>,
        request: &SignedRequest,
    ) -> Result<SingleUse> {
        let opened = user_action
            .and_then(|token| {
                self.tokens
                    .open::<UserActionClaims>(token, self.clock.now())
            })
            .filter(|opened| {
                opened.body.user_id == caller.user.id
                    && opened.body.token_id == caller.token.id
                    && opened.body.request == *request
            })
            .ok_or(Error::UserActionInvalid)
            .inspect_err(|error| {
                SecurityEvent::new(Action::UserAction)
                    .org(&caller.user.org_id)
                    .user(&caller.user.id)
                    .refused(error);
            })?;
        Ok(SingleUse {
            id: opened.id,
            kind: SingleUseKind::UserAction,
            expires_at: opened.expires_at,
        })
    }

    /// Fails unless `caller` holds every one of `permissions`, naming the first it lacks.
    pub fn require(caller: &Principal, permissions: &[Permission]) -> Result<()> {
        match permissions
            .iter()
            .find(|permission| !caller.holds(permission))
        {
            Some(missing) => {
                let denied = Error::PermissionDenied {
                    principal: caller.describe(),
                    permission: missing.clone(),
                };
                SecurityEvent::new(Action::PermissionCheck)
                    .org(&caller.user.org_id)
                    .user(&caller.user.id)
                    .refused(&denied);
                Err(denied)
            }
            None => Ok(()),
        }
    }

    /// Fails unless an app naming itself holds every one of `permissions`.
    pub fn require_of_app(app: &App, permissions: &[Permission]) -> Result<()> {
        match permissions.iter().find(|permission| !app.holds(permission)) {
            Some(missing) => {
                let denied = Error::PermissionDenied {
                    principal: format!("Application {}", app.id),
                    permission: missing.clone(),
                };
                SecurityEvent::new(Action::PermissionCheck)
                    .org(&app.org_id)
                    .app(Some(&app.id))
                    .refused(&denied);
                Err(denied)
            }
            None => Ok(()),
        }
    }

    /// Checks the signature an app with a public key must put on each request.
    pub fn check_api_signature(
        app: &App,
        key: &PublicKey,
        signature: Option<&str>,
        request: &ApiRequest<'_>,
    ) -> Result<()> {
        let checked = signature
            .ok_or(Error::UnknownApp)
            .and_then(|signature| verify_api_signature(key, signature, request));
        if let Err(error) = &checked {
            SecurityEvent::new(Action::AppCheck)
                .org(&app.org_id)
                .app(Some(&app.id))
                .refused(error);
        }
        checked
    }

    /// Refuses a request that would email someone for `client` (its IP address) once the
    /// emails it caused reached the cap of the window.
    pub fn client_may_send(&self, client: &str) -> Result<()> {
        let limit = self.policy.client_send_limit;
        match self.client_sends.refused(client, self.clock.now(), limit) {
            Some(retry_after) => {
                SecurityEvent::new(Action::CodeSend).refused_because("client_send_limit");
                Err(Error::Cooldown { retry_after })
            }
            None => Ok(()),
        }
    }

    /// Counts a request of `client` that may have emailed someone.
    pub fn client_sent(&self, client: &str) {
        let limit = self.policy.client_send_limit;
        self.client_sends.count(client, self.clock.now(), limit);
    }

    /// Refuses to email a user of `org_id` once the organisation's emails reached the cap of
    /// the window.
    fn org_may_send(&self, org_id: &OrgId) -> Result<()> {
        let limit = self.policy.org_send_limit;
        match self
            .org_sends
            .refused(org_id.as_str(), self.clock.now(), limit)
        {
            Some(retry_after) => {
                SecurityEvent::new(Action::CodeSend)
                    .org(org_id)
                    .refused_because("org_send_limit");
                Err(Error::Cooldown { retry_after })
            }
            None => Ok(()),
        }
    }

    fn org_sent(&self, org_id: &OrgId) {
        let limit = self.policy.org_send_limit;
        self.org_sends
            .count(org_id.as_str(), self.clock.now(), limit);
    }

    /// Ends the caller's session, or every session of the caller's user.
    pub async fn logout(&self, caller: &Principal, all_sessions: bool) -> Result<u64> {
        let token = (!all_sessions).then_some(&caller.token.id);
        self.store
            .revoke_tokens(&caller.user.id, token, self.clock.now())
            .await
    }
}

/// How long a token "without end" is written to last in its JWT; the stored row decides.
const LONG_LIVED: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

/// 32 random bytes, base64url.
fn new_challenge() -> String {
    URL_SAFE_NO_PAD.encode(crate::random::bytes::<32>())
}

/// A Key credential's attestation as a face received it (base64url fields untouched).
#[derive(Debug, Clone)]
pub struct KeyAttestation {
    pub cred_id: String,
    pub client_data: String,
    pub attestation_data: String,
    pub name: Option<String>,
}

/// A Key credential's answer to a challenge, as received.
#[derive(Debug, Clone)]
pub struct KeyAssertion {
    pub cred_id: String,
    pub client_data: String,
    pub signature: String,
}

#[derive(Debug, Clone)]
pub struct RegistrationStarted {
    pub user: User,
    pub challenge: String,
    pub temporary_token: String,
    pub expires_at: Timestamp,
}

/// A login or user-action challenge, and the credentials that may answer it.
#[derive(Debug, Clone)]
pub struct ChallengeIssued {
    pub challenge: String,
    pub challenge_identifier: String,
    pub credentials: Vec<Credential>,
    pub expires_at: Timestamp,
}
