//! The rows of a run, the targets they are held to, and their forms: the printed table, JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::load::Measured;
use crate::server::{Counters, CpuTime, Memory, ThreadSchedule, increase};

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// A stable name the targets and the chart refer to, e.g. `resend.dfns.sqlite`.
    pub key: String,
    pub operation: String,
    pub store: String,
    pub connections: Option<usize>,
    /// Requests (or, for mail, messages) per second.
    pub per_second: Option<f64>,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub max: Option<Duration>,
    pub requests: u64,
    pub failures: u64,
    pub memory: Memory,
    /// What else to know: the first failure, emails queued, sizes.
    pub notes: Vec<String>,
    /// How the SQLite writer thread fared, for rows on SQLite.
    pub writer: Option<WriterLoad>,
    /// What the servers spent of the CPU, for rows that drive a load at them.
    pub cpu: Option<CpuLoad>,
    /// What the PostgreSQL server's processes on this machine spent, for rows on PostgreSQL.
    pub database_cpu: Option<CpuLoad>,
}

/// The CPU time the servers (or the database server's processes) took across a row's load
/// (warm-up included), from the kernel's accounting: what a request costs the box whatever
/// else shares it, the load generator included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuLoad {
    /// CPU seconds per second: how many of the machine's cores the processes kept busy.
    pub cores: f64,
    pub micros_per_request: f64,
    /// The share of that time spent in the kernel (sockets, file writes, syncs, wake-ups).
    pub kernel_share: f64,
}

impl CpuLoad {
    /// From the processes' CPU time before and after `elapsed` in which `requests` completed;
    /// `None` when none did.
    pub fn between(
        before: CpuTime,
        after: CpuTime,
        elapsed: Duration,
        requests: u64,
    ) -> Option<Self> {
        let user = after.user.saturating_sub(before.user).as_secs_f64();
        let kernel = after.kernel.saturating_sub(before.kernel).as_secs_f64();
        let total = user + kernel;
        if requests == 0 || elapsed.is_zero() || total <= 0.0 {
            return None;
        }
        Some(Self {
            cores: total / elapsed.as_secs_f64(),
            micros_per_request: total * 1e6 / requests as f64,
            kernel_share: kernel / total,
        })
    }

    fn to_json(self) -> Value {
        json!({
            "cores": self.cores,
            "microsPerRequest": self.micros_per_request,
            "kernelShare": self.kernel_share,
        })
    }

    /// The note of a row: `whose` CPU, the cores, the time a request and the kernel's share.
    fn describe(self, whose: &str) -> String {
        format!(
            "{whose} {:.2} cores, {:.0} µs a request ({:.0}% in the kernel)",
            self.cores,
            self.micros_per_request,
            self.kernel_share * 100.0
        )
    }
}

/// The SQLite writer thread across a row's load (warm-up included), from its counters on
/// `/metrics`: what bounds a write-heavy row on SQLite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriterLoad {
    /// The share of the time the thread was running requests or committing them.
    pub busy: f64,
    pub requests_per_batch: f64,
    /// The thread's time per request, and the part of it spent committing.
    pub micros_per_request: f64,
    pub commit_micros_per_request: f64,
    /// How long a sync of the log took, and how many batches one covered, as the requests
    /// waited for it after their commit; `None` without syncs (a database in memory).
    pub sync: Option<LogSync>,
    /// The thread's time on a CPU and its time ready to run but waiting for one, per request:
    /// its busy time above holds both, and the second grows with whatever else the box runs.
    pub schedule: Option<WriterSchedule>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriterSchedule {
    pub cpu_micros_per_request: f64,
    pub wait_micros_per_request: f64,
}

/// The syncs of the log across a row: the mean time of one, and the batches one covered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogSync {
    pub micros: f64,
    pub batches: f64,
}

impl WriterLoad {
    /// From the counters and the thread's scheduling before and after `elapsed`; `None` when
    /// nothing was written.
    pub fn between(
        before: &Counters,
        after: &Counters,
        schedule: Option<(ThreadSchedule, ThreadSchedule)>,
        elapsed: Duration,
    ) -> Option<Self> {
        let delta = |name: &str| increase(before, after, name);
        let requests = delta("sqlite_write_requests");
        let batches = delta("sqlite_write_batches");
        if requests < 1.0 || batches < 1.0 || elapsed.is_zero() {
            return None;
        }
        let busy_micros = delta("sqlite_writer_busy_microseconds");
        let syncs = delta("sqlite_log_syncs");
        Some(Self {
            busy: busy_micros / 1e6 / elapsed.as_secs_f64(),
            requests_per_batch: requests / batches,
            micros_per_request: busy_micros / requests,
            commit_micros_per_request: delta("sqlite_commit_microseconds") / requests,
            sync: (syncs >= 1.0).then(|| LogSync {
                micros: delta("sqlite_log_sync_microseconds") / syncs,
                batches: batches / syncs,
            }),
            schedule: schedule.map(|(before, after)| {
                let per_request = |later: Duration, earlier: Duration| {
                    later.saturating_sub(earlier).as_secs_f64() * 1e6 / requests
                };
                WriterSchedule {
                    cpu_micros_per_request: per_request(after.on_cpu, before.on_cpu),
                    wait_micros_per_request: per_request(after.waiting, before.waiting),
                }
            }),
        })
    }

    fn to_json(self) -> Value {
        json!({
            "busy": self.busy,
            "requestsPerBatch": self.requests_per_batch,
            "microsPerRequest": self.micros_per_request,
            "commitMicrosPerRequest": self.commit_micros_per_request,
            "syncMicros": self.sync.map(|sync| sync.micros),
            "batchesPerSync": self.sync.map(|sync| sync.batches),
            "cpuMicrosPerRequest": self.schedule.map(|schedule| schedule.cpu_micros_per_request),
            "waitMicrosPerRequest": self.schedule.map(|schedule| schedule.wait_micros_per_request),
        })
    }
}

impl std::fmt::Display for WriterLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SQLite writer busy {:.0}%, {:.1} requests a batch, {:.0} µs a request ({:.0} committing)",
            self.busy * 100.0,
            self.requests_per_batch,
            self.micros_per_request,
            self.commit_micros_per_request
        )?;
        if let Some(schedule) = self.schedule {
            write!(
                f,
                "; on a CPU {:.0} µs a request, waiting for one {:.0}",
                schedule.cpu_micros_per_request, schedule.wait_micros_per_request
            )?;
        }
        if let Some(sync) = self.sync {
            write!(
                f,
                "; log synced in {:.0} µs, every {:.1} batches",
                sync.micros, sync.batches
            )?;
        }
        Ok(())
    }
}

impl Row {
    pub fn measured(
        key: impl Into<String>,
        operation: impl Into<String>,
        store: impl Into<String>,
        connections: usize,
        measured: &Measured,
        memory: Memory,
    ) -> Self {
        let mut notes = Vec::new();
        if let Some(failure) = &measured.first_failure {
            notes.push(format!("first failure: {failure}"));
        }
        Self {
            key: key.into(),
            operation: operation.into(),
            store: store.into(),
            connections: Some(connections),
            per_second: Some(measured.per_second()),
            p50: Some(measured.quantile(0.50)),
            p99: Some(measured.quantile(0.99)),
            max: Some(measured.max()),
            requests: measured.requests,
            failures: measured.failures,
            memory,
            notes,
            writer: None,
            cpu: None,
            database_cpu: None,
        }
    }
}

/// A target of issue 7 and how this run fared.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub goal: String,
    pub measured: String,
    /// `None` when this run did not measure it.
    pub met: Option<bool>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// `GET /healthz` requests/s by connections.
    pub ceiling: BTreeMap<usize, f64>,
    pub targets: Vec<Target>,
    /// Warnings met on the way (a check that did not add up, a part skipped).
    pub warnings: Vec<String>,
    /// Facts of the run: seeding times, sizes.
    pub facts: Vec<(String, String)>,
}

fn millis(duration: Option<Duration>) -> String {
    duration.map_or_else(
        || "–".to_owned(),
        |duration| {
            let ms = duration.as_secs_f64() * 1e3;
            if ms < 10.0 {
                format!("{ms:.2}")
            } else if ms < 100.0 {
                format!("{ms:.1}")
            } else {
                format!("{ms:.0}")
            }
        },
    )
}

fn mib(bytes: u64) -> String {
    if bytes == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// `12345.6` → `12 346`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

impl Report {
    /// The row of `key` at `connections`.
    pub fn row_at(&self, key: &str, connections: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|row| row.key == key && row.connections == Some(connections))
    }

    /// The first row of `key`.
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|row| row.key == key)
    }

    /// A row's requests/s over the ceiling at the same connection count.
    pub fn ratio(&self, row: &Row) -> Option<f64> {
        let ceiling = self.ceiling.get(&row.connections?)?;
        Some(row.per_second? / ceiling)
    }

    /// The table in Markdown.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| operation | store | conns | req/s | × ceiling | p50 ms | p99 ms | max ms | RSS MiB | peak MiB | errors |"
        );
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.operation,
                row.store,
                row.connections
                    .map_or_else(|| "–".to_owned(), |c| c.to_string()),
                row.per_second.map_or_else(|| "–".to_owned(), thousands),
                self.ratio(row)
                    .map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.2}")),
                millis(row.p50),
                millis(row.p99),
                millis(row.max),
                mib(row.memory.rss),
                mib(row.memory.peak),
                if row.requests == 0 && row.failures == 0 {
                    "–".to_owned()
                } else {
                    row.failures.to_string()
                },
            );
        }
        out
    }

    /// The notes of the rows that have some.
    pub fn notes(&self) -> String {
        let mut out = String::new();
        for row in &self.rows {
            let notes: Vec<String> = row
                .cpu
                .map(|cpu| cpu.describe("server CPU"))
                .into_iter()
                .chain(row.database_cpu.map(|cpu| cpu.describe("PostgreSQL CPU")))
                .chain(row.writer.iter().map(ToString::to_string))
                .chain(row.notes.iter().cloned())
                .collect();
            if !notes.is_empty() {
                let _ = writeln!(
                    out,
                    "- {} ({}): {}",
                    row.operation,
                    row.store,
                    notes.join("; ")
                );
            }
        }
        out
    }

    pub fn targets_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| target | goal | measured | met |");
        let _ = writeln!(out, "|---|---|---|---|");
        for target in &self.targets {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                target.name,
                target.goal,
                target.measured,
                match target.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "not measured",
                }
            );
        }
        out
    }

    pub fn to_json(&self, options: Value) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                json!({
                    "key": row.key,
                    "operation": row.operation,
                    "store": row.store,
                    "connections": row.connections,
                    "perSecond": row.per_second,
                    "ratioToCeiling": self.ratio(row),
                    "p50Ms": row.p50.map(|d| d.as_secs_f64() * 1e3),
                    "p99Ms": row.p99.map(|d| d.as_secs_f64() * 1e3),
                    "maxMs": row.max.map(|d| d.as_secs_f64() * 1e3),
                    "requests": row.requests,
                    "failures": row.failures,
                    "rssBytes": row.memory.rss,
                    "peakRssBytes": row.memory.peak,
                    "notes": row.notes,
                    "sqliteWriter": row.writer.map(WriterLoad::to_json),
                    "serverCpu": row.cpu.map(CpuLoad::to_json),
                    "databaseCpu": row.database_cpu.map(CpuLoad::to_json),
                })
            })
            .collect();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|target| {
                json!({
                    "name": target.name,
                    "goal": target.goal,
                    "measured": target.measured,
                    "met": target.met,
                })
            })
            .collect();
        let ceiling: serde_json::Map<String, Value> = self
            .ceiling
            .iter()
            .map(|(connections, per_second)| (connections.to_string(), json!(per_second)))
            .collect();
        let facts: serde_json::Map<String, Value> = self
            .facts
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        json!({
            "options": options,
            "ceilingByConnections": ceiling,
            "rows": rows,
            "targets": targets,
            "facts": facts,
            "warnings": self.warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(values: &[(&str, f64)]) -> Counters {
        values
            .iter()
            .map(|(name, value)| ((*name).to_owned(), *value))
            .collect()
    }

    #[test]
    fn the_servers_cpu_is_told_per_request_and_per_second() {
        let before = CpuTime {
            user: Duration::from_secs(10),
            kernel: Duration::from_secs(4),
        };
        let after = CpuTime {
            user: Duration::from_millis(11_500),
            kernel: Duration::from_millis(5_000),
        };
        let cpu = CpuLoad::between(before, after, Duration::from_secs(2), 12_500)
            .expect("requests were served");
        assert_eq!(
            cpu.describe("server CPU"),
            "server CPU 1.25 cores, 200 µs a request (40% in the kernel)"
        );
        assert_eq!(cpu.to_json()["microsPerRequest"], json!(200.0));
        assert_eq!(
            CpuLoad::between(before, after, Duration::from_secs(2), 0),
            None,
            "no request, no cost per request"
        );
        assert_eq!(
            CpuLoad::between(before, before, Duration::from_secs(2), 10),
            None,
            "a server that is gone reads as no time"
        );
    }

    #[test]
    fn the_writer_load_is_read_from_the_counters_across_the_row() {
        let before = counters(&[
            ("sqlite_write_requests", 1_000.0),
            ("sqlite_write_batches", 100.0),
            ("sqlite_writer_busy_microseconds", 5_000_000.0),
            ("sqlite_commit_microseconds", 2_000_000.0),
            ("sqlite_log_syncs", 50.0),
            ("sqlite_log_sync_microseconds", 40_000.0),
        ]);
        let after = counters(&[
            ("sqlite_write_requests", 21_000.0),
            ("sqlite_write_batches", 1_100.0),
            ("sqlite_writer_busy_microseconds", 6_800_000.0),
            ("sqlite_commit_microseconds", 2_900_000.0),
            ("sqlite_log_syncs", 550.0),
            ("sqlite_log_sync_microseconds", 440_000.0),
        ]);
        let schedule = (
            ThreadSchedule {
                on_cpu: Duration::from_secs(3),
                waiting: Duration::from_secs(1),
            },
            ThreadSchedule {
                on_cpu: Duration::from_millis(4_200),
                waiting: Duration::from_millis(1_400),
            },
        );
        let load = WriterLoad::between(&before, &after, Some(schedule), Duration::from_secs(2))
            .expect("requests were written");
        assert_eq!(
            load,
            WriterLoad {
                busy: 0.9,
                requests_per_batch: 20.0,
                micros_per_request: 90.0,
                commit_micros_per_request: 45.0,
                sync: Some(LogSync {
                    micros: 800.0,
                    batches: 2.0,
                }),
                schedule: Some(WriterSchedule {
                    cpu_micros_per_request: 60.0,
                    wait_micros_per_request: 20.0,
                }),
            }
        );
        assert_eq!(
            load.to_string(),
            "SQLite writer busy 90%, 20.0 requests a batch, 90 µs a request (45 committing); \
             on a CPU 60 µs a request, waiting for one 20; log synced in 800 µs, every 2.0 batches"
        );
        // A database in memory commits without syncs.
        let unsynced = |counters: &Counters| -> Counters {
            counters
                .iter()
                .filter(|(name, _)| !name.starts_with("sqlite_log_sync"))
                .map(|(name, value)| (name.clone(), *value))
                .collect()
        };
        let load = WriterLoad::between(
            &unsynced(&before),
            &unsynced(&after),
            None,
            Duration::from_secs(2),
        )
        .expect("requests were written");
        assert_eq!(load.sync, None);
        assert_eq!(
            load.to_string(),
            "SQLite writer busy 90%, 20.0 requests a batch, 90 µs a request (45 committing)"
        );
        // PostgreSQL rows, and rows that wrote nothing, have no writer to tell of.
        assert_eq!(
            WriterLoad::between(&after, &after, Some(schedule), Duration::from_secs(2)),
            None
        );
        assert_eq!(
            WriterLoad::between(
                &Counters::new(),
                &Counters::new(),
                None,
                Duration::from_secs(2)
            ),
            None
        );
    }
}
