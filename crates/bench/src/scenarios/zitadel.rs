//! ZITADEL's VerifyEmail and AddHumanUser over REST, on SQLite.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Emails, Running, Suite};
use crate::db::StoreKind;
use crate::load::{self, Check, Measured, Protocol};
use crate::report::Row;
use crate::requests;
use crate::seed::Seeded;

/// VerifyEmail in rounds: each round first fetches a fresh code for every seeded ZITADEL user
/// (`returnCode`, not timed), then verifies them all (timed). Rounds that start within the
/// warm-up are not counted; rounds run until the measured time is reached.
pub async fn verify(suite: &mut Suite) -> anyhow::Result<()> {
    let connections = suite.options.connections;
    suite.ceiling(connections).await?;
    let template = suite.sqlite().await?;
    let seeded = template.seeded.clone();
    let instance = template.instance("verify").await?;
    let running = Running::start(&suite.options, instance, 1).await?;
    let result = rounds(
        &running,
        &seeded,
        connections,
        suite.options.warmup,
        suite.options.duration,
    )
    .await;
    let memory = running.memory();
    running.finish().await;
    let (measured, rounds) = result?;
    let mut row = Row::measured(
        "verify.rest.sqlite",
        "verify, ZITADEL REST (POST …/email/verify)",
        "SQLite",
        connections,
        &measured,
        memory,
    );
    row.notes.push(format!(
        "{rounds} timed rounds of {} verifications; codes fetched with returnCode between rounds, not timed",
        seeded.zitadel_users.len()
    ));
    suite.push(row);
    Ok(())
}

async fn rounds(
    running: &Running,
    seeded: &Seeded,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(Measured, usize)> {
    let address = running.address();
    let warmup_ends = Instant::now() + warmup;
    let mut total = Measured::default();
    let mut elapsed = Duration::ZERO;
    let mut timed = 0;
    for round in 0.. {
        let warming_up = Instant::now() < warmup_ends;
        let bodies = load::fetch_all(
            address,
            Protocol::Http1,
            Check::Success,
            connections,
            requests::zitadel_code_calls(seeded, round),
        )
        .await?;
        let codes = bodies
            .iter()
            .map(|body| {
                let answer: serde_json::Value = serde_json::from_slice(body)?;
                answer["verificationCode"]
                    .as_str()
                    .map(str::to_owned)
                    .context("an answer without verificationCode")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let measured = load::run_through(
            address,
            &requests::zitadel_verify(seeded, &codes, connections),
        )
        .await?;
        if warming_up {
            continue;
        }
        elapsed += measured.elapsed;
        total.merge(measured);
        timed += 1;
        if elapsed >= duration {
            break;
        }
    }
    total.elapsed = elapsed;
    Ok((total, timed))
}

/// AddHumanUser: a new user per request, its code emailed.
pub async fn create(suite: &mut Suite) -> anyhow::Result<()> {
    let connections = suite.options.connections;
    let seeded = suite.sqlite().await?.seeded.clone();
    suite
        .timed_row(
            StoreKind::Sqlite,
            1,
            "create.rest.sqlite",
            "create user, ZITADEL REST (POST /v2/users/human)",
            "SQLite",
            requests::zitadel_add_human(&seeded, connections, "run"),
            Emails::OnePerSuccess,
        )
        .await
}
