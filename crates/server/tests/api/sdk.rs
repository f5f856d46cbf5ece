//! The real `@dfns/sdk` from npm against the server (`tests/node`, installed by `scripts/test`).

use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::TestApp;

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/node")
}

/// Runs a script of `tests/node` and parses the JSON line it prints.
async fn run_node(script: &str, args: &[&str]) -> Value {
    let dir = node_dir();
    assert!(
        dir.join("node_modules/@dfns/sdk").exists(),
        "the npm packages are missing: run scripts/test (or npm install in tests/node)"
    );
    let output = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .output()
        .await
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("one JSON line, got {stdout:?}"))
}

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
