//! `PUT /auth/registration/code` and the legacy `PUT /auth/manage/users/send-registration-email`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use enroll_core::model::Permission;
use enroll_core::rules::CodeUse;
use serde_json::json;

use crate::helpers::{Db, TestApp};

const SUCCESS: &str = r#"{"message":"success"}"#;

async fn resend_replaces_the_code(db: Db, path: &str) {
    let app = TestApp::spawn_on(db).await;
    app.create_user("jane@example.com").await;
    let first = app.code_in_mail("jane@example.com", 1).await;
    assert!(app.code_verifies("jane@example.com", &first).await);

    app.pass_cooldown();
    let reply = app
        .put(
            path,
            json!({"username": "jane@example.com", "orgId": app.org_id}).to_string(),
            &[],
        )
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, SUCCESS));
    assert_eq!(reply.header("content-type"), Some("application/json"));

    let second = app.code_in_mail("jane@example.com", 2).await;
    assert_ne!(first, second);
    assert!(
        !app.code_verifies("jane@example.com", &first).await,
        "the old code is void"
    );
    let user = app
        .verify("jane@example.com", &second, CodeUse::Consume)
        .await
        .unwrap();
    assert_eq!(user.state.as_str(), "Registered");
}

#[tokio::test]
async fn resend_replaces_the_code_on_sqlite() {
    resend_replaces_the_code(Db::Sqlite, "/auth/registration/code").await;
}

#[tokio::test]
async fn resend_replaces_the_code_on_postgres() {
    resend_replaces_the_code(Db::Postgres, "/auth/registration/code").await;
}

#[tokio::test]
async fn the_legacy_path_replaces_the_code_too() {
    resend_replaces_the_code(Db::Sqlite, "/auth/manage/users/send-registration-email").await;
}

#[tokio::test]
async fn unknown_registered_and_pending_users_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.create_user("pending@example.com").await;
    app.create_user("done@example.com").await;
    let code = app.code_in_mail("done@example.com", 1).await;
    app.verify("done@example.com", &code, CodeUse::Consume)
        .await
        .unwrap();
    app.pass_cooldown();

    let mut replies = Vec::new();
    for (username, org) in [
        ("pending@example.com", app.org_id.to_string()),
        ("done@example.com", app.org_id.to_string()),
        ("nobody@example.com", app.org_id.to_string()),
        (
            "pending@example.com",
            "or-00000-00000-0000000000000000".to_owned(),
        ),
        ("not an address", app.org_id.to_string()),
    ] {
        let reply = app
            .resend(&json!({"username": username, "orgId": org}))
            .await;
        replies.push((reply.status, reply.body));
    }
    assert!(
        replies
            .iter()
            .all(|reply| *reply == (200, SUCCESS.to_owned())),
        "{replies:?}"
    );
    // Only the pending user got a second email.
    app.mails_to("pending@example.com", 2).await;
    app.mails_to("done@example.com", 1).await;
    assert!(
        app.smtp()
            .messages()
            .iter()
            .all(|mail| mail.to != ["nobody@example.com"])
    );
}

#[tokio::test]
async fn a_second_request_inside_the_cooldown_is_refused_with_retry_after() {
    let app = TestApp::spawn().await;
    app.create_user("jane@example.com").await;
    app.clock.advance(std::time::Duration::from_secs(20));
    let body = json!({"username": "jane@example.com", "orgId": app.org_id});
    let reply = app.resend(&body).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("40"));
    insta::assert_snapshot!(reply.body, @r#"{"error":{"message":"A registration code was sent recently; a new one can be requested in 40 seconds."}}"#);

    // Unknown addresses have cooldowns too, so a refusal tells nothing about the account.
    let unknown = json!({"username": "nobody@example.com", "orgId": app.org_id});
    assert_eq!(app.resend(&unknown).await.status, 200);
    assert_eq!(app.resend(&unknown).await.status, 429);
}

#[tokio::test]
async fn fifty_concurrent_resends_yield_one_code_and_one_email() {
    let app = TestApp::spawn().await;
    app.create_user("jane@example.com").await;
    let first = app.code_in_mail("jane@example.com", 1).await;
    app.pass_cooldown();
    let body = json!({"username": "jane@example.com", "orgId": app.org_id});
    let replies = futures_util::future::join_all((0..50).map(|_| app.resend(&body))).await;
    let accepted = replies.iter().filter(|reply| reply.status == 200).count();
    let refused = replies.iter().filter(|reply| reply.status == 429).count();
    assert_eq!((accepted, refused), (1, 49));
    let second = app.code_in_mail("jane@example.com", 2).await;
    // Give a duplicate every chance to show up before counting.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.mails_to("jane@example.com", 2).await;
    assert!(!app.code_verifies("jane@example.com", &first).await);
    assert!(app.code_verifies("jane@example.com", &second).await);
}

#[tokio::test]
async fn malformed_bodies_get_dfns_errors() {
    let app = TestApp::spawn_with(crate::helpers::Options {
        smtp: false,
        ..Default::default()
    })
    .await;
    let cases = [
        ("not json", "{"),
        ("missing orgId", r#"{"username":"jane@example.com"}"#),
        ("empty username", r#"{"username":"","orgId":"or-x"}"#),
        (
            "extra field",
            r#"{"username":"a@b.co","orgId":"or-x","kind":"EndUser"}"#,
        ),
        ("wrong type", r#"{"username":1,"orgId":"or-x"}"#),
    ];
    let mut seen = Vec::new();
    for (case, body) in cases {
        let reply = app
            .put("/auth/registration/code", body.to_owned(), &[])
            .await;
        assert_eq!(reply.status, 400, "{case}");
        seen.push(format!("{case}: {}", reply.body));
    }
    insta::assert_snapshot!(seen.join("\n"));
    assert_eq!(app.outbox_len().await, 0);
}

fn nonce(uuid: &str, date: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"uuid": uuid, "date": date}).to_string())
}

#[tokio::test]
async fn a_replayed_nonce_changes_nothing() {
    let app = TestApp::spawn().await;
    app.create_user("jane@example.com").await;
    app.code_in_mail("jane@example.com", 1).await;
    app.pass_cooldown();
    let now = app.enroll.clock().now().to_rfc3339();
    let header = nonce("5f0c8a3e-2b1d-4c7e-9a6f-0d1e2f3a4b5c", &now);
    let body = json!({"username": "jane@example.com", "orgId": app.org_id}).to_string();

    let first = app
        .put(
            "/auth/registration/code",
            body.clone(),
            &[("x-dfns-nonce", &header)],
        )
        .await;
    assert_eq!((first.status, first.body.as_str()), (200, SUCCESS));
    let messages = app.outbox_len().await;

    app.pass_cooldown();
    let replay = app
        .put(
            "/auth/registration/code",
            body.clone(),
            &[("x-dfns-nonce", &header)],
        )
        .await;
    assert_eq!(replay.status, 400);
    assert_eq!(
        replay.body,
        r#"{"error":{"message":"request nonce has already been used"}}"#
    );
    assert_eq!(app.outbox_len().await, messages, "no new message");

    let stale = nonce(
        "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "2020-01-01T00:00:00.000Z",
    );
    let reply = app
        .put("/auth/registration/code", body, &[("x-dfns-nonce", &stale)])
        .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            400,
            r#"{"error":{"message":"request nonce is missing or invalid"}}"#
        )
    );
    app.mails_to("jane@example.com", 2).await;
}

#[tokio::test]
async fn apps_are_checked_when_they_identify_themselves() {
    let app = TestApp::spawn().await;
    app.create_user("jane@example.com").await;
    app.pass_cooldown();
    let body = json!({"username": "jane@example.com", "orgId": app.org_id}).to_string();

    let unknown = app
        .put(
            "/auth/registration/code",
            body.clone(),
            &[("x-dfns-appid", "ap-00000-00000-0000000000000000")],
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (401, r#"{"error":{"message":"Not Authorized."}}"#)
    );

    let weak = app
        .enroll
        .create_app(&app.org_id, "weak", vec![Permission::AUTH_USERS_CREATE])
        .await
        .unwrap();
    let legacy = app
        .put(
            "/auth/manage/users/send-registration-email",
            body.clone(),
            &[("x-dfns-appid", weak.id.as_str())],
        )
        .await;
    assert_eq!(legacy.status, 403);
    assert_eq!(
        legacy.json()["error"]["message"],
        format!(
            "Application {} is not authorized to perform operation (Auth:Types:Employee)",
            weak.id
        )
    );
    // The current path asks for no permission.
    let current = app
        .put(
            "/auth/registration/code",
            body.clone(),
            &[("x-dfns-appid", weak.id.as_str())],
        )
        .await;
    assert_eq!(current.status, 200);

    app.pass_cooldown();
    let strong = app
        .enroll
        .create_app(
            &app.org_id,
            "strong",
            vec![
                Permission::AUTH_USERS_CREATE,
                Permission::AUTH_TYPES_EMPLOYEE,
            ],
        )
        .await
        .unwrap();
    let allowed = app
        .put(
            "/auth/manage/users/send-registration-email",
            body,
            &[("x-dfns-appid", strong.id.as_str())],
        )
        .await;
    assert_eq!((allowed.status, allowed.body.as_str()), (200, SUCCESS));
}
