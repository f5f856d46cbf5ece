//! The Singularity face on the wire: sign-up, the verification email and its link, the
//! cooldown, sessions in cookies and headers, password resets; against a real SMTP server, with
//! the bytes a frontend sees and the state in the database.

use std::time::{Duration, Instant};

use enroll_core::email::EmailAddress;
use enroll_testkit::smtp::ReceivedMail;
use serde_json::{Value, json};

use crate::helpers::{Db, EXCLUSIVE, Options, Reply, TestApp};

const PASSWORD: &str = "correct horse battery";

async fn register(app: &TestApp, email: &str, query: &str, headers: &[(&str, &str)]) -> Reply {
    app.post(
        &format!("/api/auth/register{query}"),
        json!({ "email": email, "password": PASSWORD, "name": "Jane Doe" }).to_string(),
        headers,
    )
    .await
}

async fn login(app: &TestApp, email: &str, password: &str) -> Reply {
    app.post(
        "/api/auth/login",
        json!({ "email": email, "password": password }).to_string(),
        &[],
    )
    .await
}

/// A registered, logged-in user: its access and refresh tokens.
async fn signed_in(app: &TestApp, email: &str) -> (String, String) {
    assert_eq!(register(app, email, "", &[]).await.status, 201);
    let reply = login(app, email, PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    (
        body["accessToken"].as_str().unwrap().to_owned(),
        body["refreshToken"].as_str().unwrap().to_owned(),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The `token` of the link in a mail.
fn token_in(mail: &ReceivedMail) -> String {
    let text = mail.text_body().expect("a text part");
    let start = text.find("token=").expect("a link with a token") + "token=".len();
    text[start..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .to_owned()
}

/// The error body with its time stamp checked and replaced, for snapshots.
fn error_body(reply: &Reply) -> Value {
    let mut body = reply.json();
    let timestamp = body["timestamp"].as_str().expect("a timestamp").to_owned();
    assert!(
        time::OffsetDateTime::parse(&timestamp, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{timestamp}"
    );
    body["timestamp"] = json!("[timestamp]");
    body
}

async fn send_verification(app: &TestApp, access: &str) -> Reply {
    app.post(
        "/api/auth/email/verification/send",
        String::new(),
        &[("authorization", &bearer(access))],
    )
    .await
}

async fn verify(app: &TestApp, token: &str) -> Reply {
    app.post(
        &format!("/api/auth/email/verification?token={token}"),
        String::new(),
        &[],
    )
    .await
}

async fn verified(app: &TestApp, email: &str) -> bool {
    app.enroll
        .store()
        .user_by_username(&app.org_id, &EmailAddress::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .email_verified_at
        .is_some()
}

async fn sign_up_and_verify(app: &TestApp) {
    let reply = register(app, "jane@example.com", "", &[]).await;
    assert_eq!(
        (reply.status, reply.json()),
        (201, json!({ "success": true }))
    );
    let mail = app.mails_to("jane@example.com", 1).await.remove(0);
    assert_eq!(
        mail.subject.as_deref(),
        Some("Confirm your email address for Default")
    );
    let token = token_in(&mail);
    let (code_id, secret) = token.split_once('.').expect("<code id>.<secret>");
    assert!(
        enroll_core::ids::CodeId::parse(code_id).is_some(),
        "{token}"
    );
    assert_eq!(secret.len(), 32, "{token}: 165 bits");
    assert!(!verified(app, "jane@example.com").await);

    let reply = verify(app, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.header("set-cookie").is_none(),
        "verifying logs no one in"
    );
    let user = reply.json();
    assert_eq!(user["email"], "jane@example.com");
    assert_eq!(user["name"], "Jane Doe");
    assert_eq!(user["emailVerified"], true);
    assert_eq!(user["roles"], json!(["USER"]));
    assert!(verified(app, "jane@example.com").await);

    let again = verify(app, &token).await;
    assert_eq!(again.status, 304, "a verified address: {}", again.body);
    assert!(again.body.is_empty(), "a 304 has no body");
}

#[tokio::test]
async fn a_sign_up_is_verified_through_the_mailed_link() {
    sign_up_and_verify(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn a_sign_up_is_verified_through_the_mailed_link_on_postgres() {
    sign_up_and_verify(&TestApp::spawn_on(Db::Postgres).await).await;
}

#[tokio::test]
async fn a_taken_address_answers_alike_and_tells_its_owner() {
    let app = TestApp::spawn().await;
    let first = register(&app, "jane@example.com", "", &[]).await;
    app.mails_to("jane@example.com", 1).await;
    app.pass_cooldown();
    let second = app
        .post(
            "/api/auth/register",
            json!({ "email": "jane@example.com", "password": "another good secret", "name": "Mallory" })
                .to_string(),
            &[],
        )
        .await;
    assert_eq!((second.status, &second.body), (first.status, &first.body));
    let mails = app.mails_to("jane@example.com", 2).await;
    assert_eq!(
        mails[1].subject.as_deref(),
        Some("Sign-up attempt with your email address at Default")
    );
    assert_eq!(login(&app, "jane@example.com", PASSWORD).await.status, 200);
    assert_eq!(
        login(&app, "jane@example.com", "another good secret")
            .await
            .status,
        401,
        "the attempt changed nothing"
    );

    // Within the cooldown the owner is not told again, and the answer is still the same.
    let third = register(&app, "jane@example.com", "", &[]).await;
    assert_eq!((third.status, &third.body), (first.status, &first.body));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.mails_to("jane@example.com", 2).await.len(), 2);
}

#[tokio::test]
async fn a_resend_inside_the_cooldown_is_refused_then_voids_the_old_link() {
    let app = TestApp::spawn().await;
    let (access, _) = signed_in(&app, "jane@example.com").await;
    let first = token_in(&app.mails_to("jane@example.com", 1).await[0]);

    let refused = send_verification(&app, &access).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("60"));
    insta::assert_json_snapshot!("cooldown_active", error_body(&refused));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.mails_to("jane@example.com", 1).await.len(),
        1,
        "a refused send sends nothing"
    );

    app.pass_cooldown();
    let sent = send_verification(&app, &access).await;
    assert_eq!((sent.status, sent.json()), (200, json!({ "cooldown": 60 })));
    let second = token_in(&app.mails_to("jane@example.com", 2).await[1]);
    assert_ne!(first, second);

    let old = verify(&app, &first).await;
    assert_eq!(old.status, 401);
    insta::assert_json_snapshot!("verification_token_invalid", error_body(&old));
    assert_eq!(verify(&app, &second).await.status, 200);

    app.pass_cooldown();
    let already = send_verification(&app, &access).await;
    assert_eq!(already.status, 304);
    assert!(already.body.is_empty());
}

#[tokio::test]
async fn the_cooldown_endpoint_tells_the_time_left_and_how_the_last_email_fared() {
    let app = TestApp::spawn().await;
    let (access, _) = signed_in(&app, "jane@example.com").await;
    app.recorded_sent("jane@example.com", 1).await;
    app.clock.advance(Duration::from_secs(15));
    let reply = app
        .get_with(
            "/api/auth/email/verification/cooldown",
            &[("authorization", &bearer(&access))],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["remaining"], 45);
    assert_eq!(body["lastEmail"]["state"], "sent");
    assert_eq!(body["lastEmail"]["attempts"], 1);

    app.clock.advance(Duration::from_secs(45));
    let body = app
        .get_with(
            "/api/auth/email/verification/cooldown",
            &[("authorization", &bearer(&access))],
        )
        .await
        .json();
    assert_eq!(body["remaining"], 0);
}

#[tokio::test]
async fn with_mail_switched_off_sends_are_refused_with_503() {
    let app = TestApp::spawn_with(Options {
        settings: Box::new(|settings| settings.singularity_mail_enabled = false),
        ..Options::default()
    })
    .await;
    let (access, _) = signed_in(&app, "jane@example.com").await;
    assert!(
        !verified(&app, "jane@example.com").await,
        "no email, and the address is not verified either"
    );
    let reply = send_verification(&app, &access).await;
    assert_eq!(reply.status, 503);
    insta::assert_json_snapshot!("email_disabled", error_body(&reply));
    let reset = app
        .post(
            "/api/auth/password/reset-request",
            json!({ "email": "jane@example.com" }).to_string(),
            &[],
        )
        .await;
    assert_eq!(reset.status, 503);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.smtp().messages().is_empty(), "no email at all");
}

async fn request_reset(app: &TestApp, email: &str) -> Reply {
    app.post(
        "/api/auth/password/reset-request",
        json!({ "email": email }).to_string(),
        &[],
    )
    .await
}

#[tokio::test]
async fn a_reset_for_an_unknown_address_looks_the_same_and_mails_no_account() {
    let app = TestApp::spawn().await;
    signed_in(&app, "jane@example.com").await;
    app.mails_to("jane@example.com", 1).await;
    let known = request_reset(&app, "jane@example.com").await;
    let unknown = request_reset(&app, "nobody@example.com").await;
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    assert_eq!(known.json(), json!({ "cooldown": 60 }));
    let reset_mail = &app.mails_to("jane@example.com", 2).await[1];
    assert_eq!(
        reset_mail.subject.as_deref(),
        Some("Reset your password for Default")
    );
    let no_account = &app.mails_to("nobody@example.com", 1).await[0];
    assert_eq!(
        no_account.subject.as_deref(),
        Some("Password reset requested for Default")
    );
    assert!(
        no_account
            .text_body()
            .unwrap()
            .contains("/ui/auth/register"),
        "it points to the sign-up page"
    );

    // Within the cooldown, both answer 429 alike.
    let known = request_reset(&app, "jane@example.com").await;
    let unknown = request_reset(&app, "nobody@example.com").await;
    assert_eq!((known.status, unknown.status), (429, 429));
    assert_eq!(error_body(&known)["code"], error_body(&unknown)["code"]);
    let cooldown = app
        .get("/api/auth/password/reset/cooldown?email=nobody@example.com")
        .await;
    assert_eq!(cooldown.json()["remaining"], 60);
}

#[tokio::test]
async fn a_reset_takes_as_long_for_an_unknown_address() {
    let _exclusive = EXCLUSIVE.lock().await;
    // 25 resets to one address: more than its daily cap.
    let app = TestApp::spawn_with(Options {
        settings: Box::new(|settings| settings.max_emails_per_address = 100),
        ..Options::default()
    })
    .await;
    signed_in(&app, "jane@example.com").await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for round in 0..25 {
        app.pass_cooldown();
        for (email, times) in [
            ("jane@example.com".to_owned(), &mut known),
            (format!("nobody-{round}@example.com"), &mut unknown),
        ] {
            let started = Instant::now();
            assert_eq!(request_reset(&app, &email).await.status, 200);
            times.push(started.elapsed());
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (known, unknown) = (median(&mut known), median(&mut unknown));
    let difference = known.abs_diff(unknown);
    assert!(
        difference < Duration::from_millis(10),
        "median {known:?} for the account, {unknown:?} for unknown addresses"
    );
}

#[tokio::test]
async fn access_tokens_expire_fail_when_tampered_and_are_required() {
    let app = TestApp::spawn().await;
    let (access, _) = signed_in(&app, "jane@example.com").await;
    let me = app
        .get_with("/api/users/me", &[("authorization", &bearer(&access))])
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["email"], "jane@example.com");

    let missing = app.get("/api/users/me").await;
    assert_eq!(missing.status, 401);
    insta::assert_json_snapshot!("authentication_required", error_body(&missing));

    let mut tampered = access.clone();
    tampered.insert(tampered.find('.').unwrap() + 3, 'x');
    let reply = app
        .get_with("/api/users/me", &[("authorization", &bearer(&tampered))])
        .await;
    assert_eq!(reply.status, 401);
    insta::assert_json_snapshot!("access_token_invalid", error_body(&reply));

    app.clock.advance(Duration::from_secs(15 * 60));
    let reply = app
        .get_with("/api/users/me", &[("authorization", &bearer(&access))])
        .await;
    assert_eq!(reply.status, 401);
    insta::assert_json_snapshot!("access_token_expired", error_body(&reply));
}

#[tokio::test]
async fn sessions_live_in_http_only_cookies_and_logout_ends_them() {
    let app = TestApp::spawn().await;
    assert_eq!(
        register(&app, "jane@example.com", "", &[]).await.status,
        201
    );
    let reply = login(&app, "jane@example.com", PASSWORD).await;
    let cookies: Vec<&str> = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 2);
    let body = reply.json();
    let access = body["accessToken"].as_str().unwrap();
    assert_eq!(
        cookies[0],
        format!("access_token={access}; Path=/; Max-Age=900; HttpOnly; SameSite=Strict")
    );
    assert!(cookies[1].starts_with("refresh_token=") && cookies[1].contains("Max-Age=86400"));
    assert_eq!(body["user"]["emailVerified"], false);
    assert_eq!(body["twoFactorRequired"], false);

    let cookie = format!("access_token={access}");
    let me = app.get_with("/api/users/me", &[("cookie", &cookie)]).await;
    assert_eq!(me.status, 200, "the cookie alone authenticates");

    let out = app
        .post("/api/auth/logout", String::new(), &[("cookie", &cookie)])
        .await;
    assert_eq!((out.status, out.json()), (200, json!({ "success": true })));
    let cleared: Vec<&str> = out
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert_eq!(
        cleared,
        [
            "access_token=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict",
            "refresh_token=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        ]
    );
    let after = app.get_with("/api/users/me", &[("cookie", &cookie)]).await;
    assert_eq!(after.status, 401, "the session ended");
    assert_eq!(error_body(&after)["code"], "ACCESS_TOKEN_INVALID");
}

#[tokio::test]
async fn a_refresh_token_works_once_and_its_reuse_ends_the_session() {
    let app = TestApp::spawn().await;
    let (access, refresh) = signed_in(&app, "jane@example.com").await;
    // Something that is not one of our refresh tokens is refused and ends nothing.
    for wrong in [access.as_str(), "not a token", &app.admin_token] {
        let reply = app
            .post(
                "/api/auth/refresh",
                String::new(),
                &[("authorization", &bearer(wrong))],
            )
            .await;
        assert_eq!(error_body(&reply)["code"], "REFRESH_TOKEN_INVALID");
    }
    let me = app
        .get_with("/api/users/me", &[("authorization", &bearer(&access))])
        .await;
    assert_eq!(me.status, 200, "the session lives on");
    let renewed = app
        .post(
            "/api/auth/refresh",
            String::new(),
            &[("cookie", &format!("refresh_token={refresh}"))],
        )
        .await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let body = renewed.json();
    let (access, next) = (
        body["accessToken"].as_str().unwrap().to_owned(),
        body["refreshToken"].as_str().unwrap().to_owned(),
    );
    assert_ne!(next, refresh);
    let me = app
        .get_with("/api/users/me", &[("authorization", &bearer(&access))])
        .await;
    assert_eq!(me.status, 200);

    let reused = app
        .post(
            "/api/auth/refresh",
            String::new(),
            &[("authorization", &bearer(&refresh))],
        )
        .await;
    assert_eq!(reused.status, 401);
    insta::assert_json_snapshot!("refresh_token_invalid", error_body(&reused));
    let me = app
        .get_with("/api/users/me", &[("authorization", &bearer(&access))])
        .await;
    assert_eq!(me.status, 401, "a copied refresh token ends the session");
    let next = app
        .post(
            "/api/auth/refresh",
            String::new(),
            &[("authorization", &bearer(&next))],
        )
        .await;
    assert_eq!(next.status, 401);

    let missing = app.post("/api/auth/refresh", String::new(), &[]).await;
    assert_eq!(error_body(&missing)["code"], "REFRESH_TOKEN_MISSING");

    let (_, refresh) = signed_in(&app, "sam@example.com").await;
    app.clock.advance(Duration::from_secs(24 * 3600));
    let expired = app
        .post(
            "/api/auth/refresh",
            String::new(),
            &[("authorization", &bearer(&refresh))],
        )
        .await;
    assert_eq!(error_body(&expired)["code"], "REFRESH_TOKEN_EXPIRED");
}

#[tokio::test]
async fn a_password_reset_sets_the_password_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let (access, refresh) = signed_in(&app, "jane@example.com").await;
    let other_access = login(&app, "jane@example.com", PASSWORD).await.json()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    app.mails_to("jane@example.com", 1).await;
    assert_eq!(request_reset(&app, "jane@example.com").await.status, 200);
    let token = token_in(&app.mails_to("jane@example.com", 2).await[1]);

    let weak = app
        .post(
            &format!("/api/auth/password/reset?token={token}"),
            json!({ "newPassword": "password1" }).to_string(),
            &[],
        )
        .await;
    assert_eq!(weak.status, 400);
    insta::assert_json_snapshot!("password_too_common", error_body(&weak));

    let reset = app
        .post(
            &format!("/api/auth/password/reset?token={token}"),
            json!({ "newPassword": "a new and better secret" }).to_string(),
            &[],
        )
        .await;
    assert_eq!(
        (reset.status, reset.json()),
        (200, json!({ "success": true }))
    );
    for access in [&access, &other_access] {
        let me = app
            .get_with("/api/users/me", &[("authorization", &bearer(access))])
            .await;
        assert_eq!(me.status, 401, "every session ended");
    }
    let refreshed = app
        .post(
            "/api/auth/refresh",
            String::new(),
            &[("authorization", &bearer(&refresh))],
        )
        .await;
    assert_eq!(refreshed.status, 401);
    assert_eq!(login(&app, "jane@example.com", PASSWORD).await.status, 401);
    assert_eq!(
        login(&app, "jane@example.com", "a new and better secret")
            .await
            .status,
        200
    );

    let again = app
        .post(
            &format!("/api/auth/password/reset?token={token}"),
            json!({ "newPassword": "yet another good one" }).to_string(),
            &[],
        )
        .await;
    assert_eq!(again.status, 401, "the token worked once");
    insta::assert_json_snapshot!("reset_token_invalid", error_body(&again));
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address_known_or_not() {
    let app = TestApp::spawn().await;
    assert_eq!(
        register(&app, "jane@example.com", "", &[]).await.status,
        201
    );
    for email in ["jane@example.com", "nobody@example.com"] {
        for _ in 0..5 {
            let reply = login(&app, email, "wrong password here").await;
            assert_eq!(reply.status, 401);
            assert_eq!(error_body(&reply)["code"], "INVALID_CREDENTIALS");
        }
        let refused = login(&app, email, PASSWORD).await;
        assert_eq!(
            refused.status, 429,
            "{email}: even the right password waits"
        );
        assert_eq!(refused.header("retry-after"), Some("900"));
        insta::assert_json_snapshot!("login_throttled", error_body(&refused));
    }
    app.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(login(&app, "jane@example.com", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn bad_input_gets_singularitys_error_body() {
    let app = TestApp::spawn().await;
    let short = app
        .post(
            "/api/auth/register",
            json!({ "email": "jane@example.com", "password": "short", "name": "Jane" }).to_string(),
            &[],
        )
        .await;
    assert_eq!(short.status, 400);
    assert_eq!(short.header("content-type"), Some("application/json"));
    let order: Vec<usize> = ["timestamp", "status", "code", "error", "message", "path"]
        .iter()
        .map(|key| short.body.find(&format!("\"{key}\":")).expect(key))
        .collect();
    assert!(
        order.is_sorted(),
        "Singularity's field order: {}",
        short.body
    );
    insta::assert_json_snapshot!("password_too_short", error_body(&short));
    let email = app
        .post(
            "/api/auth/register",
            json!({ "email": "not an address", "password": PASSWORD, "name": "Jane" }).to_string(),
            &[],
        )
        .await;
    assert_eq!(email.status, 400);
    insta::assert_json_snapshot!("invalid_email", error_body(&email));
    let missing = app
        .post(
            "/api/auth/register",
            json!({ "email": "jane@example.com" }).to_string(),
            &[],
        )
        .await;
    assert_eq!(missing.status, 422);
    assert_eq!(error_body(&missing)["code"], "INVALID_REQUEST");
    let locale = register(&app, "jane@example.com", "?locale=x_y_z", &[]).await;
    assert_eq!(locale.status, 400);
    assert_eq!(error_body(&locale)["path"], "/api/auth/register");
    let no_token = app
        .post("/api/auth/email/verification", String::new(), &[])
        .await;
    assert_eq!(no_token.status, 401);
    insta::assert_json_snapshot!("verification_token_missing", error_body(&no_token));
    let wrong = verify(&app, "cd-aaaaa-aaaaa-aaaaaaaaaaaaaaaa.NOTATOKEN").await;
    assert_eq!(
        error_body(&wrong)["code"],
        "EMAIL_VERIFICATION_TOKEN_INVALID"
    );
    assert!(
        app.enroll.store().users(None).await.unwrap().len() == 1,
        "nothing was written"
    );
}

#[tokio::test]
async fn emails_follow_the_request_then_the_browser_language() {
    let app = TestApp::spawn().await;
    register(&app, "anna@example.com", "?locale=de", &[]).await;
    let german = &app.mails_to("anna@example.com", 1).await[0];
    assert_eq!(
        german.subject.as_deref(),
        Some("Bestätigen Sie Ihre E-Mail-Adresse für Default")
    );
    register(
        &app,
        "louise@example.com",
        "",
        &[("accept-language", "fr-CH, fr;q=0.9")],
    )
    .await;
    let french = &app.mails_to("louise@example.com", 1).await[0];
    assert!(
        french.subject.as_deref().unwrap().contains("Confirmez"),
        "{:?}",
        french.subject
    );
    // The saved language outlives the request: a later email is German too.
    let reply = login(&app, "anna@example.com", PASSWORD).await.json();
    app.pass_cooldown();
    let access = reply["accessToken"].as_str().unwrap();
    assert_eq!(send_verification(&app, access).await.status, 200);
    let again = &app.mails_to("anna@example.com", 2).await[1];
    assert!(again.subject.as_deref().unwrap().starts_with("Bestätigen"));
}

async fn submit(app: &TestApp, path: &str, fields: &[(&str, &str)], language: &str) -> Reply {
    let response = app
        .client
        .post(app.url(path))
        .header("accept-language", language)
        .form(fields)
        .send()
        .await
        .unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

fn outcome(page: &Reply) -> &str {
    let start = page.body.find("data-outcome=\"").expect("a page") + "data-outcome=\"".len();
    let end = page.body[start..].find('"').unwrap();
    &page.body[start..start + end]
}

/// Without a frontend configured, the emails link to the hosted pages: a GET shows a form and
/// changes nothing, the POST acts.
#[tokio::test]
async fn the_hosted_pages_confirm_and_reset_only_when_submitted() {
    let app = TestApp::spawn().await;
    let signed_up = submit(
        &app,
        "/ui/auth/register",
        &[
            ("name", "Jane Doe"),
            ("email", "jane@example.com"),
            ("password", PASSWORD),
        ],
        "en",
    )
    .await;
    assert_eq!((signed_up.status, outcome(&signed_up)), (200, "registered"));
    let mail = &app.mails_to("jane@example.com", 1).await[0];
    let link = mail
        .text_body()
        .unwrap()
        .lines()
        .find(|line| line.contains("token="))
        .unwrap()
        .trim()
        .to_owned();
    assert!(link.starts_with(&format!("{}/ui/auth/verify-email?token=", app.base_url)));
    for _ in 0..3 {
        let page = app.get(link.trim_start_matches(&app.base_url)).await;
        assert_eq!((page.status, outcome(&page)), (200, "form"));
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    }
    assert!(
        !verified(&app, "jane@example.com").await,
        "a GET verifies nothing"
    );
    let token = token_in(mail);
    let done = submit(&app, "/ui/auth/verify-email", &[("token", &token)], "de").await;
    assert_eq!((done.status, outcome(&done)), (200, "verified"));
    assert!(
        done.body.contains(r#"<html lang="en">"#),
        "the user's language: {}",
        done.body
    );
    assert!(verified(&app, "jane@example.com").await);
    let again = submit(&app, "/ui/auth/verify-email", &[("token", &token)], "en").await;
    assert_eq!(outcome(&again), "already-verified");

    let forgot = submit(
        &app,
        "/ui/auth/forgot-password",
        &[("email", "jane@example.com")],
        "fr",
    )
    .await;
    assert_eq!((forgot.status, outcome(&forgot)), (200, "sent"));
    assert!(forgot.body.contains(r#"<html lang="fr">"#));
    let unknown = submit(
        &app,
        "/ui/auth/forgot-password",
        &[("email", "nobody@example.com")],
        "fr",
    )
    .await;
    assert_eq!(
        (unknown.status, outcome(&unknown)),
        (200, "sent"),
        "the same page"
    );
    let reset_mail = &app.mails_to("jane@example.com", 2).await[1];
    let reset_token = token_in(reset_mail);
    assert!(
        reset_mail
            .text_body()
            .unwrap()
            .contains(&format!("{}/ui/auth/reset-password?token=", app.base_url))
    );
    let form = app
        .get(&format!("/ui/auth/reset-password?token={reset_token}"))
        .await;
    assert_eq!(outcome(&form), "form");
    assert!(form.body.contains(r#"type="password""#));
    let weak = submit(
        &app,
        "/ui/auth/reset-password",
        &[("token", &reset_token), ("password", "short")],
        "en",
    )
    .await;
    assert_eq!((weak.status, outcome(&weak)), (400, "rejected"));
    assert!(weak.body.contains("at least 8 characters"), "{}", weak.body);
    let reset = submit(
        &app,
        "/ui/auth/reset-password",
        &[
            ("token", &reset_token),
            ("password", "a new and better secret"),
        ],
        "en",
    )
    .await;
    assert_eq!((reset.status, outcome(&reset)), (200, "done"));
    assert_eq!(
        login(&app, "jane@example.com", "a new and better secret")
            .await
            .status,
        200
    );
    let used = submit(
        &app,
        "/ui/auth/reset-password",
        &[("token", &reset_token), ("password", "one more new secret")],
        "en",
    )
    .await;
    assert_eq!((used.status, outcome(&used)), (400, "invalid"));
    assert!(used.body.contains(r#"href="/ui/auth/forgot-password""#));
}

/// Every endpoint of the face is in `/openapi.json` with the codes it answers with.
#[tokio::test]
async fn the_openapi_document_lists_every_endpoint_and_its_codes() {
    let app = TestApp::spawn_with(Options {
        smtp: false,
        ..Options::default()
    })
    .await;
    let reply = app.get("/openapi.json").await;
    assert_eq!(reply.status, 200);
    let document = reply.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let codes_of = |method: &str, path: &str| -> String {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        operation["responses"].to_string()
    };
    for (method, path, codes) in [
        (
            "post",
            "/api/auth/register",
            &[
                "PASSWORD_TOO_COMMON",
                "INVALID_REQUEST",
                "EMAIL_COOLDOWN_ACTIVE",
            ][..],
        ),
        (
            "post",
            "/api/auth/login",
            &["INVALID_CREDENTIALS", "LOGIN_ATTEMPTS_EXCEEDED"],
        ),
        (
            "post",
            "/api/auth/refresh",
            &["REFRESH_TOKEN_MISSING", "REFRESH_TOKEN_INVALID"],
        ),
        ("post", "/api/auth/logout", &[]),
        (
            "get",
            "/api/users/me",
            &["ACCESS_TOKEN_EXPIRED", "USER_NOT_FOUND"],
        ),
        (
            "post",
            "/api/auth/email/verification/send",
            &[
                "EMAIL_ALREADY_VERIFIED",
                "EMAIL_COOLDOWN_ACTIVE",
                "EMAIL_DISABLED",
                "AUTHENTICATION_REQUIRED",
                "ACCESS_TOKEN_INVALID",
                "USER_NOT_FOUND",
                "DATABASE_FAILURE",
                "EMAIL_SEND_FAILURE",
                "EMAIL_TEMPLATE_FAILURE",
            ],
        ),
        (
            "get",
            "/api/auth/email/verification/cooldown",
            &["ACCESS_TOKEN_EXPIRED"],
        ),
        (
            "post",
            "/api/auth/email/verification",
            &[
                "EMAIL_VERIFICATION_TOKEN_MISSING",
                "EMAIL_VERIFICATION_TOKEN_INVALID",
                "EMAIL_VERIFICATION_TOKEN_EXPIRED",
                "EMAIL_ALREADY_VERIFIED",
            ],
        ),
        (
            "post",
            "/api/auth/password/reset-request",
            &["EMAIL_COOLDOWN_ACTIVE", "EMAIL_DISABLED"],
        ),
        (
            "get",
            "/api/auth/password/reset/cooldown",
            &["INVALID_REQUEST"],
        ),
        (
            "post",
            "/api/auth/password/reset",
            &[
                "PASSWORD_RESET_TOKEN_INVALID",
                "PASSWORD_RESET_TOKEN_EXPIRED",
                "PASSWORD_TOO_SHORT",
            ],
        ),
    ] {
        let responses = codes_of(method, path);
        for code in codes {
            assert!(
                responses.contains(code),
                "{method} {path} lists {code}: {responses}"
            );
        }
    }
    assert_eq!(
        document["components"]["schemas"]["ErrorResponse"]["required"],
        json!(["timestamp", "status", "code", "error", "message", "path"])
    );
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["access_cookie"]["name"], "access_token");
}

#[tokio::test]
async fn a_sign_up_takes_as_long_for_a_taken_address() {
    let _exclusive = EXCLUSIVE.lock().await;
    let app = TestApp::spawn_with(Options {
        smtp: false,
        ..Options::default()
    })
    .await;
    register(&app, "jane@example.com", "", &[]).await;
    let mut taken = Vec::new();
    let mut new = Vec::new();
    for round in 0..12 {
        for (email, times) in [
            ("jane@example.com".to_owned(), &mut taken),
            (format!("new-{round}@example.com"), &mut new),
        ] {
            let started = Instant::now();
            assert_eq!(register(&app, &email, "", &[]).await.status, 201);
            times.push(started.elapsed());
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (taken, new) = (median(&mut taken), median(&mut new));
    // Both hash the password; without that, the taken address would answer in a fraction of
    // the time (and with a second hash, in twice the time).
    assert!(
        taken > new / 2 && taken < new * 2,
        "median {taken:?} for a taken address, {new:?} for new ones"
    );
}

/// Past the per-client limit, a client is refused even for addresses it never tried.
#[tokio::test]
async fn failed_logins_are_throttled_per_client_across_addresses() {
    let app = TestApp::spawn_with(Options {
        smtp: false,
        ..Options::default()
    })
    .await;
    register(&app, "jane@example.com", "", &[]).await;
    for index in 0..20 {
        let reply = login(
            &app,
            &format!("guess-{index}@example.com"),
            "a wrong password",
        )
        .await;
        assert_eq!(reply.status, 401, "{index}");
    }
    let refused = login(&app, "jane@example.com", PASSWORD).await;
    assert_eq!(refused.status, 429);
    assert_eq!(error_body(&refused)["code"], "LOGIN_ATTEMPTS_EXCEEDED");
}
