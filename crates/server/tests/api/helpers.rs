//! `TestApp`: a server on port 0 over a fresh database, with a hand-moved clock and, when asked,
//! a real SMTP server as its relay.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use enroll::config::Settings;
use enroll::startup::Application;
use enroll_core::clock::ManualClock;
use enroll_core::code::{CodePurpose, CodeSecret};
use enroll_core::email::EmailAddress;
use enroll_core::ids::OrgId;
use enroll_core::model::{User, UserKind};
use enroll_core::rules::{CodeUse, UserKey};
use enroll_core::service::{Enroll, NewUser};
use enroll_testkit::smtp::SmtpSink;
use serde_json::Value;
use sqlx::Connection as _;

/// Held by the tests that load the machine (fault runs) and by those that measure time, so
/// that they do not run at once.
pub static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub enroll: Arc<Enroll>,
    pub org_id: OrgId,
    pub admin_token: String,
    /// What first start wrote to `bootstrap.json`.
    pub bootstrap: enroll::bootstrap::Bootstrap,
    pub data_dir: tempfile::TempDir,
    /// The SMTP server mail is relayed to; `None` when mail is captured in the inbox.
    pub smtp: Option<SmtpSink>,
}

/// A database of its own on the local PostgreSQL server.
pub async fn fresh_postgres_database() -> String {
    let admin_url = std::env::var("ENROLL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!(
        "enroll_test_{}",
        enroll_core::ids::UserId::generate()
            .as_str()
            .replace('-', "_")
    );
    let mut connection = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("PostgreSQL must be reachable at ENROLL_TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut connection)
        .await
        .expect("create a test database");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a database URL with a path");
    format!("{base}/{name}")
}

pub struct Options {
    pub db: Db,
    pub smtp: bool,
    pub settings: Box<dyn FnOnce(&mut Settings) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            db: Db::Sqlite,
            smtp: true,
            settings: Box::new(|_| {}),
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_on(db: Db) -> Self {
        Self::spawn_with(Options {
            db,
            ..Options::default()
        })
        .await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let smtp = if options.smtp {
            Some(SmtpSink::start().await)
        } else {
            None
        };
        let mut settings = Settings {
            listen: "127.0.0.1:0".parse().expect("an address"),
            data_dir: data_dir.path().to_owned(),
            smtp_url: smtp.as_ref().map(SmtpSink::url),
            mail_retry_base_ms: 1_000,
            ..Settings::default()
        };
        if options.db == Db::Postgres {
            settings.database_url = Some(fresh_postgres_database().await);
            settings.database_pool_size = 8;
        }
        (options.settings)(&mut settings);
        let clock = Arc::new(ManualClock::starting_now());
        let application = Application::build(&settings, clock.clone())
            .await
            .expect("the application starts");
        let (bootstrap, _) = application.bootstrap().expect("a first start");
        let org_id = OrgId::parse(&bootstrap.org_id).expect("an org id");
        let admin_token = bootstrap.admin_token.clone();
        let bootstrap = bootstrap.clone();
        let scheme = if settings.tls_certificate.is_some() {
            "https"
        } else {
            "http"
        };
        let base_url = format!("{scheme}://{}", application.address());
        let enroll = application.enroll();
        tokio::spawn(application.run_until_stopped(std::future::pending()));
        Self {
            base_url,
            client: reqwest::Client::new(),
            clock,
            enroll,
            org_id,
            admin_token,
            bootstrap,
            data_dir,
            smtp,
        }
    }

    pub fn smtp(&self) -> &SmtpSink {
        self.smtp
            .as_ref()
            .expect("this app relays to an SMTP server")
    }

    pub async fn create_user(&self, email: &str) -> User {
        self.enroll
            .create_user(NewUser {
                org_id: self.org_id.clone(),
                email: EmailAddress::parse(email).expect("a valid address"),
                kind: UserKind::CustomerEmployee,
                locale: None,
                user_action: None,
            })
            .await
            .expect("the user is created")
            .user
    }

    /// Waits until the SMTP server holds `count` messages for `to`, and returns them.
    pub async fn mails_to(
        &self,
        to: &str,
        count: usize,
    ) -> Vec<enroll_testkit::smtp::ReceivedMail> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mails: Vec<_> = self
                .smtp()
                .messages()
                .into_iter()
                .filter(|mail| mail.to.iter().any(|rcpt| rcpt == to))
                .collect();
            if mails.len() >= count || tokio::time::Instant::now() > deadline {
                assert_eq!(mails.len(), count, "mails to {to}");
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the outbox records `count` messages to `to` as sent. The SMTP server holds a
    /// message a moment before the worker has recorded the server's answer.
    pub async fn recorded_sent(&self, to: &str, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let sent = self
                .delivery_log()
                .await
                .iter()
                .filter(|message| {
                    message.recipient.as_str() == to
                        && message.state == enroll_core::model::MessageState::Sent
                })
                .count();
            if sent >= count || tokio::time::Instant::now() > deadline {
                assert_eq!(sent, count, "messages to {to} recorded as sent");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The registration code in the latest mail to `to`, once `count` mails have arrived.
    pub async fn code_in_mail(&self, to: &str, count: usize) -> String {
        let mails = self.mails_to(to, count).await;
        mails
            .last()
            .and_then(enroll_testkit::smtp::ReceivedMail::registration_code)
            .expect("the mail carries a registration code")
    }

    /// Checks a code through the core without using it up.
    pub async fn code_verifies(&self, email: &str, code: &str) -> bool {
        self.verify(email, code, CodeUse::Check).await.is_ok()
    }

    pub async fn verify(
        &self,
        email: &str,
        code: &str,
        usage: CodeUse,
    ) -> enroll_core::Result<User> {
        self.enroll
            .verify_code(
                UserKey::Username {
                    org_id: self.org_id.clone(),
                    username: EmailAddress::parse(email).expect("a valid address"),
                },
                CodePurpose::Registration,
                CodeSecret::from_user_input(code),
                usage,
            )
            .await
            .map(|verified| verified.user)
    }

    pub fn pass_cooldown(&self) {
        self.clock.advance(Duration::from_secs(61));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `PUT /auth/registration/code`; returns status, headers and the exact body.
    pub async fn resend(&self, body: &Value) -> Reply {
        self.put("/auth/registration/code", body.to_string(), &[])
            .await
    }

    pub async fn post(&self, path: &str, body: String, headers: &[(&str, &str)]) -> Reply {
        self.send(reqwest::Method::POST, path, body, headers).await
    }

    pub async fn put(&self, path: &str, body: String, headers: &[(&str, &str)]) -> Reply {
        self.send(reqwest::Method::PUT, path, body, headers).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .client
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::from(request.send().await.expect("the server answers")).await
    }

    /// A GET with headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.client.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::from(request.send().await.expect("the server answers")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::from(
            self.client
                .get(self.url(path))
                .send()
                .await
                .expect("the server answers"),
        )
        .await
    }

    /// The outbox's delivery log, newest first.
    pub async fn delivery_log(&self) -> Vec<enroll_core::model::MessageSummary> {
        self.enroll
            .store()
            .messages(&enroll_core::ports::MessageFilter::default())
            .await
            .expect("the outbox is readable")
    }

    pub async fn outbox_len(&self) -> usize {
        self.delivery_log().await.len()
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Self {
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.expect("a body"),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("a JSON body, got {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// `tests/node`, where the client SDKs are installed.
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/node")
}

/// Runs a script of `tests/node` and parses the JSON line it prints.
pub async fn run_node(script: &str, args: &[&str]) -> Value {
    run_node_with(script, args, &[]).await
}

/// [`run_node`] with environment variables.
pub async fn run_node_with(script: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let dir = node_dir();
    assert!(
        dir.join("node_modules/.package-lock.json").exists(),
        "the npm packages are missing: run scripts/test (or npm install in tests/node)"
    );
    let output = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(&dir)
        .output()
        .await
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("one JSON line, got {stdout:?}"))
}

/// The `enroll` binary on `data_dir`, without the settings of the tests' own environment.
pub fn enroll(data_dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_enroll"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("ENROLL_DATABASE_URL")
        .env_remove("ENROLL_SMTP_URL")
        .env_remove("ENROLL_LISTEN");
    command
}

/// Runs a command of the binary and reads its `--json` answer.
pub fn run_json(data_dir: &std::path::Path, args: &[&str]) -> Value {
    let output = enroll(data_dir)
        .args(args)
        .arg("--json")
        .output()
        .expect("enroll runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("JSON from {args:?}"))
}

/// A running `enroll serve`, killed when dropped.
pub struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `enroll serve` on a free port and returns it with what it printed up to "listening
/// on"; its log goes nowhere.
pub fn serve(data_dir: &std::path::Path) -> (Served, Vec<String>) {
    serve_with(enroll(data_dir).stderr(std::process::Stdio::null()))
}

/// Starts `enroll serve` as `command` says (its environment, where its log goes).
pub fn serve_with(command: &mut std::process::Command) -> (Served, Vec<String>) {
    use std::io::BufRead as _;
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("enroll serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        let done = line.contains("listening on");
        lines.push(line);
        if done {
            break;
        }
    }
    (Served(child), lines)
}

/// The base URL `enroll serve` printed.
pub fn printed_base_url(printed: &[String]) -> String {
    let address = printed
        .iter()
        .find_map(|line| line.split("http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the address");
    format!("http://{address}")
}

/// The body of a Dfns signed challenge (`/auth/login`, `/auth/action`) with a Key assertion.
pub fn assertion_body(identifier: &str, assertion: &enroll_core::service::KeyAssertion) -> String {
    serde_json::json!({
        "challengeIdentifier": identifier,
        "firstFactor": {
            "kind": "Key",
            "credentialAssertion": {
                "credId": assertion.cred_id,
                "clientData": assertion.client_data,
                "signature": assertion.signature,
            },
        },
    })
    .to_string()
}
