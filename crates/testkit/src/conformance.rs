//! The store conformance suite: one set of cases every store passes, written only against the
//! traits of [`enroll_core::ports`] and driven through the real core service
//! ([`enroll_core::service::Enroll`]) with a [`ManualClock`], so time moves only when a case
//! says so.
//!
//! A store crate runs the suite from an integration test:
//!
//! ```ignore
//! async fn fresh_store() -> Arc<dyn Store> { /* a new, empty store */ }
//! enroll_testkit::conformance_suite!(fresh_store);
//! ```
//!
//! Every case gets a fresh, empty store from the factory. Codes are read the way the mail
//! worker reads them: by claiming the outbox message and opening its sealed content.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use enroll_core::clock::{Clock, ManualClock, Timestamp};
use enroll_core::code::{CodePurpose, CodeSecret, CodeState};
use enroll_core::credential::PublicKey;
use enroll_core::email::EmailAddress;
use enroll_core::ids::{AppId, MessageId, OrgId, TokenId, UserId};
use enroll_core::model::{
    AttemptOutcome, CapturedMail, ClaimedMessage, DeliveryOutcome, Locale, MailTemplate,
    MessageState, MessageSummary, Org, Permission, Principal, TokenKind, User, UserKind, UserState,
};
use enroll_core::nonce::Nonce;
use enroll_core::policy::Policy;
use enroll_core::ports::{MessageFilter, NoSignal, Store, TokenKey};
use enroll_core::rules::{
    AppCheck, CodeIssued, CodeUse, CredentialRegistered, ServiceAccountCreated, UserKey,
};
use enroll_core::secret::{ServerSecret, TokenSecret};
use enroll_core::service::{
    CodeDelivery, EmailVerification, EmailWithCode, Enroll, NewHuman, NewUser, ResendCode,
    SealedContent, UserInvited,
};
use enroll_core::token::SignedRequest;
use enroll_core::url_template::UrlTemplate;
use enroll_core::{Error, Result, random};

use crate::keys::TestKey;

mod accounts;

pub use accounts::*;

/// How long a claim in these cases leases its messages.
pub const LEASE: Duration = Duration::from_secs(60);

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// The core over a store, with a clock the case moves by hand.
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub enroll: Enroll,
    /// Codes of the messages claimed so far, by message.
    opened: Mutex<HashMap<MessageId, CodeSecret>>,
    /// Links of the messages claimed so far that carry one made by the server.
    links: Mutex<HashMap<MessageId, String>>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("now", &self.now())
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// The core with default policy, a fresh secret, and a clock starting at the wall clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with(
            store,
            Arc::new(ManualClock::starting_now()),
            &ServerSecret::generate(),
        )
    }

    /// The core over `store` with a given clock and secret, so that several stores (server
    /// instances) can share them.
    pub fn with(store: Arc<dyn Store>, clock: Arc<ManualClock>, secret: &ServerSecret) -> Self {
        let enroll = Enroll::new(
            Arc::clone(&store),
            Arc::clone(&clock) as Arc<dyn Clock>,
            secret,
            Policy::default(),
            Arc::new(NoSignal),
        );
        Self {
            store,
            clock,
            enroll,
            opened: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Asks the store many things at once, so that a pooled store opens its connections
    /// before a race: otherwise the racers queue for the one connection a pool starts with,
    /// and run one after the other.
    pub async fn warm_up(&self) {
        let store = Arc::clone(&self.store);
        let pings = all_at_once(32, |_| {
            let store = Arc::clone(&store);
            async move { store.ping().await }
        })
        .await;
        for ping in pings {
            ping.expect("the store answers");
        }
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub async fn org(&self, name: &str) -> Org {
        self.enroll
            .create_org(name, locale("de"))
            .await
            .expect("an organisation is created")
    }

    pub async fn create(&self, org: &Org, address: &str) -> Result<UserInvited> {
        self.enroll
            .create_user(NewUser {
                org_id: org.id.clone(),
                email: email(address),
                kind: UserKind::CustomerEmployee,
                locale: None,
                user_action: None,
            })
            .await
    }

    /// A new pending user, whose registration email is queued.
    pub async fn user(&self, org: &Org, address: &str) -> UserInvited {
        self.create(org, address)
            .await
            .expect("the user is created")
    }

    pub async fn resend(&self, org_id: &OrgId, address: &str) -> Result<CodeIssued> {
        self.resend_with(org_id, address, None, None).await
    }

    pub async fn resend_with(
        &self,
        org_id: &OrgId,
        address: &str,
        nonce: Option<Nonce>,
        app: Option<AppCheck>,
    ) -> Result<CodeIssued> {
        self.enroll
            .resend_registration_code(ResendCode {
                org_id: org_id.clone(),
                username: email(address),
                locale: None,
                nonce,
                app,
            })
            .await
    }

    pub async fn verify(
        &self,
        org_id: &OrgId,
        address: &str,
        code: &str,
        usage: CodeUse,
    ) -> Result<User> {
        self.enroll
            .verify_code(
                UserKey::Username {
                    org_id: org_id.clone(),
                    username: email(address),
                },
                CodePurpose::Registration,
                CodeSecret::from_user_input(code),
                usage,
            )
            .await
            .map(|verified| verified.user)
    }

    /// The code a message carries, as the mail worker would read it.
    pub fn open(&self, message: &ClaimedMessage) -> CodeSecret {
        self.content(message)
            .code
            .expect("the message carries a code")
    }

    /// A message's sealed content, as the mail worker would read it.
    pub fn content(&self, message: &ClaimedMessage) -> SealedContent {
        let sealed = message
            .sealed
            .as_deref()
            .expect("a claimed message has its content");
        let content = self
            .enroll
            .sealer()
            .open(message.id.as_str(), sealed)
            .expect("the sealed content opens under the server secret");
        serde_json::from_slice(&content).expect("the sealed content is a SealedContent")
    }

    /// Claims every due message and keeps their codes.
    pub async fn claim_all(&self) -> Vec<ClaimedMessage> {
        let now = self.now();
        let claimed = self
            .store
            .claim(now, now.plus(LEASE), 1_000)
            .await
            .expect("messages are claimed");
        let mut opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        for message in &claimed {
            if message.sealed.is_some() {
                let content = self.content(message);
                if let Some(code) = content.code {
                    opened.insert(message.id.clone(), code);
                }
                if let Some(link) = content.link {
                    self.links
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(message.id.clone(), link);
                }
            }
        }
        claimed
    }

    /// The code the message `id` carries, claiming due messages if it was not read yet.
    pub async fn code(&self, id: &MessageId) -> String {
        let known = |this: &Self| {
            this.opened
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(id)
                .map(|code| code.expose().to_owned())
        };
        if let Some(code) = known(self) {
            return code;
        }
        self.claim_all().await;
        known(self).unwrap_or_else(|| panic!("message {id} was not due for delivery"))
    }

    /// The link the message `id` carries, claiming due messages if it was not read yet.
    pub async fn link(&self, id: &MessageId) -> String {
        let known = |this: &Self| {
            this.links
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(id)
                .cloned()
        };
        if let Some(link) = known(self) {
            return link;
        }
        self.claim_all().await;
        known(self).unwrap_or_else(|| panic!("message {id} was not due or has no link"))
    }

    pub async fn stored_user(&self, id: &UserId) -> User {
        self.store
            .user(id)
            .await
            .expect("the user is read")
            .expect("the user exists")
    }

    /// Checks the user's history: sequences 1..=n without gaps, n the user's sequence.
    /// Returns the event kinds in order.
    /// How many of the user's events are of `kind` (the history is checked on the way).
    pub async fn count_events(&self, id: &UserId, kind: &str) -> usize {
        self.history(id)
            .await
            .iter()
            .filter(|seen| *seen == kind)
            .count()
    }

    pub async fn history(&self, id: &UserId) -> Vec<String> {
        let user = self.stored_user(id).await;
        let events = self
            .store
            .events(id.as_str())
            .await
            .expect("events are read");
        let sequences: Vec<i64> = events.iter().map(|event| event.sequence).collect();
        let expected: Vec<i64> = (1..=user.sequence).collect();
        assert_eq!(
            sequences, expected,
            "events are numbered 1..=n and n is the user's sequence"
        );
        for event in &events {
            assert_eq!(event.aggregate_id, id.as_str());
            assert_eq!(event.org_id, user.org_id);
        }
        events.into_iter().map(|event| event.kind).collect()
    }

    pub async fn messages_to(&self, address: &str) -> Vec<MessageSummary> {
        self.store
            .messages(&MessageFilter {
                recipient: Some(email(address).as_str().to_owned()),
                ..MessageFilter::default()
            })
            .await
            .expect("messages are listed")
    }

    pub async fn all_messages(&self) -> Vec<MessageSummary> {
        self.store
            .messages(&MessageFilter::default())
            .await
            .expect("messages are listed")
    }

    pub async fn code_states(&self, user: &UserId) -> Vec<CodeState> {
        self.store
            .codes(user)
            .await
            .expect("codes are read")
            .into_iter()
            .map(|code| code.state)
            .collect()
    }
}

pub fn email(address: &str) -> EmailAddress {
    let address = if address.contains('@') {
        address.to_owned()
    } else {
        format!("{address}@example.com")
    };
    EmailAddress::parse(&address).expect("a valid address")
}

pub fn locale(tag: &str) -> Locale {
    Locale::parse(tag).expect("a valid locale")
}

/// A fresh nonce dated `date`.
pub fn nonce(date: Timestamp) -> Nonce {
    Nonce {
        key: format!("nonce-{}", random::characters(b"0123456789abcdef", 24)),
        date,
    }
}

/// A code of the right shape that is not the one sent.
const WRONG_CODE: &str = "2222-3333-4444-5555";

fn ids(messages: &[MessageSummary]) -> Vec<MessageId> {
    messages.iter().map(|message| message.id.clone()).collect()
}

/// Runs `count` tasks, made by `task(index)`, released together; returns their answers in
/// index order.
pub async fn all_at_once<T, F, Fut>(count: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(count));
    let mut handles = Vec::with_capacity(count);
    for index in 0..count {
        let barrier = Arc::clone(&barrier);
        let work = task(index);
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            work.await
        }));
    }
    let mut results = Vec::with_capacity(count);
    for handle in handles {
        results.push(handle.await.expect("a concurrent task completes"));
    }
    results
}

pub fn describe<T>(result: &Result<T>) -> String {
    match result {
        Ok(_) => "Ok".to_owned(),
        Err(error) => format!("{error:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Directory round trips
// ---------------------------------------------------------------------------------------------

pub async fn orgs_round_trip(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    h.store.ping().await.expect("the store answers");
    assert!(
        h.store.orgs().await.expect("orgs are listed").is_empty(),
        "the store starts empty"
    );
    let acme = h.org("Acme").await;
    h.advance(SECOND);
    let globex = h
        .enroll
        .create_org("Globex", locale("fr-CH"))
        .await
        .expect("an organisation is created");
    assert_eq!(
        h.store.org(&acme.id).await.expect("read"),
        Some(acme.clone())
    );
    assert_eq!(
        h.store.org(&globex.id).await.expect("read"),
        Some(globex.clone())
    );
    assert_eq!(globex.default_locale.as_str(), "fr-CH");
    assert_eq!(h.store.org(&OrgId::generate()).await.expect("read"), None);
    let mut listed = h.store.orgs().await.expect("orgs are listed");
    listed.sort_by_key(|org| org.created_at);
    assert_eq!(listed, vec![acme, globex]);
}

pub async fn apps_round_trip(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let globex = h.org("Globex").await;
    let custom = Permission::parse("Custom:Thing.read").expect("a valid permission");
    let app = h
        .enroll
        .create_app(
            &acme.id,
            "legacy",
            vec![Permission::AUTH_USERS_CREATE, custom],
        )
        .await
        .expect("an app is created");
    let bare = h
        .enroll
        .create_app(&globex.id, "bare", Vec::new())
        .await
        .expect("an app is created");
    assert_eq!(
        h.store.apps(Some(&acme.id)).await.expect("apps"),
        vec![app.clone()]
    );
    assert_eq!(
        h.store.apps(Some(&globex.id)).await.expect("apps"),
        vec![bare.clone()]
    );
    let all = h.store.apps(None).await.expect("apps");
    assert_eq!(all.len(), 2);
    assert!(all.contains(&app) && all.contains(&bare));
    assert!(
        h.store
            .apps(Some(&OrgId::generate()))
            .await
            .expect("apps")
            .is_empty()
    );
    let secret = h
        .enroll
        .issue_app_secret(&app.id, Duration::ZERO)
        .await
        .expect("a secret is set");
    let stored = h.store.app(&app.id).await.expect("an app lookup");
    assert_eq!(
        stored.and_then(|app| app.secret_digest),
        Some(secret.digest())
    );
    assert!(
        h.enroll
            .check_app(&app.id, Some(secret.expose()))
            .await
            .is_ok()
    );
    assert!(matches!(
        h.enroll.check_app(&app.id, None).await,
        Err(Error::UnknownApp)
    ));
    assert!(matches!(
        h.enroll
            .issue_app_secret(&AppId::generate(), Duration::ZERO)
            .await,
        Err(Error::UnknownApp)
    ));
    // A rotation keeps the replaced secret for its overlap (reliability target 18).
    let rotated = h
        .enroll
        .issue_app_secret(&app.id, Duration::from_secs(60))
        .await
        .expect("a rotation");
    for (presented, why) in [
        (&rotated, "the new secret"),
        (&secret, "the old one, for now"),
    ] {
        assert!(
            h.enroll
                .check_app(&app.id, Some(presented.expose()))
                .await
                .is_ok(),
            "{why}"
        );
    }
    h.clock.advance(Duration::from_secs(61));
    assert!(matches!(
        h.enroll.check_app(&app.id, Some(secret.expose())).await,
        Err(Error::UnknownApp)
    ));
    assert!(
        h.enroll
            .check_app(&app.id, Some(rotated.expose()))
            .await
            .is_ok()
    );
    let replaced = h
        .enroll
        .issue_app_secret(&app.id, Duration::ZERO)
        .await
        .expect("a rotation without overlap");
    assert!(matches!(
        h.enroll.check_app(&app.id, Some(rotated.expose())).await,
        Err(Error::UnknownApp)
    ));
    assert!(
        h.enroll
            .check_app(&app.id, Some(replaced.expose()))
            .await
            .is_ok()
    );
    let key = PublicKey::from_pem(&TestKey::ed25519().public_pem).expect("an Ed25519 key");
    h.enroll
        .set_app_public_key(&app.id, key.clone())
        .await
        .expect("a key is set");
    let stored = h.store.app(&app.id).await.expect("an app lookup");
    assert_eq!(stored.and_then(|app| app.public_key), Some(key));
    let p256 = PublicKey::from_pem(&TestKey::p256().public_pem).expect("a P-256 key");
    assert!(matches!(
        h.enroll.set_app_public_key(&app.id, p256).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        h.enroll
            .create_app(&OrgId::generate(), "nowhere", Vec::new())
            .await,
        Err(Error::OrgNotFound)
    ));
}

/// The bootstrap shape: a service account with a key and a long-lived admin token.
async fn service_account(h: &Harness, org: &Org) -> (ServiceAccountCreated, TokenSecret) {
    h.enroll
        .create_service_account(
            &org.id,
            email("admin"),
            PublicKey::from_pem(&TestKey::p256().public_pem).expect("a P-256 key"),
            Permission::all(),
        )
        .await
        .expect("a service account is created")
}

pub async fn tokens_round_trip(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let (admin, admin_secret) = service_account(&h, &acme).await;
    assert_eq!(admin.user.state, UserState::Registered);
    assert_eq!(admin.user.kind, UserKind::ServiceAccount);
    let (personal, personal_secret) = h
        .enroll
        .create_token(
            &admin.user,
            TokenKind::Personal,
            vec![Permission::USER_WRITE],
        )
        .await
        .expect("a token is created");
    let found = |secret: &TokenSecret| {
        let store = Arc::clone(&h.store);
        let digest = secret.digest();
        async move {
            store
                .token_by_digest(&digest)
                .await
                .expect("a token lookup")
        }
    };
    assert_eq!(found(&admin_secret).await, Some(admin.token.clone()));
    assert_eq!(found(&personal_secret).await, Some(personal.clone()));
    assert_eq!(found(&TokenSecret::generate()).await, None);

    // The token and the user it acts as, read together, by digest or by id.
    let with_user = h
        .store
        .token_with_user(TokenKey::Digest(&personal_secret.digest()))
        .await
        .expect("a token lookup");
    assert_eq!(
        with_user,
        Some((personal.clone(), Some(admin.user.clone())))
    );
    let with_user = h
        .store
        .token_with_user(TokenKey::Id(&admin.token.id))
        .await
        .expect("a token lookup");
    assert_eq!(
        with_user,
        Some((admin.token.clone(), Some(admin.user.clone())))
    );
    for unknown in [
        TokenKey::Digest(&TokenSecret::generate().digest()),
        TokenKey::Id(&TokenId::generate()),
    ] {
        let with_user = h.store.token_with_user(unknown).await;
        assert_eq!(with_user.expect("a token lookup"), None);
    }

    let caller = h
        .enroll
        .authenticate(admin_secret.expose())
        .await
        .expect("the admin token authenticates");
    assert_eq!(caller.user, admin.user);
    assert_eq!(caller.permissions, Permission::all());
    let caller = h
        .enroll
        .authenticate(personal_secret.expose())
        .await
        .expect("a personal token authenticates");
    assert_eq!(caller.permissions, [Permission::USER_WRITE]);
    for garbage in ["", "enr_x", "a.b.c", TokenSecret::generate().expose()] {
        assert!(matches!(
            h.enroll.authenticate(garbage).await,
            Err(Error::Unauthenticated)
        ));
    }
    h.enroll.logout(&caller, false).await.expect("revoked");
    assert!(matches!(
        h.enroll.authenticate(personal_secret.expose()).await,
        Err(Error::Unauthenticated)
    ));
    assert!(
        h.enroll.authenticate(admin_secret.expose()).await.is_ok(),
        "revoking one token leaves the others"
    );
}

/// A pending user, registered with `key` through the two registration steps.
async fn register(h: &Harness, org: &Org, address: &str, key: &TestKey) -> CredentialRegistered {
    let created = h.user(org, address).await;
    let code = h.code(&created.message_id).await;
    let started = h
        .enroll
        .start_registration(
            org.id.clone(),
            email(address),
            CodeSecret::from_user_input(&code),
        )
        .await
        .expect("the code starts a registration");
    h.enroll
        .complete_registration(&started.temporary_token, key.attest(&started.challenge))
        .await
        .expect("the key registers")
}

async fn session(h: &Harness, org: &Org, address: &str, key: &TestKey) -> Principal {
    h.enroll
        .authenticate(&session_token(h, org, address, key).await)
        .await
        .expect("the session token authenticates")
}

pub async fn a_key_registers_a_user_once(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    let code = h.code(&created.message_id).await;
    let wrong = h
        .enroll
        .start_registration(
            acme.id.clone(),
            email("jane"),
            CodeSecret::from_user_input("AAAA-BBBB-CCCC-DDDD"),
        )
        .await;
    assert!(matches!(wrong, Err(Error::CodeInvalid)));
    let unknown = h
        .enroll
        .start_registration(
            acme.id.clone(),
            email("nobody"),
            CodeSecret::from_user_input(&code),
        )
        .await;
    assert!(
        matches!(unknown, Err(Error::CodeInvalid)),
        "an unknown user answers as a wrong code"
    );
    let started = h
        .enroll
        .start_registration(
            acme.id.clone(),
            email("jane"),
            CodeSecret::from_user_input(&code),
        )
        .await
        .expect("the code starts a registration");
    let key = TestKey::ed25519();
    // Made for another challenge: refused, and nothing is written.
    assert!(matches!(
        h.enroll
            .complete_registration(&started.temporary_token, key.attest("another challenge"))
            .await,
        Err(Error::SignatureInvalid)
    ));
    assert!(
        h.store
            .credentials(&created.user.id)
            .await
            .expect("listed")
            .is_empty()
    );
    let registered = h
        .enroll
        .complete_registration(&started.temporary_token, key.attest(&started.challenge))
        .await
        .expect("the key registers");
    assert_eq!(registered.user.state, UserState::Registered);
    assert_eq!(h.stored_user(&created.user.id).await, registered.user);
    assert_eq!(h.code_states(&created.user.id).await, [CodeState::Used]);
    assert_eq!(
        h.store.credentials(&created.user.id).await.expect("listed"),
        std::slice::from_ref(&registered.credential)
    );
    assert_eq!(
        h.count_events(&created.user.id, "user.credential.added")
            .await,
        1
    );
    assert_eq!(h.count_events(&created.user.id, "user.registered").await, 1);
    assert!(matches!(
        h.enroll
            .complete_registration(
                &started.temporary_token,
                TestKey::p256().attest(&started.challenge)
            )
            .await,
        Err(Error::AlreadyRegistered)
    ));
    assert!(matches!(
        h.enroll
            .complete_registration("not-a-token", key.attest(&started.challenge))
            .await,
        Err(Error::Unauthenticated)
    ));
    h.history(&created.user.id).await;
}

pub async fn a_resend_voids_a_started_registration(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    let code = h.code(&created.message_id).await;
    let started = h
        .enroll
        .start_registration(
            acme.id.clone(),
            email("jane"),
            CodeSecret::from_user_input(&code),
        )
        .await
        .expect("started");
    h.advance(MINUTE + SECOND);
    h.resend(&acme.id, "jane").await.expect("a new code");
    assert!(matches!(
        h.enroll
            .complete_registration(
                &started.temporary_token,
                TestKey::p256().attest(&started.challenge)
            )
            .await,
        Err(Error::CodeInvalid)
    ));
    assert_eq!(
        h.stored_user(&created.user.id).await.state,
        UserState::Pending
    );
    assert!(
        h.store
            .credentials(&created.user.id)
            .await
            .expect("listed")
            .is_empty()
    );
}

pub async fn login_challenges_and_user_actions_are_spent_once(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    let key = TestKey::p256();
    register(&h, &acme, "jane", &key).await;
    let issued = h
        .enroll
        .start_login(&acme.id, &email("jane"))
        .await
        .expect("a login challenge");
    assert_eq!(issued.credentials.len(), 1);
    assert!(matches!(
        h.enroll
            .complete_login(
                &issued.challenge_identifier,
                key.impostor().assert(&issued.challenge)
            )
            .await,
        Err(Error::SignatureInvalid)
    ));
    let logins = futures_like_join(32, |_| {
        let (h, identifier, assertion) = (
            Arc::clone(&h),
            issued.challenge_identifier.clone(),
            key.assert(&issued.challenge),
        );
        async move { h.enroll.complete_login(&identifier, assertion).await }
    })
    .await;
    assert_eq!(logins.iter().filter(|login| login.is_ok()).count(), 1);
    assert!(
        logins
            .iter()
            .all(|login| matches!(login, Ok(_) | Err(Error::ChallengeInvalid)))
    );

    let caller = session(&h, &acme, "jane", &key).await;
    h.enroll
        .grant(
            &caller.user.id,
            &[
                Permission::AUTH_USERS_CREATE,
                Permission::AUTH_TYPES_EMPLOYEE,
            ],
        )
        .await
        .expect("granted");
    let caller = session(&h, &acme, "jane", &key).await;
    let request = SignedRequest::new("POST", "/auth/users", b"{}");
    let challenge = h
        .enroll
        .start_user_action(&caller, request.clone())
        .await
        .expect("an action challenge");
    let user_action = h
        .enroll
        .sign_user_action(
            &caller,
            &challenge.challenge_identifier,
            key.assert(&challenge.challenge),
        )
        .await
        .expect("signed");
    assert!(matches!(
        h.enroll
            .sign_user_action(
                &caller,
                &challenge.challenge_identifier,
                key.assert(&challenge.challenge)
            )
            .await,
        Err(Error::ChallengeInvalid)
    ));
    assert!(matches!(
        h.enroll.check_user_action(
            &caller,
            Some(&user_action),
            &SignedRequest::new("POST", "/auth/users", b"{ }")
        ),
        Err(Error::UserActionInvalid)
    ));
    let spend = h
        .enroll
        .check_user_action(&caller, Some(&user_action), &request)
        .expect("the action matches its request");
    let creates = futures_like_join(32, |index| {
        let (h, org_id, spend) = (Arc::clone(&h), acme.id.clone(), spend.clone());
        async move {
            h.enroll
                .create_user(NewUser {
                    org_id,
                    email: email(&format!("new{index}")),
                    kind: UserKind::CustomerEmployee,
                    locale: None,
                    user_action: Some(spend),
                })
                .await
        }
    })
    .await;
    assert_eq!(creates.iter().filter(|created| created.is_ok()).count(), 1);
    assert!(
        creates
            .iter()
            .all(|created| matches!(created, Ok(_) | Err(Error::UserActionReused)))
    );
    assert_eq!(
        h.store.users(Some(&acme.id)).await.expect("listed").len(),
        2
    );
}

async fn session_token(h: &Harness, org: &Org, address: &str, key: &TestKey) -> String {
    let issued = h
        .enroll
        .start_login(&org.id, &email(address))
        .await
        .expect("a login challenge");
    let (_, secret) = h
        .enroll
        .complete_login(&issued.challenge_identifier, key.assert(&issued.challenge))
        .await
        .expect("a login");
    secret.expose().to_owned()
}

/// Runs `count` futures made by `make` at once, on the runtime's threads.
async fn futures_like_join<F, T>(count: usize, make: impl Fn(usize) -> F) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..count).map(|index| tokio::spawn(make(index))).collect();
    let mut out = Vec::with_capacity(count);
    for task in tasks {
        out.push(task.await.expect("the task finishes"));
    }
    out
}

pub async fn permissions_follow_the_user_of_a_session(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let key = TestKey::ed25519();
    register(&h, &acme, "jane", &key).await;
    let caller = session(&h, &acme, "jane", &key).await;
    assert!(caller.permissions.is_empty());
    let needed = [
        Permission::AUTH_USERS_CREATE,
        Permission::AUTH_TYPES_EMPLOYEE,
    ];
    let Err(Error::PermissionDenied {
        principal,
        permission,
    }) = Enroll::require(&caller, &needed)
    else {
        panic!("a new employee may not create users");
    };
    assert_eq!(principal, format!("CustomerEmployee {}", caller.user.id));
    assert_eq!(permission, Permission::AUTH_USERS_CREATE);
    h.enroll
        .grant(&caller.user.id, &[Permission::AUTH_USERS_CREATE])
        .await
        .expect("granted");
    let caller = h
        .enroll
        .authenticate(&session_token(&h, &acme, "jane", &key).await)
        .await
        .expect("a session");
    assert!(matches!(
        Enroll::require(&caller, &needed),
        Err(Error::PermissionDenied { permission, .. }) if permission == Permission::AUTH_TYPES_EMPLOYEE
    ));
    h.enroll
        .grant(&caller.user.id, &[Permission::AUTH_TYPES_EMPLOYEE])
        .await
        .expect("granted");
    let caller = h
        .enroll
        .authenticate(&session_token(&h, &acme, "jane", &key).await)
        .await
        .expect("a session");
    assert!(Enroll::require(&caller, &needed).is_ok());
    let (_, admin) = service_account(&h, &acme).await;
    let admin = h.enroll.authenticate(admin.expose()).await.expect("admin");
    assert_eq!(
        admin.describe(),
        format!("CustomerEmployee {}", admin.user.id)
    );
    assert!(Enroll::require(&admin, &Permission::all()).is_ok());
    // Logging out every session ends them all.
    let other = session(&h, &acme, "jane", &key).await;
    h.enroll.logout(&caller, true).await.expect("logged out");
    for token in [&caller, &other] {
        assert!(
            !h.store
                .token_by_digest(&token.token.digest)
                .await
                .expect("a lookup")
                .expect("kept")
                .is_live(h.now())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------------

pub async fn create_user_issues_one_code_and_one_message(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let other = h.org("Globex").await;
    let created_at = h.now();
    let created = h.user(&acme, "jane").await;
    let user = &created.user;
    assert_eq!(user.state, UserState::Pending);
    assert_eq!(user.username, email("jane"));
    assert_eq!(user.org_id, acme.id);
    assert_eq!(h.stored_user(&user.id).await, *user);
    assert_eq!(
        h.store
            .user_by_username(&acme.id, &email("jane"))
            .await
            .expect("read"),
        Some(user.clone())
    );
    assert_eq!(
        h.store
            .user_by_username(&other.id, &email("jane"))
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        h.store.users(Some(&acme.id)).await.expect("users"),
        vec![user.clone()]
    );
    assert!(
        h.store
            .users(Some(&other.id))
            .await
            .expect("users")
            .is_empty()
    );
    assert_eq!(h.store.user(&UserId::generate()).await.expect("read"), None);

    let codes = h.store.codes(&user.id).await.expect("codes");
    assert_eq!(codes.len(), 1, "one code");
    assert_eq!(codes[0].state, CodeState::Active);
    assert_eq!(codes[0].purpose, CodePurpose::Registration);
    assert_eq!(codes[0].failed_attempts, 0);
    assert_eq!(codes[0].user_id, user.id);
    assert_eq!(codes[0].created_at, created_at);
    assert_eq!(
        codes[0].expires_at,
        created_at.plus(Duration::from_secs(24 * 3600))
    );

    let kinds = h.history(&user.id).await;
    assert_eq!(kinds, ["user.created", "user.code.issued"]);
    let events = h.store.events(user.id.as_str()).await.expect("events");
    assert_eq!(
        events[1].payload["messageId"].as_str(),
        Some(created.message_id.as_str()),
        "event payloads round-trip"
    );
    assert_eq!(events[1].at, created_at);

    let messages = h.all_messages().await;
    assert_eq!(messages.len(), 1, "one message");
    let message = &messages[0];
    assert_eq!(message.id, created.message_id);
    assert_eq!(message.state, MessageState::Queued);
    assert!(message.has_content);
    assert_eq!(message.attempts, 0);
    assert_eq!(message.recipient, email("jane"));
    assert_eq!(message.org_id, acme.id);
    assert_eq!(message.user_id.as_ref(), Some(&user.id));
    assert_eq!(message.template, MailTemplate::Registration);
    assert_eq!(message.locale.as_str(), "de", "the org's default locale");
    assert_eq!(message.created_at, created_at);
    assert_eq!(message.next_attempt_at, created_at);
    assert_eq!(message.sent_at, None);
    assert_eq!(message.last_error, None);
    assert_eq!(h.store.depth().await.expect("depth"), 1);

    let code = h.code(&created.message_id).await;
    let checked = h
        .verify(&acme.id, "jane", &code, CodeUse::Check)
        .await
        .expect("the code checks");
    assert_eq!(
        checked.state,
        UserState::Pending,
        "a check does not register"
    );
    assert_eq!(
        h.code_states(&user.id).await,
        [CodeState::Active],
        "a check leaves the code"
    );

    let registered = h
        .verify(&acme.id, "jane", &code.to_lowercase(), CodeUse::Consume)
        .await
        .expect("the emailed code verifies");
    assert_eq!(registered.state, UserState::Registered);
    assert_eq!(h.stored_user(&user.id).await, registered);
    assert_eq!(h.code_states(&user.id).await, [CodeState::Used]);
    let kinds = h.history(&user.id).await;
    assert_eq!(kinds.last().map(String::as_str), Some("user.registered"));
    assert!(kinds.iter().any(|kind| kind == "user.code.verified"));
}

pub async fn usernames_are_unique_per_org(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let globex = h.org("Globex").await;
    let first = h.user(&acme, "jane").await;
    h.advance(2 * MINUTE);
    assert!(matches!(
        h.create(&acme, "jane").await,
        Err(Error::UserExists)
    ));
    assert_eq!(
        h.stored_user(&first.user.id).await,
        first.user,
        "the first user is untouched"
    );
    assert_eq!(
        h.all_messages().await.len(),
        1,
        "a refused create sends nothing"
    );
    assert_eq!(h.store.codes(&first.user.id).await.expect("codes").len(), 1);
    let elsewhere = h.user(&globex, "jane").await;
    assert_ne!(elsewhere.user.id, first.user.id);
    assert_eq!(h.store.users(None).await.expect("users").len(), 2);
    assert!(matches!(
        h.enroll
            .create_user(NewUser {
                org_id: OrgId::generate(),
                email: email("joe"),
                kind: UserKind::EndUser,
                locale: None,
                user_action: None,
            })
            .await,
        Err(Error::OrgNotFound)
    ));
    assert_eq!(h.store.users(None).await.expect("users").len(), 2);
}

pub async fn concurrent_creates_admit_one(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    h.warm_up().await;
    let results = all_at_once(10, |_| {
        let h = Arc::clone(&h);
        let acme = acme.clone();
        async move { h.create(&acme, "jane").await }
    })
    .await;
    let created: Vec<&UserInvited> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one create succeeds: {:?}",
        results.iter().map(describe).collect::<Vec<_>>()
    );
    for result in &results {
        assert!(
            matches!(result, Ok(_) | Err(Error::UserExists)),
            "the others are told the user exists, got {}",
            describe(result)
        );
    }
    let users = h.store.users(Some(&acme.id)).await.expect("users");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id, created[0].user.id);
    assert_eq!(h.all_messages().await.len(), 1, "one message");
    assert_eq!(
        h.store.codes(&users[0].id).await.expect("codes").len(),
        1,
        "one code"
    );
    h.history(&users[0].id).await;
}

pub async fn resend_supersedes_the_previous_code(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    let first = h.code(&created.message_id).await;
    h.advance(MINUTE + SECOND);
    let issued = h
        .resend(&acme.id, "jane")
        .await
        .expect("a new code is issued");
    assert_ne!(issued.message_id, created.message_id);
    assert_eq!(issued.user.id, created.user.id);
    assert_eq!(
        h.stored_user(&created.user.id).await,
        issued.user,
        "the user row is updated"
    );
    let codes = h.store.codes(&created.user.id).await.expect("codes");
    assert_eq!(codes.len(), 2);
    assert_eq!(
        codes[0].state,
        CodeState::Superseded,
        "the old code is void"
    );
    assert_eq!(codes[1].state, CodeState::Active);
    assert_eq!(codes[1].id, issued.code_id);
    assert_eq!(
        codes
            .iter()
            .filter(|code| code.state == CodeState::Active)
            .count(),
        1,
        "exactly one active code"
    );
    assert_eq!(
        ids(&h.messages_to("jane").await),
        [issued.message_id.clone(), created.message_id.clone()],
        "newest first"
    );
    let second = h.code(&issued.message_id).await;
    assert_ne!(first, second);
    assert!(matches!(
        h.verify(&acme.id, "jane", &first, CodeUse::Consume).await,
        Err(Error::CodeInvalid)
    ));
    let user = h
        .verify(&acme.id, "jane", &second, CodeUse::Consume)
        .await
        .expect("the new code verifies");
    assert_eq!(user.state, UserState::Registered);
    assert_eq!(
        h.count_events(&created.user.id, "user.code.issued").await,
        2
    );
}

pub async fn cooldown_refuses_with_the_time_left(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    h.advance(Duration::from_secs(20));
    match h.resend(&acme.id, "jane").await {
        Err(Error::Cooldown { retry_after }) => assert!(
            retry_after <= Duration::from_secs(40) && retry_after >= Duration::from_secs(39),
            "about 40 s are left, got {retry_after:?}"
        ),
        other => panic!("expected a cooldown, got {}", describe(&other)),
    }
    assert_eq!(
        h.all_messages().await.len(),
        1,
        "a refused resend sends nothing"
    );
    assert_eq!(h.code_states(&created.user.id).await, [CodeState::Active]);
    h.advance(Duration::from_secs(41));
    h.resend(&acme.id, "jane")
        .await
        .expect("the cooldown is over");
    match h.resend(&acme.id, "jane").await {
        Err(Error::Cooldown { retry_after }) => {
            assert!(
                retry_after > Duration::from_secs(59) && retry_after <= MINUTE,
                "{retry_after:?}"
            );
        }
        other => panic!("a resend starts a new cooldown, got {}", describe(&other)),
    }
    assert_eq!(h.all_messages().await.len(), 2);
    h.history(&created.user.id).await;
}

pub async fn concurrent_resends_admit_one(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    h.advance(MINUTE + SECOND);
    h.warm_up().await;
    let results = all_at_once(50, |_| {
        let h = Arc::clone(&h);
        let org = acme.id.clone();
        async move { h.resend(&org, "jane").await }
    })
    .await;
    let issued: Vec<&CodeIssued> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        issued.len(),
        1,
        "exactly one resend succeeds: {:?}",
        results.iter().map(describe).collect::<Vec<_>>()
    );
    let cooled = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Cooldown { .. })))
        .count();
    assert_eq!(cooled, 49, "the others meet the cooldown");
    assert_eq!(
        h.code_states(&created.user.id).await,
        [CodeState::Superseded, CodeState::Active],
        "one new code"
    );
    let messages = h.all_messages().await;
    assert_eq!(messages.len(), 2, "one new message");
    assert_eq!(messages[0].id, issued[0].message_id);
    let code = h.code(&issued[0].message_id).await;
    h.verify(&acme.id, "jane", &code, CodeUse::Consume)
        .await
        .expect("the new code verifies");
    h.history(&created.user.id).await;
}

/// The cooldown holds for an address without an account too, whatever the concurrency, so a
/// burst of resends does not tell a known address from an unknown one.
pub async fn concurrent_resends_to_an_unknown_address_meet_the_cooldown(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    h.warm_up().await;
    let results = all_at_once(20, |_| {
        let h = Arc::clone(&h);
        let org = acme.id.clone();
        async move { h.resend(&org, "nobody").await }
    })
    .await;
    let not_found = results
        .iter()
        .filter(|r| matches!(r, Err(Error::UserNotFound)))
        .count();
    let cooled = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Cooldown { .. })))
        .count();
    assert_eq!(
        (not_found, cooled),
        (1, 19),
        "one answer, then the cooldown: {:?}",
        results.iter().map(describe).collect::<Vec<_>>()
    );
    assert!(h.all_messages().await.is_empty());
}

pub async fn wrong_codes_exhaust_the_code(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    let code = h.code(&created.message_id).await;
    for attempt in 1..=5_u32 {
        assert!(
            matches!(
                h.verify(&acme.id, "jane", WRONG_CODE, CodeUse::Consume)
                    .await,
                Err(Error::CodeInvalid)
            ),
            "wrong attempt {attempt}"
        );
        let codes = h.store.codes(&created.user.id).await.expect("codes");
        assert_eq!(
            codes[0].failed_attempts, attempt,
            "a refused attempt is still counted"
        );
    }
    assert_eq!(
        h.code_states(&created.user.id).await,
        [CodeState::Exhausted]
    );
    assert!(matches!(
        h.verify(&acme.id, "jane", &code, CodeUse::Consume).await,
        Err(Error::CodeExhausted)
    ));
    assert_eq!(
        h.stored_user(&created.user.id).await.state,
        UserState::Pending
    );
    let kinds = h.history(&created.user.id).await;
    assert_eq!(kinds.len(), 2 + 5, "each wrong attempt is an event");
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("user.code.exhausted")
    );

    h.advance(MINUTE + SECOND);
    let issued = h
        .resend(&acme.id, "jane")
        .await
        .expect("a new code after exhaustion");
    assert_eq!(
        h.code_states(&created.user.id).await,
        [CodeState::Exhausted, CodeState::Active]
    );
    let fresh = h.code(&issued.message_id).await;
    h.verify(&acme.id, "jane", &fresh, CodeUse::Consume)
        .await
        .expect("the new code verifies");
}

pub async fn codes_expire(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    let code = h.code(&created.message_id).await;
    h.advance(Duration::from_secs(24 * 3600));
    assert!(matches!(
        h.verify(&acme.id, "jane", &code, CodeUse::Consume).await,
        Err(Error::CodeExpired)
    ));
    assert_eq!(
        h.code_states(&created.user.id).await,
        [CodeState::Expired],
        "the expiry is stored"
    );
    assert!(matches!(
        h.verify(&acme.id, "jane", &code, CodeUse::Consume).await,
        Err(Error::CodeExpired)
    ));
    assert_eq!(
        h.stored_user(&created.user.id).await.state,
        UserState::Pending
    );
    h.history(&created.user.id).await;

    // The lease of the first claim has long run out: the message comes back, and shows why it
    // should not be sent.
    let claimed = h.claim_all().await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].code_state, Some(CodeState::Expired));
    assert_eq!(claimed[0].attempts, 2);

    let issued = h
        .resend(&acme.id, "jane")
        .await
        .expect("a new code after expiry");
    let fresh = h.code(&issued.message_id).await;
    h.verify(&acme.id, "jane", &fresh, CodeUse::Consume)
        .await
        .expect("the new code verifies");
}

pub async fn registered_users_get_no_code(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    let code = h.code(&created.message_id).await;
    h.verify(&acme.id, "jane", &code, CodeUse::Consume)
        .await
        .expect("registered");
    h.advance(MINUTE + SECOND);
    assert!(matches!(
        h.resend(&acme.id, "jane").await,
        Err(Error::AlreadyRegistered)
    ));
    assert_eq!(h.all_messages().await.len(), 1, "no new message");
    assert_eq!(
        h.code_states(&created.user.id).await,
        [CodeState::Used],
        "no new code"
    );
    assert!(
        matches!(
            h.resend(&acme.id, "jane").await,
            Err(Error::Cooldown { .. })
        ),
        "the refusal still started a cooldown, as for any address"
    );
    assert!(matches!(
        h.verify(&acme.id, "jane", &code, CodeUse::Consume).await,
        Err(Error::AlreadyRegistered)
    ));
    h.history(&created.user.id).await;
}

pub async fn unknown_users_and_orgs_are_not_found(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let globex = h.org("Globex").await;
    h.user(&acme, "jane").await;
    h.advance(MINUTE + SECOND);
    assert!(matches!(
        h.resend(&acme.id, "nobody").await,
        Err(Error::UserNotFound)
    ));
    assert!(matches!(
        h.verify(&acme.id, "nobody", WRONG_CODE, CodeUse::Consume)
            .await,
        Err(Error::UserNotFound)
    ));
    assert!(matches!(
        h.resend(&OrgId::generate(), "jane").await,
        Err(Error::UserNotFound)
    ));
    assert!(matches!(
        h.verify(&OrgId::generate(), "jane", WRONG_CODE, CodeUse::Consume)
            .await,
        Err(Error::UserNotFound)
    ));
    assert!(
        matches!(h.resend(&globex.id, "jane").await, Err(Error::UserNotFound)),
        "a user of another org is not found"
    );
    assert!(matches!(
        h.verify(&globex.id, "jane", WRONG_CODE, CodeUse::Consume)
            .await,
        Err(Error::UserNotFound)
    ));
    assert_eq!(h.all_messages().await.len(), 1, "nothing was sent");
    assert!(
        matches!(
            h.resend(&acme.id, "nobody").await,
            Err(Error::Cooldown { .. })
        ),
        "an unknown address has a cooldown like a known one"
    );
}

// ---------------------------------------------------------------------------------------------
// Nonces
// ---------------------------------------------------------------------------------------------

pub async fn nonces_are_single_use(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    h.advance(MINUTE + SECOND);
    let once = nonce(h.now());
    h.resend_with(&acme.id, "jane", Some(once.clone()), None)
        .await
        .expect("the first use is accepted");
    h.advance(MINUTE + SECOND);
    assert!(matches!(
        h.resend_with(&acme.id, "jane", Some(once.clone()), None)
            .await,
        Err(Error::NonceReused)
    ));
    assert_eq!(
        h.store.codes(&created.user.id).await.expect("codes").len(),
        2,
        "no new code"
    );
    assert_eq!(h.all_messages().await.len(), 2, "no new message");
    // The replay wrote nothing, not even a cooldown.
    h.resend_with(&acme.id, "jane", Some(nonce(h.now())), None)
        .await
        .expect("a fresh nonce is accepted");
    h.history(&created.user.id).await;
}

pub async fn nonces_are_recorded_when_the_request_is_refused(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    h.user(&acme, "jane").await;
    let refused = nonce(h.now());
    assert!(matches!(
        h.resend_with(&acme.id, "jane", Some(refused.clone()), None)
            .await,
        Err(Error::Cooldown { .. })
    ));
    let unknown = nonce(h.now());
    assert!(matches!(
        h.resend_with(&acme.id, "nobody", Some(unknown.clone()), None)
            .await,
        Err(Error::UserNotFound)
    ));
    h.advance(MINUTE + SECOND);
    assert!(matches!(
        h.resend_with(&acme.id, "jane", Some(refused), None).await,
        Err(Error::NonceReused)
    ));
    assert!(matches!(
        h.resend_with(&acme.id, "nobody", Some(unknown), None).await,
        Err(Error::NonceReused)
    ));
    h.resend_with(&acme.id, "jane", Some(nonce(h.now())), None)
        .await
        .expect("a fresh nonce is accepted");
}

pub async fn purge_nonces_forgets_old_ones(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    h.user(&acme, "jane").await;
    let start = h.now();
    let old = nonce(h.now());
    assert!(matches!(
        h.resend_with(&acme.id, "jane", Some(old.clone()), None)
            .await,
        Err(Error::Cooldown { .. })
    ));
    h.advance(MINUTE + SECOND);
    let recent = nonce(h.now());
    h.resend_with(&acme.id, "jane", Some(recent.clone()), None)
        .await
        .expect("accepted");
    assert_eq!(
        h.store
            .purge_nonces(start.plus(Duration::from_secs(30)))
            .await
            .expect("purged"),
        1,
        "only the nonce seen before the cut is forgotten"
    );
    assert!(
        matches!(
            h.resend_with(&acme.id, "jane", Some(old), None).await,
            Err(Error::Cooldown { .. })
        ),
        "a forgotten nonce is accepted again (and meets the cooldown)"
    );
    assert!(matches!(
        h.resend_with(&acme.id, "jane", Some(recent), None).await,
        Err(Error::NonceReused)
    ));
    assert_eq!(
        h.store
            .purge_nonces(h.now().plus(SECOND))
            .await
            .expect("purged"),
        2
    );
    assert_eq!(
        h.store
            .purge_nonces(h.now().plus(SECOND))
            .await
            .expect("purged"),
        0
    );
}

// ---------------------------------------------------------------------------------------------
// Verification under concurrency, and apps
// ---------------------------------------------------------------------------------------------

/// Reliability row 9: many wrong guesses at once at one code are evaluated no more than the
/// attempts a code allows; the rest meet a dead code, and none fails otherwise.
pub async fn concurrent_wrong_guesses_are_counted_up_to_the_limit(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    let code = h.code(&created.message_id).await;
    h.warm_up().await;
    let results = all_at_once(64, |_| {
        let h = Arc::clone(&h);
        let org = acme.id.clone();
        async move { h.verify(&org, "jane", WRONG_CODE, CodeUse::Consume).await }
    })
    .await;
    let limit = h.enroll.policy().max_failed_attempts as usize;
    let evaluated = results
        .iter()
        .filter(|result| matches!(result, Err(Error::CodeInvalid)))
        .count();
    let dead = results
        .iter()
        .filter(|result| matches!(result, Err(Error::CodeExhausted)))
        .count();
    assert_eq!(
        (evaluated, dead),
        (limit, 64 - limit),
        "{:?}",
        results.iter().map(describe).collect::<Vec<_>>()
    );
    let codes = h.store.codes(&created.user.id).await.expect("codes");
    assert_eq!(codes[0].failed_attempts as usize, limit);
    assert_eq!(codes[0].state, CodeState::Exhausted);
    assert!(matches!(
        h.verify(&acme.id, "jane", &code, CodeUse::Consume).await,
        Err(Error::CodeExhausted)
    ));
    assert_eq!(
        h.count_events(&created.user.id, "user.code.failed").await + 1,
        limit,
        "one event per evaluated guess, the last one exhausting"
    );
}

pub async fn concurrent_consumes_admit_one(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "jane").await;
    let code = h.code(&created.message_id).await;
    h.warm_up().await;
    let results = all_at_once(32, |_| {
        let h = Arc::clone(&h);
        let org = acme.id.clone();
        let code = code.clone();
        async move { h.verify(&org, "jane", &code, CodeUse::Consume).await }
    })
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        ok,
        1,
        "the code is used once: {:?}",
        results.iter().map(describe).collect::<Vec<_>>()
    );
    for result in &results {
        assert!(
            matches!(
                result,
                Ok(_) | Err(Error::AlreadyRegistered | Error::CodeInvalid)
            ),
            "{}",
            describe(result)
        );
    }
    assert_eq!(h.code_states(&created.user.id).await, [CodeState::Used]);
    assert_eq!(h.count_events(&created.user.id, "user.registered").await, 1);
}

pub async fn apps_are_checked(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    h.user(&acme, "jane").await; // a CustomerEmployee
    h.enroll
        .create_user(NewUser {
            org_id: acme.id.clone(),
            email: email("bob"),
            kind: UserKind::EndUser,
            locale: Some(locale("fr")),
            user_action: None,
        })
        .await
        .expect("an end user is created");
    let employees = h
        .enroll
        .create_app(
            &acme.id,
            "employees",
            vec![
                Permission::AUTH_USERS_CREATE,
                Permission::AUTH_TYPES_EMPLOYEE,
            ],
        )
        .await
        .expect("an app");
    let bare = h
        .enroll
        .create_app(&acme.id, "bare", Vec::new())
        .await
        .expect("an app");
    let check = |app_id: &AppId, require_user_permissions| {
        Some(AppCheck {
            app_id: app_id.clone(),
            require_user_permissions,
        })
    };
    h.advance(MINUTE + SECOND);
    assert!(matches!(
        h.resend_with(&acme.id, "jane", None, check(&AppId::generate(), false))
            .await,
        Err(Error::UnknownApp)
    ));
    assert!(matches!(
        h.resend_with(&acme.id, "jane", None, check(&bare.id, true)).await,
        Err(Error::PermissionDenied { permission, .. }) if permission == Permission::AUTH_USERS_CREATE
    ));
    assert!(matches!(
        h.resend_with(&acme.id, "bob", None, check(&employees.id, true)).await,
        Err(Error::PermissionDenied { permission, .. }) if permission == Permission::AUTH_TYPES_END_USER
    ));
    assert_eq!(
        h.all_messages().await.len(),
        2,
        "refused requests send nothing"
    );
    // Nor did they start a cooldown.
    let issued = h
        .resend_with(&acme.id, "jane", None, check(&employees.id, true))
        .await
        .expect("an app with the permissions may resend");
    assert_eq!(issued.user.username, email("jane"));
    let bob = h
        .resend_with(&acme.id, "bob", None, check(&bare.id, false))
        .await
        .expect("a known app without the legacy check may resend");
    let messages = h.messages_to("bob").await;
    assert_eq!(messages[0].id, bob.message_id);
    assert_eq!(messages[0].locale.as_str(), "fr", "the user's locale");
}

// ---------------------------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------------------------

pub async fn claims_lease_messages(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let start = h.now();
    let mut created = Vec::new();
    for address in ["ann", "ben", "cat"] {
        created.push(h.user(&acme, address).await);
        h.advance(SECOND);
    }
    let now = h.now();
    let first = h
        .store
        .claim(now, now.plus(LEASE), 1)
        .await
        .expect("a claim");
    assert_eq!(first.len(), 1, "the limit holds");
    assert_eq!(
        first[0].id, created[0].message_id,
        "the oldest due message first"
    );
    let rest = h
        .store
        .claim(now, now.plus(LEASE), 10)
        .await
        .expect("a claim");
    assert_eq!(
        rest.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        [created[1].message_id.clone(), created[2].message_id.clone()]
    );
    for (message, created) in first.iter().chain(&rest).zip(&created) {
        assert_eq!(message.attempts, 1);
        assert_eq!(message.org_id, acme.id);
        assert_eq!(message.org_name, "Acme");
        assert_eq!(message.user_id.as_ref(), Some(&created.user.id));
        assert_eq!(message.recipient, created.user.username);
        assert_eq!(message.template, MailTemplate::Registration);
        assert_eq!(message.locale.as_str(), "de");
        assert_eq!(message.code_state, Some(CodeState::Active));
        let codes = h.store.codes(&created.user.id).await.expect("codes");
        assert_eq!(message.code_expires_at, Some(codes[0].expires_at));
        assert!(message.created_at >= start);
        h.open(message);
    }
    for message in h.all_messages().await {
        assert_eq!(message.state, MessageState::Sending);
        assert_eq!(message.attempts, 1);
        assert!(message.has_content);
    }
    assert_eq!(
        h.store.depth().await.expect("depth"),
        3,
        "sending messages are not finished"
    );
    assert!(
        h.store
            .claim(now, now.plus(LEASE), 10)
            .await
            .expect("a claim")
            .is_empty()
    );
    h.advance(LEASE - SECOND);
    let later = h.now();
    assert!(
        h.store
            .claim(later, later.plus(LEASE), 10)
            .await
            .expect("a claim")
            .is_empty(),
        "nothing while the lease runs"
    );
    h.advance(SECOND);
    let lapsed = h.now();
    assert_eq!(lapsed, now.plus(LEASE));
    let again = h
        .store
        .claim(lapsed, lapsed.plus(LEASE), 10)
        .await
        .expect("a claim");
    assert_eq!(
        again.len(),
        3,
        "a lease frees the messages when it ends, when next_due says they are due"
    );
    assert!(again.iter().all(|message| message.attempts == 2));
}

pub async fn concurrent_claimers_never_share(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    let mut expected = HashSet::new();
    for index in 0..40 {
        expected.insert(h.user(&acme, &format!("user{index}")).await.message_id);
    }
    h.warm_up().await;
    let results = all_at_once(2, |_| {
        let h = Arc::clone(&h);
        async move {
            let mut mine = Vec::new();
            loop {
                let now = h.now();
                let batch = h
                    .store
                    .claim(now, now.plus(LEASE), 3)
                    .await
                    .expect("a claim");
                if batch.is_empty() {
                    return mine;
                }
                assert!(batch.len() <= 3);
                mine.extend(batch.into_iter().map(|message| message.id));
                tokio::task::yield_now().await;
            }
        }
    })
    .await;
    let (a, b) = (&results[0], &results[1]);
    let a_set: HashSet<&MessageId> = a.iter().collect();
    let b_set: HashSet<&MessageId> = b.iter().collect();
    assert_eq!(a_set.len(), a.len(), "a claimer never gets a message twice");
    assert_eq!(b_set.len(), b.len(), "a claimer never gets a message twice");
    assert!(
        a_set.is_disjoint(&b_set),
        "no message goes to both claimers"
    );
    let all: HashSet<MessageId> = a.iter().chain(b).cloned().collect();
    assert_eq!(all, expected, "every message is claimed");
}

pub async fn finishing_a_message_records_the_outcome(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let sent = h.user(&acme, "ann").await;
    let dropped = h.user(&acme, "ben").await;
    let claimed = h.claim_all().await;
    assert_eq!(claimed.len(), 2);
    h.advance(SECOND);
    let done_at = h.now();
    assert!(
        h.store
            .finish(&sent.message_id, 1, DeliveryOutcome::Sent, done_at)
            .await
            .expect("finished")
    );
    assert!(
        h.store
            .finish(
                &dropped.message_id,
                1,
                DeliveryOutcome::Abandoned {
                    error: "550 5.1.1 no such mailbox".into(),
                },
                done_at,
            )
            .await
            .expect("finished")
    );
    let sent_summary = &h.messages_to("ann").await[0];
    assert_eq!(sent_summary.state, MessageState::Sent);
    assert!(
        !sent_summary.has_content,
        "a delivered message loses its content"
    );
    assert_eq!(sent_summary.sent_at, Some(done_at));
    assert_eq!(sent_summary.attempts, 1);
    assert_eq!(sent_summary.last_error, None);
    let dropped_summary = &h.messages_to("ben").await[0];
    assert_eq!(dropped_summary.state, MessageState::Abandoned);
    assert!(
        !dropped_summary.has_content,
        "an abandoned message loses its content"
    );
    assert_eq!(dropped_summary.sent_at, None);
    assert_eq!(
        dropped_summary.last_error.as_deref(),
        Some("550 5.1.1 no such mailbox")
    );
    assert_eq!(h.store.depth().await.expect("depth"), 0);
    assert_eq!(h.store.next_due().await.expect("next due"), None);
    h.advance(10 * LEASE);
    let now = h.now();
    assert!(
        h.store
            .claim(now, now.plus(LEASE), 10)
            .await
            .expect("a claim")
            .is_empty(),
        "finished messages are never claimed again"
    );
}

pub async fn retries_return_messages_to_the_queue(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "ann").await;
    let claimed = h.claim_all().await;
    let code = h.open(&claimed[0]);
    let retry_at = h.now().plus(5 * MINUTE);
    assert!(
        h.store
            .finish(
                &created.message_id,
                1,
                DeliveryOutcome::Retry {
                    at: retry_at,
                    error: "421 4.7.0 try again later".into(),
                },
                h.now(),
            )
            .await
            .expect("finished")
    );
    let summary = &h.messages_to("ann").await[0];
    assert_eq!(summary.state, MessageState::Queued);
    assert_eq!(summary.next_attempt_at, retry_at);
    assert_eq!(
        summary.last_error.as_deref(),
        Some("421 4.7.0 try again later")
    );
    assert!(summary.has_content, "a message to retry keeps its content");
    assert_eq!(summary.attempts, 1);
    assert_eq!(h.store.depth().await.expect("depth"), 1);
    assert_eq!(h.store.next_due().await.expect("next due"), Some(retry_at));
    let now = h.now();
    assert!(
        h.store
            .claim(now, now.plus(LEASE), 10)
            .await
            .expect("a claim")
            .is_empty(),
        "not before its time"
    );
    h.advance(5 * MINUTE);
    let again = h.claim_all().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(h.open(&again[0]), code, "the same content");
}

pub async fn superseded_messages_show_their_code_state(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let created = h.user(&acme, "ann").await;
    h.advance(MINUTE + SECOND);
    let issued = h.resend(&acme.id, "ann").await.expect("a new code");
    let claimed = h.claim_all().await;
    let state_of = |id: &MessageId| {
        claimed
            .iter()
            .find(|message| &message.id == id)
            .map(|message| message.code_state)
            .expect("the message was claimed")
    };
    assert_eq!(state_of(&created.message_id), Some(CodeState::Superseded));
    assert_eq!(state_of(&issued.message_id), Some(CodeState::Active));
    assert!(
        h.store
            .finish(&created.message_id, 1, DeliveryOutcome::Superseded, h.now())
            .await
            .expect("finished")
    );
    let summary = h
        .all_messages()
        .await
        .into_iter()
        .find(|message| message.id == created.message_id)
        .expect("listed");
    assert_eq!(summary.state, MessageState::Superseded);
    assert!(!summary.has_content);
    assert_eq!(summary.sent_at, None);

    let code = h.code(&issued.message_id).await;
    h.verify(&acme.id, "ann", &code, CodeUse::Consume)
        .await
        .expect("registered");
    h.advance(LEASE + SECOND);
    let again = h.claim_all().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, issued.message_id);
    assert_eq!(
        again[0].code_state,
        Some(CodeState::Used),
        "the code state is read at claim time"
    );
}

pub async fn depth_and_next_due(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    assert_eq!(h.store.depth().await.expect("depth"), 0);
    assert_eq!(h.store.next_due().await.expect("next due"), None);
    let acme = h.org("Acme").await;
    let first_at = h.now();
    let ann = h.user(&acme, "ann").await;
    assert_eq!(h.store.depth().await.expect("depth"), 1);
    assert_eq!(h.store.next_due().await.expect("next due"), Some(first_at));
    h.advance(10 * SECOND);
    let second_at = h.now();
    let ben = h.user(&acme, "ben").await;
    assert_eq!(h.store.depth().await.expect("depth"), 2);
    assert_eq!(h.store.next_due().await.expect("next due"), Some(first_at));

    let now = h.now();
    let claimed = h
        .store
        .claim(now, now.plus(LEASE), 1)
        .await
        .expect("a claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, ann.message_id);
    assert_eq!(
        h.store.depth().await.expect("depth"),
        2,
        "a sending message counts"
    );
    assert_eq!(h.store.next_due().await.expect("next due"), Some(second_at));
    assert!(
        h.store
            .finish(&ann.message_id, 1, DeliveryOutcome::Sent, now)
            .await
            .expect("finished")
    );
    assert_eq!(h.store.depth().await.expect("depth"), 1);
    assert_eq!(h.store.next_due().await.expect("next due"), Some(second_at));

    let claimed = h
        .store
        .claim(now, now.plus(LEASE), 10)
        .await
        .expect("a claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, ben.message_id);
    assert_eq!(
        h.store.next_due().await.expect("next due"),
        Some(now.plus(LEASE)),
        "a sending message is due again when its lease ends"
    );
    let retry_at = now.plus(5 * MINUTE);
    assert!(
        h.store
            .finish(
                &ben.message_id,
                1,
                DeliveryOutcome::Retry {
                    at: retry_at,
                    error: "timeout".into(),
                },
                now,
            )
            .await
            .expect("finished")
    );
    assert_eq!(h.store.depth().await.expect("depth"), 1);
    assert_eq!(h.store.next_due().await.expect("next due"), Some(retry_at));
    let reclaimed = h
        .store
        .claim(retry_at, retry_at.plus(LEASE), 10)
        .await
        .expect("a claim");
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].attempts, 2);
    // The holder of the first attempt reports late: its word no longer counts.
    let late = h
        .store
        .finish(&ben.message_id, 1, DeliveryOutcome::Sent, retry_at)
        .await
        .expect("answered");
    assert!(!late, "a lapsed claim records nothing");
    assert!(
        h.store
            .finish(
                &ben.message_id,
                2,
                DeliveryOutcome::Abandoned {
                    error: "gave up".into(),
                },
                now,
            )
            .await
            .expect("finished")
    );
    assert_eq!(h.store.depth().await.expect("depth"), 0);
    assert_eq!(h.store.next_due().await.expect("next due"), None);
}

/// A batch's outcomes in one call: each recorded as `finish` would, a stale attempt not.
pub async fn a_batch_of_outcomes_is_recorded_in_one_call(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let ann = h.user(&acme, "ann").await;
    let ben = h.user(&acme, "ben").await;
    let cat = h.user(&acme, "cat").await;
    let now = h.now();
    let claimed = h
        .store
        .claim(now, now.plus(LEASE), 10)
        .await
        .expect("a claim");
    assert_eq!(claimed.len(), 3);
    assert!(
        h.store
            .finish_all(Vec::new(), now)
            .await
            .expect("nothing to record")
            .is_empty()
    );
    h.advance(SECOND);
    let done_at = h.now();
    let retry_at = done_at.plus(5 * MINUTE);
    let recorded = h
        .store
        .finish_all(
            vec![
                AttemptOutcome {
                    id: ann.message_id.clone(),
                    attempt: 1,
                    outcome: DeliveryOutcome::Sent,
                },
                AttemptOutcome {
                    id: ben.message_id.clone(),
                    attempt: 1,
                    outcome: DeliveryOutcome::Retry {
                        at: retry_at,
                        error: "timeout".into(),
                    },
                },
                AttemptOutcome {
                    id: cat.message_id.clone(),
                    attempt: 2,
                    outcome: DeliveryOutcome::Sent,
                },
            ],
            done_at,
        )
        .await
        .expect("recorded");
    assert_eq!(
        recorded,
        [true, true, false],
        "an attempt that does not hold its message records nothing"
    );
    let messages = h.all_messages().await;
    let summary = |id: &MessageId| {
        messages
            .iter()
            .find(|message| &message.id == id)
            .cloned()
            .expect("listed")
    };
    let ann = summary(&ann.message_id);
    assert_eq!(
        (ann.state, ann.sent_at, ann.has_content),
        (MessageState::Sent, Some(done_at), false)
    );
    let ben = summary(&ben.message_id);
    assert_eq!(
        (
            ben.state,
            ben.next_attempt_at,
            ben.last_error.as_deref(),
            ben.has_content
        ),
        (MessageState::Queued, retry_at, Some("timeout"), true)
    );
    let cat = summary(&cat.message_id);
    assert_eq!((cat.state, cat.has_content), (MessageState::Sending, true));
}

pub async fn messages_are_listed_newest_first_and_filtered(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let globex = h.org("Globex").await;
    let a1 = h.user(&acme, "ann").await;
    h.advance(SECOND);
    let a2 = h.user(&acme, "ben").await;
    h.advance(SECOND);
    let g1 = h.user(&globex, "ann").await;
    assert_eq!(
        ids(&h.all_messages().await),
        [
            g1.message_id.clone(),
            a2.message_id.clone(),
            a1.message_id.clone()
        ]
    );
    assert_eq!(
        ids(&h.messages_to("ann").await),
        [g1.message_id.clone(), a1.message_id.clone()]
    );
    let in_acme = h
        .store
        .messages(&MessageFilter {
            org_id: Some(acme.id.clone()),
            ..MessageFilter::default()
        })
        .await
        .expect("listed");
    assert_eq!(
        ids(&in_acme),
        [a2.message_id.clone(), a1.message_id.clone()]
    );
    let both = h
        .store
        .messages(&MessageFilter {
            recipient: Some(email("ann").as_str().to_owned()),
            org_id: Some(acme.id.clone()),
            limit: None,
            user_id: None,
        })
        .await
        .expect("listed");
    assert_eq!(ids(&both), std::slice::from_ref(&a1.message_id));
    let newest = h
        .store
        .messages(&MessageFilter {
            limit: Some(1),
            ..MessageFilter::default()
        })
        .await
        .expect("listed");
    assert_eq!(ids(&newest), std::slice::from_ref(&g1.message_id));
    assert!(h.messages_to("nobody").await.is_empty());
}

pub async fn a_users_messages_are_listed_newest_first(store: Arc<dyn Store>) {
    async fn messages_of(h: &Harness, user: &UserId, limit: Option<u32>) -> Vec<MessageId> {
        let listed = h
            .store
            .messages(&MessageFilter {
                user_id: Some(user.clone()),
                limit,
                ..MessageFilter::default()
            })
            .await
            .expect("the user's messages are listed");
        ids(&listed)
    }
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let ann = h.user(&acme, "ann").await;
    h.advance(SECOND);
    let ben = h.user(&acme, "ben").await;
    h.advance(MINUTE + SECOND);
    let ann_again = h.resend(&acme.id, "ann").await.expect("ann's new code");
    h.advance(SECOND);
    let ben_again = h.resend(&acme.id, "ben").await.expect("ben's new code");
    assert_eq!(
        messages_of(&h, &ann.user.id, Some(1)).await,
        std::slice::from_ref(&ann_again.message_id)
    );
    assert_eq!(
        messages_of(&h, &ann.user.id, None).await,
        [ann_again.message_id, ann.message_id]
    );
    assert_eq!(
        messages_of(&h, &ben.user.id, None).await,
        [ben_again.message_id, ben.message_id]
    );
    assert!(
        messages_of(&h, &UserId::generate(), None).await.is_empty(),
        "no one's messages are an unknown user's"
    );
}

// ---------------------------------------------------------------------------------------------
// Inbox
// ---------------------------------------------------------------------------------------------

pub async fn inbox_captures_and_filters(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    assert!(h.store.captured(None).await.expect("listed").is_empty());
    let mail = |n: u32, to: &str, at: Timestamp| CapturedMail {
        id: format!("cap-{n}"),
        message_id: format!("<ms-{n}@enroll.test>"),
        from: "Enroll <no-reply@enroll.test>".into(),
        to: to.into(),
        subject: format!("Your code ({n})"),
        text: format!("Code: ABCD-{n}"),
        html: format!("<p>Code: <b>ABCD-{n}</b></p>"),
        created_at: at,
    };
    let first = mail(1, "ann@example.com", h.now());
    h.advance(SECOND);
    let second = mail(2, "ben@example.com", h.now());
    h.advance(SECOND);
    let third = mail(3, "ann@example.com", h.now());
    for captured in [&first, &second, &third] {
        h.store.capture(captured).await.expect("captured");
    }
    assert_eq!(
        h.store.captured(None).await.expect("listed"),
        [third.clone(), second.clone(), first.clone()],
        "newest first, every field kept"
    );
    assert_eq!(
        h.store
            .captured(Some("ann@example.com"))
            .await
            .expect("listed"),
        [third, first]
    );
    assert_eq!(
        h.store
            .captured(Some("ben@example.com"))
            .await
            .expect("listed"),
        [second]
    );
    assert!(
        h.store
            .captured(Some("cat@example.com"))
            .await
            .expect("listed")
            .is_empty()
    );
}

/// A caller holding `user.write` in `org`, acting through a personal token.
async fn writer(h: &Harness, org: &Org, address: &str) -> Principal {
    let user = h.user(org, address).await.user;
    let (_, secret) = h
        .enroll
        .create_token(&user, TokenKind::Personal, vec![Permission::USER_WRITE])
        .await
        .expect("a token");
    h.enroll
        .authenticate(secret.expose())
        .await
        .expect("the token authenticates")
}

fn returned() -> EmailVerification {
    EmailVerification::Code(CodeDelivery::Returned)
}

fn emailed() -> CodeDelivery {
    CodeDelivery::Email {
        url_template: Some(
            UrlTemplate::parse("https://app.example/v?u={{.UserID}}&c={{.Code}}")
                .expect("a valid template"),
        ),
    }
}

async fn add_human(h: &Harness, caller: &Principal, org: &Org, address: &str) -> EmailWithCode {
    h.enroll
        .add_human(
            caller,
            NewHuman {
                org_id: org.id.clone(),
                email: email(address),
                locale: None,
                verification: returned(),
            },
        )
        .await
        .expect("the user is added")
}

pub async fn email_codes_are_sent_resent_and_verified_by_user_id(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let caller = writer(&h, &acme, "writer").await;
    let added = add_human(&h, &caller, &acme, "ada").await;
    let user = added.user.clone();
    let first = added.code.expect("the code is handed back");
    assert_eq!(first.expose().len(), 6);
    assert!(h.messages_to("ada").await.is_empty(), "nothing is sent");
    let resent = h
        .enroll
        .send_email_code(&caller, user.id.clone(), emailed(), true)
        .await
        .expect("a pending code is resent");
    assert!(resent.code.is_none());
    assert!(resent.user.sequence > user.sequence);
    let messages = h.messages_to("ada").await;
    assert_eq!(messages.len(), 1);
    let claimed = h.claim_all().await;
    let mail = claimed
        .iter()
        .find(|message| message.recipient.as_str() == "ada@example.com")
        .expect("the email is due");
    assert_eq!(mail.template, MailTemplate::EmailVerification);
    let second = h.open(mail);
    let old = h.enroll.verify_email(user.id.clone(), first.clone()).await;
    assert!(matches!(old, Err(Error::CodeInvalid)), "{}", describe(&old));
    let verified = h
        .enroll
        .verify_email(user.id.clone(), second.clone())
        .await
        .expect("the newest code verifies");
    assert!(verified.email_verified_at.is_some());
    let stored = h.stored_user(&user.id).await;
    assert_eq!(stored.email_verified_at, verified.email_verified_at);
    assert_eq!(stored.sequence, verified.sequence);
    let again = h
        .enroll
        .send_email_code(&caller, user.id.clone(), CodeDelivery::Returned, true)
        .await;
    assert!(
        matches!(again, Err(Error::NoCodePending)),
        "{}",
        describe(&again.map(|_| ()))
    );
    let send = h
        .enroll
        .send_email_code(&caller, user.id.clone(), CodeDelivery::Returned, false)
        .await;
    assert!(
        matches!(send, Err(Error::EmailAlreadyVerified)),
        "{}",
        describe(&send.map(|_| ()))
    );
    let twice = h.enroll.verify_email(user.id.clone(), second).await;
    assert!(matches!(twice, Err(Error::CodeInvalid)));
    let unknown = h
        .enroll
        .send_email_code(&caller, UserId::generate(), CodeDelivery::Returned, false)
        .await;
    assert!(matches!(unknown, Err(Error::UserNotFound)));
    let history = h.history(&user.id).await;
    assert_eq!(
        history,
        [
            "user.created",
            "user.code.issued",
            "user.code.issued",
            "user.code.failed",
            "user.code.verified",
            "user.email.verified",
        ]
    );
}

pub async fn email_changes_void_codes_and_respect_other_users(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let caller = writer(&h, &acme, "writer").await;
    let added = add_human(&h, &caller, &acme, "ada").await;
    let user = added.user;
    let taken = h
        .enroll
        .set_email(&caller, user.id.clone(), email("writer"), returned())
        .await;
    assert!(
        matches!(taken, Err(Error::UserExists)),
        "{}",
        describe(&taken.map(|_| ()))
    );
    let same = h
        .enroll
        .set_email(&caller, user.id.clone(), email("ada"), returned())
        .await;
    assert!(matches!(same, Err(Error::EmailUnchanged)));
    let changed = h
        .enroll
        .set_email(&caller, user.id.clone(), email("lovelace"), returned())
        .await
        .expect("the address changes");
    assert_eq!(changed.user.username, email("lovelace"));
    let old = h
        .enroll
        .verify_email(user.id.clone(), added.code.expect("a code"))
        .await;
    assert!(matches!(old, Err(Error::CodeInvalid)));
    h.enroll
        .verify_email(user.id.clone(), changed.code.expect("a new code"))
        .await
        .expect("the new address verifies");
    let verified = h
        .enroll
        .set_email(
            &caller,
            user.id.clone(),
            email("countess"),
            EmailVerification::Verified,
        )
        .await
        .expect("set as verified");
    assert!(verified.user.email_verified_at.is_some());
    let stored = h.stored_user(&user.id).await;
    assert_eq!(stored.username, email("countess"));
    assert_eq!(stored.email_verified_at, verified.user.email_verified_at);
    // The old address is free again, and the new one is the user's.
    assert!(
        h.store
            .user_by_username(&acme.id, &email("lovelace"))
            .await
            .expect("read")
            .is_none()
    );
    // Another organisation's writer may not touch the user; the user may change itself.
    let globex = h.org("Globex").await;
    let outsider = writer(&h, &globex, "outsider").await;
    let refused = h
        .enroll
        .set_email(&outsider, user.id.clone(), email("x"), returned())
        .await;
    assert!(matches!(refused, Err(Error::PermissionDenied { .. })));
    let foreign = h
        .enroll
        .add_human(
            &outsider,
            NewHuman {
                org_id: acme.id.clone(),
                email: email("y"),
                locale: None,
                verification: returned(),
            },
        )
        .await;
    assert!(matches!(foreign, Err(Error::PermissionDenied { .. })));
}

pub async fn concurrent_email_resends_issue_one_code_per_cooldown(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    let caller = writer(&h, &acme, "writer").await;
    let user = add_human(&h, &caller, &acme, "ada").await.user;
    h.warm_up().await;
    let results = all_at_once(16, |_| {
        let h = Arc::clone(&h);
        let caller = caller.clone();
        let id = user.id.clone();
        async move {
            h.enroll
                .send_email_code(&caller, id, emailed(), true)
                .await
                .map(|_| ())
        }
    })
    .await;
    let ok = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        results.iter().map(describe).collect::<Vec<_>>()
    );
    assert!(
        results
            .iter()
            .all(|result| matches!(result, Ok(()) | Err(Error::Cooldown { .. }))),
        "{:?}",
        results.iter().map(describe).collect::<Vec<_>>()
    );
    assert_eq!(h.messages_to("ada").await.len(), 1);
    let states = h.code_states(&user.id).await;
    assert_eq!(
        states
            .iter()
            .filter(|state| **state == CodeState::Active)
            .count(),
        1,
        "{states:?}"
    );
}

/// One `#[tokio::test]` per conformance case, each on a fresh store from `$factory`, an
/// `async fn() -> Arc<dyn Store>` (or a closure returning such a future).
#[macro_export]
macro_rules! conformance_suite {
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::$case(($factory)().await).await;
            }
        )*
    };
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            orgs_round_trip,
            apps_round_trip,
            a_batch_of_outcomes_is_recorded_in_one_call,
            tokens_round_trip,
            a_key_registers_a_user_once,
            a_resend_voids_a_started_registration,
            login_challenges_and_user_actions_are_spent_once,
            permissions_follow_the_user_of_a_session,
            create_user_issues_one_code_and_one_message,
            usernames_are_unique_per_org,
            concurrent_creates_admit_one,
            resend_supersedes_the_previous_code,
            cooldown_refuses_with_the_time_left,
            concurrent_resends_admit_one,
            concurrent_resends_to_an_unknown_address_meet_the_cooldown,
            wrong_codes_exhaust_the_code,
            codes_expire,
            registered_users_get_no_code,
            unknown_users_and_orgs_are_not_found,
            nonces_are_single_use,
            nonces_are_recorded_when_the_request_is_refused,
            purge_nonces_forgets_old_ones,
            concurrent_consumes_admit_one,
            concurrent_wrong_guesses_are_counted_up_to_the_limit,
            apps_are_checked,
            claims_lease_messages,
            concurrent_claimers_never_share,
            finishing_a_message_records_the_outcome,
            retries_return_messages_to_the_queue,
            superseded_messages_show_their_code_state,
            depth_and_next_due,
            messages_are_listed_newest_first_and_filtered,
            a_users_messages_are_listed_newest_first,
            inbox_captures_and_filters,
            email_codes_are_sent_resent_and_verified_by_user_id,
            email_changes_void_codes_and_respect_other_users,
            concurrent_email_resends_issue_one_code_per_cooldown,
            sign_ups_answer_alike_and_keep_the_first_password,
            concurrent_sign_ups_create_one_account,
            failed_logins_count_exactly_under_concurrency,
            a_refresh_token_rotates_once,
            password_resets_use_the_link_once_and_end_sessions,
            unknown_addresses_get_the_no_account_email_unless_switched_off,
        );
    };
}
