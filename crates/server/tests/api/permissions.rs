//! Reliability row 22: every endpoint of every face, called (a) without credentials, (b) with
//! credentials of the organisation that lack the permission, and (c) with credentials of
//! another organisation (holding every permission there) acting on a user of this one. Each
//! answer is the one the row expects, and no call changes the database: users, codes and
//! outbox messages are counted before and after each.
//!
//! The rows are checked against the router's source: a route added without a row here fails
//! `row22_every_route_has_a_matrix_row`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use enroll_core::email::EmailAddress;
use enroll_core::ids::OrgId;
use enroll_core::model::{Locale, Permission};
use serde_json::json;

use crate::helpers::{Reply, TestApp};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// No credentials.
    Nobody,
    /// Credentials of the user's organisation without the permission the endpoint needs: a
    /// machine user's token holding none, or an app (`X-DFNS-APPID`) holding none.
    Weak,
    /// Credentials of another organisation holding every permission there: its machine
    /// user's token, or its app.
    Foreign,
}

const CALLERS: [Who; 3] = [Who::Nobody, Who::Weak, Who::Foreign];

/// How an endpoint takes credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials {
    /// `Authorization: Bearer`.
    Bearer,
    /// Open to anyone; a Dfns app may name itself with `X-DFNS-APPID` and then needs the
    /// app's permissions for the path (and to be of the organisation the body names).
    App,
    /// Open to anyone and takes no credentials (pages, operations); a bearer token is sent
    /// anyway to show that it changes nothing.
    None,
}

/// What the test knows: the organisation's user acted on, the callers' credentials.
struct Ctx {
    app: TestApp,
    org: OrgId,
    /// A pending user of the organisation, with a registration code and an email code.
    target: String,
    weak_token: String,
    weak_app: String,
    foreign_token: String,
    foreign_app: String,
}

/// One endpoint: its route as the router names it, and a request that acts on the target.
struct Row {
    method: &'static str,
    route: &'static str,
    credentials: Credentials,
    /// The concrete path (the target's id in place of `{user_id}`), query included.
    path: fn(&Ctx) -> String,
    /// `(content type, body)`.
    body: fn(&Ctx) -> (&'static str, String),
    /// The statuses allowed for each caller: nobody, weak, foreign.
    expect: [&'static [u16]; 3],
    /// Why the row answers so.
    why: &'static str,
}

fn no_body(_: &Ctx) -> (&'static str, String) {
    ("application/json", String::new())
}

fn json_body(value: serde_json::Value) -> (&'static str, String) {
    ("application/json", value.to_string())
}

fn form(fields: &[(&str, &str)]) -> (&'static str, String) {
    let body = fields
        .iter()
        .map(|(name, value)| format!("{name}={}", value.replace('@', "%40")))
        .collect::<Vec<_>>()
        .join("&");
    ("application/x-www-form-urlencoded", body)
}

const TARGET: &str = "target@example.com";
const OK: &[u16] = &[200];
const UNAUTHENTICATED: &[u16] = &[401];
const FORBIDDEN: &[u16] = &[403];
/// A Dfns app of another organisation is unknown to this one: `401 Not Authorized.`
const UNKNOWN_APP: &[u16] = &[401];
/// The very answer the call gets without credentials: the credentials give nothing.
const AS_NOBODY: &[u16] = &[];

/// The ZITADEL REST path of `method` for the target.
fn zitadel_rest(suffix: &str, ctx: &Ctx) -> String {
    format!("/v2/users/{}{suffix}", ctx.target)
}

fn rows() -> Vec<Row> {
    vec![
        // ---- Dfns ------------------------------------------------------------------------
        Row {
            method: "PUT",
            route: "/auth/registration/code",
            credentials: Credentials::App,
            path: |_| "/auth/registration/code".to_owned(),
            body: |ctx| json_body(json!({"username": TARGET, "orgId": ctx.org})),
            // Inside the cooldown of the target's first code: nothing is issued.
            expect: [&[429], &[429], UNKNOWN_APP],
            why: "open to anyone (anti-enumeration); an app needs no permission here, but must be of the org",
        },
        Row {
            method: "PUT",
            route: "/auth/manage/users/send-registration-email",
            credentials: Credentials::App,
            path: |_| "/auth/manage/users/send-registration-email".to_owned(),
            body: |ctx| json_body(json!({"username": TARGET, "orgId": ctx.org})),
            expect: [&[429], FORBIDDEN, UNKNOWN_APP],
            why: "legacy path: an app needs Auth:Users:Create and the kind's type permission",
        },
        Row {
            method: "POST",
            route: "/auth/registration/init",
            credentials: Credentials::App,
            path: |_| "/auth/registration/init".to_owned(),
            body: |ctx| {
                json_body(
                    json!({"orgId": ctx.org, "username": TARGET, "registrationCode": "AAAA-BBBB-CCCC-DDDD"}),
                )
            },
            expect: [UNAUTHENTICATED, FORBIDDEN, UNKNOWN_APP],
            why: "the registration code is the credential; an app needs Auth:Users:Read, and one of another org is unknown here",
        },
        Row {
            method: "POST",
            route: "/auth/registration",
            credentials: Credentials::Bearer,
            path: |_| "/auth/registration".to_owned(),
            body: |_| {
                json_body(
                    json!({"firstFactorCredential": {"credentialKind": "Key", "credentialInfo": {
                    "credId": "x", "clientData": "e30", "attestationData": "e30"}}}),
                )
            },
            expect: [UNAUTHENTICATED, UNAUTHENTICATED, UNAUTHENTICATED],
            why: "needs the temporary token of registration/init; no other token will do",
        },
        Row {
            method: "POST",
            route: "/auth/login/init",
            credentials: Credentials::App,
            path: |_| "/auth/login/init".to_owned(),
            body: |ctx| json_body(json!({"orgId": ctx.org, "username": TARGET})),
            expect: [UNAUTHENTICATED, FORBIDDEN, UNKNOWN_APP],
            why: "open (the signed answer is the credential); an app needs Auth:Users:Read, and one of another org is unknown here",
        },
        Row {
            method: "POST",
            route: "/auth/login",
            credentials: Credentials::App,
            path: |_| "/auth/login".to_owned(),
            body: |_| {
                json_body(
                    json!({"challengeIdentifier": "not-a-challenge", "firstFactor": {"kind": "Key",
                    "credentialAssertion": {"credId": "x", "clientData": "e30", "signature": "e30"}}}),
                )
            },
            expect: [&[400], FORBIDDEN, AS_NOBODY],
            why: "the signed challenge is the credential; an app needs Auth:Users:Read, and one of another org is refused for a challenge of this org (this one is no challenge)",
        },
        Row {
            method: "PUT",
            route: "/auth/logout",
            credentials: Credentials::Bearer,
            path: |_| "/auth/logout".to_owned(),
            // Ends only the caller's own session: run on tokens made for it (see `call`).
            body: no_body,
            expect: [UNAUTHENTICATED, OK, OK],
            why: "any live token may end itself, and only itself",
        },
        Row {
            method: "POST",
            route: "/auth/action/init",
            credentials: Credentials::Bearer,
            path: |_| "/auth/action/init".to_owned(),
            body: |_| {
                json_body(
                    json!({"userActionPayload": "{}", "userActionHttpMethod": "POST",
                    "userActionHttpPath": "/auth/users"}),
                )
            },
            expect: [UNAUTHENTICATED, UNAUTHENTICATED, UNAUTHENTICATED],
            why: "a caller signs its own actions with its own key (machine users have none); bound to the caller and its org",
        },
        Row {
            method: "POST",
            route: "/auth/action",
            credentials: Credentials::Bearer,
            path: |_| "/auth/action".to_owned(),
            body: |_| {
                json_body(
                    json!({"challengeIdentifier": "not-a-challenge", "firstFactor": {"kind": "Key",
                    "credentialAssertion": {"credId": "x", "clientData": "e30", "signature": "e30"}}}),
                )
            },
            expect: [UNAUTHENTICATED, &[400], &[400]],
            why: "answers the caller's own challenge only",
        },
        Row {
            method: "POST",
            route: "/auth/users",
            credentials: Credentials::Bearer,
            path: |_| "/auth/users".to_owned(),
            body: |_| json_body(json!({"email": "new@example.com", "kind": "CustomerEmployee"})),
            // The foreign caller holds the permissions, in its own org, where the user would
            // be made; without a user action nothing is.
            expect: [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN],
            why: "Auth:Users:Create and Auth:Types:Employee, in the caller's own org, with a user action",
        },
        // ---- ZITADEL, REST ---------------------------------------------------------------
        Row {
            method: "POST",
            route: "/v2/users/human",
            credentials: Credentials::Bearer,
            path: |_| "/v2/users/human".to_owned(),
            body: |ctx| {
                json_body(json!({"organization": {"orgId": ctx.org},
                    "profile": {"givenName": "A", "familyName": "B"},
                    "email": {"email": "added@example.com", "returnCode": {}}}))
            },
            expect: [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN],
            why: "user.write in the org the user is added to",
        },
        Row {
            method: "POST",
            route: "/v2/users/{user_id}/email",
            credentials: Credentials::Bearer,
            path: |ctx| zitadel_rest("/email", ctx),
            body: |_| json_body(json!({"email": "changed@example.com", "returnCode": {}})),
            expect: [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN],
            why: "the user itself, or user.write in the user's org",
        },
        Row {
            method: "POST",
            route: "/v2/users/{user_id}/email/send",
            credentials: Credentials::Bearer,
            path: |ctx| zitadel_rest("/email/send", ctx),
            body: |_| json_body(json!({"returnCode": {}})),
            expect: [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN],
            why: "the user itself, or user.write in the user's org",
        },
        Row {
            method: "POST",
            route: "/v2/users/{user_id}/email/resend",
            credentials: Credentials::Bearer,
            path: |ctx| zitadel_rest("/email/resend", ctx),
            body: |_| json_body(json!({"returnCode": {}})),
            expect: [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN],
            why: "the user itself, or user.write in the user's org",
        },
        Row {
            method: "POST",
            route: "/v2/users/{user_id}/email/verify",
            credentials: Credentials::Bearer,
            path: |ctx| zitadel_rest("/email/verify", ctx),
            // No email code is pending for the target: nothing to guess at.
            body: |_| json_body(json!({"verificationCode": "WRONG1"})),
            expect: [UNAUTHENTICATED, &[400], &[400]],
            why: "any authenticated caller holding the code may verify: the code is the proof (as ZITADEL)",
        },
        // ---- ZITADEL, Connect (JSON); gRPC and gRPC-Web reach the same methods ----------
        Row {
            method: "ANY",
            route: "/zitadel.user.v2.UserService/{method}",
            credentials: Credentials::Bearer,
            path: |_| "/zitadel.user.v2.UserService/SendEmailCode".to_owned(),
            body: |ctx| json_body(json!({"userId": ctx.target, "returnCode": {}})),
            expect: [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN],
            why: "as REST: the user itself, or user.write in the user's org (each method below too)",
        },
        // ---- Singularity -----------------------------------------------------------------
        Row {
            method: "POST",
            route: "/api/auth/register",
            credentials: Credentials::None,
            path: |_| "/api/auth/register".to_owned(),
            body: |_| {
                json_body(
                    json!({"email": "someone@example.com", "password": "short", "name": "Some One"}),
                )
            },
            expect: [&[400], &[400], &[400]],
            why: "open to anyone: a sign-up (refused here for its password)",
        },
        Row {
            method: "POST",
            route: "/api/auth/login",
            credentials: Credentials::None,
            path: |_| "/api/auth/login".to_owned(),
            body: |_| json_body(json!({"email": TARGET, "password": "not-the-password"})),
            expect: [UNAUTHENTICATED, UNAUTHENTICATED, UNAUTHENTICATED],
            why: "the password is the credential",
        },
        Row {
            method: "POST",
            route: "/api/auth/refresh",
            credentials: Credentials::Bearer,
            path: |_| "/api/auth/refresh".to_owned(),
            body: no_body,
            expect: [UNAUTHENTICATED, UNAUTHENTICATED, UNAUTHENTICATED],
            why: "only a refresh token of this face will do",
        },
        Row {
            method: "POST",
            route: "/api/auth/logout",
            credentials: Credentials::Bearer,
            path: |_| "/api/auth/logout".to_owned(),
            body: no_body,
            expect: [OK, OK, OK],
            why: "always 200; ends only a session of this face (other tokens end nothing)",
        },
        Row {
            method: "GET",
            route: "/api/users/me",
            credentials: Credentials::Bearer,
            path: |_| "/api/users/me".to_owned(),
            body: no_body,
            expect: [UNAUTHENTICATED, UNAUTHENTICATED, UNAUTHENTICATED],
            why: "a session of this face; other faces' tokens are not sessions",
        },
        Row {
            method: "POST",
            route: "/api/auth/email/verification",
            credentials: Credentials::Bearer,
            path: |_| "/api/auth/email/verification?token=NOTATOKEN".to_owned(),
            body: no_body,
            expect: [UNAUTHENTICATED, UNAUTHENTICATED, UNAUTHENTICATED],
            why: "the link's token is the proof; an access token sent must be valid",
        },
        Row {
            method: "POST",
            route: "/api/auth/email/verification/send",
            credentials: Credentials::Bearer,
            path: |_| "/api/auth/email/verification/send".to_owned(),
            body: no_body,
            expect: [UNAUTHENTICATED, UNAUTHENTICATED, UNAUTHENTICATED],
            why: "a session of this face, for its own address",
        },
        Row {
            method: "GET",
            route: "/api/auth/email/verification/cooldown",
            credentials: Credentials::Bearer,
            path: |_| "/api/auth/email/verification/cooldown".to_owned(),
            body: no_body,
            expect: [UNAUTHENTICATED, UNAUTHENTICATED, UNAUTHENTICATED],
            why: "a session of this face, for its own address",
        },
        Row {
            method: "POST",
            route: "/api/auth/password/reset-request",
            credentials: Credentials::None,
            path: |_| "/api/auth/password/reset-request".to_owned(),
            body: |_| json_body(json!({"email": "not an address"})),
            expect: [&[400], &[400], &[400]],
            why: "open to anyone (answers alike for every address)",
        },
        Row {
            method: "GET",
            route: "/api/auth/password/reset/cooldown",
            credentials: Credentials::None,
            path: |_| format!("/api/auth/password/reset/cooldown?email={TARGET}"),
            body: no_body,
            expect: [OK, OK, OK],
            why: "open to anyone: the time left, the same for every address",
        },
        Row {
            method: "POST",
            route: "/api/auth/password/reset",
            credentials: Credentials::None,
            path: |_| "/api/auth/password/reset?token=NOTATOKEN".to_owned(),
            body: |_| json_body(json!({"newPassword": "Another-Passw0rd!"})),
            expect: [UNAUTHENTICATED, UNAUTHENTICATED, UNAUTHENTICATED],
            why: "the link's token is the proof",
        },
        // ---- Hosted pages ----------------------------------------------------------------
        Row {
            method: "GET",
            route: "/ui/login/mail/verification",
            credentials: Credentials::None,
            path: |ctx| {
                format!(
                    "/ui/login/mail/verification?userID={}&code=WRONG1",
                    ctx.target
                )
            },
            body: no_body,
            expect: [OK, OK, OK],
            why: "shows a form; a GET changes nothing",
        },
        Row {
            method: "POST",
            route: "/ui/login/mail/verification",
            credentials: Credentials::None,
            path: |_| "/ui/login/mail/verification".to_owned(),
            body: |ctx| {
                let target = ctx.target.clone();
                let (kind, body) = form(&[("userID", &target), ("code", "WRONG1")]);
                (kind, body)
            },
            expect: [&[400], &[400], &[400]],
            why: "the code is the proof",
        },
        Row {
            method: "POST",
            route: "/ui/login/mail/verification/resend",
            credentials: Credentials::None,
            path: |_| "/ui/login/mail/verification/resend".to_owned(),
            body: |ctx| form(&[("userID", &ctx.target.clone())]),
            // The target's email code was sent inside the cooldown: no new one.
            expect: [&[429], &[429], &[429]],
            why: "open (a new email while a code is pending, within the cooldown)",
        },
        Row {
            method: "GET",
            route: "/ui/auth/verify-email",
            credentials: Credentials::None,
            path: |_| "/ui/auth/verify-email?token=NOTATOKEN".to_owned(),
            body: no_body,
            expect: [OK, OK, OK],
            why: "shows a form",
        },
        Row {
            method: "POST",
            route: "/ui/auth/verify-email",
            credentials: Credentials::None,
            path: |_| "/ui/auth/verify-email".to_owned(),
            body: |_| form(&[("token", "NOTATOKEN")]),
            expect: [&[400], &[400], &[400]],
            why: "the link's token is the proof",
        },
        Row {
            method: "GET",
            route: "/ui/auth/reset-password",
            credentials: Credentials::None,
            path: |_| "/ui/auth/reset-password?token=NOTATOKEN".to_owned(),
            body: no_body,
            expect: [OK, OK, OK],
            why: "shows a form",
        },
        Row {
            method: "POST",
            route: "/ui/auth/reset-password",
            credentials: Credentials::None,
            path: |_| "/ui/auth/reset-password".to_owned(),
            body: |_| form(&[("token", "NOTATOKEN"), ("password", "Another-Passw0rd!")]),
            expect: [&[400], &[400], &[400]],
            why: "the link's token is the proof",
        },
        Row {
            method: "GET",
            route: "/ui/auth/forgot-password",
            credentials: Credentials::None,
            path: |_| "/ui/auth/forgot-password".to_owned(),
            body: no_body,
            expect: [OK, OK, OK],
            why: "shows a form",
        },
        Row {
            method: "POST",
            route: "/ui/auth/forgot-password",
            credentials: Credentials::None,
            path: |_| "/ui/auth/forgot-password".to_owned(),
            body: |_| form(&[("email", "not an address")]),
            expect: [&[400], &[400], &[400]],
            why: "open to anyone, as reset-request",
        },
        Row {
            method: "GET",
            route: "/ui/auth/register",
            credentials: Credentials::None,
            path: |_| "/ui/auth/register".to_owned(),
            body: no_body,
            expect: [OK, OK, OK],
            why: "shows a form",
        },
        Row {
            method: "POST",
            route: "/ui/auth/register",
            credentials: Credentials::None,
            path: |_| "/ui/auth/register".to_owned(),
            body: |_| {
                form(&[
                    ("email", "someone@example.com"),
                    ("password", "short"),
                    ("name", "Some One"),
                ])
            },
            expect: [&[400], &[400], &[400]],
            why: "open to anyone, as register",
        },
        // ---- Development inbox, operations -----------------------------------------------
        Row {
            method: "GET",
            route: "/dev/mail",
            credentials: Credentials::None,
            path: |_| "/dev/mail".to_owned(),
            body: no_body,
            expect: [&[404], &[404], &[404]],
            why: "only when mail is captured (no SMTP); this server relays to SMTP",
        },
        Row {
            method: "GET",
            route: "/dev/mail/ui",
            credentials: Credentials::None,
            path: |_| "/dev/mail/ui".to_owned(),
            body: no_body,
            expect: [&[404], &[404], &[404]],
            why: "only when mail is captured (no SMTP)",
        },
        Row {
            method: "GET",
            route: "/healthz",
            credentials: Credentials::None,
            path: |_| "/healthz".to_owned(),
            body: no_body,
            expect: [OK, OK, OK],
            why: "operations: open, says nothing about users",
        },
        Row {
            method: "GET",
            route: "/readyz",
            credentials: Credentials::None,
            path: |_| "/readyz".to_owned(),
            body: no_body,
            expect: [OK, OK, OK],
            why: "operations: open",
        },
        Row {
            method: "GET",
            route: "/metrics",
            credentials: Credentials::None,
            path: |_| "/metrics".to_owned(),
            body: no_body,
            expect: [OK, OK, OK],
            why: "operations: open (counters only, no user data)",
        },
        Row {
            method: "GET",
            route: "/openapi.json",
            credentials: Credentials::None,
            path: |_| "/openapi.json".to_owned(),
            body: no_body,
            expect: [OK, OK, OK],
            why: "the API description: open",
        },
    ]
}

/// The Connect methods behind `/zitadel.user.v2.UserService/{method}`, each as a row of its own.
/// A Connect method, its request for the target, and the statuses per caller.
type ConnectRow = (
    &'static str,
    fn(&Ctx) -> serde_json::Value,
    [&'static [u16]; 3],
);

fn connect_rows() -> Vec<ConnectRow> {
    vec![
        (
            "AddHumanUser",
            |ctx| {
                json!({"organization": {"orgId": ctx.org}, "profile": {"givenName": "A", "familyName": "B"},
                    "email": {"email": "added@example.com", "returnCode": {}}})
            },
            [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN],
        ),
        (
            "SetEmail",
            |ctx| json!({"userId": ctx.target, "email": "changed@example.com", "returnCode": {}}),
            [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN],
        ),
        (
            "SendEmailCode",
            |ctx| json!({"userId": ctx.target, "returnCode": {}}),
            [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN],
        ),
        (
            "ResendEmailCode",
            |ctx| json!({"userId": ctx.target, "returnCode": {}}),
            [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN],
        ),
        (
            "VerifyEmail",
            |ctx| json!({"userId": ctx.target, "verificationCode": "WRONG1"}),
            [UNAUTHENTICATED, &[400], &[400]],
        ),
    ]
}

async fn context() -> Ctx {
    let app = TestApp::spawn().await;
    let org = app.org_id.clone();
    let target = app.create_user(TARGET).await;
    // An email code too, emailed, so that resends meet the cooldown.
    let sent = app
        .post(
            &format!("/v2/users/{}/email/send", target.id),
            "{}".to_owned(),
            &[("authorization", &format!("Bearer {}", app.admin_token))],
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let (_, weak_token) = app
        .enroll
        .create_machine_user(
            &org,
            EmailAddress::parse("weak@machine.invalid").unwrap(),
            Vec::new(),
        )
        .await
        .unwrap();
    let weak_app = app
        .enroll
        .create_app(&org, "weak", Vec::new())
        .await
        .unwrap();
    let other = app
        .enroll
        .create_org("Other", Locale::english())
        .await
        .unwrap();
    let (_, foreign_token) = app
        .enroll
        .create_machine_user(
            &other.id,
            EmailAddress::parse("foreign@machine.invalid").unwrap(),
            Permission::all(),
        )
        .await
        .unwrap();
    let foreign_app = app
        .enroll
        .create_app(&other.id, "foreign", Permission::all())
        .await
        .unwrap();
    Ctx {
        org,
        target: target.id.to_string(),
        weak_token: weak_token.expose().to_owned(),
        weak_app: weak_app.id.to_string(),
        foreign_token: foreign_token.expose().to_owned(),
        foreign_app: foreign_app.id.to_string(),
        app,
    }
}

/// Users, codes and outbox messages, all organisations together.
async fn footprint(ctx: &Ctx) -> (usize, usize, usize) {
    let store = ctx.app.enroll.store();
    let users = store.users(None).await.unwrap();
    let mut codes = 0;
    for user in &users {
        codes += store.codes(&user.id).await.unwrap().len();
    }
    (users.len(), codes, ctx.app.outbox_len().await)
}

async fn call(
    ctx: &Ctx,
    who: Who,
    credentials: Credentials,
    method: &str,
    path: &str,
    (content_type, body): (&str, String),
) -> Reply {
    let method = match method {
        "ANY" => "POST",
        other => other,
    };
    let mut request = ctx
        .app
        .client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            ctx.app.url(path),
        )
        .header("content-type", content_type);
    if path.starts_with("/zitadel.") {
        request = request.header("connect-protocol-version", "1");
    }
    if !body.is_empty() {
        request = request.body(body);
    }
    let token = match who {
        Who::Nobody => None,
        Who::Weak => Some(ctx.weak_token.as_str()),
        Who::Foreign => Some(ctx.foreign_token.as_str()),
    };
    let app = match who {
        Who::Nobody => None,
        Who::Weak => Some(ctx.weak_app.as_str()),
        Who::Foreign => Some(ctx.foreign_app.as_str()),
    };
    match credentials {
        Credentials::Bearer | Credentials::None => {
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
        }
        Credentials::App => {
            if let Some(app) = app {
                request = request.header("x-dfns-appid", app);
            }
        }
    }
    let response = request.send().await.expect("the server answers");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

#[tokio::test]
async fn row22_every_endpoint_refuses_missing_permissions_and_other_organisations() {
    let ctx = context().await;
    let mut mismatches = Vec::new();
    let mut table = String::new();
    let mut calls = 0;
    let mut check = |label: String,
                     who: Who,
                     expected: &[u16],
                     reply: &Reply,
                     anonymous: Option<&Reply>,
                     changed: bool| {
        calls += 1;
        let answered = match (expected, anonymous) {
            ([], Some(anonymous)) => {
                (reply.status, &reply.body) == (anonymous.status, &anonymous.body)
            }
            _ => expected.contains(&reply.status),
        };
        let ok = answered && !changed;
        table.push_str(&format!(
            "{label:<70} {who:<8?} {} {} {}\n",
            reply.status,
            reply.body.chars().take(90).collect::<String>(),
            if changed { "CHANGED THE DATABASE" } else { "" }
        ));
        if !ok {
            mismatches.push(format!(
                "{label} as {who:?}: expected {expected:?}, got {} {}{}",
                reply.status,
                reply.body.chars().take(200).collect::<String>(),
                if changed {
                    " (and the database changed)"
                } else {
                    ""
                }
            ));
        }
    };
    for row in rows() {
        let mut anonymous = None;
        for (index, who) in CALLERS.into_iter().enumerate() {
            // Logging out ends the caller's token: the later rows need theirs.
            if row.route == "/auth/logout" && who != Who::Nobody {
                continue;
            }
            let before = footprint(&ctx).await;
            let reply = call(
                &ctx,
                who,
                row.credentials,
                row.method,
                &(row.path)(&ctx),
                (row.body)(&ctx),
            )
            .await;
            let changed = footprint(&ctx).await != before;
            if row.credentials == Credentials::App
                && who == Who::Foreign
                && row.expect[index] == UNKNOWN_APP
            {
                assert_eq!(
                    reply.body, r#"{"error":{"message":"Not Authorized."}}"#,
                    "{} {}",
                    row.method, row.route
                );
            }
            check(
                format!("{} {}", row.method, row.route),
                who,
                row.expect[index],
                &reply,
                anonymous.as_ref(),
                changed,
            );
            assert!(!row.why.is_empty());
            if who == Who::Nobody {
                anonymous = Some(reply);
            }
        }
    }
    for (method, body, expect) in connect_rows() {
        for (index, who) in CALLERS.into_iter().enumerate() {
            let before = footprint(&ctx).await;
            let reply = call(
                &ctx,
                who,
                Credentials::Bearer,
                "POST",
                &format!("/zitadel.user.v2.UserService/{method}"),
                json_body(body(&ctx)),
            )
            .await;
            let changed = footprint(&ctx).await != before;
            check(
                format!("Connect {method}"),
                who,
                expect[index],
                &reply,
                None,
                changed,
            );
        }
    }
    // Logging out, last: each caller ends its own token, and nothing else.
    for (index, who) in CALLERS.into_iter().enumerate() {
        let before = footprint(&ctx).await;
        let reply = call(
            &ctx,
            who,
            Credentials::Bearer,
            "PUT",
            "/auth/logout",
            no_body(&ctx),
        )
        .await;
        let changed = footprint(&ctx).await != before;
        check(
            "PUT /auth/logout".to_owned(),
            who,
            [UNAUTHENTICATED, OK, OK][index],
            &reply,
            None,
            changed,
        );
    }
    println!("{table}{calls} calls");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The server's sources.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The argument of the call whose `(` is at `open`, up to its matching `)`.
fn argument(text: &str, open: usize) -> &str {
    let mut depth = 0;
    for (offset, byte) in text[open..].bytes().enumerate() {
        match byte {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..open + offset];
                }
            }
            _ => {}
        }
    }
    panic!("an unclosed call");
}

/// The value of `const NAME: &str = "…";` in `file`.
fn constant(file: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let start = text.find(&format!("const {name}: &str = \""))?;
    let rest = &text[start..];
    let quote = rest.find('"')? + 1;
    let end = rest[quote..].find('"')?;
    Some(rest[quote..quote + end].to_owned())
}

/// Every `(method, route)` the router mounts, read from the `.route(…)` calls of the server's
/// sources: the path (a literal, or a constant of the file or of a sibling module) and each
/// method router (`get(…)`, `post(…)`, `.post(…)`, `any(…)`, …).
fn routes_in_sources() -> BTreeSet<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests mount routes of their own.
        let text = text
            .split_once("#[cfg(test)]")
            .map_or(text.as_str(), |(code, _)| code);
        for (at, _) in text.match_indices(".route(") {
            let call = argument(text, at + ".route".len());
            let (path, handlers) = call.split_once(',').expect("a path and a method router");
            let path = path.trim();
            let path = if let Some(literal) = path.strip_prefix('"') {
                literal.trim_end_matches('"').to_owned()
            } else {
                let (module, name) = path.rsplit_once("::").unwrap_or(("", path));
                let home = if module.is_empty() {
                    file.clone()
                } else {
                    file.with_file_name(format!("{module}.rs"))
                };
                let found = constant(&home, name).or_else(|| {
                    // A constant of the module's `mod.rs`.
                    constant(&file.with_file_name("mod.rs"), name)
                });
                found.unwrap_or_else(|| panic!("{}: no constant {path}", file.display()))
            };
            for method in ["get", "post", "put", "delete", "patch", "any"] {
                let called = format!("{method}(");
                let mounted = handlers.match_indices(&called).any(|(index, _)| {
                    index == 0
                        || matches!(handlers.as_bytes()[index - 1], b' ' | b'\n' | b'(' | b'.')
                });
                if mounted {
                    routes.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    routes
}

#[test]
fn row22_every_route_has_a_matrix_row() {
    let mounted = routes_in_sources();
    assert!(mounted.len() > 30, "the scan finds the routes: {mounted:?}");
    let rows: BTreeSet<(String, String)> = rows()
        .iter()
        .map(|row| (row.method.to_owned(), row.route.to_owned()))
        .collect();
    let missing: Vec<_> = mounted.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&mounted).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routes without a row in the permission matrix: {missing:?}; rows without a route: {stale:?}"
    );
}
