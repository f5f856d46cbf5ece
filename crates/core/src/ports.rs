//! What the core needs from the world around it. Stores run each decision of [`crate::rules`]
//! inside one transaction and apply its effects.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::code::CodePurpose;
use crate::credential::{Credential, PublicKey};
use crate::email::EmailAddress;
use crate::error::Result;
use crate::ids::{AppId, TokenId};
use crate::ids::{MessageId, OrgId, UserId};
use crate::model::{
    AccessToken, App, AttemptOutcome, CapturedMail, ClaimedMessage, CodeRecord, DeliveryOutcome,
    Event, MessageSummary, Org, User,
};
use crate::model::{Permission, RetiredSecret, SingleUse};
use crate::nonce::Nonce;
use crate::password::{Password, PasswordHash};
use crate::rules::{
    CodeIssued, CodeVerified, CompleteLogin, CreateServiceAccount, CreateUser,
    CredentialRegistered, EmailUpdated, IssueCode, LoginAttempt, LoginRecorded,
    PasswordResetRequested, RegisterCredential, RequestPasswordReset, ResetPassword, SendRecord,
    ServiceAccountCreated, SignUp, SignedUp, UpdateEmail, UserCreated, VerifyCode,
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub recipient: Option<String>,
    pub user_id: Option<UserId>,
    pub org_id: Option<OrgId>,
    pub limit: Option<u32>,
}

/// How a presented token is found: by the digest of a bearer secret, or by the id a signed
/// session names.
#[derive(Debug, Clone, Copy)]
pub enum TokenKey<'a> {
    Digest(&'a [u8; 32]),
    Id(&'a TokenId),
}

/// A counter of a part beside the core (the store, the outbox worker), read for the metrics
/// endpoint when it is scraped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterValue {
    pub name: &'static str,
    pub help: &'static str,
    pub value: u64,
}

impl CounterValue {
    pub const fn new(name: &'static str, help: &'static str, value: u64) -> Self {
        Self { name, help, value }
    }
}

/// Organisations, users, apps and tokens.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Reachable and able to answer a query.
    async fn ping(&self) -> Result<()>;
    /// The store's own counters for the metrics endpoint, read when the endpoint is scraped.
    fn counters(&self) -> Vec<CounterValue> {
        Vec::new()
    }
    async fn insert_org(&self, org: &Org) -> Result<()>;
    async fn org(&self, id: &OrgId) -> Result<Option<Org>>;
    /// Whether a password reset for an address without an account emails that address.
    async fn set_org_unknown_address_mail(&self, id: &OrgId, send: bool) -> Result<()>;
    async fn orgs(&self) -> Result<Vec<Org>>;
    async fn insert_app(&self, app: &App) -> Result<()>;
    async fn apps(&self, org: Option<&OrgId>) -> Result<Vec<App>>;
    async fn app(&self, id: &AppId) -> Result<Option<App>>;
    /// Gives the app a new secret; the one it replaces stays accepted as `retired`, if given.
    async fn set_app_secret(
        &self,
        id: &AppId,
        digest: &[u8; 32],
        retired: Option<&RetiredSecret>,
    ) -> Result<()>;
    async fn set_app_public_key(&self, id: &AppId, public_key: &PublicKey) -> Result<()>;
    async fn insert_token(&self, token: &AccessToken) -> Result<()>;
    async fn token_by_digest(&self, digest: &[u8; 32]) -> Result<Option<AccessToken>>;
    async fn token(&self, id: &TokenId) -> Result<Option<AccessToken>>;
    /// The token and the user it acts as, which every authenticated request needs together: a
    /// store that can read both at once overrides this.
    async fn token_with_user(
        &self,
        key: TokenKey<'_>,
    ) -> Result<Option<(AccessToken, Option<User>)>> {
        let token = match key {
            TokenKey::Digest(digest) => self.token_by_digest(digest).await?,
            TokenKey::Id(id) => self.token(id).await?,
        };
        let Some(token) = token else {
            return Ok(None);
        };
        let user = match &token.user_id {
            Some(id) => self.user(id).await?,
            None => None,
        };
        Ok(Some((token, user)))
    }
    /// The user's password, for accounts that have one.
    async fn password_hash(&self, user: &UserId) -> Result<Option<PasswordHash>>;
    /// What is kept of the emails of `purpose` to the cooldown subject, if any went.
    async fn sends(&self, subject: &str, purpose: CodePurpose) -> Result<Option<SendRecord>>;
    /// Failed logins of a cooldown subject, and when their window ends.
    async fn login_failures(&self, subject: &str) -> Result<Option<(u32, Timestamp)>>;
    async fn user(&self, id: &UserId) -> Result<Option<User>>;
    async fn user_by_username(&self, org: &OrgId, username: &EmailAddress) -> Result<Option<User>>;
    async fn users(&self, org: Option<&OrgId>) -> Result<Vec<User>>;
    async fn codes(&self, user: &UserId) -> Result<Vec<CodeRecord>>;
    async fn code(&self, id: &crate::ids::CodeId) -> Result<Option<CodeRecord>>;
    /// The user's Key credentials, oldest first.
    async fn credentials(&self, user: &UserId) -> Result<Vec<Credential>>;
    /// What the user may do when acting with a session token.
    async fn user_permissions(&self, user: &UserId) -> Result<Vec<Permission>>;
    async fn set_user_permissions(&self, user: &UserId, permissions: &[Permission]) -> Result<()>;
    async fn events(&self, aggregate_id: &str) -> Result<Vec<Event>>;
}

/// The transactions that carry the rules.
#[async_trait]
pub trait Registrations: Send + Sync {
    /// [`crate::rules::create_user`] in one transaction.
    async fn create_user(&self, command: CreateUser) -> Result<UserCreated>;
    /// [`crate::rules::issue_code`] in one transaction; commands for one cooldown subject run
    /// one at a time, whether or not its user exists. A nonce, when given, is recorded in
    /// that transaction (refused with `NonceReused` if seen before) and stays recorded even
    /// when the rules refuse the request.
    async fn issue_code(&self, command: IssueCode, nonce: Option<Nonce>) -> Result<CodeIssued>;
    /// [`crate::rules::verify_code`] in one transaction.
    async fn verify_code(&self, command: VerifyCode) -> Result<CodeVerified>;
    /// [`crate::rules::update_email`] in one transaction, loading the cooldown of
    /// [`UpdateEmail::cooldown_subject`] and, for a change, whether the new address is taken.
    async fn update_email(&self, command: UpdateEmail) -> Result<EmailUpdated>;
    /// [`crate::rules::create_service_account`] in one transaction.
    async fn create_service_account(
        &self,
        command: CreateServiceAccount,
    ) -> Result<ServiceAccountCreated>;
    /// [`crate::rules::register_credential`] in one transaction.
    async fn register_credential(
        &self,
        command: RegisterCredential,
    ) -> Result<CredentialRegistered>;
    /// Spends the login challenge and runs [`crate::rules::complete_login`] in one transaction.
    async fn complete_login(&self, command: CompleteLogin) -> Result<AccessToken>;
    /// [`crate::rules::sign_up`] in one transaction, loading the cooldown of the command's
    /// subject for email verification.
    async fn sign_up(&self, command: SignUp) -> Result<SignedUp>;
    /// [`crate::rules::record_login`] in one transaction, loading the user named by the
    /// attempt and the failures of its subject.
    async fn record_login(&self, command: LoginAttempt) -> Result<LoginRecorded>;
    /// [`crate::rules::request_password_reset`] in one transaction; commands for one cooldown
    /// subject run one at a time.
    async fn request_password_reset(
        &self,
        command: RequestPasswordReset,
    ) -> Result<PasswordResetRequested>;
    /// [`crate::rules::reset_password`] in one transaction.
    async fn reset_password(&self, command: ResetPassword) -> Result<User>;
    /// Replaces a live token's digest with `new_digest` if it is still `old_digest` (a refresh
    /// token's rotation); `false` when it is not, or the token is no longer live.
    async fn rotate_token(
        &self,
        id: &TokenId,
        old_digest: &[u8; 32],
        new_digest: &[u8; 32],
        now: Timestamp,
    ) -> Result<bool>;
    /// Records a single-use token as spent, refusing it (with [`SingleUse::reused`]) if it was.
    async fn spend(&self, single_use: SingleUse) -> Result<()>;
    /// Revokes one token, or with `token` `None` every session token of the user; returns how
    /// many were live.
    async fn revoke_tokens(
        &self,
        user: &UserId,
        token: Option<&TokenId>,
        now: Timestamp,
    ) -> Result<u64>;
    /// Forgets spent tokens that expired before `expired_before`: their signatures refuse them.
    async fn purge_spent(&self, expired_before: Timestamp) -> Result<u64>;
    /// Forgets nonces first seen before `seen_before`; their dates are out of the window then.
    async fn purge_nonces(&self, seen_before: Timestamp) -> Result<u64>;
}

/// The durable outbox and the delivery log.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Takes up to `limit` messages that are due (queued and due, or sending with a lapsed
    /// lease), marks them sending until `lease_until`, and counts the attempt. No two callers,
    /// on any instance, get the same message while its lease runs.
    async fn claim(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>>;
    /// Records how attempt number `attempt` ended; delivered and dropped messages lose their
    /// sealed content. Only the holder of the current claim may record: when the lease lapsed
    /// and the message was claimed again (or already finished), nothing is written and the
    /// answer is `false`.
    async fn finish(
        &self,
        id: &MessageId,
        attempt: u32,
        outcome: DeliveryOutcome,
        now: Timestamp,
    ) -> Result<bool>;
    /// Records several attempts as [`Self::finish`] records one, answering in their order. A
    /// store does it in one write, so that a batch of deliveries waits for one commit, not one
    /// each.
    async fn finish_all(&self, outcomes: Vec<AttemptOutcome>, now: Timestamp) -> Result<Vec<bool>> {
        let mut recorded = Vec::with_capacity(outcomes.len());
        for attempt in outcomes {
            recorded.push(
                self.finish(&attempt.id, attempt.attempt, attempt.outcome, now)
                    .await?,
            );
        }
        Ok(recorded)
    }
    async fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageSummary>>;
    /// Messages not yet finished (queued or sending).
    async fn depth(&self) -> Result<u64>;
    /// Earliest time a message becomes due: a queued one's next attempt, or the end of a
    /// sending one's lease.
    async fn next_due(&self) -> Result<Option<Timestamp>>;
}

/// The development inbox: where mail goes instead of SMTP.
#[async_trait]
pub trait Inbox: Send + Sync {
    async fn capture(&self, mail: &CapturedMail) -> Result<()>;
    async fn captured(&self, recipient: Option<&str>) -> Result<Vec<CapturedMail>>;
}

/// Everything a store provides.
pub trait Store: Directory + Registrations + Outbox + Inbox + 'static {}

impl<T: Directory + Registrations + Outbox + Inbox + 'static> Store for T {}

/// Hashes and checks passwords, which is slow on purpose: an implementation runs it where it
/// does not hold up other requests.
#[async_trait]
pub trait PasswordHashing: Send + Sync {
    async fn hash(&self, password: Password) -> Result<PasswordHash>;
    /// See [`crate::password::verify`].
    async fn verify(&self, password: Password, stored: Option<PasswordHash>) -> bool;
}

/// Hashes on the calling thread: for tests and tools.
#[derive(Debug, Default)]
pub struct InlineHashing;

#[async_trait]
impl PasswordHashing for InlineHashing {
    async fn hash(&self, password: Password) -> Result<PasswordHash> {
        crate::password::hash(&password)
    }

    async fn verify(&self, password: Password, stored: Option<PasswordHash>) -> bool {
        crate::password::verify(&password, stored.as_ref())
    }
}

/// Told when a message is enqueued, so a worker can start at once instead of at its next poll.
pub trait OutboxSignal: Send + Sync {
    fn message_enqueued(&self);
}

/// No one to tell.
#[derive(Debug, Default)]
pub struct NoSignal;

impl OutboxSignal for NoSignal {
    fn message_enqueued(&self) {}
}
