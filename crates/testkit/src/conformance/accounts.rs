//! Conformance cases of accounts with passwords (the Singularity face): sign-ups, logins and
//! their throttle, refresh-token rotation, password resets.

use std::sync::Arc;

use enroll_core::Error;
use enroll_core::model::{MailTemplate, Org};
use enroll_core::ports::Store;
use enroll_core::rules::SignedUp;
use enroll_core::service::{AccountLinks, NewAccount, Session};

use super::{Harness, MINUTE, all_at_once, describe, email};

const PASSWORD: &str = "correct horse battery";

fn links() -> AccountLinks {
    AccountLinks {
        verify_email: "https://app.example/verify".to_owned(),
        reset_password: "https://app.example/reset".to_owned(),
        forgot_password: "https://app.example/forgot".to_owned(),
        sign_up: "https://app.example/register".to_owned(),
    }
}

async fn sign_up(h: &Harness, org: &Org, address: &str, password: &str) -> SignedUp {
    h.enroll
        .sign_up(
            NewAccount {
                org_id: org.id.clone(),
                email: email(address),
                password: password.to_owned(),
                name: "Ada".to_owned(),
                locale: None,
                browser_locale: None,
            },
            Some(&links()),
        )
        .await
        .expect("the sign-up is answered")
}

async fn log_in(
    h: &Harness,
    org: &Org,
    address: &str,
    password: &str,
) -> enroll_core::Result<Session> {
    h.enroll
        .log_in(&org.id, &email(address).to_string(), password, None)
        .await
}

/// The token of a link `…?token=<token>`.
fn token_of(link: &str) -> String {
    link.split_once("token=")
        .map(|(_, token)| token.to_owned())
        .expect("a link with a token")
}

pub async fn sign_ups_answer_alike_and_keep_the_first_password(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    let SignedUp::Created { user, message_id } = sign_up(&h, &acme, "ada", PASSWORD).await else {
        panic!("a new address gets an account");
    };
    let verification = message_id.expect("the verification email");
    assert!(
        h.store
            .password_hash(&user.id)
            .await
            .expect("the store answers")
            .is_some()
    );
    assert_eq!(h.stored_user(&user.id).await.name.as_deref(), Some("Ada"));

    // Within the cooldown of the first email, the owner is not written to again.
    assert_eq!(
        sign_up(&h, &acme, "ada", "another fine secret").await,
        SignedUp::Existing { message_id: None }
    );
    h.advance(MINUTE);
    let SignedUp::Existing {
        message_id: Some(attempt),
    } = sign_up(&h, &acme, "ada", "another fine secret").await
    else {
        panic!("the owner is told once the cooldown ended");
    };
    let messages = h.messages_to("ada").await;
    let template_of = |id| {
        messages
            .iter()
            .find(|message| &message.id == id)
            .map(|message| message.template)
    };
    assert_eq!(
        template_of(&verification),
        Some(MailTemplate::AccountVerification)
    );
    assert_eq!(
        template_of(&attempt),
        Some(MailTemplate::RegistrationAttempt)
    );
    assert!(
        h.history(&user.id)
            .await
            .contains(&"user.signup.attempted".to_owned())
    );

    assert!(log_in(&h, &acme, "ada", PASSWORD).await.is_ok());
    assert!(matches!(
        log_in(&h, &acme, "ada", "another fine secret").await,
        Err(Error::InvalidCredentials)
    ));
    // The link verifies the address.
    let link = h.link(&verification).await;
    assert!(
        link.starts_with("https://app.example/verify?token="),
        "{link}"
    );
    let verified = h
        .enroll
        .verify_account(&token_of(&link))
        .await
        .expect("the store answers");
    assert!(verified.email_verified_at.is_some());
}

pub async fn concurrent_sign_ups_create_one_account(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    h.warm_up().await;
    let results = all_at_once(8, |index| {
        let h = Arc::clone(&h);
        let acme = acme.clone();
        async move { sign_up(&h, &acme, "ada", &format!("secret number {index}")).await }
    })
    .await;
    let created = results
        .iter()
        .filter(|result| matches!(result, SignedUp::Created { .. }))
        .count();
    assert_eq!(created, 1, "{results:?}");
    let users = h
        .store
        .users(Some(&acme.id))
        .await
        .expect("the store answers");
    assert_eq!(users.len(), 1);
    let messages = h.messages_to("ada").await;
    assert_eq!(
        messages.len(),
        1,
        "the verification email, and no attempt email within its cooldown: {messages:?}"
    );
}

pub async fn failed_logins_count_exactly_under_concurrency(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    sign_up(&h, &acme, "ada", PASSWORD).await;
    h.warm_up().await;
    let limit = h.enroll.policy().login_max_failures as usize;
    for address in ["ada", "nobody"] {
        let results = all_at_once(limit * 2, |_| {
            let h = Arc::clone(&h);
            let acme = acme.clone();
            async move {
                log_in(&h, &acme, address, "a wrong password")
                    .await
                    .map(drop)
            }
        })
        .await;
        let failed = results
            .iter()
            .filter(|result| matches!(result, Err(Error::InvalidCredentials)))
            .count();
        let throttled = results
            .iter()
            .filter(|result| matches!(result, Err(Error::LoginThrottled { .. })))
            .count();
        assert_eq!(
            (failed, throttled),
            (limit, limit),
            "{address}: {:?}",
            results.iter().map(describe).collect::<Vec<_>>()
        );
    }
    assert!(matches!(
        log_in(&h, &acme, "ada", PASSWORD).await,
        Err(Error::LoginThrottled { .. })
    ));
    h.advance(h.enroll.policy().login_failure_window);
    assert!(log_in(&h, &acme, "ada", PASSWORD).await.is_ok());
}

pub async fn a_refresh_token_rotates_once(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    sign_up(&h, &acme, "ada", PASSWORD).await;
    let session = log_in(&h, &acme, "ada", PASSWORD)
        .await
        .expect("the store answers");
    let renewed = h
        .enroll
        .refresh_session(&session.refresh_token)
        .await
        .expect("present");
    assert!(
        h.enroll
            .authenticate_session(&renewed.access_token)
            .await
            .is_ok()
    );
    h.warm_up().await;
    let refresh = renewed.refresh_token.clone();
    let results = all_at_once(8, |_| {
        let h = Arc::clone(&h);
        let refresh = refresh.clone();
        async move { h.enroll.refresh_session(&refresh).await.map(drop) }
    })
    .await;
    let ok = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        results.iter().map(describe).collect::<Vec<_>>()
    );
    // The losers presented a token already rotated: a copy, so the session ended.
    assert!(matches!(
        h.enroll.authenticate_session(&renewed.access_token).await,
        Err(Error::Unauthenticated)
    ));
    assert!(
        h.enroll
            .refresh_session(&session.refresh_token)
            .await
            .is_err()
    );
}

pub async fn password_resets_use_the_link_once_and_end_sessions(store: Arc<dyn Store>) {
    let h = Arc::new(Harness::new(store));
    let acme = h.org("Acme").await;
    let SignedUp::Created { user, .. } = sign_up(&h, &acme, "ada", PASSWORD).await else {
        panic!("created");
    };
    let sessions = [
        log_in(&h, &acme, "ada", PASSWORD)
            .await
            .expect("the store answers"),
        log_in(&h, &acme, "ada", PASSWORD)
            .await
            .expect("the store answers"),
    ];
    h.enroll
        .request_password_reset(acme.id.clone(), email("ada"), None, None, Some(&links()))
        .await
        .expect("present");
    let reset = h
        .messages_to("ada")
        .await
        .into_iter()
        .find(|message| message.template == MailTemplate::PasswordReset)
        .expect("the reset email");
    let token = token_of(&h.link(&reset.id).await);
    h.warm_up().await;
    let results = all_at_once(8, |index| {
        let h = Arc::clone(&h);
        let token = token.clone();
        async move {
            h.enroll
                .reset_password(&token, &format!("new secret number {index}"))
                .await
                .map(drop)
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
    for session in &sessions {
        assert!(
            h.enroll
                .authenticate_session(&session.access_token)
                .await
                .is_err()
        );
        assert!(
            h.enroll
                .refresh_session(&session.refresh_token)
                .await
                .is_err()
        );
    }
    let history = h.history(&user.id).await;
    assert_eq!(
        history
            .iter()
            .filter(|kind| *kind == "user.password.changed")
            .count(),
        1
    );
    assert!(matches!(
        log_in(&h, &acme, "ada", PASSWORD).await,
        Err(Error::InvalidCredentials)
    ));
    let live = h
        .store
        .users(Some(&acme.id))
        .await
        .expect("present")
        .into_iter()
        .filter(|user| user.kind == enroll_core::model::UserKind::EndUser)
        .count();
    assert_eq!(live, 1);
}

pub async fn unknown_addresses_get_the_no_account_email_unless_switched_off(store: Arc<dyn Store>) {
    let h = Harness::new(store);
    let acme = h.org("Acme").await;
    h.enroll
        .request_password_reset(acme.id.clone(), email("nobody"), None, None, Some(&links()))
        .await
        .expect("present");
    let sent = h.messages_to("nobody").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].template, MailTemplate::NoAccount);
    assert_eq!(sent[0].user_id, None);
    assert_eq!(sent[0].locale, acme.default_locale);
    assert_eq!(h.link(&sent[0].id).await, "https://app.example/register");
    assert!(matches!(
        h.enroll
            .request_password_reset(acme.id.clone(), email("nobody"), None, None, Some(&links()))
            .await,
        Err(Error::Cooldown { .. })
    ));

    h.store
        .set_org_unknown_address_mail(&acme.id, false)
        .await
        .expect("present");
    assert!(
        !h.store
            .org(&acme.id)
            .await
            .expect("present")
            .expect("present")
            .unknown_address_mail
    );
    h.enroll
        .request_password_reset(
            acme.id.clone(),
            email("stranger"),
            None,
            None,
            Some(&links()),
        )
        .await
        .expect("present");
    assert!(h.messages_to("stranger").await.is_empty());
    assert!(matches!(
        h.enroll
            .request_password_reset(acme.id.clone(), email("stranger"), None, None, None)
            .await,
        Err(Error::MailDisabled)
    ));
}
