//! `enroll serve` as a child process: started with the benchmark's settings, waited for,
//! measured (resident set, `/metrics`) and stopped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::seed::SECRET;

/// Where a server keeps its data and which database it uses.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// `smtp://…` of the sink the outbox worker delivers to.
    pub smtp_url: String,
}

impl ServerConfig {
    /// A server of `binary` on `instance`'s database, delivering to `smtp_url`.
    pub fn on(binary: &Path, instance: &crate::db::Instance, smtp_url: String) -> Self {
        Self {
            binary: binary.to_owned(),
            data_dir: instance.data_dir.clone(),
            database_url: instance.database_url.clone(),
            smtp_url,
        }
    }
}

pub struct Server {
    child: tokio::process::Child,
    pub address: SocketAddr,
    pub pid: u32,
    /// From spawning to the first `200` of `GET /healthz`.
    pub started_in: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Counters of `/metrics` by name.
pub type Counters = std::collections::BTreeMap<String, f64>;

/// The counter `name`; one not yet written is 0.
pub fn counter_value(counters: &Counters, name: &str) -> f64 {
    counters.get(name).copied().unwrap_or(0.0)
}

/// How much the counter `name` grew from `before` to `after`.
pub fn increase(before: &Counters, after: &Counters, name: &str) -> f64 {
    counter_value(after, name) - counter_value(before, name)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?)
}

impl Server {
    /// Starts a server and waits for its first `200` from `/healthz`.
    pub async fn start(config: &ServerConfig) -> anyhow::Result<Self> {
        let address = free_port()?;
        let spawned = Instant::now();
        let child = tokio::process::Command::new(&config.binary)
            .arg("serve")
            .arg("--listen")
            .arg(address.to_string())
            .arg("--data-dir")
            .arg(&config.data_dir)
            .arg("--database-url")
            .arg(&config.database_url)
            .arg("--smtp-url")
            .arg(&config.smtp_url)
            .env("ENROLL_SECRET", SECRET)
            // Every request of the run is a real send: no cooldown refusals.
            .env("ENROLL_COOLDOWN_SECONDS", "0")
            // One client sending to a few addresses, as fast as it can: no volume caps.
            .env("ENROLL_MAX_EMAILS_PER_ADDRESS", "4000000000")
            .env("ENROLL_MAX_EMAILS_PER_CLIENT_PER_HOUR", "0")
            .env("ENROLL_MAX_EMAILS_PER_ORG_PER_HOUR", "0")
            .env("ENROLL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "could not start {} (run scripts/bench, which builds it)",
                    config.binary.display()
                )
            })?;
        let pid = child.id().context("the server exited at once")?;
        let mut server = Self {
            child,
            address,
            pid,
            started_in: Duration::ZERO,
        };
        let deadline = spawned + Duration::from_secs(60);
        loop {
            if healthy(address).await {
                break;
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("the server exited before it answered: {status}");
            }
            if Instant::now() > deadline {
                bail!("the server did not answer /healthz on {address} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.started_in = spawned.elapsed();
        Ok(server)
    }

    /// The server's resident set now and at its peak, from `/proc/<pid>/status`.
    pub fn memory(&self) -> Memory {
        Memory::of(self.pid)
    }

    /// The CPU time the server has taken so far, its threads' together.
    pub fn cpu_time(&self) -> CpuTime {
        CpuTime::of(self.pid)
    }

    /// The scheduling of the SQLite writer thread so far; `None` on PostgreSQL.
    pub fn writer_schedule(&self) -> Option<ThreadSchedule> {
        // The kernel keeps the first 15 bytes of a thread's name.
        ThreadSchedule::of(self.pid, "enroll-sqlite-w")
    }

    /// A counter of `GET /metrics` (no labels), by name.
    pub async fn counter(&self, name: &str) -> anyhow::Result<f64> {
        Ok(counter_value(&self.counters().await?, name))
    }

    /// The counters of `GET /metrics` without labels, by name without `_total`.
    pub async fn counters(&self) -> anyhow::Result<Counters> {
        let text = get(self.address, "/metrics").await?;
        let mut counters = Counters::new();
        for (metric, value) in text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(' '))
        {
            if let Ok(value) = value.trim().parse::<f64>() {
                let name = metric.strip_suffix("_total").unwrap_or(metric);
                *counters.entry(name.to_owned()).or_default() += value;
            }
        }
        Ok(counters)
    }

    /// Asks the server to stop (SIGTERM) and waits for it, killing it after 10 s.
    pub async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The CPU time a process has taken, in user space and in the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub user: Duration,
    pub kernel: Duration,
}

/// The unit of `/proc/<pid>/stat`'s times, in milliseconds: `USER_HZ`, which the kernel's
/// interface fixes at 100 a second.
const CLOCK_TICK_MILLIS: u64 = 10;

impl CpuTime {
    /// From `/proc/<pid>/stat` (`utime` and `stime`, exited threads included); zero if the
    /// process is gone.
    pub fn of(pid: u32) -> Self {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| Self::parse(&stat))
            .unwrap_or_default()
    }

    /// Of every process of this machine whose command name is `name`, summed: a database
    /// server's backends, say. A process that ended since is not counted.
    pub fn of_processes_named(name: &str) -> Self {
        let Ok(processes) = std::fs::read_dir("/proc") else {
            return Self::default();
        };
        processes
            .flatten()
            .filter_map(|process| std::fs::read_to_string(process.path().join("stat")).ok())
            .filter(|stat| command_name(stat) == Some(name))
            .filter_map(|stat| Self::parse(&stat))
            .fold(Self::default(), |total, time| total + time)
    }

    fn parse(stat: &str) -> Option<Self> {
        // The command name, in parentheses, may hold spaces; the fields after it are fixed:
        // state is the 3rd of the line, utime the 14th, stime the 15th.
        let (_, fields) = stat.rsplit_once(')')?;
        let mut fields = fields.split_whitespace().skip(11);
        let mut time = || {
            let ticks = fields.next()?.parse::<u64>().ok()?;
            Some(Duration::from_millis(
                ticks.saturating_mul(CLOCK_TICK_MILLIS),
            ))
        };
        Some(Self {
            user: time()?,
            kernel: time()?,
        })
    }
}

/// The command name of a `/proc/<pid>/stat` line: what the parentheses hold, which may hold
/// spaces and parentheses itself.
fn command_name(stat: &str) -> Option<&str> {
    let (_, rest) = stat.split_once('(')?;
    let (name, _) = rest.rsplit_once(')')?;
    Some(name)
}

impl std::ops::Add for CpuTime {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            user: self.user + other.user,
            kernel: self.kernel + other.kernel,
        }
    }
}

/// What the scheduler tells of one thread (`/proc/<pid>/task/<tid>/schedstat`): the time it
/// ran on a CPU, and the time it was ready to run but waited for one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadSchedule {
    pub on_cpu: Duration,
    pub waiting: Duration,
}

impl ThreadSchedule {
    /// Of the thread of process `pid` named `name`; `None` if there is none, or the kernel
    /// keeps no such statistics.
    pub fn of(pid: u32, name: &str) -> Option<Self> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        tasks.flatten().find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            Self::parse(&std::fs::read_to_string(task.path().join("schedstat")).ok()?)
        })
    }

    fn parse(schedstat: &str) -> Option<Self> {
        let mut fields = schedstat.split_whitespace();
        let mut nanos = || fields.next()?.parse::<u64>().ok().map(Duration::from_nanos);
        Some(Self {
            on_cpu: nanos()?,
            waiting: nanos()?,
        })
    }
}

/// Resident set of a process in bytes: now (`VmRSS`) and its peak (`VmHWM`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map_or(0, |kib| kib * 1024)
        };
        Self {
            rss: field("VmRSS:"),
            peak: field("VmHWM:"),
        }
    }

    /// The larger of each.
    pub fn max(self, other: Self) -> Self {
        Self {
            rss: self.rss.max(other.rss),
            peak: self.peak.max(other.peak),
        }
    }
}

async fn healthy(address: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), status(address, "/healthz")).await,
        Ok(Ok(200))
    )
}

async fn status(address: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let (status, _) = request(address, path).await?;
    Ok(status)
}

/// `GET path` over a new connection; the body as text.
pub async fn get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let (status, body) = request(address, path).await?;
    if status != 200 {
        bail!("GET {path} answered {status}");
    }
    Ok(body)
}

async fn request(address: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let stream = TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender
        .send_request(
            hyper::Request::get(path)
                .header("host", "bench")
                .body(Empty::<Bytes>::new())?,
        )
        .await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A directory under the system's temporary directory, emptied and made afresh.
pub fn temp_dir(label: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "enroll-bench-{}-{}",
        std::process::id(),
        label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Removes every directory [`temp_dir`] made for this process.
pub fn remove_own_dirs() {
    let prefix = format!("enroll-bench-{}-", std::process::id());
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Removes a directory made by [`temp_dir`], ignoring errors.
pub fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (enroll (a) b) S 1 4242 4242 0 -1 4194560 5319 0 0 0 \
                    1234 567 0 0 20 0 9 0 1742 1060409344 9728 18446744073709551615";
        assert_eq!(
            CpuTime::parse(stat),
            Some(CpuTime {
                user: Duration::from_millis(12_340),
                kernel: Duration::from_millis(5_670),
            })
        );
        assert_eq!(CpuTime::parse("4242 (enroll) S 1"), None);
        assert_eq!(CpuTime::of(u32::MAX), CpuTime::default());
        assert_eq!(command_name(stat), Some("enroll (a) b"));
    }

    #[test]
    fn the_cpu_time_of_processes_by_name_counts_each_of_them() {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(started.elapsed());
        }
        let name = std::fs::read_to_string("/proc/self/comm").expect("the process's name");
        let own = CpuTime::of(std::process::id());
        let all = CpuTime::of_processes_named(name.trim_end());
        assert!(own.user + own.kernel > Duration::ZERO, "{own:?}");
        assert!(
            all.user >= own.user && all.kernel >= own.kernel,
            "{all:?} counts this process's {own:?}"
        );
        assert_eq!(
            CpuTime::of_processes_named("no process has this name"),
            CpuTime::default()
        );
    }

    #[test]
    fn a_threads_schedule_is_its_time_on_a_cpu_and_waiting_for_one() {
        assert_eq!(
            ThreadSchedule::parse("2500000000 700000000 1234\n"),
            Some(ThreadSchedule {
                on_cpu: Duration::from_millis(2_500),
                waiting: Duration::from_millis(700),
            })
        );
        assert_eq!(ThreadSchedule::parse("25"), None);
        assert_eq!(ThreadSchedule::of(u32::MAX, "enroll-sqlite-w"), None);
        // The test binary's main thread, which started the tests and now waits for them.
        let name = std::fs::read_to_string("/proc/self/comm").expect("the process's name");
        let own = ThreadSchedule::of(std::process::id(), name.trim_end())
            .expect("a thread of this process by that name");
        assert!(own.on_cpu > Duration::ZERO, "{own:?}");
    }
}
