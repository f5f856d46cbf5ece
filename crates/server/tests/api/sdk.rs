//! The real `@dfns/sdk` from npm against the server (`tests/node`, installed by `scripts/test`).

use std::process::Stdio;
use std::time::Duration;

use enroll_core::ids::UserId;
use enroll_core::model::Permission;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::helpers::{Options, TestApp, node_dir, run_node};

#[tokio::test]
async fn the_dfns_sdk_resends_a_registration_code() {
    let app = TestApp::spawn().await;
    app.create_user("jane@example.com").await;
    let first = app.code_in_mail("jane@example.com", 1).await;
    app.pass_cooldown();

    let org = app.org_id.to_string();
    let result = run_node(
        "dfns-resend.mjs",
        &[&app.base_url, &org, "jane@example.com"],
    )
    .await;
    assert_eq!(
        result,
        serde_json::json!({"ok": true, "result": {"message": "success"}})
    );
    let second = app.code_in_mail("jane@example.com", 2).await;
    assert!(!app.code_verifies("jane@example.com", &first).await);
    assert!(app.code_verifies("jane@example.com", &second).await);

    // Inside the cooldown the SDK raises a DfnsError carrying our status and message.
    let refused = run_node(
        "dfns-resend.mjs",
        &[&app.base_url, &org, "jane@example.com"],
    )
    .await;
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["status"], 429);
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("seconds"),
        "{refused}"
    );
}

/// Runs `dfns-flow.mjs` for one key type: the whole employee lifecycle through `@dfns/sdk` and
/// `@dfns/sdk-keysigner`, with mail read from the development inbox. The script asks this
/// driver, line by line, to move the server's clock or to grant permissions.
async fn dfns_flow(key_type: &str) {
    let app = TestApp::spawn_with(Options {
        smtp: false,
        ..Options::default()
    })
    .await;
    let bootstrap = app.data_dir.path().join("bootstrap.json");
    let mut child = tokio::process::Command::new("node")
        .arg("dfns-flow.mjs")
        .arg(&app.base_url)
        .arg(&bootstrap)
        .arg(key_type)
        .current_dir(node_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().expect("a stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("a stdout")).lines();
    let mut done = None;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the script answers within a minute")
        .expect("its output is readable")
    {
        let request: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("a JSON line from the script, got {line:?}"));
        if let Some(seconds) = request["advance"].as_u64() {
            app.clock.advance(Duration::from_secs(seconds));
        } else if let Some(grant) = request.get("grant") {
            let user = UserId::parse(grant["userId"].as_str().unwrap_or_default())
                .expect("a user id to grant to");
            let permissions: Vec<Permission> = grant["permissions"]
                .as_array()
                .expect("a list of permissions")
                .iter()
                .map(|name| Permission::parse(name.as_str().unwrap_or_default()).expect("a name"))
                .collect();
            app.enroll
                .grant(&user, &permissions)
                .await
                .expect("granted");
        } else {
            done = Some(request);
            continue;
        }
        stdin.write_all(b"ok\n").await.expect("the script reads");
    }
    let output = child.wait_with_output().await.expect("node ends");
    assert!(
        output.status.success(),
        "dfns-flow.mjs {key_type} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let done = done.expect("a final line");
    assert_eq!(done["done"], true, "{done}");
    let checks = done["checks"].as_array().expect("the checks that passed");
    assert!(checks.len() >= 10, "{done}");
}

#[tokio::test]
async fn the_dfns_sdk_runs_the_employee_lifecycle_with_a_p256_key() {
    dfns_flow("p256").await;
}

#[tokio::test]
async fn the_dfns_sdk_runs_the_employee_lifecycle_with_an_ed25519_key() {
    dfns_flow("ed25519").await;
}

#[tokio::test]
async fn the_dfns_sdk_runs_the_employee_lifecycle_with_an_rsa_key() {
    dfns_flow("rsa").await;
}
