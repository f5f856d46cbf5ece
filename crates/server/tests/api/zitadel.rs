//! The real `@zitadel/client` from npm (`tests/node/zitadel-flow.mjs`) against the server, once
//! per protocol: gRPC over h2c (`createServerTransport`), gRPC-Web over HTTP/1.1 and 2, and
//! Connect in JSON and binary. Mail is read from the development inbox.

use enroll_core::email::EmailAddress;
use enroll_core::model::{Locale, Permission};
use serde_json::json;

use crate::helpers::{Db, Options, TestApp, run_node_with};

/// A personal access token of a new machine user of `org`.
async fn machine_token(
    app: &TestApp,
    org: &enroll_core::ids::OrgId,
    name: &str,
    permissions: Vec<Permission>,
) -> String {
    let (_, secret) = app
        .enroll
        .create_machine_user(
            org,
            EmailAddress::parse(&format!("{name}@machine.invalid")).unwrap(),
            permissions,
        )
        .await
        .unwrap();
    secret.expose().to_owned()
}

async fn zitadel_flow(protocol: &str) {
    let app = TestApp::spawn_with(Options {
        smtp: false,
        ..Options::default()
    })
    .await;
    run_flow(&app, protocol, &[]).await;
}

/// The flow against `app`, whose tokens it makes, with `env` for node.
async fn run_flow(app: &TestApp, protocol: &str, env: &[(&str, &str)]) {
    let org = app.org_id.clone();
    let other = app
        .enroll
        .create_org("Other", Locale::english())
        .await
        .unwrap();
    let config = json!({
        "orgId": org,
        "writerToken": machine_token(app, &org, &format!("writer-{protocol}"), vec![Permission::USER_WRITE]).await,
        "plainToken": machine_token(app, &org, &format!("plain-{protocol}"), Vec::new()).await,
        "otherOrgToken": machine_token(app, &other.id, &format!("outsider-{protocol}"), vec![Permission::USER_WRITE]).await,
    });
    let config_path = app.data_dir.path().join("zitadel.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let done = run_node_with(
        "zitadel-flow.mjs",
        &[&app.base_url, config_path.to_str().unwrap(), protocol],
        env,
    )
    .await;
    assert_eq!(done["done"], true, "{done}");
    assert_eq!(done["protocol"], protocol);
    let checks = done["checks"].as_array().expect("the checks that passed");
    assert!(checks.len() >= 20, "{done}");
}

#[tokio::test]
async fn the_zitadel_client_verifies_emails_over_grpc() {
    zitadel_flow("grpc").await;
}

#[tokio::test]
async fn the_zitadel_client_verifies_emails_over_grpc_on_postgres() {
    let app = TestApp::spawn_with(Options {
        smtp: false,
        db: Db::Postgres,
        ..Options::default()
    })
    .await;
    run_flow(&app, "grpc", &[]).await;
}

#[tokio::test]
async fn the_zitadel_client_verifies_emails_over_grpc_web_on_http1() {
    zitadel_flow("grpc-web-h1").await;
}

#[tokio::test]
async fn the_zitadel_client_verifies_emails_over_grpc_web_on_http2() {
    zitadel_flow("grpc-web-h2").await;
}

#[tokio::test]
async fn the_zitadel_client_verifies_emails_over_connect_json() {
    zitadel_flow("connect-json").await;
}

#[tokio::test]
async fn the_zitadel_client_verifies_emails_over_connect_binary() {
    zitadel_flow("connect-binary").await;
}

/// With a certificate configured the port speaks HTTPS: gRPC over HTTP/2 by ALPN, and Connect
/// over HTTP/1.1, with the client trusting the test's own certificate authority.
#[tokio::test]
async fn the_zitadel_client_verifies_emails_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let certificate = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&certificate, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (tls_certificate, tls_private_key) = (certificate.clone(), key.clone());
    let app = TestApp::spawn_with(Options {
        smtp: false,
        settings: Box::new(move |settings| {
            settings.tls_certificate = Some(tls_certificate);
            settings.tls_private_key = Some(tls_private_key);
        }),
        ..Options::default()
    })
    .await;
    assert!(app.base_url.starts_with("https://"));
    let trust = [("NODE_EXTRA_CA_CERTS", certificate.to_str().unwrap())];
    run_flow(&app, "grpc", &trust).await;
    run_flow(&app, "connect-json", &trust).await;
}
