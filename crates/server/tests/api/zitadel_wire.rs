//! The ZITADEL face byte for byte: REST bodies against zitadel.md, and every error case as each
//! protocol writes it (snapshots): the gateway's JSON, Connect's JSON, gRPC-Web's trailers and
//! gRPC's trailers over HTTP/2.

use axum::body::Bytes;
use axum::http::{HeaderMap, Request};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use enroll_core::clock::Clock as _;
use enroll_core::email::EmailAddress;
use enroll_core::ids::UserId;
use enroll_core::model::Permission;
use enroll_zitadel_proto::google::rpc::Status;
use enroll_zitadel_proto::zitadel::user::v2::{ResendEmailCodeRequest, VerifyEmailRequest};
use enroll_zitadel_proto::zitadel::v1::ErrorDetail;
use http_body_util::{BodyExt as _, Full};
use prost::Message as _;
use serde_json::{Value, json};

use crate::helpers::{Db, Options, Reply, TestApp};

const TEMPLATE: &str = "https://app.example/v?u={{.UserID}}&c={{.Code}}&o={{.OrgID}}";

/// The server's clock as ZITADEL writes `changeDate`.
fn change_date(app: &TestApp) -> String {
    enroll_zitadel_proto::Timestamp::from_unix_millis(app.clock.now().as_millis())
        .to_rfc3339()
        .unwrap()
}

async fn rest(app: &TestApp, path: &str, body: &Value, token: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    app.post(path, body.to_string(), &[("authorization", &bearer)])
        .await
}

async fn rest_round_trip(db: Db) {
    let app = TestApp::spawn_on(db).await;
    let admin = app.admin_token.clone();
    let org = app.org_id.to_string();
    let added = rest(
        &app,
        "/v2/users/human",
        &json!({
            "organization": {"orgId": org},
            "profile": {"givenName": "Ada", "familyName": "Lovelace"},
            "email": {"email": "ada@example.com", "returnCode": {}},
        }),
        &admin,
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.header("content-type"), Some("application/json"));
    let user_id = added.json()["userId"].as_str().unwrap().to_owned();
    let first = added.json()["emailCode"].as_str().unwrap().to_owned();
    assert_eq!(
        added.body,
        format!(
            r#"{{"userId":"{user_id}","details":{{"sequence":"2","changeDate":"{}","resourceOwner":"{org}"}},"emailCode":"{first}"}}"#,
            change_date(&app)
        )
    );
    assert!(
        first.len() == 6
            && first
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    );

    app.clock.advance(std::time::Duration::from_millis(1_250));
    let resent = rest(
        &app,
        &format!("/v2/users/{user_id}/email/resend"),
        &json!({"sendCode": {"urlTemplate": TEMPLATE}}),
        &admin,
    )
    .await;
    assert_eq!(
        resent.body,
        format!(
            r#"{{"details":{{"sequence":"3","changeDate":"{}","resourceOwner":"{org}"}}}}"#,
            change_date(&app)
        ),
        "no verificationCode key when the code is sent"
    );
    let mail = app.mails_to("ada@example.com", 1).await.remove(0);
    let text = mail.text_body().unwrap();
    let link_start = text
        .find("https://app.example/v?u=")
        .expect("the link is in the mail");
    let link = text[link_start..].split_whitespace().next().unwrap();
    let prefix = format!("https://app.example/v?u={user_id}&c=");
    assert!(
        link.starts_with(&prefix) && link.ends_with(&format!("&o={org}")),
        "{link}"
    );
    let second = link[prefix.len()..prefix.len() + 6].to_owned();
    assert_ne!(first, second);

    let old = rest(
        &app,
        &format!("/v2/users/{user_id}/email/verify"),
        &json!({"verificationCode": first}),
        &admin,
    )
    .await;
    assert_eq!(old.status, 400);
    assert_eq!(
        old.body,
        r#"{"code":3,"message":"Code is invalid (COMMAND-eis9R)","details":[{"@type":"type.googleapis.com/zitadel.v1.ErrorDetail","id":"COMMAND-eis9R","message":"Errors.User.Code.Invalid"}]}"#
    );
    let verified = rest(
        &app,
        &format!("/v2/users/{user_id}/email/verify"),
        &json!({"verificationCode": second}),
        &admin,
    )
    .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    // Created, issued, resent, one wrong attempt, then the code used and the address verified.
    assert_eq!(verified.json()["details"]["sequence"], "6");
    let stored = app
        .enroll
        .store()
        .user(&UserId::parse(&user_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.email_verified_at.is_some());
    assert_eq!(stored.sequence, 6);

    let again = rest(
        &app,
        &format!("/v2/users/{user_id}/email/resend"),
        &json!({}),
        &admin,
    )
    .await;
    assert_eq!(again.status, 400);
    assert_eq!(
        again.body,
        r#"{"code":9,"message":"Code is empty (EMAIL-5w5ilin4yt)","details":[{"@type":"type.googleapis.com/zitadel.v1.ErrorDetail","id":"EMAIL-5w5ilin4yt","message":"Errors.User.Code.Empty"}]}"#
    );
    assert_eq!(
        app.mails_to("ada@example.com", 1).await.len(),
        1,
        "nothing more was sent"
    );
}

#[tokio::test]
async fn rest_adds_resends_and_verifies_with_zitadels_exact_bodies_on_sqlite() {
    rest_round_trip(Db::Sqlite).await;
}

#[tokio::test]
async fn rest_adds_resends_and_verifies_with_zitadels_exact_bodies_on_postgres() {
    rest_round_trip(Db::Postgres).await;
}

#[tokio::test]
async fn a_user_created_through_dfns_verifies_its_email_here() {
    let app = TestApp::spawn().await;
    let user = app.create_user("grace@example.com").await;
    let registration = app.code_in_mail("grace@example.com", 1).await;
    let admin = app.admin_token.clone();
    let resend = rest(
        &app,
        &format!("/v2/users/{}/email/resend", user.id),
        &json!({"returnCode": {}}),
        &admin,
    )
    .await;
    assert_eq!(resend.json()["code"], 9, "no email code is pending yet");
    let sent = rest(
        &app,
        &format!("/v2/users/{}/email/send", user.id),
        &json!({"returnCode": {}}),
        &admin,
    )
    .await;
    let code = sent.json()["verificationCode"].as_str().unwrap().to_owned();
    let verified = rest(
        &app,
        &format!("/v2/users/{}/email/verify", user.id),
        &json!({"verificationCode": code}),
        &admin,
    )
    .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert!(
        app.code_verifies("grace@example.com", &registration).await,
        "the registration code is another purpose's and still works"
    );
}

/// The error cases every protocol is snapshot with: `(case, method, JSON request, token)`.
struct Cases {
    app: TestApp,
    cases: Vec<(&'static str, &'static str, Value, String)>,
}

async fn cases() -> Cases {
    let app = TestApp::spawn_with(Options {
        smtp: false,
        ..Options::default()
    })
    .await;
    let admin = app.admin_token.clone();
    let (_, plain) = app
        .enroll
        .create_machine_user(
            &app.org_id,
            EmailAddress::parse("plain@machine.invalid").unwrap(),
            Vec::new(),
        )
        .await
        .unwrap();
    let plain = plain.expose().to_owned();
    let pending = app.create_user("pending@example.com").await.id.to_string();
    let sent = app
        .enroll
        .store()
        .user_by_username(
            &app.org_id,
            &EmailAddress::parse("pending@example.com").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.id.to_string(), pending);
    // A first email code starts the cooldown of the address.
    let first = rest(
        &app,
        &format!("/v2/users/{pending}/email/send"),
        &json!({}),
        &admin,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let cases = vec![
        (
            "unknown user",
            "ResendEmailCode",
            json!({"userId": "us-0000000000000000000000"}),
            admin.clone(),
        ),
        (
            "no code pending",
            "ResendEmailCode",
            json!({"userId": pending_without_code(&app).await}),
            admin.clone(),
        ),
        (
            "wrong code",
            "VerifyEmail",
            json!({"userId": pending, "verificationCode": "WRONG1"}),
            admin.clone(),
        ),
        (
            "empty code",
            "VerifyEmail",
            json!({"userId": pending, "verificationCode": ""}),
            admin.clone(),
        ),
        (
            "permission denied",
            "ResendEmailCode",
            json!({"userId": pending}),
            plain.clone(),
        ),
        (
            "unauthenticated",
            "ResendEmailCode",
            json!({"userId": pending}),
            "not-a-token".to_owned(),
        ),
        (
            "unknown template field",
            "ResendEmailCode",
            json!({"userId": pending, "sendCode": {"urlTemplate": "https://x/{{.PreferredLoginName}}"}}),
            admin.clone(),
        ),
        (
            "broken template",
            "ResendEmailCode",
            json!({"userId": pending, "sendCode": {"urlTemplate": "https://x/{{.Code"}}),
            admin.clone(),
        ),
        (
            "empty template",
            "ResendEmailCode",
            json!({"userId": pending, "sendCode": {"urlTemplate": ""}}),
            admin.clone(),
        ),
        (
            "cooldown",
            "ResendEmailCode",
            json!({"userId": pending}),
            admin.clone(),
        ),
        (
            "same address",
            "SetEmail",
            json!({"userId": pending, "email": "pending@example.com", "returnCode": {}}),
            admin.clone(),
        ),
        (
            "invalid address",
            "SetEmail",
            json!({"userId": pending, "email": "not an address"}),
            admin.clone(),
        ),
    ];
    Cases { app, cases }
}

/// A user of the org whose address has no email code yet.
async fn pending_without_code(app: &TestApp) -> String {
    app.create_user("registration-only@example.com")
        .await
        .id
        .to_string()
}

fn request_path(method: &str, body: &Value) -> String {
    let user = body["userId"].as_str().unwrap_or_default();
    match method {
        "ResendEmailCode" => format!("/v2/users/{user}/email/resend"),
        "VerifyEmail" => format!("/v2/users/{user}/email/verify"),
        "SetEmail" => format!("/v2/users/{user}/email"),
        other => panic!("no REST path for {other}"),
    }
}

#[tokio::test]
async fn rest_errors_are_grpc_gateway_bodies() {
    let Cases { app, cases } = cases().await;
    let mut out = String::new();
    for (case, method, body, token) in &cases {
        let mut body = body.clone();
        let path = request_path(method, &body);
        body.as_object_mut().unwrap().remove("userId");
        let reply = rest(&app, &path, &body, token).await;
        out.push_str(&format!(
            "## {case}\nHTTP {}{}\n{}\n\n",
            reply.status,
            reply
                .header("retry-after")
                .map(|value| format!(" retry-after: {value}"))
                .unwrap_or_default(),
            reply.body
        ));
    }
    let wrong_method = app.get("/v2/users/human").await;
    out.push_str(&format!(
        "## GET\nHTTP {}\n{}\n\n",
        wrong_method.status, wrong_method.body
    ));
    let bad_json = app.post("/v2/users/human", "{".to_owned(), &[]).await;
    out.push_str(&format!(
        "## not JSON\nHTTP {}\n{}\n",
        bad_json.status, bad_json.body
    ));
    insta::assert_snapshot!(out);
}

/// A Connect call in `codec` (`json` or `proto`); errors are JSON either way.
async fn connect(app: &TestApp, method: &str, body: &Value, token: &str, codec: &str) -> Reply {
    let (content_type, payload) = match codec {
        "json" => ("application/json", body.to_string().into_bytes()),
        _ => ("application/proto", proto_of(method, body)),
    };
    let response = app
        .client
        .post(app.url(&format!("/zitadel.user.v2.UserService/{method}")))
        .header("content-type", content_type)
        .header("connect-protocol-version", "1")
        .header("authorization", format!("Bearer {token}"))
        .body(payload)
        .send()
        .await
        .unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// The request in protobuf binary, through the same JSON mapping the server uses.
fn proto_of(method: &str, body: &Value) -> Vec<u8> {
    use enroll_zitadel_proto::zitadel::user::v2::SetEmailRequest;
    let text = body.to_string();
    match method {
        "ResendEmailCode" => serde_json::from_str::<ResendEmailCodeRequest>(&text)
            .unwrap()
            .encode_to_vec(),
        "VerifyEmail" => serde_json::from_str::<VerifyEmailRequest>(&text)
            .unwrap()
            .encode_to_vec(),
        "SetEmail" => serde_json::from_str::<SetEmailRequest>(&text)
            .unwrap()
            .encode_to_vec(),
        other => panic!("no message for {other}"),
    }
}

#[tokio::test]
async fn connect_errors_are_connect_json_in_both_codecs() {
    let Cases { app, cases } = cases().await;
    let mut out = String::new();
    for (case, method, body, token) in &cases {
        let json_reply = connect(&app, method, body, token, "json").await;
        let proto_reply = connect(&app, method, body, token, "proto").await;
        assert_eq!(json_reply.status, proto_reply.status, "{case}");
        assert_eq!(
            json_reply.body, proto_reply.body,
            "{case}: errors are JSON in both codecs"
        );
        assert_eq!(
            proto_reply.header("content-type"),
            Some("application/json"),
            "{case}"
        );
        out.push_str(&format!(
            "## {case}\nHTTP {}\n{}\n\n",
            json_reply.status, json_reply.body
        ));
    }
    let unknown = connect(&app, "GetUserByID", &json!({}), "t", "json").await;
    out.push_str(&format!("## unknown method\nHTTP {}\n", unknown.status));
    let text = app
        .client
        .post(app.url("/zitadel.user.v2.UserService/VerifyEmail"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    out.push_str(&format!("## text/plain\nHTTP {}\n", text.status().as_u16()));
    insta::assert_snapshot!(out);
}

/// `[flag][length][message]`, gRPC's framing of one message.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// `grpc-status`, `grpc-message` and the decoded `grpc-status-details-bin` of a response.
fn describe_status(headers: &HeaderMap) -> String {
    let get = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let details = STANDARD
        .decode(get("grpc-status-details-bin").trim_end_matches('='))
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(get("grpc-status-details-bin").trim_end_matches('='))
        })
        .unwrap();
    let status = Status::decode(details.as_slice()).unwrap();
    let mut out = format!(
        "grpc-status: {}\ngrpc-message: {}\ndetails-bin: code={} message={:?}",
        get("grpc-status"),
        get("grpc-message"),
        status.code,
        status.message
    );
    for any in &status.details {
        let detail = ErrorDetail::decode(any.value.as_slice()).unwrap();
        out.push_str(&format!(
            "\n  {} {{ id: {:?}, message: {:?} }}",
            any.type_url, detail.id, detail.message
        ));
    }
    if !get("retry-after").is_empty() {
        out.push_str(&format!("\nretry-after: {}", get("retry-after")));
    }
    out
}

/// The status of a gRPC-Web response: in its trailer frame, or in the headers of a
/// trailers-only response.
fn grpc_web_status(headers: &HeaderMap, body: &[u8]) -> HeaderMap {
    let mut found = headers.clone();
    let mut rest = body;
    while rest.len() >= 5 {
        let flag = rest[0];
        let length = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = &rest[5..5 + length];
        if flag & 0x80 != 0 {
            for line in String::from_utf8_lossy(payload).split("\r\n") {
                if let Some((name, value)) = line.split_once(':') {
                    found.insert(
                        axum::http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                        value.trim().parse().unwrap(),
                    );
                }
            }
        }
        rest = &rest[5 + length..];
    }
    found
}

#[tokio::test]
async fn grpc_web_errors_carry_the_status_and_its_details() {
    let Cases { app, cases } = cases().await;
    let mut out = String::new();
    for (case, method, body, token) in &cases {
        let response = app
            .client
            .post(app.url(&format!("/zitadel.user.v2.UserService/{method}")))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("authorization", format!("Bearer {token}"))
            .body(frame(&proto_of(method, body)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{case}");
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        out.push_str(&format!(
            "## {case}\n{}\n\n",
            describe_status(&grpc_web_status(&headers, &body))
        ));
    }
    insta::assert_snapshot!(out);
}

#[tokio::test]
async fn grpc_errors_come_in_trailers_over_http2() {
    let Cases { app, cases } = cases().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut out = String::new();
    for (case, method, body, token) in &cases {
        let request = Request::post(app.url(&format!("/zitadel.user.v2.UserService/{method}")))
            .header("content-type", "application/grpc+proto")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from(frame(&proto_of(method, body)))))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{case}");
        assert_eq!(response.version(), axum::http::Version::HTTP_2);
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.unwrap();
        let mut status = parts.headers.clone();
        if let Some(trailers) = collected.trailers() {
            status.extend(trailers.clone());
        }
        out.push_str(&format!("## {case}\n{}\n\n", describe_status(&status)));
    }
    insta::assert_snapshot!(out);
}

#[tokio::test]
async fn permissions_follow_zitadel_self_and_org_rules() {
    let app = TestApp::spawn().await;
    let user = app.create_user("self@example.com").await;
    // The user acting on itself needs no permission.
    let (_, own) = app
        .enroll
        .create_token(&user, enroll_core::model::TokenKind::Personal, Vec::new())
        .await
        .unwrap();
    let own = own.expose().to_owned();
    let sent = rest(
        &app,
        &format!("/v2/users/{}/email/send", user.id),
        &json!({"returnCode": {}}),
        &own,
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let other = app.create_user("other@example.com").await;
    let refused = rest(
        &app,
        &format!("/v2/users/{}/email/send", other.id),
        &json!({"returnCode": {}}),
        &own,
    )
    .await;
    assert_eq!(refused.status, 403);
    let add = rest(
        &app,
        "/v2/users/human",
        &json!({"profile": {"givenName": "A", "familyName": "B"}, "email": {"email": "new@example.com"}}),
        &own,
    )
    .await;
    assert_eq!(add.status, 403, "adding needs user.write");
    let (_, writer) = app
        .enroll
        .create_token(
            &user,
            enroll_core::model::TokenKind::Personal,
            vec![Permission::USER_WRITE],
        )
        .await
        .unwrap();
    let add = rest(
        &app,
        "/v2/users/human",
        &json!({"profile": {"givenName": "A", "familyName": "B", "preferredLanguage": "fr"}, "email": {"email": "new@example.com"}}),
        writer.expose(),
    )
    .await;
    assert_eq!(add.status, 200, "{}", add.body);
    assert!(add.json().get("emailCode").is_none());
    let mail = app.mails_to("new@example.com", 1).await.remove(0);
    assert!(
        mail.subject
            .as_deref()
            .unwrap_or_default()
            .starts_with("Confirmez"),
        "the preferred language is the user's locale: {:?}",
        mail.subject
    );
    let link = format!(
        "{}/ui/login/mail/verification?userID={}",
        app.base_url,
        add.json()["userId"].as_str().unwrap()
    );
    assert!(
        mail.text_body().unwrap().contains(&link),
        "the hosted page without a template"
    );
}

#[tokio::test]
async fn unsupported_and_invalid_add_requests_are_refused_plainly() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token.clone();
    let mut out = String::new();
    for (case, body) in [
        ("no profile", json!({"email": {"email": "a@example.com"}})),
        (
            "no email",
            json!({"profile": {"givenName": "A", "familyName": "B"}}),
        ),
        (
            "own user id",
            json!({"userId": "123", "profile": {"givenName": "A", "familyName": "B"}, "email": {"email": "a@example.com"}}),
        ),
        (
            "password",
            json!({"profile": {"givenName": "A", "familyName": "B"}, "email": {"email": "a@example.com"}, "password": {"password": "Secr3t!!"}}),
        ),
        (
            "org domain",
            json!({"organization": {"orgDomain": "example.com"}, "profile": {"givenName": "A", "familyName": "B"}, "email": {"email": "a@example.com"}}),
        ),
        (
            "other org",
            json!({"organization": {"orgId": "or-0000000000000000000000"}, "profile": {"givenName": "A", "familyName": "B"}, "email": {"email": "a@example.com"}}),
        ),
        (
            "bad language",
            json!({"profile": {"givenName": "A", "familyName": "B", "preferredLanguage": "??"}, "email": {"email": "a@example.com"}}),
        ),
    ] {
        let reply = rest(&app, "/v2/users/human", &body, &admin).await;
        out.push_str(&format!(
            "## {case}\nHTTP {}\n{}\n\n",
            reply.status, reply.body
        ));
    }
    let taken = json!({"profile": {"givenName": "A", "familyName": "B"}, "email": {"email": "twice@example.com", "returnCode": {}}});
    assert_eq!(
        rest(&app, "/v2/users/human", &taken, &admin).await.status,
        200
    );
    let again = rest(&app, "/v2/users/human", &taken, &admin).await;
    out.push_str(&format!(
        "## address taken\nHTTP {}\n{}\n",
        again.status, again.body
    ));
    assert_eq!(app.outbox_len().await, 0, "nothing was queued");
    insta::assert_snapshot!(out);
}

#[tokio::test]
async fn browsers_may_call_from_other_origins() {
    let app = TestApp::spawn().await;
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url("/zitadel.user.v2.UserService/VerifyEmail"),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,connect-protocol-version",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let allowed = |name: &str| {
        preflight
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        allowed("access-control-allow-origin"),
        "https://app.example"
    );
    assert!(allowed("access-control-allow-headers").contains("authorization"));
    let answer = app
        .client
        .post(app.url("/v2/users/us-x/email/verify"))
        .header("origin", "https://app.example")
        .json(&json!({"verificationCode": "ABCDEF"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.headers().get("access-control-allow-origin").unwrap(),
        "https://app.example"
    );
}

/// A body over the 64 KiB limit gets the gateway's JSON error, not a plain-text 413.
#[tokio::test]
async fn an_oversized_rest_body_answers_in_the_gateway_format() {
    let app = TestApp::spawn().await;
    let bearer = format!("Bearer {}", app.admin_token);
    let padding = "x".repeat(70 * 1024);
    let reply = app
        .post(
            "/v2/users/human",
            json!({ "padding": padding }).to_string(),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["code"], 3);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid request body: "),
        "{}",
        reply.body
    );
}
