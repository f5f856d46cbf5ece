//! The scenarios of the suite, and what they share: the seeded templates, servers started on
//! fresh copies of them, and the rows they add to the report.

mod mail;
mod postgres;
mod resend;
mod size;
mod startup;
mod sweep;
mod targets;
mod zitadel;

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context as _;
use enroll_testkit::smtp::SmtpSink;

use crate::db::{Instance, StoreKind, Template};
use crate::load::{self, Load, Measured};
use crate::options::Options;
use crate::report::{CpuLoad, Report, Row, WriterLoad};
use crate::requests;
use crate::server::{
    Counters, CpuTime, Memory, Server, ServerConfig, ThreadSchedule, increase, temp_dir,
};

pub use sweep::chart;
pub use targets::evaluate as evaluate_targets;

/// The state of a run.
pub struct Suite {
    pub options: Options,
    pub report: Report,
    sqlite: Option<Template>,
    postgres: Option<Template>,
    /// The PostgreSQL server could not be used: why.
    postgres_unavailable: Option<String>,
}

/// Servers started on one copy of a template, each delivering to its own SMTP sink.
pub struct Running {
    instance: Instance,
    pub servers: Vec<Server>,
    pub sink: SmtpSink,
}

impl Running {
    pub async fn start(
        options: &Options,
        instance: Instance,
        count: usize,
    ) -> anyhow::Result<Self> {
        let sink = SmtpSink::start().await;
        let config = ServerConfig::on(&options.binary, &instance, sink.url());
        let mut servers = Vec::with_capacity(count);
        for _ in 0..count {
            servers.push(Server::start(&config).await?);
        }
        Ok(Self {
            instance,
            servers,
            sink,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.servers[0].address
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|server| server.address).collect()
    }

    /// The largest resident set among the servers.
    pub fn memory(&self) -> Memory {
        self.servers
            .iter()
            .map(Server::memory)
            .fold(Memory::default(), Memory::max)
    }

    /// The CPU time the servers have taken so far, summed.
    pub fn cpu_time(&self) -> CpuTime {
        self.servers
            .iter()
            .map(Server::cpu_time)
            .fold(CpuTime::default(), |total, time| total + time)
    }

    /// The CPU time PostgreSQL's processes on this machine have taken so far, when the
    /// servers run on PostgreSQL: zero if it runs elsewhere. Its other databases' work counts
    /// too, and none runs during a row.
    pub fn database_cpu_time(&self) -> Option<CpuTime> {
        self.instance
            .database_url
            .starts_with("postgres")
            .then(|| CpuTime::of_processes_named("postgres"))
    }

    /// The scheduling of the SQLite writer thread, when one server runs on SQLite.
    pub fn writer_schedule(&self) -> Option<ThreadSchedule> {
        match self.servers.as_slice() {
            [server] => server.writer_schedule(),
            _ => None,
        }
    }

    /// The counters of `/metrics`, summed over the servers.
    pub async fn counters(&self) -> anyhow::Result<Counters> {
        let mut total = Counters::new();
        for server in &self.servers {
            for (name, value) in server.counters().await? {
                *total.entry(name).or_default() += value;
            }
        }
        Ok(total)
    }

    /// Stops the servers (killed: nothing of theirs is kept) and removes the copy.
    pub async fn finish(self) {
        drop(self.servers);
        drop(self.sink);
        self.instance.remove().await;
    }
}

/// How a timed row checks the emails its requests queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emails {
    /// Every success queues one.
    OnePerSuccess,
}

/// What a load at running servers measured, before it becomes a row.
pub struct Measurement {
    measured: Measured,
    memory: Memory,
    writer: Option<WriterLoad>,
    cpu: Option<CpuLoad>,
    database_cpu: Option<CpuLoad>,
    notes: Vec<String>,
}

impl Measurement {
    pub fn into_row(
        self,
        key: impl Into<String>,
        operation: impl Into<String>,
        store: impl Into<String>,
        connections: usize,
    ) -> Row {
        let mut row = Row::measured(
            key,
            operation,
            store,
            connections,
            &self.measured,
            self.memory,
        );
        row.writer = self.writer;
        row.cpu = self.cpu;
        row.database_cpu = self.database_cpu;
        row.notes.extend(self.notes);
        row
    }
}

impl Suite {
    pub fn new(options: Options) -> Self {
        Self {
            options,
            report: Report::default(),
            sqlite: None,
            postgres: None,
            postgres_unavailable: None,
        }
    }

    /// The seeded SQLite template, seeded on first use.
    pub async fn sqlite(&mut self) -> anyhow::Result<&Template> {
        if self.sqlite.is_none() {
            eprintln!(
                "seeding SQLite: {} Dfns and {} ZITADEL users, {} Singularity accounts…",
                self.options.users, self.options.users, self.options.accounts
            );
            let template = Template::sqlite(self.options.users, self.options.accounts)
                .await
                .context("seeding SQLite")?;
            self.report.facts.push((
                "seeding SQLite".to_owned(),
                format!("{:.1} s", template.seeding.as_secs_f64()),
            ));
            self.sqlite = Some(template);
        }
        self.sqlite.as_ref().context("seeded")
    }

    /// The seeded PostgreSQL template, if PostgreSQL is to be used and answers.
    pub async fn postgres(&mut self) -> anyhow::Result<Option<&Template>> {
        let Some(admin_url) = self.options.postgres.clone() else {
            return Ok(None);
        };
        if self.postgres_unavailable.is_some() {
            return Ok(None);
        }
        if self.postgres.is_none() {
            if let Err(error) = crate::db::postgres_reachable(&admin_url).await {
                let why = format!("PostgreSQL at {admin_url} skipped: {error:#}");
                eprintln!("{why}");
                self.report.warnings.push(why.clone());
                self.postgres_unavailable = Some(why);
                return Ok(None);
            }
            eprintln!(
                "seeding PostgreSQL: {} Dfns and {} ZITADEL users, {} Singularity accounts…",
                self.options.users, self.options.users, self.options.accounts
            );
            let template =
                Template::postgres(&admin_url, self.options.users, self.options.accounts)
                    .await
                    .context("seeding PostgreSQL")?;
            self.report.facts.push((
                "seeding PostgreSQL".to_owned(),
                format!("{:.1} s", template.seeding.as_secs_f64()),
            ));
            self.postgres = Some(template);
        }
        Ok(self.postgres.as_ref())
    }

    fn template(&self, kind: StoreKind) -> anyhow::Result<&Template> {
        match kind {
            StoreKind::Sqlite => self.sqlite.as_ref(),
            StoreKind::Postgres => self.postgres.as_ref(),
        }
        .context("the template is seeded first")
    }

    /// The `GET /healthz` ceiling at `connections`, measured once per run on a server of its
    /// own (an empty SQLite database: the route reads none).
    pub async fn ceiling(&mut self, connections: usize) -> anyhow::Result<f64> {
        if let Some(&ceiling) = self.report.ceiling.get(&connections) {
            return Ok(ceiling);
        }
        let data_dir = temp_dir(&format!("ceiling-{connections}"))?;
        let instance = Instance::empty(data_dir);
        let running = Running::start(&self.options, instance, 1).await?;
        let measured = load::drive(
            running.address(),
            &requests::ceiling(connections),
            self.options.warmup,
            self.options.duration,
        )
        .await;
        let memory = running.memory();
        running.finish().await;
        let measured = measured?;
        let per_second = measured.per_second();
        self.report.ceiling.insert(connections, per_second);
        self.push(Row::measured(
            "ceiling",
            "GET /healthz (ceiling)",
            "–",
            connections,
            &measured,
            memory,
        ));
        Ok(per_second)
    }

    pub fn push(&mut self, row: Row) {
        eprintln!(
            "  {:<52} {:<22} {:>4} conns {:>9} /s  p99 {:>7.2} ms  {} errors",
            row.operation,
            row.store,
            row.connections.unwrap_or(0),
            row.per_second
                .map_or_else(|| "–".to_owned(), crate::report::thousands),
            row.p99.map_or(0.0, |d| d.as_secs_f64() * 1e3),
            row.failures
        );
        self.report.rows.push(row);
    }

    /// One timed row: a fresh copy of the template, `instances` servers on it, `load` driven
    /// at them (the connections split between them), then everything removed.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call per row reads best flat"
    )]
    pub async fn timed_row(
        &mut self,
        kind: StoreKind,
        instances: usize,
        key: &str,
        operation: &str,
        store: &str,
        load: Load,
        emails: Emails,
    ) -> anyhow::Result<()> {
        self.ceiling(load.connections).await?;
        let instance = self
            .template(kind)?
            .instance(&format!("{key}-{}", load.connections))
            .await?;
        let running = Running::start(&self.options, instance, instances).await?;
        let result = self.measure(&running, &load, emails).await;
        running.finish().await;
        let row = result?.into_row(key, operation, store, load.connections);
        self.push(row);
        Ok(())
    }

    /// Drives `load` at running servers; checks the emails queued.
    pub async fn measure(
        &mut self,
        running: &Running,
        load: &Load,
        emails: Emails,
    ) -> anyhow::Result<Measurement> {
        let before = running.counters().await?;
        let cpu_before = running.cpu_time();
        let database_before = running.database_cpu_time();
        let writer_before = running.writer_schedule();
        let started = Instant::now();
        let measured = load::drive_split(
            &running.addresses(),
            load,
            self.options.warmup,
            self.options.duration,
        )
        .await?;
        let elapsed = started.elapsed();
        // Per success across the whole drive, warm-up included, as the CPU time is taken
        // (the failures are counted in the measured period only).
        let cpu = CpuLoad::between(
            cpu_before,
            running.cpu_time(),
            elapsed,
            measured.successes_total,
        );
        let database_cpu =
            database_before
                .zip(running.database_cpu_time())
                .and_then(|(before, after)| {
                    CpuLoad::between(before, after, elapsed, measured.successes_total)
                });
        let memory = running.memory();
        let after = running.counters().await?;
        let writer_schedule = writer_before.zip(running.writer_schedule());
        let writer = WriterLoad::between(&before, &after, writer_schedule, elapsed);
        let queued = increase(&before, &after, "emails_queued");
        let mut notes = Vec::new();
        if emails == Emails::OnePerSuccess {
            let successes = measured.successes_total as f64;
            if (queued - successes).abs() > 0.5 {
                let warning = format!(
                    "{successes} successful requests queued {queued} emails: the answers do not tell every request did its work"
                );
                self.report.warnings.push(warning.clone());
                notes.push(warning);
            }
        }
        Ok(Measurement {
            measured,
            memory,
            writer,
            cpu,
            database_cpu,
            notes,
        })
    }
}

/// Runs the scenarios the options select, in order; a scenario that fails is reported and
/// the others still run.
pub async fn run(suite: &mut Suite) {
    let started = Instant::now();
    for (name, _) in crate::options::SCENARIOS {
        if !suite.options.runs(name) {
            continue;
        }
        eprintln!("== {name}");
        let step_started = Instant::now();
        let result = match *name {
            "resend" => resend::run(suite).await,
            "verify" => zitadel::verify(suite).await,
            "create" => zitadel::create(suite).await,
            "sweep" => sweep::run(suite).await,
            "postgres" => postgres::run(suite).await,
            "size" => size::run(suite).await,
            "mail" => mail::run(suite).await,
            "startup" => startup::run(suite).await,
            other => Err(anyhow::anyhow!("no scenario {other}")),
        };
        if let Err(error) = result {
            let warning = format!("scenario {name} failed: {error:#}");
            eprintln!("{warning}");
            suite.report.warnings.push(warning);
        }
        suite.report.facts.push((
            format!("scenario {name}"),
            format!("{:.0} s", step_started.elapsed().as_secs_f64()),
        ));
    }
    suite.report.facts.push((
        "whole run".to_owned(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));
}

impl Suite {
    /// Removes the templates, and whatever else of this process is left (a row cut short by
    /// an interruption): its temporary directories and PostgreSQL databases.
    pub async fn clean_up(&mut self) {
        if let Some(template) = self.sqlite.take() {
            template.remove().await;
        }
        if let Some(template) = self.postgres.take() {
            template.remove().await;
        }
        crate::server::remove_own_dirs();
        if let Some(admin_url) = &self.options.postgres
            && self.postgres_unavailable.is_none()
            && let Err(error) = crate::db::drop_own_databases(admin_url).await
        {
            eprintln!("could not drop this run's PostgreSQL databases: {error:#}");
        }
    }
}
