//! Reliability row 20 on real servers: an accepted signed request replayed (a) to the same
//! instance, (b) to the other instance sharing PostgreSQL, and (c) sent as 50 copies at once,
//! split across the two. Exactly one copy is accepted; the others are refused and leave no
//! trace: no user, code or outbox message, and no email at the SMTP server.
//!
//! What is signed and good once: the `X-DFNS-NONCE` of a resend, a user action
//! (`X-DFNS-USERACTION`, here on `POST /auth/users`), and a login challenge's signed answer.
//! Resends run with a cooldown of 0, so that only the nonce stands between a copy and a code.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use enroll_core::clock::{Clock as _, SystemClock};
use enroll_core::ids::UserId;
use enroll_core::model::MessageState;
use enroll_core::ports::MessageFilter;
use enroll_testkit::keys::TestKey;
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

use crate::cluster::{Cluster, Footprint};
use crate::helpers::{Db, Reply, assertion_body};

const COPIES: usize = 50;

fn bearer(token: &str) -> (String, String) {
    ("authorization".to_owned(), format!("Bearer {token}"))
}

async fn two_instances() -> Cluster {
    Cluster::start(Db::Postgres, 2, &[("ENROLL_COOLDOWN_SECONDS", "0")]).await
}

fn admin_key(cluster: &Cluster) -> TestKey {
    TestKey::p256_from_pem(
        cluster.bootstrap["adminPrivateKey"].as_str().unwrap(),
        cluster.bootstrap["adminCredentialId"].as_str().unwrap(),
    )
}

/// A user action for `POST {path}` with `body`, signed by the admin on instance 0.
async fn sign_action(cluster: &Cluster, path: &str, body: &str) -> String {
    let auth = [bearer(&cluster.admin_token())];
    let init = cluster
        .send(
            0,
            Method::POST,
            "/auth/action/init",
            json!({
                "userActionPayload": body,
                "userActionHttpMethod": "POST",
                "userActionHttpPath": path,
                "userActionServerKind": "Api",
            })
            .to_string(),
            &auth,
        )
        .await;
    assert_eq!(init.status, 200, "{}", init.body);
    let challenge = init.json();
    let signed = cluster
        .send(
            0,
            Method::POST,
            "/auth/action",
            assertion_body(
                challenge["challengeIdentifier"].as_str().unwrap(),
                &admin_key(cluster).assert(challenge["challenge"].as_str().unwrap()),
            ),
            &auth,
        )
        .await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    signed.json()["userAction"].as_str().unwrap().to_owned()
}

/// `count` copies of one request at once, taking the instances in turn.
async fn copies(
    cluster: &Cluster,
    count: usize,
    method: &Method,
    path: &str,
    body: &str,
    headers: &[(String, String)],
) -> Vec<Reply> {
    join_all(
        (0..count).map(|copy| cluster.send(copy, method.clone(), path, body.to_owned(), headers)),
    )
    .await
}

/// Exactly one copy accepted, every other refused with `refusal` (status and Dfns message).
fn one_accepted(replies: &[Reply], refusal: (u16, &str)) -> BTreeMap<String, usize> {
    let accepted = replies.iter().filter(|reply| reply.status == 200).count();
    let mut seen = BTreeMap::new();
    for reply in replies {
        let message = match reply.status {
            200 => "accepted".to_owned(),
            _ => reply.body.clone(),
        };
        *seen
            .entry(format!("{} {message}", reply.status))
            .or_insert(0) += 1;
    }
    assert_eq!(accepted, 1, "{seen:#?}");
    for reply in replies.iter().filter(|reply| reply.status != 200) {
        assert_eq!(
            (reply.status, reply.json()["error"]["message"].as_str()),
            (refusal.0, Some(refusal.1)),
            "{seen:#?}"
        );
    }
    seen
}

/// Waits until every outbox message is finished, then checks that the SMTP server holds one
/// email per message sent (a resend with cooldown 0 may supersede an earlier code before its
/// email goes: that one is dropped, not sent) and nothing else; returns the emails.
async fn settled_emails(cluster: &Cluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let sent = loop {
        let messages = cluster
            .store
            .messages(&MessageFilter::default())
            .await
            .unwrap();
        let finished = messages
            .iter()
            .all(|message| !matches!(message.state, MessageState::Queued | MessageState::Sending));
        if finished || Instant::now() > deadline {
            assert!(finished, "the outbox drains: {messages:?}");
            break messages
                .iter()
                .filter(|message| message.state == MessageState::Sent)
                .count();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cluster.sink.messages().len(),
        sent,
        "one email per message sent"
    );
    sent
}

/// A user of the organisation, created by the admin through `POST /auth/users`.
async fn employee(cluster: &Cluster, email: &str) -> UserId {
    let body = json!({ "email": email, "kind": "CustomerEmployee" }).to_string();
    let action = sign_action(cluster, "/auth/users", &body).await;
    let created = cluster
        .send(
            0,
            Method::POST,
            "/auth/users",
            body,
            &[
                bearer(&cluster.admin_token()),
                ("x-dfns-useraction".to_owned(), action),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    UserId::parse(created.json()["userId"].as_str().unwrap()).unwrap()
}

fn nonce() -> String {
    URL_SAFE_NO_PAD.encode(
        json!({
            "uuid": UserId::generate().to_string(),
            "date": SystemClock.now().to_rfc3339(),
        })
        .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row20_a_resend_nonce_is_accepted_once_across_two_instances() {
    let cluster = two_instances().await;
    employee(&cluster, "jane@example.com").await;
    let body = json!({"username": "jane@example.com", "orgId": cluster.org_id()}).to_string();
    let path = "/auth/registration/code";
    let refused = (400, "request nonce has already been used");

    let header = [("x-dfns-nonce".to_owned(), nonce())];
    let first = cluster
        .send(0, Method::PUT, path, body.clone(), &header)
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let after_first = cluster.footprint().await;
    for (case, instance) in [("(a) same instance", 0), ("(b) other instance", 1)] {
        let replay = cluster
            .send(instance, Method::PUT, path, body.clone(), &header)
            .await;
        assert_eq!(
            (replay.status, replay.json()["error"]["message"].as_str()),
            (refused.0, Some(refused.1)),
            "{case}"
        );
        assert_eq!(cluster.footprint().await, after_first, "{case}");
    }

    // (c) 50 copies of a fresh one at once, half on each instance.
    let header = [("x-dfns-nonce".to_owned(), nonce())];
    let replies = copies(&cluster, COPIES, &Method::PUT, path, &body, &header).await;
    let seen = one_accepted(&replies, refused);
    let after = cluster.footprint().await;
    assert_eq!(
        after,
        Footprint {
            codes: after_first.codes + 1,
            messages: after_first.messages + 1,
            ..after_first
        },
        "one code and one message for the accepted copy"
    );
    settled_emails(&cluster).await;
    println!("row 20, resend nonce: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row20_a_user_action_is_accepted_once_across_two_instances() {
    let cluster = two_instances().await;
    let path = "/auth/users";
    let refused = (400, "user action has already been used");
    let admin = bearer(&cluster.admin_token());

    let body = json!({ "email": "once@example.com", "kind": "CustomerEmployee" }).to_string();
    let action = sign_action(&cluster, path, &body).await;
    let headers = [admin.clone(), ("x-dfns-useraction".to_owned(), action)];
    let first = cluster
        .send(0, Method::POST, path, body.clone(), &headers)
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let after_first = cluster.footprint().await;
    for (case, instance) in [("(a) same instance", 0), ("(b) other instance", 1)] {
        let replay = cluster
            .send(instance, Method::POST, path, body.clone(), &headers)
            .await;
        assert_eq!(
            (replay.status, replay.json()["error"]["message"].as_str()),
            (refused.0, Some(refused.1)),
            "{case}"
        );
        assert_eq!(cluster.footprint().await, after_first, "{case}");
    }

    let body = json!({ "email": "copies@example.com", "kind": "CustomerEmployee" }).to_string();
    let action = sign_action(&cluster, path, &body).await;
    let headers = [admin, ("x-dfns-useraction".to_owned(), action)];
    let replies = copies(&cluster, COPIES, &Method::POST, path, &body, &headers).await;
    let seen = one_accepted(&replies, refused);
    let after = cluster.footprint().await;
    assert_eq!(
        after,
        Footprint {
            users: after_first.users + 1,
            codes: after_first.codes + 1,
            messages: after_first.messages + 1,
        },
        "one user, one code, one message for the accepted copy"
    );
    settled_emails(&cluster).await;
    println!("row 20, user action: {seen:?}");
}

/// A login challenge for the admin, answered with its key: the body of `POST /auth/login`.
async fn signed_login(cluster: &Cluster) -> String {
    let init = cluster
        .send(
            0,
            Method::POST,
            "/auth/login/init",
            json!({ "orgId": cluster.org_id(), "username": enroll::bootstrap::ADMIN_USERNAME })
                .to_string(),
            &[],
        )
        .await;
    assert_eq!(init.status, 200, "{}", init.body);
    let challenge = init.json();
    assertion_body(
        challenge["challengeIdentifier"].as_str().unwrap(),
        &admin_key(cluster).assert(challenge["challenge"].as_str().unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row20_a_signed_login_is_accepted_once_across_two_instances() {
    let cluster = two_instances().await;
    let path = "/auth/login";
    let refused = (400, "Challenge token is not valid.");
    let before = cluster.footprint().await;

    let body = signed_login(&cluster).await;
    let first = cluster.send(0, Method::POST, path, body.clone(), &[]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    for (case, instance) in [("(a) same instance", 0), ("(b) other instance", 1)] {
        let replay = cluster
            .send(instance, Method::POST, path, body.clone(), &[])
            .await;
        assert_eq!(
            (replay.status, replay.json()["error"]["message"].as_str()),
            (refused.0, Some(refused.1)),
            "{case}"
        );
    }

    let body = signed_login(&cluster).await;
    let replies = copies(&cluster, COPIES, &Method::POST, path, &body, &[]).await;
    let seen = one_accepted(&replies, refused);
    println!("row 20, signed login: {seen:?}");
    // The one token works on both instances.
    let token = replies
        .iter()
        .find(|reply| reply.status == 200)
        .map(|reply| reply.json()["token"].as_str().unwrap().to_owned())
        .unwrap();
    for instance in 0..2 {
        let works = cluster
            .send(
                instance,
                Method::POST,
                "/auth/action/init",
                json!({
                    "userActionPayload": "{}",
                    "userActionHttpMethod": "POST",
                    "userActionHttpPath": "/auth/users",
                })
                .to_string(),
                &[bearer(&token)],
            )
            .await;
        assert_eq!(works.status, 200, "{}", works.body);
    }
    assert_eq!(cluster.footprint().await, before);
    assert_eq!(cluster.sink.messages().len(), 0);
}
