//! Command-line options (`enroll-bench --help`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// The parts of the suite, in the order they run; `--only` picks some.
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "resend",
        "HTTP ceiling, then resend through each face on SQLite (Dfns, ZITADEL gRPC and REST, Singularity)",
    ),
    (
        "verify",
        "ZITADEL VerifyEmail on SQLite, codes fetched with returnCode before each timed round",
    ),
    ("create", "ZITADEL AddHumanUser on SQLite"),
    (
        "postgres",
        "Dfns resend on PostgreSQL, one server instance and two on the same database",
    ),
    (
        "sweep",
        "ceiling and Dfns resend at every --sweep connection count (the chart)",
    ),
    (
        "size",
        "Dfns resend with --size-users users in the database (SQLite, and PostgreSQL)",
    ),
    (
        "mail",
        "outbox to SMTP sink: the seeding's queued emails (one per Dfns user and Singularity account), and the sink's own capacity",
    ),
    (
        "startup",
        "spawn to the first 200 from /healthz on an existing database (median of --starts)",
    ),
];

#[derive(Debug, Clone)]
pub struct Options {
    /// Users of each face seeded through the core (the "10,000-user" database).
    pub users: usize,
    /// Users in the database for the size scenario (the rest are inserted with SQL).
    pub size_users: usize,
    /// Singularity accounts (each with its own session).
    pub accounts: usize,
    /// Connections of every row but the sweep's.
    pub connections: usize,
    /// Connection counts of the chart.
    pub sweep: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Server starts timed by the startup scenario.
    pub starts: usize,
    pub binary: PathBuf,
    pub postgres: Option<String>,
    pub out: PathBuf,
    /// Scenario names to run; empty: all.
    pub only: Vec<String>,
}

impl Options {
    pub fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|name| name == scenario)
    }
}

fn usage() -> String {
    let mut text = String::from(
        "enroll-bench: starts `enroll serve` on temporary databases, seeds users, drives load and reports
requests/s, the ratio to the GET /healthz ceiling, p50, p99, max and the server's RSS per operation;
writes <out>/results.json and <out>/throughput.svg. scripts/bench builds the release binaries and runs it.

Options:
  --quick                 a short smoke run: 2 s measured, 1 s warm-up, 2,000 users, 100,000 for the
                          size scenario, 2 starts, sweep 1,16,64
  --only A,B              run only these scenarios (see below); repeatable
  --seconds S             seconds measured per row (default 5)
  --warmup S              seconds of warm-up before each row (default 2)
  --connections N         connections of the main rows (default 64)
  --sweep A,B,…           connection counts of the chart (default 1,4,16,64,256)
  --users N               users of each face seeded through the core (default 10000)
  --size-users N          users in the database of the size scenario (default 1000000)
  --accounts N            Singularity accounts, each with a session (default 1000)
  --starts N              server starts timed by the startup scenario (default 5)
  --binary PATH           the enroll binary (default target/release/enroll)
  --postgres URL          an administrative PostgreSQL URL; databases are created and dropped
                          (default $ENROLL_TEST_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/postgres)
  --no-postgres           SQLite only
  --out DIR               where results.json and throughput.svg go (default target/bench)
  -h, --help              this text

Scenarios:
",
    );
    for (name, what) in SCENARIOS {
        text.push_str(&format!("  {name:<10} {what}\n"));
    }
    text
}

fn list(value: &str) -> anyhow::Result<Vec<usize>> {
    value
        .split(',')
        .map(|item| {
            item.trim()
                .parse::<usize>()
                .with_context(|| format!("{item:?} is not a count"))
        })
        .collect()
}

pub fn parse() -> anyhow::Result<Options> {
    let mut options = Options {
        users: 10_000,
        size_users: 1_000_000,
        accounts: 1_000,
        connections: 64,
        sweep: vec![1, 4, 16, 64, 256],
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(5),
        starts: 5,
        binary: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/enroll"),
        postgres: Some(
            std::env::var("ENROLL_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
        ),
        out: PathBuf::from("target/bench"),
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => {
                options.duration = Duration::from_secs(2);
                options.warmup = Duration::from_secs(1);
                options.users = 2_000;
                options.size_users = 100_000;
                options.accounts = 200;
                options.starts = 2;
                options.sweep = vec![1, 16, 64];
            }
            "--only" => {
                for name in value()?.split(',').map(str::trim) {
                    if !SCENARIOS.iter().any(|(known, _)| *known == name) {
                        bail!("unknown scenario {name:?}; --help lists them");
                    }
                    options.only.push(name.to_owned());
                }
            }
            "--seconds" => options.duration = Duration::from_secs_f64(value()?.parse()?),
            "--warmup" => options.warmup = Duration::from_secs_f64(value()?.parse()?),
            "--connections" => options.connections = value()?.parse()?,
            "--sweep" => options.sweep = list(&value()?)?,
            "--users" => options.users = value()?.parse()?,
            "--size-users" => options.size_users = value()?.parse()?,
            "--accounts" => options.accounts = value()?.parse()?,
            "--starts" => options.starts = value()?.parse()?,
            "--binary" => options.binary = PathBuf::from(value()?),
            "--postgres" => options.postgres = Some(value()?),
            "--no-postgres" => options.postgres = None,
            "--out" => options.out = PathBuf::from(value()?),
            "--help" | "-h" => {
                print!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}; --help lists the options"),
        }
    }
    if options.connections == 0 || options.sweep.contains(&0) {
        bail!("connection counts must be at least 1");
    }
    if options.users == 0 || options.accounts == 0 {
        bail!("--users and --accounts must be at least 1");
    }
    if options.duration.is_zero() {
        bail!("--seconds must be more than 0");
    }
    options.sweep.sort_unstable();
    options.sweep.dedup();
    Ok(options)
}
