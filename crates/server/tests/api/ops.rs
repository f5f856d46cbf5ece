//! Health, readiness, metrics and the answers to paths nobody serves.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
    let ready = app.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (200, r#"{"status":"ready"}"#)
    );
}

#[tokio::test]
async fn metrics_count_requests_and_emails() {
    let app = TestApp::spawn().await;
    app.create_user("jane@example.com").await;
    app.mails_to("jane@example.com", 1).await;
    app.pass_cooldown();
    app.resend(&json!({"username": "jane@example.com", "orgId": app.org_id}))
        .await;
    app.mails_to("jane@example.com", 2).await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.body;
    assert!(
        text.contains(
            r#"http_requests_total{route="/auth/registration/code",method="PUT",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("emails_sent_total 2"), "{text}");
    assert!(text.contains("outbox_depth 0"), "{text}");
    // The user created through the core counts as queued too; the resend went through HTTP.
    assert!(text.contains("emails_queued_total 2"), "{text}");
    // The SQLite writer's own: the creation, the resend, and the outbox's claims and records.
    let counter = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix("_total "))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    let (requests, batches) = (
        counter("sqlite_write_requests"),
        counter("sqlite_write_batches"),
    );
    assert!(requests >= 6 && (1..=requests).contains(&batches), "{text}");
    assert!(
        (1..=batches).contains(&counter("sqlite_log_syncs")),
        "{text}"
    );
    assert!(
        counter("sqlite_writer_busy_microseconds") >= counter("sqlite_commit_microseconds"),
        "{text}"
    );
    assert!(
        text.contains("# HELP sqlite_log_sync_microseconds"),
        "{text}"
    );
}

#[tokio::test]
async fn the_first_start_keeps_an_admin_token_and_a_private_secret() {
    let app = TestApp::spawn().await;
    let presented = enroll_core::secret::TokenSecret::from_presented(&app.admin_token);
    let token = app
        .enroll
        .store()
        .token_by_digest(&presented.digest())
        .await
        .unwrap();
    let token = token.expect("the admin token is stored by its digest");
    assert_eq!(token.org_id, app.org_id);
    assert_eq!(token.permissions, enroll_core::model::Permission::all());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for file in ["secret.key", "bootstrap.json"] {
            let mode = std::fs::metadata(app.data_dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_json() {
    let app = TestApp::spawn().await;
    let missing = app.get("/nope").await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (404, r#"{"error":{"message":"Not Found"}}"#)
    );
    let wrong_method = app.get("/auth/registration/code").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(
        wrong_method.body,
        r#"{"error":{"message":"Method Not Allowed"}}"#
    );
}
