//! Reliability target 24, and the log half of 16 and 18: the real binary, logging JSON, writes
//! one security event per send, resend, verification, lock, throttle, refused app, replayed
//! nonce or refresh token, and permission denial, each with a UTC time, the request's id and the
//! ids it concerns; and no log line holds a code, token, secret, password or address.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use enroll_testkit::smtp::SmtpSink;
use serde_json::{Value, json};

use crate::helpers::{enroll, printed_base_url, run_json, serve_with};

struct Client {
    http: reqwest::Client,
    base: String,
}

struct Answer {
    status: u16,
    request_id: String,
    body: Value,
}

impl Client {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.unwrap();
        Answer {
            status,
            request_id,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "the nonce is dated for the binary, which runs on the system clock"
)]
fn nonce(uuid: &str) -> String {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    URL_SAFE_NO_PAD.encode(json!({"uuid": uuid, "date": date}).to_string())
}

/// The security events of a JSON log, in order.
fn security_events(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "enroll::security")
        .collect()
}

fn count(events: &[Value], action: &str, outcome: &str, reason: Option<&str>) -> usize {
    events
        .iter()
        .filter(|event| {
            let fields = &event["fields"];
            fields["action"] == action
                && fields["outcome"] == outcome
                && fields["reason"].as_str() == reason
        })
        .count()
}

#[tokio::test]
async fn security_events_are_logged_once_each_without_secrets() {
    let smtp = SmtpSink::start().await;
    let data_dir = tempfile::tempdir().unwrap();
    let log_path = data_dir.path().join("server.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let (server, printed) = serve_with(
        enroll(data_dir.path())
            .env("ENROLL_SMTP_URL", smtp.url())
            .env("ENROLL_LOG", "info")
            .env("ENROLL_LOG_FORMAT", "json")
            .stderr(Stdio::from(log_file)),
    );
    let client = Client {
        http: reqwest::Client::new(),
        base: printed_base_url(&printed),
    };
    let bootstrap: Value = serde_json::from_str(
        &std::fs::read_to_string(data_dir.path().join("bootstrap.json")).unwrap(),
    )
    .unwrap();
    let org = bootstrap["orgId"].as_str().unwrap().to_owned();
    let admin_token = bootstrap["adminToken"].as_str().unwrap().to_owned();
    let admin = format!("Bearer {admin_token}");
    let admin = [("authorization", admin.as_str())];
    // What must never reach a log line.
    let mut secrets: Vec<String> = vec![admin_token.clone()];
    let addresses = [
        "ada@example.com",
        "bob@example.com",
        "carol@example.com",
        "nobody@example.com",
        "sam@example.com",
    ];

    // ZITADEL: two users whose codes come back; five wrong guesses lock one code, the other
    // is verified.
    let mut user_codes = Vec::new();
    for address in &addresses[..2] {
        let added = client
            .send(
                "POST",
                "/v2/users/human",
                &json!({
                    "profile": {"givenName": "A", "familyName": "B"},
                    "email": {"email": address, "returnCode": {}},
                }),
                &admin,
            )
            .await;
        assert_eq!(added.status, 200, "{}", added.body);
        let code = added.body["emailCode"].as_str().unwrap().to_owned();
        secrets.push(code.clone());
        user_codes.push((added.body["userId"].as_str().unwrap().to_owned(), code));
    }
    let (ada, ada_code) = &user_codes[0];
    let wrong = if ada_code == "AAAAAA" {
        "BBBBBB"
    } else {
        "AAAAAA"
    };
    for _ in 0..6 {
        let guess = client
            .send(
                "POST",
                &format!("/v2/users/{ada}/email/verify"),
                &json!({"verificationCode": wrong}),
                &admin,
            )
            .await;
        assert_eq!(guess.status, 400);
    }
    let (bob, bob_code) = &user_codes[1];
    let verified = client
        .send(
            "POST",
            &format!("/v2/users/{bob}/email/verify"),
            &json!({"verificationCode": bob_code}),
            &admin,
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);

    // Dfns: a user created from the command line is mailed; a resend inside the cooldown is
    // refused; a resend for an unknown address answers alike, and its nonce cannot be replayed.
    run_json(
        data_dir.path(),
        &["user", "create", "--org", &org, "--email", addresses[2]],
    );
    let resend = json!({"username": addresses[2], "orgId": org});
    let throttled = client
        .send("PUT", "/auth/registration/code", &resend, &[])
        .await;
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    let replayed_nonce = nonce("0b7e1c2a-3d4f-4a5b-8c6d-7e8f9a0b1c2d");
    let unknown = json!({"username": addresses[3], "orgId": org});
    for _ in 0..2 {
        client
            .send(
                "PUT",
                "/auth/registration/code",
                &unknown,
                &[("x-dfns-nonce", &replayed_nonce)],
            )
            .await;
    }

    // Apps: one without the permission an endpoint needs, one shown the wrong secret.
    let bare_app = run_json(
        data_dir.path(),
        &["app", "create", "--org", &org, "--name", "bare"],
    );
    let bare_app = bare_app["app"]["id"].as_str().unwrap();
    let denied = client
        .send(
            "POST",
            "/auth/login/init",
            &json!({"username": addresses[2], "orgId": org}),
            &[("x-dfns-appid", bare_app)],
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let secret_app = run_json(
        data_dir.path(),
        &[
            "app",
            "create",
            "--org",
            &org,
            "--name",
            "kept",
            "--with-secret",
        ],
    );
    secrets.push(secret_app["secret"].as_str().unwrap().to_owned());
    let refused_app = client
        .send(
            "PUT",
            "/auth/registration/code",
            &resend,
            &[
                ("x-dfns-appid", secret_app["app"]["id"].as_str().unwrap()),
                ("x-dfns-appsecret", "not-the-secret"),
            ],
        )
        .await;
    assert_eq!(refused_app.status, 401, "{}", refused_app.body);

    // A personal access token without permissions, and a token that is no token.
    let pat = run_json(data_dir.path(), &["token", "create", "--org", &org]);
    let pat = pat["token"].as_str().unwrap().to_owned();
    secrets.push(pat.clone());
    let new_human = json!({
        "profile": {"givenName": "C", "familyName": "D"},
        "email": {"email": "dan@example.com", "returnCode": {}},
    });
    let forbidden = client
        .send(
            "POST",
            "/v2/users/human",
            &new_human,
            &[("authorization", &format!("Bearer {pat}"))],
        )
        .await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);
    let unauthenticated = client
        .send(
            "POST",
            "/v2/users/human",
            &new_human,
            &[("authorization", "Bearer not-a-token")],
        )
        .await;
    assert_eq!(unauthenticated.status, 401, "{}", unauthenticated.body);

    // Singularity: a sign-up, a wrong and a right password, a refresh, a replayed refresh
    // token, a reset request.
    let password = "a passphrase for the log test";
    secrets.push(password.to_owned());
    let account = json!({"email": addresses[4], "password": password, "name": "Sam"});
    let signed_up = client
        .send("POST", "/api/auth/register", &account, &[])
        .await;
    assert_eq!(signed_up.status, 201, "{}", signed_up.body);
    let wrong_password = client
        .send(
            "POST",
            "/api/auth/login",
            &json!({"email": addresses[4], "password": "not the passphrase"}),
            &[],
        )
        .await;
    assert_eq!(wrong_password.status, 401);
    let login = client
        .send(
            "POST",
            "/api/auth/login",
            &json!({"email": addresses[4], "password": password}),
            &[],
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let refresh_token = login.body["refreshToken"].as_str().unwrap().to_owned();
    secrets.push(login.body["accessToken"].as_str().unwrap().to_owned());
    secrets.push(refresh_token.clone());
    let refreshed = client
        .send(
            "POST",
            "/api/auth/refresh",
            &json!({}),
            &[("authorization", &format!("Bearer {refresh_token}"))],
        )
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    secrets.push(refreshed.body["refreshToken"].as_str().unwrap().to_owned());
    let replayed = client
        .send(
            "POST",
            "/api/auth/refresh",
            &json!({}),
            &[("authorization", &format!("Bearer {refresh_token}"))],
        )
        .await;
    assert_eq!(replayed.status, 401);
    let reset = client
        .send(
            "POST",
            "/api/auth/password/reset-request",
            &json!({"email": addresses[4]}),
            &[],
        )
        .await;
    assert_eq!(reset.status, 200, "{}", reset.body);

    // The mailed codes and link tokens join the secrets.
    let mails = smtp.wait_for(3, Duration::from_secs(10)).await;
    for mail in &mails {
        let text = mail.text_body().unwrap();
        if let Some(code) = mail.registration_code() {
            secrets.push(code);
        }
        for token in text.split("token=").skip(1) {
            let token = token.split_whitespace().next().unwrap();
            let (_, link_secret) = token.split_once('.').unwrap();
            secrets.push(link_secret.to_owned());
        }
    }
    assert!(secrets.len() >= 12, "{}", secrets.len());

    drop(server);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let events = security_events(&log);
    let expected = [
        ("user.create", "ok", None, 2),
        ("code.verify", "refused", Some("code_invalid"), 5),
        ("code.verify", "refused", Some("code_locked"), 1),
        ("code.verify", "ok", None, 1),
        ("code.send", "refused", Some("cooldown"), 1),
        ("code.send", "refused", Some("user_not_found"), 1),
        ("code.send", "refused", Some("nonce_replayed"), 1),
        ("permission.check", "refused", Some("permission_denied"), 1),
        ("app.check", "refused", Some("app_rejected"), 1),
        ("user.create", "refused", Some("permission_denied"), 1),
        ("token.check", "refused", Some("unauthenticated"), 1),
        ("account.sign_up", "ok", None, 1),
        ("session.login", "refused", Some("invalid_credentials"), 1),
        ("session.login", "ok", None, 1),
        ("session.refresh", "ok", None, 1),
        (
            "session.refresh",
            "refused",
            Some("refresh_token_replayed"),
            1,
        ),
        ("session.refresh", "refused", Some("unauthenticated"), 1),
        ("code.send", "ok", None, 1),
    ];
    for (action, outcome, reason, times) in expected {
        assert_eq!(
            count(&events, action, outcome, reason),
            times,
            "{action} {outcome} {reason:?} in {events:#?}"
        );
    }
    let listed: usize = expected.iter().map(|(.., times)| times).sum();
    let app_checks = count(&events, "app.check", "ok", None);
    assert_eq!(
        events.len(),
        listed + app_checks,
        "no event beyond those listed: {events:#?}"
    );

    // Each names its time in UTC, its request, and what it concerns.
    let mut by_request: HashMap<&str, Vec<&Value>> = HashMap::new();
    for event in &events {
        let timestamp = event["timestamp"].as_str().unwrap();
        assert!(
            timestamp.ends_with('Z')
                && time::OffsetDateTime::parse(
                    timestamp,
                    &time::format_description::well_known::Rfc3339
                )
                .is_ok(),
            "{event}"
        );
        let request_id = event["span"]["request_id"].as_str().unwrap_or_default();
        assert_eq!(request_id.len(), 20, "{event}");
        by_request.entry(request_id).or_default().push(event);
    }
    let login_events = &by_request[login.request_id.as_str()];
    assert_eq!(login_events.len(), 1);
    let fields = &login_events[0]["fields"];
    assert_eq!(fields["org_id"], org.as_str());
    assert!(
        fields["user_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("us-")),
        "{fields}"
    );
    let lock = events
        .iter()
        .find(|event| event["fields"]["reason"] == "code_locked")
        .unwrap();
    assert_eq!(lock["fields"]["user_id"], ada.as_str());
    let permission = &by_request[denied.request_id.as_str()][0]["fields"];
    assert_eq!(permission["app_id"], bare_app);

    // Nothing secret, anywhere in the log.
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "{secret} is in the log");
    }
    for address in addresses {
        assert!(!log.contains(address), "{address} is in the log");
    }
}
