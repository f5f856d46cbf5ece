//! Fault runs (reliability section b): the real `enroll` binary under load, killed with
//! SIGKILL and restarted, relaying to a real SMTP server that outlives it. When the outbox has
//! drained, a reconciler checks that nothing was lost: every acknowledged request's email is in
//! the outbox, every outbox message ended as sent (and arrived), superseded or abandoned,
//! nothing arrived that the outbox does not hold, duplicates stay within what was in flight at
//! a kill, and no user has two active codes.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use enroll_core::code::CodeState;
use enroll_core::model::{MessageState, MessageSummary};
use enroll_core::ports::{MessageFilter, Store};
use enroll_testkit::proxy::{FaultProxy, ProxyMode};
use enroll_testkit::smtp::{Mode, SmtpSink};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::helpers::{Db, EXCLUSIVE, fresh_postgres_database};

mod skew;

/// Messages a worker sends at once.
const MAIL_CONCURRENCY: usize = 8;
/// Messages a worker claims at once (four rounds of sends), whose outcomes it records together
/// after the last send: what an interruption can leave sent but not recorded.
const MAIL_CLAIM: usize = 4 * MAIL_CONCURRENCY;

struct Server {
    data_dir: tempfile::TempDir,
    /// Where the server keeps its data: `data_dir`, or a volume mounted inside it.
    data_path: PathBuf,
    database_url: Option<String>,
    /// The database as the reconciler reaches it (not through a fault proxy).
    reconcile_url: Option<String>,
    smtp_url: String,
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_enroll"));
        command
            .arg("serve")
            .env("ENROLL_DATA_DIR", &self.data_path)
            .env("ENROLL_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("ENROLL_SMTP_URL", &self.smtp_url)
            .env("ENROLL_COOLDOWN_SECONDS", "0")
            // Load from one client, resending to the same addresses: no volume caps.
            .env("ENROLL_MAX_EMAILS_PER_ADDRESS", "1000000")
            .env("ENROLL_MAX_EMAILS_PER_CLIENT_PER_HOUR", "0")
            .env("ENROLL_MAIL_RETRY_BASE_MS", "200")
            .env("ENROLL_MAIL_RETRY_MAX_MS", "1000")
            .env("ENROLL_MAIL_CONCURRENCY", MAIL_CONCURRENCY.to_string())
            .env("ENROLL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(self.log_file())
            .kill_on_drop(true);
        if let Some(url) = &self.database_url {
            command.env("ENROLL_DATABASE_URL", url);
        }
        self.child = Some(command.spawn().expect("the server starts"));
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{}/healthz", self.base()))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not come up: {}", self.log());
    }

    /// The server's standard error, kept beside its data (not on a volume that may be full).
    fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("server.log")
    }

    fn log_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_or_else(|_| Stdio::null(), Stdio::from)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the process started last is still running (it did not exit or panic out).
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().is_ok_and(|status| status.is_none()))
    }

    /// SIGKILL: no shutdown, no flush, nothing but what was committed.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("the server is killed");
        }
    }
}

/// Outcome of one request of the load: acknowledged (2xx), refused, or unknown (no answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acknowledged,
    /// An answer other than 2xx, with its status.
    Refused(u16),
    Unknown,
}

/// One request of the load, as its client saw it.
#[derive(Debug, Clone)]
struct Record {
    /// Whom the request's email is for.
    recipient: String,
    outcome: Outcome,
    /// When it was sent, from the start of the load.
    start: Duration,
    /// How long its answer (or its failure) took.
    elapsed: Duration,
    /// The body of a refusal.
    body: Option<String>,
}

impl Record {
    fn to_json(&self, run: &str, op: &str) -> Value {
        let (outcome, status) = match self.outcome {
            Outcome::Acknowledged => ("acknowledged", None),
            Outcome::Refused(status) => ("refused", Some(status)),
            Outcome::Unknown => ("unknown", None),
        };
        json!({
            "run": run,
            "op": op,
            "recipient": self.recipient,
            "outcome": outcome,
            "status": status,
            "t_start_ms": self.start.as_secs_f64() * 1e3,
            "t_end_ms": (self.start + self.elapsed).as_secs_f64() * 1e3,
        })
    }
}

/// `FAULTS_LONG=1` runs the long versions (minutes each, as in the fault plan), for use
/// outside CI; CI runs the short ones. (Not `ENROLL_…`: the servers the tests start read every
/// `ENROLL_` variable as a setting and refuse the ones they do not know.)
fn long() -> bool {
    std::env::var("FAULTS_LONG").is_ok_and(|value| value == "1")
}

/// The short value in CI, the long one with `FAULTS_LONG=1`.
fn pick<T>(short: T, long_value: T) -> T {
    if long() { long_value } else { short }
}

fn millis(short: u64, long_value: u64) -> Duration {
    Duration::from_millis(pick(short, long_value))
}

/// Appends the run's requests, one JSON line each, to the file `FAULTS_RECORDS` names.
fn write_records(load: Load, log: &[Record]) {
    let Ok(path) = std::env::var("FAULTS_RECORDS") else {
        return;
    };
    let run = std::thread::current()
        .name()
        .unwrap_or("fault run")
        .to_owned();
    let op = match load {
        Load::Resends => "resend",
        Load::NewUsers => "add_user",
    };
    let mut lines = String::new();
    for record in log {
        lines.push_str(&record.to_json(&run, op).to_string());
        lines.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|error| panic!("FAULTS_RECORDS={path}: {error}"));
    file.write_all(lines.as_bytes()).unwrap();
}

async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

async fn outbox_depth(client: &reqwest::Client, base: &str) -> Option<u64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|line| line.starts_with("outbox_depth "))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
}

async fn open_store(server: &Server) -> Arc<dyn Store> {
    match &server.reconcile_url {
        Some(url) => Arc::new(
            enroll_store_postgres::PostgresStore::connect(url, 4)
                .await
                .expect("the database opens"),
        ),
        None => Arc::new(
            enroll_store_sqlite::SqliteStore::open(&server.data_path.join("enroll.db"))
                .await
                .expect("the database opens"),
        ),
    }
}

fn bootstrap(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("bootstrap.json")).unwrap()).unwrap()
}

fn root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// `program` with `args`, as the `postgres` user when we are root (initdb and the server
/// refuse to run as root).
fn as_postgres(program: &Path, args: &[&str]) -> std::process::Command {
    let mut command = if root() {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        std::process::Command::new(program)
    };
    command.args(args).stdin(Stdio::null());
    command
}

/// Runs `program` to its end as [`as_postgres`]; panics with its output if it fails.
async fn run_as_postgres(program: &Path, args: &[&str]) {
    let output = Command::from(as_postgres(program, args))
        .output()
        .await
        .unwrap_or_else(|error| panic!("{} does not run: {error}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PostgreSQL server of the test's own, in a temporary directory on a free port, so that it
/// can be stopped and restarted without disturbing the shared one the other tests use.
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `pg_ctl`.
    fn binaries() -> PathBuf {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                (bin.join("initdb").exists() && bin.join("pg_ctl").exists())
                    .then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin).expect(
            "this run needs PostgreSQL's server binaries (initdb, pg_ctl) in \
             /usr/lib/postgresql/<version>/bin: install Debian's postgresql (scripts/test expects it)",
        )
    }

    async fn start() -> Self {
        let bin = Self::binaries();
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status();
        assert!(
            !root() || status.is_ok_and(|status| status.success()),
            "the PostgreSQL directory is given to the postgres user"
        );
        let data = dir.path().join("data");
        run_as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .await;
        let server = Self {
            bin,
            dir,
            port: free_port().await,
        };
        server.up().await;
        server
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data");
        let mut all = vec!["-D", data.to_str().unwrap()];
        all.extend_from_slice(args);
        run_as_postgres(&self.bin.join("pg_ctl"), &all).await;
    }

    /// Starts the server and waits until it accepts connections (after crash recovery).
    async fn up(&self) {
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            self.port,
            self.dir.path().display()
        );
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            log.to_str().unwrap(),
            "-o",
            &options,
        ])
        .await;
    }

    /// `fast`: sessions are ended and the server shuts down cleanly; `immediate`: it stops at
    /// once, as in a crash, and recovers from its WAL at the next start.
    async fn down(&self, mode: &str) {
        self.pg_ctl(&["stop", "-w", "-t", "60", "-m", mode]).await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "stop", "-m", "immediate"],
        )
        .output();
    }
}

/// A small tmpfs mounted for the run, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status();
        assert!(
            status.is_ok_and(|status| status.success()),
            "this run mounts a tmpfs for the SQLite volume (mount -t tmpfs needs root)"
        );
        Self(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Still busy (a file open): detach it now, it goes when the last user closes it.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

/// Writes to `filler` until the volume refuses more; true if a write failed for want of space.
fn fill(filler: &mut std::fs::File) -> bool {
    let block = vec![0u8; 64 * 1024];
    let mut full = false;
    for size in [block.len(), 4096, 512] {
        loop {
            match filler.write(&block[..size]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    full |= error.kind() == std::io::ErrorKind::StorageFull;
                    break;
                }
            }
        }
    }
    full
}

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Resend email codes to 20 users, as fast as answers come (cooldown 0): most codes are
    /// replaced before their email goes, which the worker must see.
    Resends,
    /// Add users with a code to send: one email each, none replaced.
    NewUsers,
}

/// What goes wrong while the load runs.
#[derive(Debug, Clone)]
enum Fault {
    /// SIGKILL this many times, each time restarting after `down` and running for `up`.
    Kills {
        times: usize,
        down: Duration,
        up: Duration,
    },
    /// The SMTP server in each mode for its time, then accepting again.
    Smtp(Vec<(Mode, Duration)>),
    /// The connection to PostgreSQL, through a fault proxy, in each mode for its time.
    Database(Vec<(ProxyMode, Duration)>),
    /// A private PostgreSQL server stopped with each mode (`fast`, `immediate`), down for
    /// `down`, then up for `up` before the next.
    PostgresRestarts {
        modes: Vec<&'static str>,
        down: Duration,
        up: Duration,
    },
    /// The SQLite volume (a tmpfs of `size`) filled up for `hold`, then freed.
    DiskFull { size: &'static str, hold: Duration },
}

/// Kills of the server: a few in CI; with `FAULTS_LONG=1`, one every 10 s for 2 min,
/// restarting after 1 s.
fn kills(times: usize) -> Fault {
    Fault::Kills {
        times: pick(times, 12),
        down: millis(300, 1_000),
        up: millis(1_200, 9_000),
    }
}

struct Run {
    /// Unmounted before `server` removes its directory.
    _volume: Option<Tmpfs>,
    server: Server,
    sink: SmtpSink,
    /// Between the server and PostgreSQL, for database faults.
    _proxy: Option<FaultProxy>,
    /// The server's own PostgreSQL, for restarts; stopped when the run is dropped.
    _postgres: Option<PrivatePostgres>,
    log: Vec<Record>,
    /// Kills, and cuts of the database connections: each may leave a claimed batch sent but
    /// not recorded, which is sent again once its lease lapses.
    interruptions: usize,
    /// When each fault began and ended, from the start of the load.
    faults: Vec<(Duration, Duration)>,
}

impl Run {
    /// The statuses of the refused requests.
    fn refusals(&self) -> Vec<u16> {
        self.log
            .iter()
            .filter_map(|record| match record.outcome {
                Outcome::Refused(status) => Some(status),
                _ => None,
            })
            .collect()
    }

    /// How long after the end of each fault the first request sent after it was acknowledged.
    fn recoveries(&self) -> Vec<Duration> {
        self.faults
            .iter()
            .map(|(_, ended)| {
                self.log
                    .iter()
                    .filter(|record| {
                        record.start >= *ended && record.outcome == Outcome::Acknowledged
                    })
                    .map(|record| record.start + record.elapsed - *ended)
                    .min()
                    .expect("a request was acknowledged after the fault")
            })
            .collect()
    }
}

async fn fault_run(db: Db, load: Load, fault: Fault) -> Run {
    let _exclusive = EXCLUSIVE.lock().await;
    let sink = SmtpSink::start().await;
    let postgres = match &fault {
        Fault::PostgresRestarts { .. } => Some(PrivatePostgres::start().await),
        _ => None,
    };
    let database_url = match (db, &postgres) {
        (_, Some(postgres)) => Some(postgres.url()),
        (Db::Postgres, None) => Some(fresh_postgres_database().await),
        (Db::Sqlite, None) => None,
    };
    // The server reaches PostgreSQL through the proxy; the reconciler, directly.
    let proxy = match (&fault, &database_url) {
        (Fault::Database(_), Some(_)) => {
            Some(FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await)
        }
        _ => None,
    };
    let served_url = match (&proxy, &database_url) {
        (Some(proxy), Some(url)) => {
            Some(url.replace("127.0.0.1:5432", &proxy.address().to_string()))
        }
        (_, url) => url.clone(),
    };
    let data_dir = tempfile::tempdir().unwrap();
    let (data_path, volume) = match &fault {
        Fault::DiskFull { size, .. } => {
            let path = data_dir.path().join("volume");
            let volume = Tmpfs::mount(&path, size);
            (path, Some(volume))
        }
        _ => (data_dir.path().to_owned(), None),
    };
    let mut server = Server {
        data_dir,
        data_path,
        database_url: served_url,
        reconcile_url: database_url,
        smtp_url: sink.url(),
        port: free_port().await,
        child: None,
    };
    server.start().await;
    let admin = bootstrap(&server.data_path)["adminToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // Longer than the server's wait for a database connection (5 s), so that a request held
    // up by an outage shows as slow rather than unknown.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let base = server.base();
    let mut users = Vec::new();
    if load == Load::Resends {
        for index in 0..20 {
            let email = format!("load-{index}@example.com");
            let added: Value = client
                .post(format!("{base}/v2/users/human"))
                .bearer_auth(&admin)
                .json(&json!({
                    "profile": {"givenName": "Load", "familyName": format!("User {index}")},
                    "email": {"email": email, "returnCode": {}},
                }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            users.push((added["userId"].as_str().unwrap().to_owned(), email));
        }
    }

    let running = Arc::new(AtomicBool::new(true));
    let log: Arc<Mutex<Vec<Record>>> = Arc::default();
    let began = Instant::now();
    let mut clients = Vec::new();
    for worker in 0..16 {
        let (client, base, admin, users) =
            (client.clone(), base.clone(), admin.clone(), users.clone());
        let (running, log) = (Arc::clone(&running), Arc::clone(&log));
        clients.push(tokio::spawn(async move {
            let mut turn = worker;
            while running.load(Ordering::Relaxed) {
                turn += 7;
                let (request, recipient) = match load {
                    Load::Resends => {
                        let (user, email) = &users[turn % users.len()];
                        (
                            client
                                .post(format!("{base}/v2/users/{user}/email/resend"))
                                .json(&json!({ "sendCode": {} })),
                            email.clone(),
                        )
                    }
                    Load::NewUsers => {
                        let email = format!("load-{worker}-{turn}@example.com");
                        (
                            client.post(format!("{base}/v2/users/human")).json(&json!({
                                "profile": {"givenName": "Load", "familyName": "User"},
                                "email": {"email": email, "sendCode": {}},
                            })),
                            email,
                        )
                    }
                };
                let sent = Instant::now();
                let (outcome, body) = match request.bearer_auth(&admin).send().await {
                    Ok(response) if response.status().is_success() => (Outcome::Acknowledged, None),
                    Ok(response) => {
                        let status = response.status().as_u16();
                        (Outcome::Refused(status), response.text().await.ok())
                    }
                    Err(_) => (Outcome::Unknown, None),
                };
                let elapsed = sent.elapsed();
                if outcome == Outcome::Unknown {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                log.lock().await.push(Record {
                    recipient,
                    outcome,
                    start: sent - began,
                    elapsed,
                    body,
                });
            }
        }));
    }
    let mut interruptions = 0;
    let mut faults = Vec::new();
    tokio::time::sleep(millis(1_000, 10_000)).await;
    match fault {
        Fault::Kills { times, down, up } => {
            for _ in 0..times {
                let at = began.elapsed();
                server.kill().await;
                interruptions += 1;
                tokio::time::sleep(down).await;
                server.start().await;
                faults.push((at, began.elapsed()));
                tokio::time::sleep(up).await;
            }
        }
        Fault::Smtp(modes) => {
            let at = began.elapsed();
            for (mode, time) in modes {
                sink.set_mode(mode);
                sink.close_connections();
                tokio::time::sleep(time).await;
            }
            sink.set_mode(Mode::Accept);
            faults.push((at, began.elapsed()));
        }
        Fault::Database(modes) => {
            let proxy = proxy.as_ref().expect("a proxy for database faults");
            let at = began.elapsed();
            for (mode, time) in modes {
                proxy.set_mode(mode);
                proxy.cut_connections();
                interruptions += 1;
                tokio::time::sleep(time).await;
            }
            proxy.set_mode(ProxyMode::Pass);
            faults.push((at, began.elapsed()));
        }
        Fault::PostgresRestarts { modes, down, up } => {
            let postgres = postgres.as_ref().expect("a private PostgreSQL");
            for mode in modes {
                let at = began.elapsed();
                postgres.down(mode).await;
                interruptions += 1;
                tokio::time::sleep(down).await;
                postgres.up().await;
                faults.push((at, began.elapsed()));
                tokio::time::sleep(up).await;
            }
        }
        Fault::DiskFull { hold, .. } => {
            let path = server.data_path.join("filler");
            let mut filler = std::fs::File::create(&path).unwrap();
            let at = began.elapsed();
            assert!(fill(&mut filler), "the volume filled up");
            // Whatever SQLite gives back (a truncated WAL) is taken again at once.
            let end = Instant::now() + hold;
            while Instant::now() < end {
                fill(&mut filler);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(filler);
            std::fs::remove_file(&path).unwrap();
            faults.push((at, began.elapsed()));
        }
    }
    tokio::time::sleep(millis(1_000, 10_000)).await;
    running.store(false, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    // Drain: the outbox empties (messages claimed at a kill come back after their lease).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let depth = outbox_depth(&client, &base).await;
        if depth == Some(0) {
            break;
        }
        if Instant::now() > deadline {
            let log = server.log();
            let tail = &log[log.len().saturating_sub(3_000)..];
            let files: Vec<String> = std::fs::read_dir(&server.data_path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| {
                    let size = entry.metadata().map_or(0, |meta| meta.len());
                    format!("{} {size}", entry.file_name().to_string_lossy())
                })
                .collect();
            panic!(
                "the outbox did not drain: {depth:?} left; data files {files:?}; the server's log \
                 ends with {tail}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server.running(),
        "the server kept running through the fault: {}",
        server.log()
    );
    server.kill().await;
    let log = log.lock().await.clone();
    write_records(load, &log);
    Run {
        _volume: volume,
        server,
        sink,
        _proxy: proxy,
        _postgres: postgres,
        log,
        interruptions,
        faults,
    }
}

/// What the reconciler found.
#[derive(Debug)]
struct Report {
    abandoned: Vec<MessageSummary>,
    duplicates: usize,
}

/// Checks the five "nothing lost" conditions against the database and the SMTP server.
async fn reconcile(run: &Run) -> Report {
    let store = open_store(&run.server).await;
    let messages: Vec<MessageSummary> = store
        .messages(&MessageFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|message| message.recipient.as_str().starts_with("load-"))
        .collect();
    let received = run.sink.messages();
    let mut arrivals: HashMap<String, usize> = HashMap::new();
    for mail in &received {
        let id = mail
            .message_id
            .clone()
            .expect("every email has a Message-ID");
        *arrivals.entry(id).or_default() += 1;
    }
    let header_of = |message: &MessageSummary| format!("<{}@localhost.localdomain>", message.id);

    // 1. Acknowledged ⇒ durable: each address has at least as many emails as acknowledged
    //    requests, and at most that many plus the requests whose outcome is unknown; a
    //    request refused with a 4xx left nothing.
    let mut per_address: HashMap<&str, (usize, usize)> = HashMap::new();
    for Record {
        recipient: address,
        outcome,
        ..
    } in &run.log
    {
        let entry = per_address.entry(address).or_default();
        match outcome {
            Outcome::Acknowledged => entry.0 += 1,
            // A 5xx may answer a commit whose acknowledgement the database connection lost:
            // its outcome is as unknown to the server as no answer is to the client.
            Outcome::Unknown => entry.1 += 1,
            Outcome::Refused(status) if *status >= 500 => entry.1 += 1,
            Outcome::Refused(_) => {}
        }
    }
    let mut stored_by_address: HashMap<&str, usize> = HashMap::new();
    for message in &messages {
        *stored_by_address
            .entry(message.recipient.as_str())
            .or_default() += 1;
    }
    let mut lost_acknowledged = 0;
    for (address, (acknowledged, unknown)) in &per_address {
        let stored = stored_by_address.get(address).copied().unwrap_or(0);
        lost_acknowledged += acknowledged.saturating_sub(stored);
        assert!(
            stored <= acknowledged + unknown,
            "{address}: {stored} emails for {acknowledged} acknowledged and {unknown} unknown"
        );
    }
    // 2. Outbox ⇒ mailbox: every message finished; every sent one arrived.
    let unfinished = messages
        .iter()
        .filter(|message| matches!(message.state, MessageState::Queued | MessageState::Sending))
        .count();
    let lost_sent = messages
        .iter()
        .filter(|message| message.state == MessageState::Sent)
        .filter(|message| !arrivals.contains_key(&header_of(message)))
        .count();
    // 3. Mailbox ⇒ outbox: nothing arrived that the outbox does not hold.
    let known: std::collections::HashSet<String> = messages.iter().map(header_of).collect();
    let phantom = arrivals.keys().filter(|id| !known.contains(*id)).count();
    // 4. Duplicates: only of messages claimed and in flight at a kill or a database cut, or taken without
    //    their 250.
    let duplicates: usize = arrivals.values().map(|count| count - 1).sum();
    //    Or of those whose record failed after their 250 (the worker logs each), which go
    //    again once their lease lapses.
    let unrecorded = run
        .server
        .log()
        .matches("could not record a delivery")
        .count();
    // 5. At most one active code per user.
    let mut users = 0;
    for user_id in messages
        .iter()
        .filter_map(|message| message.user_id.as_ref())
    {
        let codes = store.codes(user_id).await.unwrap();
        let active = codes
            .iter()
            .filter(|code| code.state == CodeState::Active)
            .count();
        assert!(active <= 1, "{user_id} has {active} active codes");
        users += 1;
    }
    let count = |outcome| {
        run.log
            .iter()
            .filter(|record| record.outcome == outcome)
            .count()
    };
    let state_count = |state| {
        messages
            .iter()
            .filter(|message| message.state == state)
            .count()
    };
    eprintln!(
        "fault run: {} requests, {} acknowledged, {} unknown; {} emails in the outbox \
         ({} sent, {} superseded, {} abandoned), {} received, lost {}, phantom {phantom}, \
         duplicates {duplicates} ({} interruptions, {} dropped before 250, {unrecorded} sent but \
         not recorded), unfinished {unfinished}, {users} users' codes checked",
        run.log.len(),
        count(Outcome::Acknowledged),
        count(Outcome::Unknown),
        messages.len(),
        state_count(MessageState::Sent),
        state_count(MessageState::Superseded),
        state_count(MessageState::Abandoned),
        received.len(),
        lost_acknowledged + lost_sent,
        run.interruptions,
        run.sink.dropped(),
    );
    assert!(count(Outcome::Acknowledged) > 0, "the load got answers");
    assert_eq!(
        lost_acknowledged, 0,
        "acknowledged requests without their email"
    );
    assert_eq!(unfinished, 0, "messages left queued or sending");
    assert_eq!(lost_sent, 0, "messages marked sent that never arrived");
    assert_eq!(phantom, 0, "emails the outbox does not hold");
    assert!(
        duplicates <= run.interruptions * MAIL_CLAIM + run.sink.dropped() + unrecorded,
        "{duplicates} duplicates for {} interruptions, {} drops and {unrecorded} deliveries not \
         recorded",
        run.interruptions,
        run.sink.dropped()
    );
    Report {
        abandoned: messages
            .into_iter()
            .filter(|message| message.state == MessageState::Abandoned)
            .collect(),
        duplicates,
    }
}

#[tokio::test]
async fn a_killed_server_loses_no_email_on_sqlite() {
    let run = fault_run(Db::Sqlite, Load::Resends, kills(2)).await;
    reconcile(&run).await;
}

#[tokio::test]
async fn a_killed_server_loses_no_email_on_postgres() {
    let run = fault_run(Db::Postgres, Load::Resends, kills(2)).await;
    reconcile(&run).await;
}

#[tokio::test]
async fn a_killed_server_loses_no_new_users_email() {
    let run = fault_run(Db::Sqlite, Load::NewUsers, kills(1)).await;
    reconcile(&run).await;
}

#[tokio::test]
async fn smtp_down_under_load_delays_and_loses_nothing() {
    let smtp_down = Fault::Smtp(vec![(Mode::RefuseConnections, millis(3_000, 60_000))]);
    let run = fault_run(Db::Sqlite, Load::NewUsers, smtp_down).await;
    let report = reconcile(&run).await;
    assert!(report.abandoned.is_empty(), "{:?}", report.abandoned);
}

#[tokio::test]
async fn smtp_temporary_failures_are_retried() {
    let temporary = Fault::Smtp(vec![
        (Mode::TempFail, millis(1_500, 20_000)),
        (Mode::TempFailRecipient, millis(1_500, 20_000)),
        (
            Mode::Tarpit(Duration::from_millis(200)),
            millis(1_000, 20_000),
        ),
    ]);
    let run = fault_run(Db::Sqlite, Load::NewUsers, temporary).await;
    let report = reconcile(&run).await;
    assert!(report.abandoned.is_empty(), "{:?}", report.abandoned);
}

#[tokio::test]
async fn smtp_permanent_failures_are_abandoned_with_their_reason() {
    let permanent = Fault::Smtp(vec![(Mode::PermFail, millis(1_000, 10_000))]);
    let run = fault_run(Db::Sqlite, Load::NewUsers, permanent).await;
    let report = reconcile(&run).await;
    assert!(!report.abandoned.is_empty(), "the 550s were abandoned");
    for message in &report.abandoned {
        assert_eq!(message.attempts, 1, "a 550 is not retried");
        let reason = message.last_error.as_deref().unwrap_or_default();
        assert!(reason.contains("550"), "{reason}");
    }
}

#[tokio::test]
async fn smtp_dropping_before_250_duplicates_only_those_messages() {
    let dropping = Fault::Smtp(vec![(Mode::DropBeforeOk, millis(1_500, 10_000))]);
    let run = fault_run(Db::Sqlite, Load::NewUsers, dropping).await;
    assert!(
        run.sink.dropped() > 0,
        "messages were dropped before their 250"
    );
    let report = reconcile(&run).await;
    assert!(report.duplicates <= run.sink.dropped());
}

/// The database unreachable for 3 s, then refusing mid-stream: requests fail with 503 (never a
/// 500), the service recovers without a restart, and nothing acknowledged is lost.
#[tokio::test]
async fn a_database_outage_answers_503_and_loses_nothing() {
    let outage = Fault::Database(vec![
        (ProxyMode::Refuse, millis(3_000, 30_000)),
        (ProxyMode::ResetAfter(200), millis(500, 5_000)),
    ]);
    let run = fault_run(Db::Postgres, Load::NewUsers, outage).await;
    let statuses = run.refusals();
    assert!(
        statuses.contains(&503),
        "the outage was answered: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|status| *status == 503),
        "only 503 during the outage: {statuses:?}"
    );
    let last = run.log.last().map(|record| record.outcome);
    assert_eq!(last, Some(Outcome::Acknowledged), "the service recovered");
    reconcile(&run).await;
}

/// How long the server may make a request wait for a PostgreSQL connection before it answers
/// 503 (the store's acquire timeout).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The refusals of a run: all 503 (never a 500), each a JSON error in the ZITADEL face's
/// format that names no database detail.
fn assert_refusals_are_503(run: &Run) {
    let mut statuses: std::collections::BTreeMap<u16, usize> = std::collections::BTreeMap::new();
    for status in run.refusals() {
        *statuses.entry(status).or_default() += 1;
    }
    assert!(
        statuses.contains_key(&503),
        "the fault was answered: {statuses:?}"
    );
    assert_eq!(statuses.len(), 1, "only 503 during the fault: {statuses:?}");
    for record in &run.log {
        if let Some(body) = &record.body {
            let error: Value = serde_json::from_str(body)
                .unwrap_or_else(|_| panic!("a JSON error body, got {body:?}"));
            assert_eq!(error["code"], 14, "gRPC UNAVAILABLE: {body}");
            let lower = body.to_lowercase();
            for detail in ["sql", "postgres", "database", "disk", "connection"] {
                assert!(!lower.contains(detail), "a generic body, got {body}");
            }
        }
    }
    let unknown = run
        .log
        .iter()
        .filter(|record| record.outcome == Outcome::Unknown)
        .count();
    assert_eq!(unknown, 0, "every request was answered");
}

/// Milliseconds at the given quantile of the times of the records that match.
fn quantile(run: &Run, keep: impl Fn(&Record) -> bool, at: f64) -> u128 {
    let mut times: Vec<u128> = run
        .log
        .iter()
        .filter(|record| keep(record))
        .map(|record| record.elapsed.as_millis())
        .collect();
    times.sort_unstable();
    let index = ((times.len() as f64 - 1.0) * at).round() as usize;
    times.get(index).copied().unwrap_or(0)
}

/// PostgreSQL itself restarted under load (F5): a fast shutdown, then an immediate stop (a
/// crash, recovered from its WAL at the next start), on a PostgreSQL server of the test's own.
/// While it is down every request is answered 503 within the acquire timeout, the server
/// serves again without a restart, and nothing acknowledged is lost.
#[tokio::test]
async fn a_postgres_restart_answers_503_and_loses_nothing() {
    let restarts = Fault::PostgresRestarts {
        modes: vec!["fast", "immediate"],
        down: millis(2_000, 20_000),
        up: millis(1_500, 10_000),
    };
    let run = fault_run(Db::Postgres, Load::NewUsers, restarts).await;
    assert_refusals_are_503(&run);
    let slowest = run.log.iter().map(|record| record.elapsed).max().unwrap();
    eprintln!(
        "postgres restarts: slowest answer {slowest:?}, p99 of the 503s {} ms, back to 2xx after {:?}",
        quantile(&run, |record| record.outcome == Outcome::Refused(503), 0.99),
        run.recoveries()
    );
    assert!(
        slowest <= ACQUIRE_TIMEOUT + Duration::from_millis(2_000),
        "no request hung past the acquire timeout: {slowest:?}"
    );
    for recovery in run.recoveries() {
        assert!(
            recovery <= Duration::from_secs(5),
            "2xx again within 5 s of PostgreSQL's return: {recovery:?}"
        );
    }
    reconcile(&run).await;
}

/// The SQLite volume full (F7): a 64 MiB tmpfs filled up while the clients load the server,
/// held, then freed. Writes refused for want of space answer 503 at once, nothing refused was
/// acknowledged, the database stays intact, and the server serves again without a restart. (The
/// WAL once grew to fill the volume again after the episode; the writer now completes a
/// checkpoint once the log passes 4,096 frames, so that it restarts from its beginning, and a
/// restarted log is cut back to 32 MiB.)
#[tokio::test]
async fn a_full_disk_answers_503_and_loses_nothing() {
    let full = Fault::DiskFull {
        size: pick("64m", "256m"),
        hold: millis(3_000, 30_000),
    };
    let run = fault_run(Db::Sqlite, Load::NewUsers, full).await;
    assert_refusals_are_503(&run);
    let refused = |record: &Record| record.outcome == Outcome::Refused(503);
    let (median, p99) = (quantile(&run, refused, 0.5), quantile(&run, refused, 0.99));
    let size = |name: &str| {
        std::fs::metadata(run.server.data_path.join(name)).map_or(0, |meta| meta.len() >> 20)
    };
    eprintln!(
        "full disk: {} refusals, median {median} ms, p99 {p99} ms, back to 2xx after {:?}; \
         database {} MiB, its WAL {} MiB",
        run.refusals().len(),
        run.recoveries(),
        size("enroll.db"),
        size("enroll.db-wal"),
    );
    assert!(median <= 100, "503 within 100 ms (median {median} ms)");
    let log = run.server.log();
    assert!(!log.contains("panicked"), "no panic: {log}");
    // Its log (on another volume) kept working and says why.
    assert!(log.contains("disk is full"), "the full disk is logged");
    let integrity = std::process::Command::new("sqlite3")
        .arg(run.server.data_path.join("enroll.db"))
        .arg("PRAGMA integrity_check")
        .output()
        .expect("this run needs the sqlite3 command (apt-get install sqlite3)");
    assert_eq!(
        String::from_utf8_lossy(&integrity.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&integrity.stderr)
    );
    reconcile(&run).await;
}
