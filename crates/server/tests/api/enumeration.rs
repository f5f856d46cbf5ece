//! Reliability target 14: no enumeration by timing. Interleaved requests for an address with an
//! account and for unknown addresses, on the endpoints anyone may call; the medians must be
//! within 5 ms. The Mann-Whitney U p-value is printed with them.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{EXCLUSIVE, Options, TestApp};

const PAIRS: usize = 1000;

/// Times `PAIRS` interleaved calls of `known` and `unknown` (which goes first alternates, so
/// that drift falls on both alike).
async fn interleaved<K, U, KF, UF>(known: K, unknown: U) -> (Vec<Duration>, Vec<Duration>)
where
    K: Fn(usize) -> KF,
    U: Fn(usize) -> UF,
    KF: Future<Output = u16>,
    UF: Future<Output = u16>,
{
    let (mut known_times, mut unknown_times) = (Vec::new(), Vec::new());
    for round in 0..PAIRS {
        for first in [round % 2 == 0, round % 2 == 1] {
            let started = Instant::now();
            let status = if first {
                known(round).await
            } else {
                unknown(round).await
            };
            let elapsed = started.elapsed();
            assert!(status < 500, "status {status}");
            if first {
                known_times.push(elapsed);
            } else {
                unknown_times.push(elapsed);
            }
        }
    }
    (known_times, unknown_times)
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Two-sided p-value of the Mann-Whitney U test, by the normal approximation (ties averaged).
fn mann_whitney_p(a: &[Duration], b: &[Duration]) -> f64 {
    let mut all: Vec<(Duration, bool)> = a
        .iter()
        .map(|&time| (time, true))
        .chain(b.iter().map(|&time| (time, false)))
        .collect();
    all.sort_by_key(|(time, _)| *time);
    let mut rank_sum_a = 0.0;
    let mut index = 0;
    while index < all.len() {
        let mut end = index;
        while end + 1 < all.len() && all[end + 1].0 == all[index].0 {
            end += 1;
        }
        let rank = (index + end) as f64 / 2.0 + 1.0;
        rank_sum_a += rank * all[index..=end].iter().filter(|(_, in_a)| *in_a).count() as f64;
        index = end + 1;
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let z = (u - n1 * n2 / 2.0) / (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' erfcc, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let tau = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { tau } else { 2.0 - tau }
}

fn judge(endpoint: &str, known: &[Duration], unknown: &[Duration]) {
    let (known_median, unknown_median) = (median(known), median(unknown));
    let p = mann_whitney_p(known, unknown);
    eprintln!(
        "{endpoint}: median {known_median:?} with an account, {unknown_median:?} without, \
         Mann-Whitney p = {p:.3} ({PAIRS} pairs)"
    );
    assert!(
        known_median.abs_diff(unknown_median) < Duration::from_millis(5),
        "{endpoint}: medians {known_median:?} and {unknown_median:?}"
    );
}

fn no_cooldown() -> Options {
    Options {
        settings: Box::new(|settings| {
            settings.cooldown_seconds = 0;
            settings.max_emails_per_client_per_hour = 0;
        }),
        ..Options::default()
    }
}

#[tokio::test]
async fn dfns_resend_takes_as_long_for_unknown_users() {
    let _exclusive = EXCLUSIVE.lock().await;
    let app = TestApp::spawn_with(no_cooldown()).await;
    app.create_user("jane@example.com").await;
    let org = app.org_id.to_string();
    let resend = |username: String| {
        let body = json!({ "username": username, "orgId": org });
        let app = &app;
        async move { app.resend(&body).await.status }
    };
    let (known, unknown) = interleaved(
        |_| resend("jane@example.com".to_owned()),
        |round| resend(format!("nobody-{round}@example.com")),
    )
    .await;
    judge("PUT /auth/registration/code", &known, &unknown);
}

#[tokio::test]
async fn singularity_reset_request_takes_as_long_for_unknown_addresses() {
    let _exclusive = EXCLUSIVE.lock().await;
    let app = TestApp::spawn_with(no_cooldown()).await;
    app.post(
        "/api/auth/register",
        json!({ "email": "jane@example.com", "password": "correct horse battery", "name": "Jane" })
            .to_string(),
        &[],
    )
    .await;
    let request = |email: String| {
        let app = &app;
        async move {
            app.post(
                "/api/auth/password/reset-request",
                json!({ "email": email }).to_string(),
                &[],
            )
            .await
            .status
        }
    };
    let (known, unknown) = interleaved(
        |_| request("jane@example.com".to_owned()),
        |round| request(format!("nobody-{round}@example.com")),
    )
    .await;
    judge("POST /api/auth/password/reset-request", &known, &unknown);
}
