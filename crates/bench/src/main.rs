//! Drives `PUT /auth/registration/code` at N connections against a running `enroll serve`, on
//! SQLite and on PostgreSQL, and `GET /healthz` in the same run as the HTTP ceiling; prints
//! requests/s, p50, p99 and the ratio to the ceiling.
//!
//! `scripts/bench` builds the release binary and runs this; see `--help`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use enroll_core::clock::{Clock, SystemClock};
use enroll_core::email::EmailAddress;
use enroll_core::model::{Locale, UserKind};
use enroll_core::policy::Policy;
use enroll_core::ports::{NoSignal, Store};
use enroll_core::secret::ServerSecret;
use enroll_core::service::{Enroll, NewUser};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use sqlx::Connection as _;
use tokio::net::TcpStream;

struct Options {
    users: usize,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    binary: PathBuf,
    postgres: Option<String>,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        users: 20_000,
        connections: 64,
        warmup: Duration::from_secs(3),
        duration: Duration::from_secs(10),
        binary: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/enroll"),
        postgres: Some(
            std::env::var("ENROLL_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
        ),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--users" => options.users = value()?.parse()?,
            "--connections" => options.connections = value()?.parse()?,
            "--warmup" => options.warmup = Duration::from_secs(value()?.parse()?),
            "--seconds" => options.duration = Duration::from_secs(value()?.parse()?),
            "--binary" => options.binary = PathBuf::from(value()?),
            "--postgres" => options.postgres = Some(value()?),
            "--no-postgres" => options.postgres = None,
            "--help" | "-h" => {
                println!(
                    "enroll-bench [--users N] [--connections N] [--warmup S] [--seconds S] [--binary PATH] [--postgres URL | --no-postgres]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

/// A secret both the seeding and the server use, so seeded codes are the server's.
const SECRET: &str = "6b1f0c3a9e2d4c5b8a7f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291";

async fn seed(store: Arc<dyn Store>, users: usize) -> anyhow::Result<String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let secret = ServerSecret::from_hex(SECRET)?;
    // The server runs without a cooldown; seeded users must not start inside one either.
    let policy = Policy {
        cooldown: Duration::ZERO,
        ..Policy::default()
    };
    let enroll = Arc::new(Enroll::new(
        store,
        clock,
        &secret,
        policy,
        Arc::new(NoSignal),
    ));
    let org = enroll.create_org("Bench", Locale::english()).await?;
    for chunk in (0..users).collect::<Vec<_>>().chunks(500) {
        let creations = chunk.iter().map(|index| {
            let enroll = enroll.clone();
            let org_id = org.id.clone();
            async move {
                enroll
                    .create_user(NewUser {
                        org_id,
                        email: EmailAddress::parse(&format!("user{index}@bench.example"))?,
                        kind: UserKind::CustomerEmployee,
                        locale: None,
                        user_action: None,
                    })
                    .await
                    .map_err(anyhow::Error::from)
            }
        });
        for created in futures_util::future::join_all(creations).await {
            created?;
        }
    }
    // The seeding emails are not part of the run: mark them handled before the server starts.
    let store = enroll.store().clone();
    let now = enroll.clock().now();
    loop {
        let claimed = store
            .claim(now, now.plus(Duration::from_secs(600)), 1_000)
            .await?;
        if claimed.is_empty() {
            break;
        }
        let finished = claimed.iter().map(|message| {
            store.finish(
                &message.id,
                message.attempts,
                enroll_core::model::DeliveryOutcome::Superseded,
                now,
            )
        });
        for result in futures_util::future::join_all(finished).await {
            result?;
        }
    }
    Ok(org.id.to_string())
}

struct Server {
    child: tokio::process::Child,
    address: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_server(
    options: &Options,
    data_dir: &Path,
    database_url: &str,
    smtp_url: &str,
) -> anyhow::Result<Server> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = probe.local_addr()?;
    drop(probe);
    let child = tokio::process::Command::new(&options.binary)
        .arg("serve")
        .arg("--listen")
        .arg(address.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--database-url")
        .arg(database_url)
        .arg("--smtp-url")
        .arg(smtp_url)
        .env("ENROLL_SECRET", SECRET)
        // Every request of the run is a real resend: no cooldown refusals.
        .env("ENROLL_COOLDOWN_SECONDS", "0")
        // One client resending to a few addresses, as fast as it can: no volume caps.
        .env("ENROLL_MAX_EMAILS_PER_ADDRESS", "4000000000")
        .env("ENROLL_MAX_EMAILS_PER_CLIENT_PER_HOUR", "0")
        .env("ENROLL_MAX_EMAILS_PER_ORG_PER_HOUR", "0")
        .env("ENROLL_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "could not start {} (run scripts/bench, which builds it)",
                options.binary.display()
            )
        })?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(address).await.is_err() {
        if Instant::now() > deadline {
            bail!("the server did not start listening on {address}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server { child, address })
}

#[derive(Clone, Copy)]
enum Load<'a> {
    Ceiling,
    Resend { org_id: &'a str, users: usize },
}

struct Measurement {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    failures: usize,
}

async fn drive(
    address: SocketAddr,
    load: Load<'_>,
    options: &Options,
) -> anyhow::Result<Measurement> {
    let started = Instant::now();
    let measure_from = started + options.warmup;
    let stop_at = measure_from + options.duration;
    let mut workers = Vec::new();
    for connection in 0..options.connections {
        let (path, method, bodies): (&str, hyper::Method, Vec<Bytes>) = match load {
            Load::Ceiling => ("/healthz", hyper::Method::GET, vec![Bytes::new()]),
            Load::Resend { org_id, users } => (
                "/auth/registration/code",
                hyper::Method::PUT,
                // Each connection walks its own slice of users.
                (0..users)
                    .skip(connection)
                    .step_by(options.connections)
                    .map(|index| {
                        Bytes::from(
                            serde_json::json!({"username": format!("user{index}@bench.example"), "orgId": org_id})
                                .to_string(),
                        )
                    })
                    .collect(),
            ),
        };
        workers.push(tokio::spawn(async move {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            for body in bodies.iter().cycle() {
                let now = Instant::now();
                if now >= stop_at {
                    break;
                }
                let request = hyper::Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                let response = sender.send_request(request).await?;
                let ok = response.status().is_success();
                response.into_body().collect().await?;
                if now >= measure_from {
                    latencies.push(now.elapsed());
                    if !ok {
                        failures += 1;
                    }
                }
            }
            anyhow::Ok((latencies, failures))
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (mut some, failed) = worker.await??;
        latencies.append(&mut some);
        failures += failed;
    }
    latencies.sort_unstable();
    let at = |quantile: f64| {
        latencies
            .get(
                ((latencies.len() as f64 * quantile) as usize)
                    .min(latencies.len().saturating_sub(1)),
            )
            .copied()
            .unwrap_or_default()
    };
    Ok(Measurement {
        requests_per_second: latencies.len() as f64 / options.duration.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        failures,
    })
}

fn row(name: &str, measurement: &Measurement, ceiling: f64) {
    println!(
        "| {name:<44} | {:>9.0} | {:>7.2} | {:>7.2} | {:>6.3} | {:>8} |",
        measurement.requests_per_second,
        measurement.p50.as_secs_f64() * 1e3,
        measurement.p99.as_secs_f64() * 1e3,
        measurement.requests_per_second / ceiling,
        measurement.failures
    );
}

async fn fresh_postgres(admin_url: &str) -> anyhow::Result<String> {
    let name = format!("enroll_bench_{}", std::process::id());
    let mut connection = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut connection)
        .await?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut connection)
        .await?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .context("a database URL with a path")?;
    Ok(format!("{base}/{name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let smtp = enroll_testkit::smtp::SmtpSink::start().await;
    let mut targets: Vec<(&str, String)> = Vec::new();
    let sqlite_dir = tempfile_dir("sqlite")?;
    targets.push((
        "SQLite, group commit, FULL",
        format!("sqlite://{}", sqlite_dir.join("enroll.db").display()),
    ));
    if let Some(admin_url) = &options.postgres {
        match fresh_postgres(admin_url).await {
            Ok(url) => targets.push(("PostgreSQL (pool 16)", url)),
            Err(error) => eprintln!("PostgreSQL skipped: {error:#}"),
        }
    }
    println!(
        "{} connections, {} s warm-up, {} s measured, {} users per store; the worker delivers to an SMTP sink.\n",
        options.connections,
        options.warmup.as_secs(),
        options.duration.as_secs(),
        options.users
    );
    println!(
        "| {:<44} | {:>9} | {:>7} | {:>7} | {:>6} | {:>8} |",
        "target", "req/s", "p50 ms", "p99 ms", "× ceil", "failures"
    );
    println!(
        "|{:-<46}|{:-<11}|{:-<9}|{:-<9}|{:-<8}|{:-<10}|",
        "", "", "", "", "", ""
    );
    let mut ceiling = None;
    for (name, url) in &targets {
        let data_dir = tempfile_dir(name)?;
        let store: Arc<dyn Store> = if url.starts_with("sqlite") {
            Arc::new(
                enroll_store_sqlite::SqliteStore::open(Path::new(
                    url.trim_start_matches("sqlite://"),
                ))
                .await?,
            )
        } else {
            Arc::new(enroll_store_postgres::PostgresStore::connect(url, 16).await?)
        };
        let org_id = seed(store, options.users).await?;
        let server = start_server(&options, &data_dir, url, &smtp.url()).await?;
        let ceiling_rps = match ceiling {
            Some(value) => value,
            None => {
                let measured = drive(server.address, Load::Ceiling, &options).await?;
                row(
                    "GET /healthz (HTTP ceiling)",
                    &measured,
                    measured.requests_per_second,
                );
                ceiling = Some(measured.requests_per_second);
                measured.requests_per_second
            }
        };
        let measured = drive(
            server.address,
            Load::Resend {
                org_id: &org_id,
                users: options.users,
            },
            &options,
        )
        .await?;
        row(
            &format!("PUT registration/code, {name}"),
            &measured,
            ceiling_rps,
        );
        drop(server);
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let _ = std::fs::remove_dir_all(&sqlite_dir);
    if let Some(admin_url) = &options.postgres
        && let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await
    {
        let name = format!("enroll_bench_{}", std::process::id());
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
    Ok(())
}

fn tempfile_dir(label: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "enroll-bench-{}-{}",
        std::process::id(),
        label
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
