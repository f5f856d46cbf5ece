//! The rows of a run, the targets they are held to, and their forms: the printed table, JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::load::Measured;
use crate::server::Memory;

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
        for row in self.rows.iter().filter(|row| !row.notes.is_empty()) {
            let _ = writeln!(
                out,
                "- {} ({}): {}",
                row.operation,
                row.store,
                row.notes.join("; ")
            );
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
