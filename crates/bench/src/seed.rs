//! Seeding through the core, as the server would write it: an organisation, a machine user
//! whose personal access token the ZITADEL calls present, Dfns users, ZITADEL users with a
//! pending email code, and Singularity accounts with a live session each.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use enroll_core::clock::{Clock, SystemClock};
use enroll_core::email::EmailAddress;
use enroll_core::model::{DeliveryOutcome, Locale, Permission, UserKind};
use enroll_core::policy::Policy;
use enroll_core::ports::{NoSignal, Store};
use enroll_core::secret::ServerSecret;
use enroll_core::service::{
    AccountLinks, CodeDelivery, EmailVerification, Enroll, NewAccount, NewHuman, NewUser,
};
use futures_util::future::try_join_all;
use prehashed::Prehashed;

/// A secret both the seeding and the servers use, so seeded codes and tokens are the server's.
pub const SECRET: &str = "6b1f0c3a9e2d4c5b8a7f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291";

/// The Singularity accounts' password (seeded with one precomputed hash).
const PASSWORD: &str = "bench horse battery staple";

/// Requests in flight while seeding.
const BATCH: usize = 500;

/// The Dfns users' usernames: `user<index>@bench.example`.
pub fn dfns_username(index: usize) -> String {
    format!("user{index}@bench.example")
}

/// What the load needs to address the seeded users.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub org_id: String,
    /// A personal access token with `user.write` in the organisation (ZITADEL calls).
    pub token: String,
    /// Dfns users `user0@bench.example` … (pending, with a registration code).
    pub dfns_users: usize,
    /// Ids of the ZITADEL users (pending, with an email code, none emailed).
    pub zitadel_users: Vec<String>,
    /// Access tokens of the Singularity accounts (unverified addresses).
    pub sessions: Vec<String>,
}

/// The core as the seeding uses it: the servers' secret, no cooldown, no caps, and access
/// tokens that outlive the run.
pub fn core(store: Arc<dyn Store>) -> anyhow::Result<Enroll> {
    let secret = ServerSecret::from_hex(SECRET)?;
    let policy = Policy {
        cooldown: Duration::ZERO,
        max_sends_per_window: u32::MAX,
        access_token_ttl: Duration::from_secs(24 * 60 * 60),
        ..Policy::default()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let hash = enroll_core::password::hash(&enroll_core::password::Password::presented(PASSWORD))?;
    Ok(
        Enroll::new(store, clock, &secret, policy, Arc::new(NoSignal))
            .with_password_hashing(Arc::new(Prehashed(hash))),
    )
}

/// Seeds `users` users of the Dfns face and as many of the ZITADEL face, and `accounts`
/// Singularity accounts. Their emails stay queued: see [`settle_outbox`].
pub async fn seed(store: Arc<dyn Store>, users: usize, accounts: usize) -> anyhow::Result<Seeded> {
    let enroll = Arc::new(core(store)?);
    let org = enroll.create_org("Bench", Locale::english()).await?;
    let (_, token) = enroll
        .create_machine_user(
            &org.id,
            EmailAddress::parse("machine@bench.example")?,
            vec![Permission::USER_WRITE],
        )
        .await?;
    let token = token.expose().to_owned();
    let caller = enroll.authenticate(&token).await?;

    for chunk in (0..users).collect::<Vec<_>>().chunks(BATCH) {
        try_join_all(chunk.iter().map(|&index| {
            let enroll = enroll.clone();
            let org_id = org.id.clone();
            async move {
                enroll
                    .create_user(NewUser {
                        org_id,
                        email: EmailAddress::parse(&dfns_username(index))?,
                        kind: UserKind::CustomerEmployee,
                        locale: None,
                        user_action: None,
                    })
                    .await?;
                anyhow::Ok(())
            }
        }))
        .await?;
    }

    let mut zitadel_users = Vec::with_capacity(users);
    for chunk in (0..users).collect::<Vec<_>>().chunks(BATCH) {
        let added = try_join_all(chunk.iter().map(|&index| {
            let enroll = enroll.clone();
            let caller = caller.clone();
            let org_id = org.id.clone();
            async move {
                let added = enroll
                    .add_human(
                        &caller,
                        NewHuman {
                            org_id,
                            email: EmailAddress::parse(&format!("z{index}@bench.example"))?,
                            locale: None,
                            verification: EmailVerification::Code(CodeDelivery::Returned),
                        },
                    )
                    .await?;
                anyhow::Ok(added.user.id.to_string())
            }
        }))
        .await?;
        zitadel_users.extend(added);
    }

    let links = AccountLinks {
        verify_email: "https://app.bench.example/verify".to_owned(),
        reset_password: "https://app.bench.example/reset".to_owned(),
        forgot_password: "https://app.bench.example/forgot".to_owned(),
        sign_up: "https://app.bench.example/sign-up".to_owned(),
    };
    let mut sessions = Vec::with_capacity(accounts);
    for chunk in (0..accounts).collect::<Vec<_>>().chunks(BATCH) {
        let opened = try_join_all(chunk.iter().map(|&index| {
            let enroll = enroll.clone();
            let org_id = org.id.clone();
            let links = links.clone();
            async move {
                let email = format!("s{index}@bench.example");
                enroll
                    .sign_up(
                        NewAccount {
                            org_id: org_id.clone(),
                            email: EmailAddress::parse(&email)?,
                            password: PASSWORD.to_owned(),
                            name: format!("Account {index}"),
                            locale: None,
                            browser_locale: None,
                        },
                        Some(&links),
                    )
                    .await?;
                let session = enroll.log_in(&org_id, &email, PASSWORD, None).await?;
                anyhow::Ok(session.access_token)
            }
        }))
        .await?;
        sessions.extend(opened);
    }

    Ok(Seeded {
        org_id: org.id.to_string(),
        token,
        dfns_users: users,
        zitadel_users,
        sessions,
    })
}

/// Marks every queued email as handled (superseded), so a run starts with an empty outbox.
pub async fn settle_outbox(store: Arc<dyn Store>) -> anyhow::Result<usize> {
    let now = SystemClock.now();
    let mut settled = 0;
    loop {
        let claimed = store
            .claim(now, now.plus(Duration::from_secs(600)), 1_000)
            .await?;
        if claimed.is_empty() {
            return Ok(settled);
        }
        settled += claimed.len();
        try_join_all(claimed.iter().map(|message| {
            store.finish(
                &message.id,
                message.attempts,
                DeliveryOutcome::Superseded,
                now,
            )
        }))
        .await
        .context("could not settle the seeding's emails")?;
    }
}

mod prehashed {
    //! Password hashing for seeding: one precomputed Argon2id hash for every account, and
    //! logins that match it without the work (the server verifies for real).

    use enroll_core::password::{Password, PasswordHash};
    use enroll_core::ports::PasswordHashing;

    pub struct Prehashed(pub PasswordHash);

    impl PasswordHashing for Prehashed {
        fn hash<'a, 'b>(
            &'a self,
            _password: Password,
        ) -> std::pin::Pin<Box<dyn Future<Output = enroll_core::Result<PasswordHash>> + Send + 'b>>
        where
            'a: 'b,
            Self: 'b,
        {
            let hash = self.0.clone();
            Box::pin(async move { Ok(hash) })
        }

        fn verify<'a, 'b>(
            &'a self,
            _password: Password,
            stored: Option<PasswordHash>,
        ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'b>>
        where
            'a: 'b,
            Self: 'b,
        {
            Box::pin(async move { stored.is_some() })
        }
    }
}
