//! Clock skew between instances (fault plan F8): two instances of the server share one
//! PostgreSQL database and the server secret, each with its own clock (the clock the
//! application takes at start, here moved by hand), one of them ten minutes off.
//!
//! What the API shows: a nonce's date is judged against each instance's own clock, and a
//! nonce accepted by one is refused by the other; codes issued on one verify on the other and
//! expire on both; a cooldown set by a clock ahead ends, and says truthfully when.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use enroll::config::Settings;
use enroll::startup::Application;
use enroll_core::clock::{Clock as _, ManualClock, SystemClock, Timestamp};
use serde_json::{Value, json};

use crate::helpers::fresh_postgres_database;

const MINUTE: Duration = Duration::from_secs(60);
const SUCCESS: &str = r#"{"message":"success"}"#;
const NONCE_USED: &str = r#"{"error":{"message":"request nonce has already been used"}}"#;
const NONCE_INVALID: &str = r#"{"error":{"message":"request nonce is missing or invalid"}}"#;

struct Instance {
    base: String,
    clock: Arc<ManualClock>,
    _data_dir: tempfile::TempDir,
}

/// An instance over `database_url` whose clock is `skew` ahead of (or, negative, behind) the
/// wall clock.
async fn instance(database_url: &str, secret: &str, skew_ms: i64) -> Instance {
    let data_dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        database_url: Some(database_url.to_owned()),
        database_pool_size: 4,
        secret: Some(secret.to_owned()),
        email_code_ttl_seconds: 3600,
        cooldown_seconds: 60,
        ..Settings::default()
    };
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(
        SystemClock.now().as_millis() + skew_ms,
    )));
    let application = Application::build(&settings, clock.clone())
        .await
        .expect("the instance starts");
    let base = format!("http://{}", application.address());
    tokio::spawn(application.run_until_stopped(std::future::pending()));
    Instance {
        base,
        clock,
        _data_dir: data_dir,
    }
}

struct Pair {
    a: Instance,
    b: Instance,
    client: reqwest::Client,
    admin: String,
    org_id: String,
    database_url: String,
    secret: String,
}

/// Instance A on the wall clock, B `skew_ms` off; both over a fresh database.
async fn pair(skew_ms: i64) -> Pair {
    let url = fresh_postgres_database().await;
    let secret = "5e".repeat(32);
    let a = instance(&url, &secret, 0).await;
    let boot: Value = serde_json::from_str(
        &std::fs::read_to_string(a._data_dir.path().join("bootstrap.json")).unwrap(),
    )
    .unwrap();
    let b = instance(&url, &secret, skew_ms).await;
    Pair {
        a,
        b,
        client: reqwest::Client::new(),
        admin: boot["adminToken"].as_str().unwrap().to_owned(),
        org_id: boot["orgId"].as_str().unwrap().to_owned(),
        database_url: url,
        secret,
    }
}

/// `X-DFNS-NONCE` as older Dfns SDKs build it.
fn nonce(uuid: &str, date: Timestamp) -> String {
    URL_SAFE_NO_PAD.encode(json!({"uuid": uuid, "date": date.to_rfc3339()}).to_string())
}

fn minutes(count: i64) -> i64 {
    count * 60_000
}

impl Pair {
    /// `PUT /auth/registration/code` on `on` for `username` with the nonce; status and body.
    async fn resend(&self, on: &Instance, username: &str, header: &str) -> (u16, String) {
        let response = self
            .client
            .put(format!("{}/auth/registration/code", on.base))
            .header("x-dfns-nonce", header)
            .json(&json!({"username": username, "orgId": self.org_id}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// A ZITADEL call on `on` as the admin; status, `Retry-After` and JSON body.
    async fn zitadel(&self, on: &Instance, path: &str, body: Value) -> (u16, Option<u64>, Value) {
        let response = self
            .client
            .post(format!("{}{path}", on.base))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()?.parse().ok());
        (
            status,
            retry_after,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// Adds a user on `on`; its id, and its email code when `return_code`.
    async fn add_user(&self, on: &Instance, email: &str, return_code: bool) -> (String, String) {
        let code = if return_code {
            json!({"returnCode": {}})
        } else {
            json!({"sendCode": {}})
        };
        let mut email_field = json!({ "email": email });
        email_field
            .as_object_mut()
            .unwrap()
            .extend(code.as_object().unwrap().clone());
        let (status, _, added) = self
            .zitadel(
                on,
                "/v2/users/human",
                json!({
                    "profile": {"givenName": "Skew", "familyName": "Test"},
                    "email": email_field,
                }),
            )
            .await;
        assert_eq!(status, 200, "{added}");
        (
            added["userId"].as_str().unwrap().to_owned(),
            added["emailCode"].as_str().unwrap_or_default().to_owned(),
        )
    }

    async fn verify(&self, on: &Instance, user: &str, code: &str) -> (u16, Value) {
        let (status, _, body) = self
            .zitadel(
                on,
                &format!("/v2/users/{user}/email/verify"),
                json!({ "verificationCode": code }),
            )
            .await;
        (status, body)
    }

    /// Moves both clocks on by `by`, as the wall clock would.
    fn advance(&self, by: Duration) {
        self.a.clock.advance(by);
        self.b.clock.advance(by);
    }
}

/// Nonces under skew: each instance judges a nonce's date by its own clock (±5 min), a nonce
/// accepted by one instance is refused by the other, and an instance whose clock runs ten
/// minutes ahead does not forget the nonces the other still accepts. (It did: its upkeep
/// purged nonces seen more than twice the window ago by its own clock, so a nonce accepted by
/// A could be replayed on A once an instance ten minutes ahead had tidied up.)
#[tokio::test]
async fn under_clock_skew_a_nonce_is_still_used_once() {
    let pair = pair(minutes(10)).await;
    let now = SystemClock.now();
    let first = nonce("0b0e7a52-6a44-4d7e-9f1d-5a8b7c6d5e4f", now);
    assert_eq!(
        pair.resend(&pair.a, "skew-1@example.com", &first).await,
        (200, SUCCESS.to_owned())
    );
    // B, ten minutes ahead, finds the date outside its window: its own clock decides.
    assert_eq!(
        pair.resend(&pair.b, "skew-2@example.com", &first).await,
        (400, NONCE_INVALID.to_owned())
    );
    let ahead = nonce(
        "1c1f8b63-7b55-4e8f-8a2e-6b9c8d7e6f50",
        now.plus(10 * MINUTE),
    );
    assert_eq!(
        pair.resend(&pair.b, "skew-3@example.com", &ahead).await,
        (200, SUCCESS.to_owned())
    );
    assert_eq!(
        pair.resend(&pair.a, "skew-4@example.com", &ahead).await,
        (400, NONCE_INVALID.to_owned())
    );

    // A third instance, ten minutes ahead too, starts (and tidies the nonces up) after A
    // accepted `first`: A must still refuse it while its date is inside A's window.
    let url_instance = instance_like(&pair, minutes(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pair.resend(&pair.a, "skew-5@example.com", &first).await,
        (400, NONCE_USED.to_owned()),
        "a nonce replayed on A after an instance ahead purged old nonces"
    );
    drop(url_instance);

    // With the clocks two minutes apart the windows overlap: a nonce dated between them is
    // good on both by date, and used once across the two.
    pair.b.clock.set(Timestamp::from_millis(
        SystemClock.now().as_millis() + minutes(2),
    ));
    let between = SystemClock.now().plus(MINUTE);
    let on_b = nonce("2d209c74-8c66-4f90-9b3f-7cad9e8f7061", between);
    assert_eq!(
        pair.resend(&pair.b, "skew-6@example.com", &on_b).await,
        (200, SUCCESS.to_owned())
    );
    assert_eq!(
        pair.resend(&pair.a, "skew-6@example.com", &on_b).await,
        (400, NONCE_USED.to_owned())
    );
    let on_a = nonce("3e31ad85-9d77-4fa1-8c40-8dbeaf907182", between);
    assert_eq!(
        pair.resend(&pair.a, "skew-7@example.com", &on_a).await,
        (200, SUCCESS.to_owned())
    );
    assert_eq!(
        pair.resend(&pair.b, "skew-7@example.com", &on_a).await,
        (400, NONCE_USED.to_owned())
    );
}

/// Another instance over the pair's database, `skew_ms` off the wall clock.
async fn instance_like(pair: &Pair, skew_ms: i64) -> Instance {
    instance(&pair.database_url, &pair.secret, skew_ms).await
}

/// Codes under skew: a code issued on one instance verifies on the other, and once its
/// lifetime (1 h) has passed on both clocks it is refused on both. In between, each instance
/// judges by its own clock: B, ten minutes ahead, refuses a code ten minutes before A does.
#[tokio::test]
async fn under_clock_skew_codes_verify_and_expire_on_both_instances() {
    let pair = pair(minutes(10)).await;
    let (from_a, code_a) = pair.add_user(&pair.a, "code-a@example.com", true).await;
    let (from_b, code_b) = pair.add_user(&pair.b, "code-b@example.com", true).await;
    assert_eq!(pair.verify(&pair.b, &from_a, &code_a).await.0, 200);
    assert_eq!(pair.verify(&pair.a, &from_b, &code_b).await.0, 200);

    let mut later = Vec::new();
    for index in 0..4 {
        later.push(
            pair.add_user(&pair.a, &format!("later-{index}@example.com"), true)
                .await,
        );
    }
    // 45 minutes on: A reads 0:45 and B 0:55 of the codes' hour; both accept.
    pair.advance(45 * MINUTE);
    assert_eq!(pair.verify(&pair.b, &later[0].0, &later[0].1).await.0, 200);
    // 55 minutes on: A reads 0:55 and accepts; B reads 1:05 and refuses.
    pair.advance(10 * MINUTE);
    assert_eq!(pair.verify(&pair.a, &later[1].0, &later[1].1).await.0, 200);
    let (status, body) = pair.verify(&pair.b, &later[2].0, &later[2].1).await;
    assert_eq!(status, 400, "expired by B's clock: {body}");
    // 75 minutes on: expired on both.
    pair.advance(20 * MINUTE);
    let (status_a, body_a) = pair.verify(&pair.a, &later[3].0, &later[3].1).await;
    let (status_b, body_b) = pair.verify(&pair.b, &later[2].0, &later[2].1).await;
    assert_eq!((status_a, status_b), (400, 400), "{body_a} {body_b}");
    eprintln!("clock skew: an expired code answers {status_a} {body_a}");
}

/// Cooldowns under skew: a cooldown set by an instance ten minutes ahead holds on the other
/// for one cooldown from its own clock, with a `Retry-After` that says so, and then ends; so
/// does a cooldown after a backwards jump of an instance's own clock: no address waits for the
/// difference between clocks.
#[tokio::test]
async fn under_clock_skew_a_cooldown_ends_and_says_when() {
    let pair = pair(minutes(10)).await;
    let (user, _) = pair.add_user(&pair.a, "cool@example.com", false).await;
    let resend = format!("/v2/users/{user}/email/resend");
    let send = || json!({"sendCode": {}});

    // A set the cooldown (until A's now + 60 s); B, ahead, finds it over and sends.
    assert_eq!(pair.zitadel(&pair.a, &resend, send()).await.0, 429);
    let (status, _, body) = pair.zitadel(&pair.b, &resend, send()).await;
    assert_eq!(status, 200, "{body}");
    // B's cooldown ends at B's now + 60 s, which A reads as 11 minutes away: A holds the
    // address for one cooldown of its own.
    let (status, retry_after, _) = pair.zitadel(&pair.a, &resend, send()).await;
    assert_eq!(status, 429);
    let retry_after = retry_after.expect("a Retry-After");
    assert!(
        (1..=61).contains(&retry_after),
        "Retry-After is at most one cooldown: {retry_after}"
    );
    pair.advance(Duration::from_secs(retry_after + 1));
    assert_eq!(pair.zitadel(&pair.a, &resend, send()).await.0, 200);

    // A's clock jumps back an hour (a wrong time corrected, say): the cooldown it set holds
    // for one cooldown from the new time, and Retry-After says so.
    pair.advance(2 * MINUTE);
    assert_eq!(pair.zitadel(&pair.a, &resend, send()).await.0, 200);
    pair.a.clock.advance(Duration::ZERO);
    let before = pair.a.clock.now();
    pair.a.clock.set(before.minus(60 * MINUTE));
    let (status, retry_after, _) = pair.zitadel(&pair.a, &resend, send()).await;
    eprintln!(
        "clock skew: after a jump back of 1 h, a resend answers {status} with Retry-After {retry_after:?}"
    );
    assert_eq!(status, 429);
    let retry_after = retry_after.expect("a Retry-After");
    assert!((1..=61).contains(&retry_after), "{retry_after}");
    pair.a.clock.advance(Duration::from_secs(retry_after + 1));
    assert_eq!(pair.zitadel(&pair.a, &resend, send()).await.0, 200);
}
