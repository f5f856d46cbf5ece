//! Reliability target 12: volume caps. Emails to one address are capped per day on every
//! store, emails caused by one client address per hour, and emails to one organisation's users
//! per hour; each cap holds whatever the others say.

use std::net::{IpAddr, Ipv4Addr};

use enroll_core::rules::CodeUse;
use serde_json::json;

use crate::helpers::{Db, Options, Reply, TestApp};

fn with_settings(
    db: Db,
    change: impl FnOnce(&mut enroll::config::Settings) + Send + 'static,
) -> Options {
    Options {
        db,
        settings: Box::new(change),
        ..Options::default()
    }
}

async fn an_address_gets_at_most_ten_emails_a_day_on(db: Db) {
    let app = TestApp::spawn_with(with_settings(db, |settings| {
        settings.max_emails_per_client_per_hour = 0;
    }))
    .await;
    app.create_user("jane@example.com").await;
    let resend = json!({"username": "jane@example.com", "orgId": app.org_id});
    let unknown = json!({"username": "nobody@example.com", "orgId": app.org_id});
    // The creation's email opened the window: nine resends fill it. Each email is awaited
    // before the next resend, which would otherwise void its code before it went.
    app.mails_to("jane@example.com", 1).await;
    for sent in 2..=10 {
        app.pass_cooldown();
        assert_eq!(app.resend(&resend).await.status, 200);
        assert_eq!(app.resend(&unknown).await.status, 200);
        app.mails_to("jane@example.com", sent).await;
    }
    app.pass_cooldown();
    let refused = app.resend(&resend).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (24 * 3600 - 10 * 61 - 1..=24 * 3600 - 10 * 61 + 1).contains(&retry_after),
        "{retry_after}"
    );
    // The tenth request for an unknown address was still within its cap, the eleventh is not.
    assert_eq!(app.resend(&unknown).await.status, 200);
    app.pass_cooldown();
    assert_eq!(app.resend(&unknown).await.status, 429);
    app.mails_to("jane@example.com", 10).await;
    assert_eq!(app.outbox_len().await, 10, "no email past the cap");

    app.clock.advance(std::time::Duration::from_secs(24 * 3600));
    assert_eq!(app.resend(&resend).await.status, 200, "a new day");
}

#[tokio::test]
async fn an_address_gets_at_most_ten_emails_a_day_on_sqlite() {
    an_address_gets_at_most_ten_emails_a_day_on(Db::Sqlite).await;
}

#[tokio::test]
async fn an_address_gets_at_most_ten_emails_a_day_on_postgres() {
    an_address_gets_at_most_ten_emails_a_day_on(Db::Postgres).await;
}

/// A client of `app` whose requests come from `ip` (any 127/8 address reaches loopback).
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .build()
        .unwrap()
}

async fn reset_request(app: &TestApp, client: &reqwest::Client, email: &str) -> Reply {
    let response = client
        .post(app.url("/api/auth/password/reset-request"))
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap();
    Reply::from(response).await
}

#[tokio::test]
async fn a_client_address_may_cause_so_many_emails_an_hour_across_endpoints() {
    let app = TestApp::spawn_with(with_settings(Db::Sqlite, |settings| {
        settings.max_emails_per_client_per_hour = 3;
    }))
    .await;
    let first = client_from(Ipv4Addr::new(127, 0, 0, 1));
    for n in 0..3 {
        let email = format!("someone-{n}@example.com");
        assert_eq!(reset_request(&app, &first, &email).await.status, 200);
    }
    let refused = reset_request(&app, &first, "someone-else@example.com").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.json()["code"], "EMAIL_COOLDOWN_ACTIVE");
    // The budget is the client's, on every endpoint that sends.
    let dfns = first
        .put(app.url("/auth/registration/code"))
        .json(&json!({"username": "x@example.com", "orgId": app.org_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(dfns.status(), 429);
    // Another client is not held back.
    let second = client_from(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(
        reset_request(&app, &second, "someone-else@example.com")
            .await
            .status,
        200
    );
    // The hour ends.
    app.clock.advance(std::time::Duration::from_secs(3600));
    assert_eq!(
        reset_request(&app, &first, "someone-new@example.com")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn an_organisation_gets_so_many_emails_an_hour_whoever_asks() {
    let app = TestApp::spawn_with(with_settings(Db::Sqlite, |settings| {
        settings.max_emails_per_org_per_hour = 2;
    }))
    .await;
    let bearer = format!("Bearer {}", app.admin_token);
    let add = |n: usize| {
        let body = json!({
            "profile": {"givenName": "A", "familyName": "B"},
            "email": {"email": format!("user-{n}@example.com"), "sendCode": {}},
        })
        .to_string();
        let app = &app;
        let bearer = bearer.clone();
        async move {
            app.post("/v2/users/human", body, &[("authorization", &bearer)])
                .await
        }
    };
    assert_eq!(add(0).await.status, 200);
    assert_eq!(add(1).await.status, 200);
    let refused = add(2).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    // Codes handed back send nothing and are not capped.
    let returned = app
        .post(
            "/v2/users/human",
            json!({
                "profile": {"givenName": "A", "familyName": "B"},
                "email": {"email": "user-r@example.com", "returnCode": {}},
            })
            .to_string(),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(returned.status, 200, "{}", returned.body);
    app.clock.advance(std::time::Duration::from_secs(3600));
    assert_eq!(add(3).await.status, 200, "the hour ends");
    app.mails_to("user-3@example.com", 1).await;
    assert_eq!(app.outbox_len().await, 3);
}

/// Reliability target 10: a guesser who resends and spends every code's attempts gets at most
/// ten codes a day, so at most 50 wrong guesses are evaluated per account and day (the target
/// is 100); then resends answer 429 until the day ends, and other accounts are not affected.
#[tokio::test]
async fn a_guesser_gets_at_most_fifty_guesses_a_day_on_one_account() {
    let app = TestApp::spawn_with(with_settings(Db::Sqlite, |settings| {
        settings.max_emails_per_client_per_hour = 0;
    }))
    .await;
    app.create_user("jane@example.com").await;
    app.create_user("joe@example.com").await;
    let resend = json!({"username": "jane@example.com", "orgId": app.org_id});
    let mut evaluated = 0;
    let mut refused_resends = 0;
    // A day of trying, one round a minute.
    for _ in 0..24 * 60 {
        for _ in 0..6 {
            match app
                .verify("jane@example.com", "WRONGCODEWRONGCO", CodeUse::Check)
                .await
            {
                Err(enroll_core::Error::CodeInvalid) => evaluated += 1,
                Err(enroll_core::Error::CodeExhausted) => break,
                other => panic!("{other:?}"),
            }
        }
        app.clock.advance(std::time::Duration::from_secs(60));
        match app.resend(&resend).await.status {
            200 => {}
            429 => refused_resends += 1,
            status => panic!("{status}"),
        }
    }
    assert_eq!(evaluated, 50, "ten codes of five attempts");
    // Nine resends fill the creation's window; the last round's falls in the next one.
    assert_eq!(refused_resends, 24 * 60 - 10);
    app.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(app.resend(&resend).await.status, 200, "a new day");
    let other = json!({"username": "joe@example.com", "orgId": app.org_id});
    assert_eq!(app.resend(&other).await.status, 200, "no global lockout");
}
