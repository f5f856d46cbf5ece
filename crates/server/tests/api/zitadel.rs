//! The real `@zitadel/client` from npm (`tests/node/zitadel-flow.mjs`) against the server, once
//! per protocol: gRPC over h2c (`createServerTransport`), gRPC-Web over HTTP/1.1 and 2, and
//! Connect in JSON and binary. Mail is read from the development inbox.

use enroll_core::email::EmailAddress;
use enroll_core::model::{Locale, Permission};
use serde_json::json;

use crate::helpers::{Options, TestApp, run_node};

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
    let org = app.org_id.clone();
    let other = app
        .enroll
        .create_org("Other", Locale::english())
        .await
        .unwrap();
    let config = json!({
        "orgId": org,
        "writerToken": machine_token(&app, &org, "writer", vec![Permission::USER_WRITE]).await,
        "plainToken": machine_token(&app, &org, "plain", Vec::new()).await,
        "otherOrgToken": machine_token(&app, &other.id, "outsider", vec![Permission::USER_WRITE]).await,
    });
    let config_path = app.data_dir.path().join("zitadel.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let done = run_node(
        "zitadel-flow.mjs",
        &[&app.base_url, config_path.to_str().unwrap(), protocol],
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
