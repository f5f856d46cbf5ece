//! The outbox worker: claims due messages, renders and sends them, and records each outcome.
//! Several workers, on any number of instances, may run on one database: a claim is a lease.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use enroll_core::clock::Clock;
use enroll_core::delivery::{self, FailureKind, RetryPolicy};
use enroll_core::model::{ClaimedMessage, DeliveryOutcome};
use enroll_core::ports::{Outbox, OutboxSignal};
use enroll_core::secret::Sealer;
use enroll_core::service::SealedContent;
use futures_util::StreamExt as _;
use tokio::sync::Notify;

use crate::render::{MailSettings, Renderer};
use crate::transport::MailTransport;

/// Longest sleep when the outbox is empty: other instances' messages are found at least this
/// often.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Counters of what the worker did, for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub abandoned: AtomicU64,
    pub superseded: AtomicU64,
}

impl DeliveryStats {
    /// `(name, help, value)` of each counter.
    pub fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        vec![
            ("emails_sent", "Emails accepted by the SMTP relay or the inbox", self.sent.load(Ordering::Relaxed)),
            ("emails_retried", "Delivery attempts that failed and will be retried", self.retried.load(Ordering::Relaxed)),
            ("emails_failed", "Emails abandoned after a permanent failure or too many attempts", self.abandoned.load(Ordering::Relaxed)),
            ("emails_superseded", "Emails not sent because their code was replaced or used first", self.superseded.load(Ordering::Relaxed)),
        ]
    }
}

/// Wakes a worker when a message is enqueued.
#[derive(Debug, Clone)]
pub struct WorkerSignal(pub Arc<Notify>);

impl OutboxSignal for WorkerSignal {
    fn message_enqueued(&self) {
        self.0.notify_one();
    }
}

pub struct OutboxWorker {
    outbox: Arc<dyn Outbox>,
    transport: Arc<dyn MailTransport>,
    renderer: Renderer,
    sealer: Sealer,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    settings: MailSettings,
    concurrency: u32,
    wake: Arc<Notify>,
    stats: Arc<DeliveryStats>,
}

impl std::fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker").field("retry", &self.retry).finish_non_exhaustive()
    }
}

impl OutboxWorker {
    #[allow(clippy::too_many_arguments, reason = "each part is a distinct collaborator")]
    pub fn new(
        outbox: Arc<dyn Outbox>,
        transport: Arc<dyn MailTransport>,
        renderer: Renderer,
        sealer: Sealer,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
        settings: MailSettings,
        concurrency: u32,
        wake: Arc<Notify>,
        stats: Arc<DeliveryStats>,
    ) -> Self {
        Self {
            outbox,
            transport,
            renderer,
            sealer,
            clock,
            retry,
            settings,
            concurrency: concurrency.max(1),
            wake,
            stats,
        }
    }

    /// Claims what is due now and delivers it; returns how many messages were claimed.
    pub async fn run_once(&self) -> Result<usize, enroll_core::Error> {
        let now = self.clock.now();
        let claimed = self
            .outbox
            .claim(now, now.plus(self.retry.lease), self.concurrency * 4)
            .await?;
        let count = claimed.len();
        futures_util::stream::iter(claimed)
            .for_each_concurrent(self.concurrency as usize, |message| async move {
                let outcome = self.deliver(&message).await;
                let now = self.clock.now();
                if let Err(error) = self.outbox.finish(&message.id, outcome, now).await {
                    // The lease runs out and another attempt follows: at least once.
                    tracing::error!(%error, message = %message.id, "could not record a delivery");
                }
            })
            .await;
        Ok(count)
    }

    async fn deliver(&self, message: &ClaimedMessage) -> DeliveryOutcome {
        let now = self.clock.now();
        let to = message.recipient.masked();
        if !delivery::should_send(message, now) {
            tracing::info!(message = %message.id, %to, "not sent: its code was replaced, used or expired");
            self.stats.superseded.fetch_add(1, Ordering::Relaxed);
            return DeliveryOutcome::Superseded;
        }
        let Some(sealed) = &message.sealed else {
            return self.abandon(message, "the message has no content to send".to_owned());
        };
        let content: SealedContent = match self
            .sealer
            .open(message.id.as_str(), sealed)
            .map_err(|error| error.to_string())
            .and_then(|plain| serde_json::from_slice(&plain).map_err(|error| error.to_string()))
        {
            Ok(content) => content,
            Err(error) => return self.abandon(message, format!("the content could not be opened: {error}")),
        };
        let mail = match self.renderer.render_message(message, &content, &self.settings) {
            Ok(mail) => mail,
            Err(error) => return self.abandon(message, format!("the email could not be rendered: {error}")),
        };
        match self.transport.send(&mail).await {
            Ok(()) => {
                tracing::info!(message = %message.id, %to, attempt = message.attempts, "email sent");
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                DeliveryOutcome::Sent
            }
            Err(error) => {
                let outcome = self.retry.after_failure(message.attempts, error.kind, error.message.clone(), now);
                match &outcome {
                    DeliveryOutcome::Retry { at, .. } => {
                        tracing::warn!(message = %message.id, %to, attempt = message.attempts, retry_at = %at, error = %error.message, "email not sent; will retry");
                        self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        let permanent = error.kind == FailureKind::Permanent;
                        tracing::error!(message = %message.id, %to, attempt = message.attempts, permanent, error = %error.message, "email abandoned");
                        self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                    }
                }
                outcome
            }
        }
    }

    fn abandon(&self, message: &ClaimedMessage, error: String) -> DeliveryOutcome {
        tracing::error!(message = %message.id, error = %error, "email abandoned");
        self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
        DeliveryOutcome::Abandoned { error }
    }

    /// Delivers until `shutdown` completes; between batches it sleeps until woken by a new
    /// message, until the next retry is due, or for at most a second.
    pub async fn run_until_stopped(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        loop {
            let claimed = match self.run_once().await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "could not claim outbox messages");
                    0
                }
            };
            if claimed > 0 {
                continue;
            }
            let pause = match self.outbox.next_due().await {
                Ok(Some(due)) => self.clock.now().until(due).min(IDLE_POLL),
                _ => IDLE_POLL,
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause.max(Duration::from_millis(5))) => {}
            }
        }
    }
}
