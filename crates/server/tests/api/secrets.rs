//! Reliability target 16: codes, tokens and passwords are kept only as keyed hashes. After the
//! flows of every face, the database file (and its write-ahead log) holds none of the secrets
//! that were mailed or typed.

use serde_json::json;

use crate::helpers::TestApp;

/// Every file of the SQLite database, as bytes.
fn database_bytes(app: &TestApp) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["enroll.db", "enroll.db-wal"] {
        if let Ok(content) = std::fs::read(app.data_dir.path().join(name)) {
            bytes.extend(content);
        }
    }
    assert!(!bytes.is_empty(), "the database files are there");
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn no_code_token_or_password_is_stored_in_clear() {
    let app = TestApp::spawn().await;
    let mut secrets = Vec::new();

    // Dfns: a registration code, mailed.
    app.create_user("dora@example.com").await;
    secrets.push(app.code_in_mail("dora@example.com", 1).await);

    // ZITADEL: an email code handed back, then one mailed through a link template.
    let bearer = format!("Bearer {}", app.admin_token);
    let added = app
        .post(
            "/v2/users/human",
            json!({
                "profile": {"givenName": "Ada", "familyName": "Lovelace"},
                "email": {"email": "ada@example.com", "returnCode": {}},
            })
            .to_string(),
            &[("authorization", &bearer)],
        )
        .await
        .json();
    secrets.push(added["emailCode"].as_str().unwrap().to_owned());

    // Singularity: a password typed, a verification token mailed, a session's tokens.
    let password = "a passphrase nobody stores";
    let registered = app
        .post(
            "/api/auth/register",
            json!({ "email": "sam@example.com", "password": password, "name": "Sam" }).to_string(),
            &[],
        )
        .await;
    assert_eq!(registered.status, 201);
    secrets.push(password.to_owned());
    let mail = &app.mails_to("sam@example.com", 1).await[0];
    let text = mail.text_body().unwrap();
    let token = text
        .split("token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    let (_, link_secret) = token.split_once('.').unwrap();
    secrets.push(link_secret.to_owned());
    let session = app
        .post(
            "/api/auth/login",
            json!({ "email": "sam@example.com", "password": password }).to_string(),
            &[],
        )
        .await
        .json();
    secrets.push(session["accessToken"].as_str().unwrap().to_owned());
    let refresh = session["refreshToken"].as_str().unwrap();
    secrets.push(refresh.split_once('.').unwrap().1.to_owned());

    // The admin's bearer token is stored as a digest too.
    secrets.push(app.admin_token.clone());

    let stored = database_bytes(&app);
    for secret in &secrets {
        assert!(
            !contains(&stored, secret),
            "{secret:?} is in the database in clear"
        );
    }
    // The check can see: what is stored in clear is found.
    assert!(contains(&stored, "sam@example.com"));
}
