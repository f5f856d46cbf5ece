//! Reliability row 5 on real servers: a correct code raced by 32 requests at once, 100 rounds,
//! on SQLite and on PostgreSQL with two `enroll` processes taking the requests in turn. Each
//! round must have exactly one success, and the user exactly one "email verified" event.

use std::collections::BTreeMap;
use std::time::Instant;

use enroll_core::code::CodeState;
use enroll_core::ids::UserId;
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

use crate::cluster::Cluster;
use crate::helpers::{Db, EXCLUSIVE};

const ROUNDS: usize = 100;
const RACERS: usize = 32;

async fn verifies_race(db: Db, instances: usize) {
    let _exclusive = EXCLUSIVE.lock().await;
    let cluster = Cluster::start(db, instances, &[]).await;
    let auth = vec![(
        "authorization".to_owned(),
        format!("Bearer {}", cluster.admin_token()),
    )];
    let started = Instant::now();
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut users = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let added = cluster
            .send(
                round,
                Method::POST,
                "/v2/users/human",
                json!({
                    "profile": {"givenName": "Race", "familyName": format!("R{round}")},
                    "email": {"email": format!("race{round}@example.com"), "returnCode": {}},
                })
                .to_string(),
                &auth,
            )
            .await;
        assert_eq!(added.status, 200, "{}", added.body);
        let added = added.json();
        let user_id = added["userId"].as_str().unwrap().to_owned();
        let body = json!({"verificationCode": added["emailCode"].as_str().unwrap()}).to_string();
        let path = format!("/v2/users/{user_id}/email/verify");
        let replies = join_all(
            (0..RACERS).map(|racer| cluster.send(racer, Method::POST, &path, body.clone(), &auth)),
        )
        .await;
        let successes = replies.iter().filter(|reply| reply.status == 200).count();
        assert_eq!(
            successes,
            1,
            "round {round}: {:?}",
            replies
                .iter()
                .map(|reply| (reply.status, &reply.body))
                .collect::<Vec<_>>()
        );
        for reply in replies.iter().filter(|reply| reply.status != 200) {
            assert!(
                (400..500).contains(&reply.status),
                "a loser is refused, never failed: {} {}",
                reply.status,
                reply.body
            );
            let message = reply.json()["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            *refusals
                .entry(format!("{} {message}", reply.status))
                .or_default() += 1;
        }
        users.push(UserId::parse(&user_id).unwrap());
    }
    let elapsed = started.elapsed();
    for user in &users {
        let events = cluster.store.events(user.as_str()).await.unwrap();
        let verified = events
            .iter()
            .filter(|event| event.kind == "user.email.verified")
            .count();
        assert_eq!(verified, 1, "{user}: {events:?}");
        let states: Vec<CodeState> = cluster
            .store
            .codes(user)
            .await
            .unwrap()
            .iter()
            .map(|code| code.state)
            .collect();
        assert_eq!(states, [CodeState::Used], "{user}");
        assert!(
            cluster
                .store
                .user(user)
                .await
                .unwrap()
                .unwrap()
                .email_verified_at
                .is_some(),
            "{user}"
        );
    }
    println!(
        "{db:?}, {instances} instance(s): {ROUNDS} rounds of {RACERS} verifies, {ROUNDS} successes, \
         refusals {refusals:?}, {elapsed:.1?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row5_a_code_raced_by_32_verifies_is_used_once_in_100_rounds_on_sqlite() {
    verifies_race(Db::Sqlite, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row5_a_code_raced_by_32_verifies_is_used_once_in_100_rounds_on_two_postgres_instances() {
    verifies_race(Db::Postgres, 2).await;
}
