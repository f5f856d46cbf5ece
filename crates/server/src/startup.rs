//! Builds the application from settings and runs it: HTTP server, outbox worker and upkeep,
//! until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use enroll_core::clock::Clock;
use enroll_core::ids::OrgId;
use enroll_core::password::{Password, PasswordHash};
use enroll_core::ports::PasswordHashing;
use enroll_core::ports::Store;
use enroll_core::service::{AccountLinks, Enroll};
use enroll_mail::{
    DeliveryStats, InboxTransport, MailSettings, MailTransport, OutboxWorker, Renderer,
    SmtpTransport, WorkerSignal,
};
use enroll_store_postgres::PostgresStore;
use enroll_store_sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::bootstrap::{self, Bootstrap};
use crate::config::{Database, Settings};
use crate::faces::singularity::SingularitySettings;
use crate::metrics::{Metrics, QueuedSignal};
use crate::pacing::AnswerFloor;
use crate::pages;
use crate::router;
use crate::state::{AppState, Shared};

/// Opens the configured database and brings its schema up to date.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match settings.database() {
        Database::Sqlite(path) => {
            if let Some(parent) = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("could not create {}", parent.display()))?;
            }
            Arc::new(SqliteStore::open(&path).await?)
        }
        Database::Postgres(url) => {
            Arc::new(PostgresStore::connect(&url, settings.database_pool_size).await?)
        }
    })
}

pub fn renderer(settings: &Settings) -> anyhow::Result<Renderer> {
    let renderer = Renderer::new(settings.templates_dir.as_deref())?;
    renderer
        .check()
        .context("the email templates are not valid")?;
    Ok(renderer)
}

pub struct Application {
    listener: TcpListener,
    /// Set when a certificate is configured: the port speaks HTTPS.
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    worker: Arc<OutboxWorker>,
    enroll: Arc<Enroll>,
    bootstrap: Option<(Bootstrap, std::path::PathBuf)>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl Application {
    pub async fn build(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let store = open_store(settings).await?;
        let secret = bootstrap::server_secret(settings)?;
        let renderer = renderer(settings)?;
        let tls = match (&settings.tls_certificate, &settings.tls_private_key) {
            (Some(certificate), Some(key)) => Some(crate::tls::acceptor(certificate, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("could not listen on {}", settings.listen))?;
        let public_url = match &settings.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!(
                "{}://{}",
                if tls.is_some() { "https" } else { "http" },
                listener.local_addr()?
            ),
        };
        let mail_settings = MailSettings {
            from: settings.mail_from.clone(),
            product_name: settings.product_name.clone(),
            public_url: public_url.clone(),
        };
        mail_settings
            .validate()
            .context("mail_from is not a valid sender")?;
        let inbox_enabled = settings.smtp_url.is_none();
        let transport: Arc<dyn MailTransport> = match &settings.smtp_url {
            Some(url) => Arc::new(
                SmtpTransport::from_url(
                    url,
                    settings.smtp_username.clone(),
                    settings.smtp_password.clone(),
                )
                .context("the SMTP settings are not valid")?
                // One connection per concurrent send, so sends never wait for a connection.
                .with_pool_size(settings.mail_concurrency as usize),
            ),
            None => Arc::new(InboxTransport::new(store.clone(), clock.clone())),
        };
        let stats = Arc::new(DeliveryStats::default());
        let metrics = Arc::new(Metrics::new({
            let stats = stats.clone();
            let store = store.clone();
            Arc::new(move || {
                let mut counters = stats.counters();
                counters.extend(store.counters());
                counters
            })
        }));
        let wake = Arc::new(Notify::new());
        let signal = Arc::new(QueuedSignal {
            metrics: metrics.clone(),
            worker: Arc::new(WorkerSignal(wake.clone())),
        });
        let enroll = Arc::new(
            Enroll::new(
                store.clone(),
                clock.clone(),
                &secret,
                settings.policy(),
                signal,
            )
            .with_password_hashing(Arc::new(BlockingHashing)),
        );
        let worker = Arc::new(OutboxWorker::new(
            store.clone(),
            transport,
            renderer,
            secret.sealer(),
            clock,
            settings.retry_policy(),
            mail_settings,
            settings.mail_concurrency,
            wake,
            stats,
        ));
        let bootstrap = bootstrap::first_start(&enroll, &settings.data_dir).await?;
        let singularity = singularity_settings(settings, &enroll, &public_url).await?;
        let router = router::build(AppState::new(Shared {
            enroll: enroll.clone(),
            metrics,
            inbox_enabled,
            singularity,
            answer_floor: AnswerFloor(Duration::from_millis(settings.answer_floor_ms)),
        }));
        Ok(Self {
            listener,
            tls,
            router,
            worker,
            enroll,
            bootstrap,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn enroll(&self) -> Arc<Enroll> {
        self.enroll.clone()
    }

    pub fn worker(&self) -> Arc<OutboxWorker> {
        self.worker.clone()
    }

    /// What the first start created, and where it was written.
    pub fn bootstrap(&self) -> Option<&(Bootstrap, std::path::PathBuf)> {
        self.bootstrap.as_ref()
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = Arc::new(Notify::new());
        let worker = tokio::spawn(self.worker.clone().run_until_stopped({
            let stop = stop.clone();
            async move { stop.notified().await }
        }));
        let upkeep = tokio::spawn(upkeep(self.enroll.clone()));
        let served = match self.tls {
            Some(acceptor) => {
                crate::tls::serve(self.listener, acceptor, self.router, shutdown).await
            }
            None => axum::serve(
                self.listener,
                self.router
                    .into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
            .context("the HTTP server failed"),
        };
        stop.notify_one();
        upkeep.abort();
        let _ = worker.await;
        served
    }
}

/// Hashes passwords on tokio's blocking threads: tens of milliseconds of CPU each, which would
/// otherwise hold up every request on the same worker.
#[derive(Debug)]
struct BlockingHashing;

#[async_trait::async_trait]
impl PasswordHashing for BlockingHashing {
    async fn hash(&self, password: Password) -> enroll_core::Result<PasswordHash> {
        tokio::task::spawn_blocking(move || enroll_core::password::hash(&password))
            .await
            .map_err(|error| enroll_core::Error::internal("password hashing stopped", error))?
    }

    async fn verify(&self, password: Password, stored: Option<PasswordHash>) -> bool {
        tokio::task::spawn_blocking(move || {
            enroll_core::password::verify(&password, stored.as_ref())
        })
        .await
        .unwrap_or(false)
    }
}

/// The Singularity face's organisation (the configured one, else the oldest) and the pages
/// its emails link to (the configured frontend's, else the hosted ones).
async fn singularity_settings(
    settings: &Settings,
    enroll: &Enroll,
    public_url: &str,
) -> anyhow::Result<SingularitySettings> {
    let org_id = match &settings.singularity_org_id {
        Some(id) => {
            let id = OrgId::parse(id.trim())
                .with_context(|| format!("singularity_org_id {id:?} is not an organisation id"))?;
            enroll
                .store()
                .org(&id)
                .await?
                .with_context(|| format!("singularity_org_id {id} is not an organisation here"))?
                .id
        }
        None => {
            enroll
                .store()
                .orgs()
                .await?
                .into_iter()
                .min_by_key(|org| org.created_at)
                .context("no organisation exists for the Singularity face")?
                .id
        }
    };
    let page = |configured: &Option<String>, hosted: &str| {
        configured
            .clone()
            .unwrap_or_else(|| format!("{public_url}{hosted}"))
    };
    let links = settings.singularity_mail_enabled.then(|| AccountLinks {
        verify_email: page(
            &settings.singularity_verify_email_uri,
            pages::VERIFY_EMAIL_PATH,
        ),
        reset_password: page(
            &settings.singularity_reset_password_uri,
            pages::RESET_PASSWORD_PATH,
        ),
        forgot_password: page(
            &settings.singularity_forgot_password_uri,
            pages::FORGOT_PASSWORD_PATH,
        ),
        sign_up: page(&settings.singularity_sign_up_uri, pages::SIGN_UP_PATH),
    });
    Ok(SingularitySettings {
        org_id,
        links,
        secure_cookies: settings
            .secure_cookies
            .unwrap_or_else(|| public_url.starts_with("https://")),
    })
}

/// How far apart the clocks of instances sharing a database may be without a nonce becoming
/// usable twice: an instance whose clock runs ahead must not forget nonces whose dates are
/// still inside the window of an instance behind it.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60 * 60);

/// Forgets nonces whose dates are out of the window on any clock within the skew allowance,
/// and spent tokens past their expiry, so the tables stay small.
async fn upkeep(enroll: Arc<Enroll>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        let now = enroll.clock().now();
        let window = enroll.policy().nonce_window;
        // A nonce seen at `s` by one clock can be replayed while another clock, up to the
        // allowance behind, still finds its date (within the window of `s`) in its window.
        let seen_before = now.minus((window + CLOCK_SKEW_ALLOWANCE) * 2);
        if let Err(error) = enroll.store().purge_nonces(seen_before).await {
            tracing::warn!(%error, "could not purge old nonces");
        }
        if let Err(error) = enroll.store().purge_spent(now).await {
            tracing::warn!(%error, "could not purge spent tokens");
        }
    }
}
