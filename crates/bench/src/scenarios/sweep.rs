//! Throughput against connections: the ceiling and the Dfns resend at every `--sweep` count,
//! on SQLite and PostgreSQL; and the chart of it.

use super::{Emails, Suite};
use crate::db::StoreKind;
use crate::report::Report;
use crate::requests;
use crate::svg::{self, Series};

const OPERATION: &str = "resend, Dfns (PUT /auth/registration/code)";

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let counts = suite.options.sweep.clone();
    let seeded = suite.sqlite().await?.seeded.clone();
    for &connections in &counts {
        suite.ceiling(connections).await?;
        if suite
            .report
            .row_at("resend.dfns.sqlite", connections)
            .is_none()
        {
            suite
                .timed_row(
                    StoreKind::Sqlite,
                    1,
                    "resend.dfns.sqlite",
                    OPERATION,
                    "SQLite",
                    requests::dfns_resend_all(&seeded, connections),
                    Emails::OnePerSuccess,
                )
                .await?;
        }
    }
    let Some(template) = suite.postgres().await? else {
        return Ok(());
    };
    let seeded = template.seeded.clone();
    for &connections in &counts {
        if suite
            .report
            .row_at("resend.dfns.postgres", connections)
            .is_none()
        {
            suite
                .timed_row(
                    StoreKind::Postgres,
                    1,
                    "resend.dfns.postgres",
                    OPERATION,
                    "PostgreSQL",
                    requests::dfns_resend_all(&seeded, connections),
                    Emails::OnePerSuccess,
                )
                .await?;
        }
    }
    Ok(())
}

/// The chart of the rows the sweep (and the other scenarios) measured, if any.
pub fn chart(report: &Report, subtitle: &str) -> Option<String> {
    let points = |key: &str| -> Vec<(usize, f64)> {
        report
            .rows
            .iter()
            .filter(|row| row.key == key)
            .filter_map(|row| Some((row.connections?, row.per_second?)))
            .collect()
    };
    let series: Vec<Series> = [
        ("GET /healthz (ceiling)", "#888888", true, "ceiling"),
        (
            "Dfns resend, SQLite",
            "#1f77b4",
            false,
            "resend.dfns.sqlite",
        ),
        (
            "Dfns resend, PostgreSQL",
            "#ff7f0e",
            false,
            "resend.dfns.postgres",
        ),
    ]
    .into_iter()
    .map(|(name, colour, dashed, key)| Series {
        name: name.to_owned(),
        colour,
        dashed,
        points: points(key),
    })
    .filter(|series| series.points.len() > 1)
    .collect();
    if series.is_empty() {
        return None;
    }
    Some(svg::chart(
        "enroll: throughput against connections",
        subtitle,
        &series,
    ))
}
