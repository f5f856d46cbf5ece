//! The Dfns registration, login and user-action endpoints on the wire: the bytes a client
//! sends and sees, with keys signed in the test as the Dfns signers sign.

use std::time::Duration;

use enroll_core::model::Permission;
use enroll_core::service::KeyAttestation;
use enroll_testkit::keys::TestKey;
use serde_json::{Value, json};

use crate::helpers::{Db, Reply, TestApp, assertion_body};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn attestation_body(attestation: &KeyAttestation) -> String {
    json!({
        "firstFactorCredential": {
            "credentialKind": "Key",
            "credentialInfo": {
                "credId": attestation.cred_id,
                "clientData": attestation.client_data,
                "attestationData": attestation.attestation_data,
            },
        },
    })
    .to_string()
}

fn assert_error(reply: &Reply, status: u16, message: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.json(), json!({ "error": { "message": message } }));
}

impl TestApp {
    fn admin_key(&self) -> TestKey {
        TestKey::p256_from_pem(
            &self.bootstrap.admin_private_key,
            &self.bootstrap.admin_credential_id,
        )
    }

    /// `action/init` then `action`, as the SDK's user-action flow does; returns the action.
    async fn sign_action(&self, token: &str, key: &TestKey, path: &str, payload: &str) -> String {
        let init = self
            .post(
                "/auth/action/init",
                json!({
                    "userActionPayload": payload,
                    "userActionHttpMethod": "POST",
                    "userActionHttpPath": path,
                    "userActionServerKind": "Api",
                })
                .to_string(),
                &[("authorization", &bearer(token))],
            )
            .await;
        assert_eq!(init.status, 200, "{}", init.body);
        let challenge = init.json();
        let signed = self
            .post(
                "/auth/action",
                assertion_body(
                    challenge["challengeIdentifier"].as_str().unwrap(),
                    &key.assert(challenge["challenge"].as_str().unwrap()),
                ),
                &[("authorization", &bearer(token))],
            )
            .await;
        assert_eq!(signed.status, 200, "{}", signed.body);
        signed.json()["userAction"].as_str().unwrap().to_owned()
    }

    async fn create_user_signed(&self, token: &str, key: &TestKey, email: &str) -> Reply {
        let body = json!({ "email": email, "kind": "CustomerEmployee" }).to_string();
        let action = self.sign_action(token, key, "/auth/users", &body).await;
        self.post(
            "/auth/users",
            body,
            &[
                ("authorization", &bearer(token)),
                ("x-dfns-useraction", &action),
            ],
        )
        .await
    }

    async fn registration_init(&self, email: &str, code: &str) -> Reply {
        self.post(
            "/auth/registration/init",
            json!({ "orgId": self.org_id, "username": email, "registrationCode": code })
                .to_string(),
            &[],
        )
        .await
    }

    async fn login(&self, email: &str, key: &TestKey) -> Reply {
        let init = self
            .post(
                "/auth/login/init",
                json!({ "orgId": self.org_id, "username": email }).to_string(),
                &[],
            )
            .await;
        assert_eq!(init.status, 200, "{}", init.body);
        let challenge = init.json();
        assert_eq!(
            challenge["allowCredentials"]["key"][0]["id"],
            key.cred_id.as_str()
        );
        self.post(
            "/auth/login",
            assertion_body(
                challenge["challengeIdentifier"].as_str().unwrap(),
                &key.assert(challenge["challenge"].as_str().unwrap()),
            ),
            &[],
        )
        .await
    }
}

#[tokio::test]
async fn an_employee_is_created_registers_with_a_key_and_logs_in_on_sqlite() {
    employee_lifecycle(TestApp::spawn_on(Db::Sqlite).await).await;
}

#[tokio::test]
async fn an_employee_is_created_registers_with_a_key_and_logs_in_on_postgres() {
    employee_lifecycle(TestApp::spawn_on(Db::Postgres).await).await;
}

async fn employee_lifecycle(app: TestApp) {
    let admin = app.admin_key();
    let created = app
        .create_user_signed(&app.admin_token, &admin, "jane@example.com")
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let user = created.json();
    assert_eq!(user["username"], "jane@example.com");
    assert_eq!(user["orgId"], app.org_id.as_str());
    assert_eq!(user["kind"], "CustomerEmployee");
    assert_eq!(user["isRegistered"], false);
    assert_eq!(user["isActive"], true);
    let code = app.code_in_mail("jane@example.com", 1).await;

    assert_error(
        &app.registration_init("jane@example.com", "AAAA-BBBB-CCCC-DDDD")
            .await,
        401,
        "Invalid registration code",
    );
    assert_error(
        &app.registration_init("nobody@example.com", &code).await,
        401,
        "Invalid registration code",
    );
    let init = app.registration_init("jane@example.com", &code).await;
    assert_eq!(init.status, 200, "{}", init.body);
    let challenge = init.json();
    assert_eq!(challenge["user"]["id"], user["userId"]);
    let temporary = challenge["temporaryAuthenticationToken"].as_str().unwrap();
    let key = TestKey::ed25519();
    let attestation = key.attest(challenge["challenge"].as_str().unwrap());

    assert_error(
        &app.post("/auth/registration", attestation_body(&attestation), &[])
            .await,
        401,
        "Not Authorized.",
    );
    let fido = app
        .post(
            "/auth/registration",
            json!({ "firstFactorCredential": { "credentialKind": "Fido2", "credentialInfo": {} } })
                .to_string(),
            &[("authorization", &bearer(temporary))],
        )
        .await;
    assert_eq!(fido.status, 400, "{}", fido.body);
    assert!(
        fido.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Fido2")
    );
    let mut garbled = attestation.clone();
    garbled.client_data = "%%%".to_owned();
    let garbled = app
        .post(
            "/auth/registration",
            attestation_body(&garbled),
            &[("authorization", &bearer(temporary))],
        )
        .await;
    assert_error(&garbled, 400, "clientData is not valid base64url");

    let registered = app
        .post(
            "/auth/registration",
            attestation_body(&attestation),
            &[("authorization", &bearer(temporary))],
        )
        .await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    let registered = registered.json();
    assert_eq!(registered["credential"]["kind"], "Key");
    assert!(
        registered["credential"]["uuid"]
            .as_str()
            .unwrap()
            .starts_with("cr-")
    );
    assert_eq!(
        registered["user"],
        json!({ "id": user["userId"], "username": "jane@example.com", "orgId": app.org_id })
    );
    assert_error(
        &app.registration_init("jane@example.com", &code).await,
        401,
        "User already exists.",
    );

    let login = app.login("jane@example.com", &key).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3);

    // Without the permissions, a signed request is refused by name.
    let refused = app
        .create_user_signed(&token, &key, "joe@example.com")
        .await;
    assert_error(
        &refused,
        403,
        &format!(
            "CustomerEmployee {} is not authorized to perform operation (Auth:Users:Create)",
            user["userId"].as_str().unwrap()
        ),
    );

    let logout = app
        .put(
            "/auth/logout",
            String::new(),
            &[("authorization", &bearer(&token))],
        )
        .await;
    assert_eq!(logout.status, 200, "{}", logout.body);
    assert_error(
        &app.post(
            "/auth/action/init",
            "{}".to_owned(),
            &[("authorization", &bearer(&token))],
        )
        .await,
        401,
        "Not Authorized.",
    );
}

#[tokio::test]
async fn user_actions_bind_one_request_and_are_used_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key();
    let token = app.admin_token.clone();
    let body = json!({ "email": "a@example.com", "kind": "CustomerEmployee" }).to_string();
    let action = app.sign_action(&token, &admin, "/auth/users", &body).await;
    let headers = [
        ("authorization", bearer(&token)),
        ("x-dfns-useraction", action.clone()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Another body than the one signed, even one equal as JSON.
    let respaced = r#"{"email": "a@example.com","kind":"CustomerEmployee"}"#.to_owned();
    assert_ne!(respaced, body);
    assert_error(
        &app.post("/auth/users", respaced, &headers).await,
        403,
        "user action signature is missing or invalid",
    );
    assert_error(
        &app.post("/auth/users", body.clone(), &headers[..1]).await,
        403,
        "user action signature is missing or invalid",
    );
    assert_eq!(
        app.post("/auth/users", body.clone(), &headers).await.status,
        200
    );
    assert_error(
        &app.post("/auth/users", body.clone(), &headers).await,
        400,
        "user action has already been used",
    );

    // Signed with another key under the admin's credential id.
    let init = app
        .post(
            "/auth/action/init",
            json!({
                "userActionPayload": body,
                "userActionHttpMethod": "POST",
                "userActionHttpPath": "/auth/users",
                "userActionServerKind": "Api",
            })
            .to_string(),
            &headers[..1],
        )
        .await
        .json();
    let identifier = init["challengeIdentifier"].as_str().unwrap();
    let challenge = init["challenge"].as_str().unwrap();
    assert_error(
        &app.post(
            "/auth/action",
            assertion_body(identifier, &admin.impostor().assert(challenge)),
            &headers[..1],
        )
        .await,
        401,
        "Credential signature is not valid.",
    );
    // A challenge answered too late.
    app.clock.advance(Duration::from_secs(301));
    assert_error(
        &app.post(
            "/auth/action",
            assertion_body(identifier, &admin.assert(challenge)),
            &headers[..1],
        )
        .await,
        400,
        "Challenge token is not valid.",
    );
    let malformed = app
        .post(
            "/auth/action",
            "{\"challengeIdentifier\":".to_owned(),
            &headers[..1],
        )
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    let value: Value = malformed.json();
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request body")
    );
}

#[tokio::test]
async fn a_server_signed_app_must_show_its_secret_on_every_call() {
    let app = TestApp::spawn().await;
    let legacy = app
        .enroll
        .create_app(
            &app.org_id,
            "server-signed",
            vec![Permission::AUTH_USERS_READ],
        )
        .await
        .unwrap();
    let secret = app
        .enroll
        .issue_app_secret(&legacy.id, std::time::Duration::ZERO)
        .await
        .unwrap();
    let body = json!({ "orgId": app.org_id, "username": "jane@example.com" }).to_string();
    let call = |secret: Option<String>| {
        let (app, body, id) = (&app, body.clone(), legacy.id.to_string());
        async move {
            let mut headers = vec![("x-dfns-appid", id.as_str())];
            headers.extend(secret.as_deref().map(|secret| ("x-dfns-appsecret", secret)));
            app.post("/auth/login/init", body, &headers).await
        }
    };
    for wrong in [None, Some("enr_wrong".to_owned())] {
        assert_error(&call(wrong).await, 401, "Not Authorized.");
    }
    // The right secret lets the call through to the endpoint, which knows no such user.
    let right = call(Some(secret.expose().to_owned())).await;
    assert_error(&right, 401, "User not found");
    let bare = app
        .enroll
        .create_app(&app.org_id, "bare", vec![Permission::AUTH_USERS_READ])
        .await
        .unwrap();
    let shown = app
        .post(
            "/auth/login/init",
            body.clone(),
            &[
                ("x-dfns-appid", bare.id.as_str()),
                ("x-dfns-appsecret", secret.expose()),
            ],
        )
        .await;
    assert_error(&shown, 401, "Not Authorized.");
}

/// An API signature as server-signed apps make one: a JWT whose claims are the request.
fn api_signature(key: &TestKey, method: &str, path: &str, body: &str, app_id: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#);
    let claims = json!({
        "r-method": method,
        "r-path": path,
        "r-body": URL_SAFE_NO_PAD.encode(body),
        "h-x-dfns-appid": app_id,
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes()));
    format!("{signed}.{signature}")
}

#[tokio::test]
async fn a_server_signed_app_with_a_key_must_sign_each_request() {
    let app = TestApp::spawn().await;
    let legacy = app
        .enroll
        .create_app(&app.org_id, "signing", vec![Permission::AUTH_USERS_READ])
        .await
        .unwrap();
    let key = TestKey::ed25519();
    app.enroll
        .set_app_public_key(
            &legacy.id,
            enroll_core::credential::PublicKey::from_pem(&key.public_pem).unwrap(),
        )
        .await
        .unwrap();
    let body = json!({ "orgId": app.org_id, "username": "jane@example.com" }).to_string();
    let id = legacy.id.as_str();
    let signed = api_signature(&key, "post", "/auth/login/init", &body, id);
    // Signed: through to the endpoint, which knows no such user.
    assert_error(
        &app.post(
            "/auth/login/init",
            body.clone(),
            &[("x-dfns-appid", id), ("x-dfns-apisignature", &signed)],
        )
        .await,
        401,
        "User not found",
    );
    let other_body = body.replace("jane", "joan");
    let by_another_key = api_signature(&TestKey::ed25519(), "post", "/auth/login/init", &body, id);
    let for_another_path = api_signature(&key, "post", "/auth/login", &body, id);
    for (sent_body, signature) in [
        (other_body.as_str(), Some(signed.as_str())),
        (body.as_str(), Some(by_another_key.as_str())),
        (body.as_str(), Some(for_another_path.as_str())),
        (body.as_str(), Some("a.b.c")),
        (body.as_str(), None),
    ] {
        let mut headers = vec![("x-dfns-appid", id)];
        headers.extend(signature.map(|signature| ("x-dfns-apisignature", signature)));
        let reply = app
            .post("/auth/login/init", sent_body.to_owned(), &headers)
            .await;
        assert_error(&reply, 401, "Not Authorized.");
    }
}

#[tokio::test]
async fn an_app_naming_itself_needs_the_permissions_of_the_endpoint() {
    let app = TestApp::spawn().await;
    let reader = app
        .enroll
        .create_app(&app.org_id, "reader", vec![Permission::AUTH_USERS_READ])
        .await
        .unwrap();
    let body = json!({ "orgId": app.org_id, "username": "jane@example.com" }).to_string();
    let through = app
        .post(
            "/auth/login/init",
            body,
            &[("x-dfns-appid", reader.id.as_str())],
        )
        .await;
    assert_error(&through, 401, "User not found");
    let signing = app
        .post(
            "/auth/action/init",
            "{}".to_owned(),
            &[
                ("x-dfns-appid", reader.id.as_str()),
                ("authorization", &bearer(&app.admin_token)),
            ],
        )
        .await;
    assert_error(
        &signing,
        403,
        &format!(
            "Application {} is not authorized to perform operation (Auth:Action:Sign)",
            reader.id
        ),
    );
}
