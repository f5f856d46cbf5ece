//! Real `enroll` processes over one database: one on SQLite, or several sharing PostgreSQL
//! (and the server secret), relaying to one SMTP test server. The test reads the database
//! through a store of its own.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use enroll_core::ports::{MessageFilter, Store};
use enroll_core::secret::ServerSecret;
use enroll_testkit::smtp::SmtpSink;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::helpers::{Db, Reply, fresh_postgres_database};

pub struct Instance {
    pub base_url: String,
    _data_dir: tempfile::TempDir,
    _child: Child,
}

pub struct Cluster {
    pub instances: Vec<Instance>,
    pub sink: SmtpSink,
    /// The database, as the test reads it.
    pub store: Arc<dyn Store>,
    /// What the first instance's first start wrote.
    pub bootstrap: Value,
    pub client: reqwest::Client,
}

async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

async fn start_instance(
    database_url: Option<&str>,
    secret: &str,
    smtp_url: &str,
    env: &[(&str, &str)],
) -> Instance {
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port().await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_enroll"));
    command
        .arg("serve")
        .env("ENROLL_DATA_DIR", data_dir.path())
        .env("ENROLL_LISTEN", format!("127.0.0.1:{port}"))
        .env("ENROLL_SMTP_URL", smtp_url)
        .env("ENROLL_SECRET", secret)
        .env("ENROLL_MAIL_RETRY_BASE_MS", "200")
        .env("ENROLL_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        command
            .env("ENROLL_DATABASE_URL", url)
            .env("ENROLL_DATABASE_POOL_SIZE", "16");
    }
    let child = command.spawn().expect("the server starts");
    let base_url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if client
            .get(format!("{base_url}/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            return Instance {
                base_url,
                _data_dir: data_dir,
                _child: child,
            };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the server did not come up");
}

impl Cluster {
    /// One instance on SQLite, or `count` instances sharing a fresh PostgreSQL database;
    /// `env` adds `ENROLL_*` settings to every instance.
    pub async fn start(db: Db, count: usize, env: &[(&str, &str)]) -> Self {
        assert!(
            db == Db::Postgres || count == 1,
            "SQLite serves one instance"
        );
        let sink = SmtpSink::start().await;
        let secret = ServerSecret::generate().to_hex();
        let database_url = match db {
            Db::Postgres => Some(fresh_postgres_database().await),
            Db::Sqlite => None,
        };
        let mut instances = Vec::with_capacity(count);
        // The first bootstraps the database; the others find its organisation.
        for _ in 0..count {
            instances
                .push(start_instance(database_url.as_deref(), &secret, &sink.url(), env).await);
        }
        let first_dir = instances[0]._data_dir.path();
        let bootstrap: Value = serde_json::from_str(
            &std::fs::read_to_string(first_dir.join("bootstrap.json")).unwrap(),
        )
        .unwrap();
        let store: Arc<dyn Store> = match &database_url {
            Some(url) => Arc::new(
                enroll_store_postgres::PostgresStore::connect(url, 4)
                    .await
                    .expect("the database opens"),
            ),
            None => Arc::new(
                enroll_store_sqlite::SqliteStore::open(&first_dir.join("enroll.db"))
                    .await
                    .expect("the database opens"),
            ),
        };
        Self {
            instances,
            sink,
            store,
            bootstrap,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn admin_token(&self) -> String {
        self.bootstrap["adminToken"].as_str().unwrap().to_owned()
    }

    pub fn org_id(&self) -> String {
        self.bootstrap["orgId"].as_str().unwrap().to_owned()
    }

    /// The instance the `index`th request goes to: they take turns.
    pub fn instance(&self, index: usize) -> &Instance {
        &self.instances[index % self.instances.len()]
    }

    pub async fn send(
        &self,
        instance: usize,
        method: reqwest::Method,
        path: &str,
        body: String,
        headers: &[(String, String)],
    ) -> Reply {
        let mut request = self
            .client
            .request(
                method,
                format!("{}{path}", self.instance(instance).base_url),
            )
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("the server answers");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.expect("a body"),
        }
    }

    /// What a side effect would change: users, their codes, and outbox messages.
    pub async fn footprint(&self) -> Footprint {
        let users = self.store.users(None).await.unwrap();
        let mut codes = 0;
        for user in &users {
            codes += self.store.codes(&user.id).await.unwrap().len();
        }
        let messages = self
            .store
            .messages(&MessageFilter::default())
            .await
            .unwrap()
            .len();
        Footprint {
            users: users.len(),
            codes,
            messages,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub users: usize,
    pub codes: usize,
    pub messages: usize,
}
