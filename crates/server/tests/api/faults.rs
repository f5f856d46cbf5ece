//! Fault runs (reliability section b): the real `enroll` binary under load, killed with
//! SIGKILL and restarted, relaying to a real SMTP server that outlives it. When the outbox has
//! drained, a reconciler checks that nothing was lost: every acknowledged request's email is in
//! the outbox, every outbox message ended as sent (and arrived), superseded or abandoned,
//! nothing arrived that the outbox does not hold, duplicates stay within what was in flight at
//! a kill, and no user has two active codes.

use std::collections::HashMap;
use std::path::Path;
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

use crate::helpers::{Db, EXCLUSIVE, fresh_postgres_database};

/// Messages a worker claims and sends at once: what an interruption can leave in flight.
const MAIL_CONCURRENCY: usize = 8;

struct Server {
    data_dir: tempfile::TempDir,
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
            .env("ENROLL_DATA_DIR", self.data_dir.path())
            .env("ENROLL_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("ENROLL_SMTP_URL", &self.smtp_url)
            .env("ENROLL_COOLDOWN_SECONDS", "0")
            .env("ENROLL_MAIL_RETRY_BASE_MS", "200")
            .env("ENROLL_MAIL_RETRY_MAX_MS", "1000")
            .env("ENROLL_MAIL_CONCURRENCY", MAIL_CONCURRENCY.to_string())
            .env("ENROLL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
        panic!("the server did not come up");
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
            enroll_store_sqlite::SqliteStore::open(&server.data_dir.path().join("enroll.db"))
                .await
                .expect("the database opens"),
        ),
    }
}

fn bootstrap(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("bootstrap.json")).unwrap()).unwrap()
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
    /// SIGKILL, then a restart, this many times.
    Kills(usize),
    /// The SMTP server in each mode for its time, then accepting again.
    Smtp(Vec<(Mode, Duration)>),
    /// The connection to PostgreSQL, through a fault proxy, in each mode for its time.
    Database(Vec<(ProxyMode, Duration)>),
}

struct Run {
    server: Server,
    sink: SmtpSink,
    /// Between the server and PostgreSQL, for database faults.
    _proxy: Option<FaultProxy>,
    log: Vec<(String, Outcome)>,
    /// Kills, and cuts of the database connections: each may leave a claimed batch sent but
    /// not recorded, which is sent again once its lease lapses.
    interruptions: usize,
}

async fn fault_run(db: Db, load: Load, fault: Fault) -> Run {
    let _exclusive = EXCLUSIVE.lock().await;
    let sink = SmtpSink::start().await;
    let database_url = match db {
        Db::Postgres => Some(fresh_postgres_database().await),
        Db::Sqlite => None,
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
    let mut server = Server {
        data_dir: tempfile::tempdir().unwrap(),
        database_url: served_url,
        reconcile_url: database_url,
        smtp_url: sink.url(),
        port: free_port().await,
        child: None,
    };
    server.start().await;
    let admin = bootstrap(server.data_dir.path())["adminToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
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
    let log: Arc<Mutex<Vec<(String, Outcome)>>> = Arc::default();
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
                let outcome = match request.bearer_auth(&admin).send().await {
                    Ok(response) if response.status().is_success() => Outcome::Acknowledged,
                    Ok(response) => Outcome::Refused(response.status().as_u16()),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Outcome::Unknown
                    }
                };
                log.lock().await.push((recipient, outcome));
            }
        }));
    }
    let mut interruptions = 0;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    match fault {
        Fault::Kills(times) => {
            for _ in 0..times {
                server.kill().await;
                interruptions += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                server.start().await;
                tokio::time::sleep(Duration::from_millis(1200)).await;
            }
        }
        Fault::Smtp(modes) => {
            for (mode, time) in modes {
                sink.set_mode(mode);
                sink.close_connections();
                tokio::time::sleep(time).await;
            }
            sink.set_mode(Mode::Accept);
        }
        Fault::Database(modes) => {
            let proxy = proxy.as_ref().expect("a proxy for database faults");
            for (mode, time) in modes {
                proxy.set_mode(mode);
                proxy.cut_connections();
                interruptions += 1;
                tokio::time::sleep(time).await;
            }
            proxy.set_mode(ProxyMode::Pass);
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    running.store(false, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    // Drain: the outbox empties (messages claimed at a kill come back after their lease).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while outbox_depth(&client, &base).await != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox did not drain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill().await;
    let log = log.lock().await.clone();
    Run {
        server,
        sink,
        _proxy: proxy,
        log,
        interruptions,
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
    for (address, outcome) in &run.log {
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
    // 4. Duplicates: only of messages in flight at a kill or a database cut, or taken without
    //    their 250.
    let duplicates: usize = arrivals.values().map(|count| count - 1).sum();
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
    let count = |outcome| run.log.iter().filter(|(_, seen)| *seen == outcome).count();
    let state_count = |state| {
        messages
            .iter()
            .filter(|message| message.state == state)
            .count()
    };
    eprintln!(
        "fault run: {} requests, {} acknowledged, {} unknown; {} emails in the outbox \
         ({} sent, {} superseded, {} abandoned), {} received, lost {}, phantom {phantom}, \
         duplicates {duplicates} ({} interruptions, {} dropped before 250), unfinished {unfinished}, \
         {users} users' codes checked",
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
        duplicates <= run.interruptions * MAIL_CONCURRENCY + run.sink.dropped(),
        "{duplicates} duplicates for {} interruptions and {} drops",
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
    let run = fault_run(Db::Sqlite, Load::Resends, Fault::Kills(2)).await;
    reconcile(&run).await;
}

#[tokio::test]
async fn a_killed_server_loses_no_email_on_postgres() {
    let run = fault_run(Db::Postgres, Load::Resends, Fault::Kills(2)).await;
    reconcile(&run).await;
}

#[tokio::test]
async fn a_killed_server_loses_no_new_users_email() {
    let run = fault_run(Db::Sqlite, Load::NewUsers, Fault::Kills(1)).await;
    reconcile(&run).await;
}

#[tokio::test]
async fn smtp_down_under_load_delays_and_loses_nothing() {
    let smtp_down = Fault::Smtp(vec![(Mode::RefuseConnections, Duration::from_secs(3))]);
    let run = fault_run(Db::Sqlite, Load::NewUsers, smtp_down).await;
    let report = reconcile(&run).await;
    assert!(report.abandoned.is_empty(), "{:?}", report.abandoned);
}

#[tokio::test]
async fn smtp_temporary_failures_are_retried() {
    let temporary = Fault::Smtp(vec![
        (Mode::TempFail, Duration::from_millis(1500)),
        (Mode::TempFailRecipient, Duration::from_millis(1500)),
        (
            Mode::Tarpit(Duration::from_millis(200)),
            Duration::from_millis(1000),
        ),
    ]);
    let run = fault_run(Db::Sqlite, Load::NewUsers, temporary).await;
    let report = reconcile(&run).await;
    assert!(report.abandoned.is_empty(), "{:?}", report.abandoned);
}

#[tokio::test]
async fn smtp_permanent_failures_are_abandoned_with_their_reason() {
    let permanent = Fault::Smtp(vec![(Mode::PermFail, Duration::from_millis(1000))]);
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
    let dropping = Fault::Smtp(vec![(Mode::DropBeforeOk, Duration::from_millis(1500))]);
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
        (ProxyMode::Refuse, Duration::from_secs(3)),
        (ProxyMode::ResetAfter(200), Duration::from_millis(500)),
    ]);
    let run = fault_run(Db::Postgres, Load::NewUsers, outage).await;
    let statuses: Vec<u16> = run
        .log
        .iter()
        .filter_map(|(_, outcome)| match outcome {
            Outcome::Refused(status) => Some(*status),
            _ => None,
        })
        .collect();
    assert!(
        statuses.contains(&503),
        "the outage was answered: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|status| *status == 503),
        "only 503 during the outage: {statuses:?}"
    );
    let last = run.log.last().map(|(_, outcome)| *outcome);
    assert_eq!(last, Some(Outcome::Acknowledged), "the service recovered");
    reconcile(&run).await;
}
