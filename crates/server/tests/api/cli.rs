//! The `enroll` binary: first start, and the commands that act on its database.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{enroll, printed_base_url, run_json, serve};

#[tokio::test]
async fn first_start_bootstraps_and_the_commands_act_on_the_same_database() {
    let data_dir = tempfile::tempdir().unwrap();
    let (server, printed) = serve(data_dir.path());
    let bootstrap_path = data_dir.path().join("bootstrap.json");
    let bootstrap: Value =
        serde_json::from_str(&std::fs::read_to_string(&bootstrap_path).unwrap()).unwrap();
    let org_id = bootstrap["orgId"].as_str().unwrap().to_owned();
    assert!(
        bootstrap["adminToken"]
            .as_str()
            .is_some_and(|token| token.len() > 40)
    );
    assert!(
        printed.iter().any(|line| line.contains(&org_id)),
        "{printed:?}"
    );
    assert!(
        printed.iter().any(|line| line.contains("bootstrap.json")),
        "{printed:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&bootstrap_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let base = printed_base_url(&printed);

    let orgs = run_json(data_dir.path(), &["org", "list"]);
    assert_eq!(orgs[0]["id"], org_id.as_str());
    assert_eq!(orgs[0]["unknownAddressMail"], true);
    let configured = run_json(
        data_dir.path(),
        &[
            "org",
            "configure",
            &org_id,
            "--unknown-address-mail",
            "false",
        ],
    );
    assert_eq!(configured["unknownAddressMail"], false);
    assert_eq!(
        run_json(data_dir.path(), &["org", "list"])[0]["unknownAddressMail"],
        false
    );

    let user = run_json(
        data_dir.path(),
        &[
            "user",
            "create",
            "--org",
            &org_id,
            "--email",
            "jane@example.com",
            "--kind",
            "CustomerEmployee",
        ],
    );
    assert_eq!(user["state"], "Pending");
    assert_eq!(user["username"], "jane@example.com");

    // The running server's worker delivers what the command queued, into the inbox.
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mails: Value = client
            .get(format!("{base}/dev/mail?to=jane@example.com"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if mails.as_array().is_some_and(|mails| mails.len() == 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no mail captured: {mails}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The outbox records the delivery once the mail server took the message, a moment after
    // the inbox shows it.
    loop {
        let log = run_json(
            data_dir.path(),
            &["mail", "list", "--to", "jane@example.com"],
        );
        assert_eq!(log.as_array().map(Vec::len), Some(1), "{log}");
        if log[0]["state"] == "sent" {
            break;
        }
        assert_eq!(log[0]["state"], "sending");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delivery was never recorded: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shown = run_json(
        data_dir.path(),
        &["user", "show", user["id"].as_str().unwrap()],
    );
    assert_eq!(shown["codes"][0]["state"], "active");
    assert!(shown["codes"][0].get("hash").is_none());

    // A personal access token, shown once, that the ZITADEL face accepts.
    let token = run_json(
        data_dir.path(),
        &[
            "token",
            "create",
            "--org",
            &org_id,
            "--permission",
            "user.write",
        ],
    );
    assert_eq!(token["permissions"], serde_json::json!(["user.write"]));
    let sent = client
        .post(format!(
            "{base}/v2/users/{}/email/send",
            user["id"].as_str().unwrap()
        ))
        .bearer_auth(token["token"].as_str().unwrap())
        .json(&serde_json::json!({"returnCode": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let refused = run_json(
        data_dir.path(),
        &[
            "token",
            "create",
            "--org",
            &org_id,
            "--user",
            "jane@example.com",
        ],
    );
    let denied = client
        .post(format!("{base}/v2/users/human"))
        .bearer_auth(refused["token"].as_str().unwrap())
        .json(&serde_json::json!({"profile": {"givenName": "A", "familyName": "B"}, "email": {"email": "x@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        denied.status(),
        403,
        "a token without user.write may not add users"
    );
    drop(server);

    // A second start keeps the organisation and does not touch bootstrap.json.
    let (_server, printed) = serve(data_dir.path());
    assert!(
        !printed.iter().any(|line| line.contains("Created")),
        "{printed:?}"
    );
    assert_eq!(
        run_json(data_dir.path(), &["org", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn bad_settings_fail_with_a_clear_message() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = enroll(data_dir.path())
        .args(["config", "check"])
        .env("ENROLL_REGISTRATION_CODE_TTL_SECONDS", "90000")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("24 hours"), "{stderr}");

    let output = enroll(data_dir.path())
        .args(["user", "create", "--org", "nope", "--email", "a@b.co"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not an organisation id"));
}

/// `enroll app rotate-secret`: the new secret works at once and the old one for the overlap.
#[tokio::test]
async fn a_rotated_app_secret_overlaps_the_old_one() {
    let data_dir = tempfile::tempdir().unwrap();
    let (_server, printed) = serve(data_dir.path());
    let base = printed_base_url(&printed);
    let org = run_json(data_dir.path(), &["org", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = run_json(
        data_dir.path(),
        &[
            "app",
            "create",
            "--org",
            &org,
            "--name",
            "rotating",
            "--permission",
            "Auth:Users:Read",
            "--with-secret",
        ],
    );
    let app = created["app"]["id"].as_str().unwrap().to_owned();
    let old = created["secret"].as_str().unwrap().to_owned();
    let rotated = run_json(data_dir.path(), &["app", "rotate-secret", &app]);
    assert_eq!(rotated["overlapSeconds"], 86_400);
    let new = rotated["secret"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let status = |secret: String| {
        let request = client
            .post(format!("{base}/auth/login/init"))
            .header("x-dfns-appid", &app)
            .header("x-dfns-appsecret", secret)
            .json(&serde_json::json!({"orgId": org, "username": "nobody@example.com"}));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    // Admitted, a call reaches the endpoint, which knows no such user.
    for admitted in [&new, &old] {
        assert!(status(admitted.clone()).await.contains("User not found"));
    }
    let ended = run_json(
        data_dir.path(),
        &["app", "rotate-secret", &app, "--overlap-seconds", "0"],
    );
    let newest = ended["secret"].as_str().unwrap().to_owned();
    assert!(status(newest).await.contains("User not found"));
    // The second rotation had no overlap: the first rotation's secret stopped at once, and
    // the original had been retired in its place.
    for refused in [new, old] {
        assert!(status(refused).await.contains("Not Authorized."));
    }
}
