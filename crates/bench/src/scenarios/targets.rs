//! Issue 7's targets, held against the rows of the run.

use std::time::Duration;

use crate::options::Options;
use crate::report::{Report, Row, Target, thousands};

fn per_second(row: Option<&Row>) -> Option<f64> {
    row.and_then(|row| row.per_second)
}

fn target(name: &str, goal: &str, measured: Option<(String, bool)>) -> Target {
    Target {
        name: name.to_owned(),
        goal: goal.to_owned(),
        measured: measured
            .as_ref()
            .map_or_else(|| "–".to_owned(), |(text, _)| text.clone()),
        met: measured.map(|(_, met)| met),
    }
}

/// A throughput against a reference: `at least` × reference.
fn relative(value: Option<f64>, reference: Option<f64>, at_least: f64) -> Option<(String, bool)> {
    let (value, reference) = (value?, reference?);
    let ratio = value / reference;
    Some((
        format!(
            "{} /s = {ratio:.2} × {} /s",
            thousands(value),
            thousands(reference)
        ),
        ratio >= at_least,
    ))
}

pub fn evaluate(report: &mut Report, options: &Options) {
    let main = options.connections;
    let at = |key: &str| report.row_at(key, main);
    let dfns = per_second(at("resend.dfns.sqlite"));
    let postgres = per_second(at("resend.dfns.postgres"));
    // An absolute goal, shown with the ratio to this run's ceiling that compares across machines.
    let at_least = |value: Option<f64>, goal: f64| {
        value.map(|value| {
            let ratio = report
                .ceiling
                .get(&main)
                .map(|ceiling| format!(" ({:.3} × ceiling)", value / ceiling))
                .unwrap_or_default();
            (format!("{} /s{ratio}", thousands(value)), value >= goal)
        })
    };
    let mut targets = Vec::new();

    targets.push(target(
        "Dfns resend, SQLite",
        "≥ 15 000 /s",
        at_least(dfns, 15_000.0),
    ));
    for (key, name) in [
        ("resend.grpc.sqlite", "ZITADEL gRPC resend vs Dfns"),
        ("resend.rest.sqlite", "ZITADEL REST resend vs Dfns"),
        ("resend.singularity.sqlite", "Singularity resend vs Dfns"),
    ] {
        targets.push(target(
            name,
            "within 20 % (≥ 0.80 ×)",
            relative(per_second(at(key)), dfns, 0.8),
        ));
    }
    targets.push(target(
        "Dfns resend, PostgreSQL, one instance",
        "≥ 3 000 /s",
        at_least(postgres, 3_000.0),
    ));
    targets.push(target(
        "PostgreSQL, 2 instances vs 1",
        "≥ 1.7 ×",
        relative(per_second(at("resend.dfns.postgres2")), postgres, 1.7),
    ));
    for (key, reference, name) in [
        (
            "resend.dfns.sqlite.size",
            "resend.dfns.sqlite",
            "SQLite, size users vs seeded users",
        ),
        (
            "resend.dfns.postgres.size",
            "resend.dfns.postgres",
            "PostgreSQL, size users vs seeded users",
        ),
    ] {
        targets.push(target(
            &name
                .replace("size users", &thousands(options.size_users as f64))
                .replace("seeded users", &thousands(options.users as f64)),
            "within 15 % (≥ 0.85 ×)",
            relative(per_second(at(key)), per_second(at(reference)), 0.85),
        ));
    }

    let timed: Vec<&Row> = report
        .rows
        .iter()
        .filter(|row| row.connections == Some(main) && row.p99.is_some() && row.key != "ceiling")
        .collect();
    let worst = |pick: fn(&Row) -> Option<Duration>| {
        timed
            .iter()
            .filter_map(|row| Some((pick(row)?, *row)))
            .max_by_key(|(value, _)| *value)
    };
    targets.push(target(
        &format!("p99 at {main} connections, every operation"),
        "≤ 20 ms",
        worst(|row| row.p99).map(|(p99, row)| {
            (
                format!(
                    "worst {:.1} ms ({}, {})",
                    p99.as_secs_f64() * 1e3,
                    row.operation,
                    row.store
                ),
                p99 <= Duration::from_millis(20),
            )
        }),
    ));
    let all_timed: Vec<&Row> = report
        .rows
        .iter()
        .filter(|row| row.max.is_some() && row.per_second.is_some())
        .collect();
    targets.push(target(
        "max latency, every row",
        "no request over 1 s",
        all_timed
            .iter()
            .filter_map(|row| Some((row.max?, *row)))
            .max_by_key(|(max, _)| *max)
            .map(|(max, row)| {
                (
                    format!(
                        "worst {:.0} ms ({}, {}, {} conns)",
                        max.as_secs_f64() * 1e3,
                        row.operation,
                        row.store,
                        row.connections.unwrap_or(0)
                    ),
                    max <= Duration::from_secs(1),
                )
            }),
    ));
    targets.push(target(
        "mail, outbox to SMTP",
        "≥ 2 000 /s",
        per_second(report.row("mail.sqlite")).map(|value| {
            let sink = per_second(report.row("mail.sink"))
                .map(|sink| format!(" (the sink alone takes {} /s)", thousands(sink)))
                .unwrap_or_default();
            (format!("{} /s{sink}", thousands(value)), value >= 2_000.0)
        }),
    ));
    targets.push(target(
        "server RSS under the SQLite resend load",
        "≤ 64 MiB",
        at("resend.dfns.sqlite").map(|row| {
            let peak = row.memory.peak as f64 / (1024.0 * 1024.0);
            (
                format!(
                    "peak {peak:.1} MiB (VmHWM), {:.1} MiB at the end",
                    row.memory.rss as f64 / (1024.0 * 1024.0)
                ),
                peak <= 64.0,
            )
        }),
    ));
    targets.push(target(
        "start to first answer, existing SQLite database",
        "≤ 200 ms (median)",
        report.row("startup.sqlite").and_then(|row| {
            let median = row.p50?;
            Some((
                format!("{:.0} ms", median.as_secs_f64() * 1e3),
                median <= Duration::from_millis(200),
            ))
        }),
    ));
    report.targets = targets;
}
