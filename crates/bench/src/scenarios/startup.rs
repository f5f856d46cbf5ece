//! Start to first answer on an existing database: spawning `enroll serve` on a seeded copy
//! until its first `200` from `/healthz`, the median of several starts (each stopped with
//! SIGTERM, as an operator would, before the next).

use std::time::Duration;

use enroll_testkit::smtp::SmtpSink;

use super::Suite;
use crate::db::Instance;
use crate::report::Row;
use crate::server::{Memory, Server, ServerConfig};

/// Times `starts` starts on `instance`; the row has the median as p50 and the slowest as max.
pub async fn time_starts(
    suite: &Suite,
    instance: &Instance,
    key: &str,
    store: &str,
) -> anyhow::Result<Row> {
    let sink = SmtpSink::start().await;
    let config = ServerConfig::on(&suite.options.binary, instance, sink.url());
    let mut times = Vec::with_capacity(suite.options.starts);
    let mut memory = Memory::default();
    for _ in 0..suite.options.starts.max(1) {
        let server = Server::start(&config).await?;
        times.push(server.started_in);
        memory = memory.max(server.memory());
        server.stop().await;
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
    let shown: Vec<String> = times
        .iter()
        .map(|time| format!("{:.0}", time.as_secs_f64() * 1e3))
        .collect();
    Ok(Row {
        key: key.to_owned(),
        operation: "start to first answer (spawn → 200 /healthz)".to_owned(),
        store: store.to_owned(),
        connections: None,
        per_second: None,
        p50: Some(median),
        p99: None,
        max: times.last().copied().or(Some(Duration::ZERO)),
        requests: 0,
        failures: 0,
        memory,
        notes: vec![format!("starts in ms, sorted: {}", shown.join(", "))],
        writer: None,
        cpu: None,
        database_cpu: None,
    })
}

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let instance = suite.sqlite().await?.instance("startup").await?;
    let row = time_starts(suite, &instance, "startup.sqlite", "SQLite").await;
    instance.remove().await;
    suite.push(row?);
    if let Some(template) = suite.postgres().await? {
        let instance = template.instance("startup").await?;
        let row = time_starts(suite, &instance, "startup.postgres", "PostgreSQL").await;
        instance.remove().await;
        suite.push(row?);
    }
    Ok(())
}
