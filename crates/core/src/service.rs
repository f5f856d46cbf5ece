//! The use cases every face calls: they prepare what needs cryptography, run the rules in the
//! store, and tell the outbox worker.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::code::{CodeHasher, CodePurpose, CodeSecret};
use crate::email::EmailAddress;
use crate::error::{Error, Result};
use crate::ids::{AppId, CodeId, MessageId, OrgId, TokenId, UserId};
use crate::model::{AccessToken, App, Locale, Org, Permission, TokenKind, User, UserKind};
use crate::nonce::Nonce;
use crate::policy::Policy;
use crate::ports::{OutboxSignal, Store};
use crate::rules::{
    AppCheck, CodeIssued, CodeUse, CreateUser, IssueCode, PreparedCode, UserCreated, VerifyCode,
};
use crate::secret::{Sealer, ServerSecret, TokenSecret};

/// What an outbox message keeps sealed until delivery.
#[derive(Debug, Serialize, Deserialize)]
pub struct SealedContent {
    pub code: CodeSecret,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub org_id: OrgId,
    pub email: EmailAddress,
    pub kind: UserKind,
    pub locale: Option<Locale>,
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
    sealer: Sealer,
    policy: Policy,
    signal: Arc<dyn OutboxSignal>,
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
            sealer: secret.sealer(),
            policy,
            signal,
        }
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
        };
        self.store.insert_app(&app).await?;
        Ok(app)
    }

    /// A new token; the secret is returned once and only its digest is kept.
    pub async fn create_token(
        &self,
        org_id: &OrgId,
        kind: TokenKind,
        permissions: Vec<Permission>,
    ) -> Result<(AccessToken, TokenSecret)> {
        let secret = TokenSecret::generate();
        let token = AccessToken {
            id: TokenId::generate(),
            org_id: org_id.clone(),
            kind,
            digest: secret.digest(),
            permissions,
            created_at: self.clock.now(),
        };
        self.store.insert_token(&token).await?;
        Ok((token, secret))
    }

    /// A fresh registration code, hashed, with its sealed message.
    fn prepare_code(&self, purpose: CodePurpose) -> PreparedCode {
        let code_id = CodeId::generate();
        let message_id = MessageId::generate();
        let code = CodeSecret::generate_registration();
        let hash = self.hasher.hash(&code_id, purpose, &code);
        let content = serde_json::to_vec(&SealedContent { code })
            .unwrap_or_else(|_| unreachable!("a struct of strings serialises"));
        let sealed = self.sealer.seal(message_id.as_str(), &content);
        PreparedCode {
            code_id,
            hash,
            message_id,
            sealed,
        }
    }

    /// Creates a pending user and queues the registration email.
    pub async fn create_user(&self, new: NewUser) -> Result<UserCreated> {
        let command = CreateUser {
            user_id: UserId::generate(),
            cooldown_subject: self.hasher.cooldown_subject(&new.org_id, &new.email),
            org_id: new.org_id,
            username: new.email,
            kind: new.kind,
            locale: new.locale,
            code: self.prepare_code(CodePurpose::Registration),
            now: self.clock.now(),
            policy: self.policy,
        };
        let created = self.store.create_user(command).await?;
        self.signal.message_enqueued();
        Ok(created)
    }

    /// Issues a new registration code, voiding the previous one, and queues its email.
    /// Unknown and registered users cost the same work before the store answers.
    pub async fn resend_registration_code(&self, request: ResendCode) -> Result<CodeIssued> {
        let now = self.clock.now();
        if let Some(nonce) = &request.nonce {
            nonce.check(now, &self.policy)?;
        }
        let command = IssueCode {
            cooldown_subject: self
                .hasher
                .cooldown_subject(&request.org_id, &request.username),
            org_id: request.org_id,
            username: request.username,
            purpose: CodePurpose::Registration,
            locale: request.locale,
            app: request.app,
            code: self.prepare_code(CodePurpose::Registration),
            now,
            policy: self.policy,
        };
        let issued = self.store.issue_code(command, request.nonce).await?;
        self.signal.message_enqueued();
        Ok(issued)
    }

    /// Checks or uses a code (see [`CodeUse`]).
    pub async fn verify_code(
        &self,
        org_id: OrgId,
        username: EmailAddress,
        purpose: CodePurpose,
        submitted: CodeSecret,
        usage: CodeUse,
    ) -> Result<User> {
        let command = VerifyCode {
            org_id,
            username,
            purpose,
            submitted,
            usage,
            hasher: self.hasher.clone(),
            now: self.clock.now(),
            policy: self.policy,
        };
        self.store.verify_code(command).await
    }
}
