//! The outbox worker: claims due messages, renders and sends them, and records each outcome.
//! Several workers, on any number of instances, may run on one database: a claim is a lease.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use enroll_core::clock::{Clock, Timestamp};
use enroll_core::delivery::{self, FailureKind, RetryPolicy};
use enroll_core::model::{AttemptOutcome, ClaimedMessage, DeliveryOutcome};
use enroll_core::ports::{CounterValue, Outbox, OutboxSignal};
use enroll_core::secret::Sealer;
use enroll_core::service::SealedContent;
use futures_util::StreamExt as _;
use tokio::sync::Notify;

use crate::render::{MailSettings, RenderedMail, Renderer};
use crate::transport::{MailTransport, SendError};

/// Longest sleep when nothing is due: other instances' messages are found at least this often.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Shortest sleep between empty claims, so a message due "now" that another worker took does
/// not make this one spin.
const MIN_PAUSE: Duration = Duration::from_millis(5);
/// Messages claimed per send at once. A claim is a write, which under load waits behind the
/// requests' writes: claiming a few rounds of sends at a time keeps the sends going between
/// claims. A message that waits in hand too long for its send is left for the next claim
/// (see [`OutboxWorker::deliver`]).
const CLAIMS_PER_SLOT: u32 = 4;
/// First pause before recording a batch's outcomes again; it doubles each time.
const RECORD_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What the worker did, for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub sent: AtomicU64,
    /// Attempts that failed and will be retried.
    pub retried: AtomicU64,
    /// Messages given up: permanent failures, too many attempts, content that cannot be opened
    /// or rendered.
    pub abandoned: AtomicU64,
    /// Messages not sent because their code was replaced, used or expired first.
    pub superseded: AtomicU64,
}

impl DeliveryStats {
    pub fn counters(&self) -> Vec<CounterValue> {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        vec![
            CounterValue::new(
                "emails_sent",
                "Emails accepted by the SMTP relay or the inbox",
                load(&self.sent),
            ),
            CounterValue::new(
                "emails_retried",
                "Delivery attempts that failed and will be retried",
                load(&self.retried),
            ),
            CounterValue::new(
                "emails_failed",
                "Emails abandoned after a permanent failure or too many attempts",
                load(&self.abandoned),
            ),
            CounterValue::new(
                "emails_superseded",
                "Emails not sent because their code was replaced, used or expired first",
                load(&self.superseded),
            ),
        ]
    }
}

/// Wakes a worker when a message is enqueued ([`OutboxSignal`] for the core).
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
    batch_size: u32,
    concurrency: usize,
    wake: Arc<Notify>,
    stats: Arc<DeliveryStats>,
}

impl std::fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker")
            .field("retry", &self.retry)
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl OutboxWorker {
    /// Sends up to `concurrency` messages at once and claims four times as many per batch
    /// (see [`Self::with_batch_size`]). `wake` is the [`WorkerSignal`]'s `Notify`.
    #[allow(
        clippy::too_many_arguments,
        reason = "each part is a distinct collaborator"
    )]
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
        let concurrency = concurrency.max(1);
        Self {
            outbox,
            transport,
            renderer,
            sealer,
            clock,
            retry,
            settings,
            batch_size: concurrency.saturating_mul(CLAIMS_PER_SLOT),
            concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX),
            wake,
            stats,
        }
    }

    /// Messages claimed at once (default: four times the concurrency). More than the
    /// concurrency lets messages wait in this worker's hands while their lease runs; one that
    /// waited for more than a quarter of its lease is left for the next claim.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn stats(&self) -> &Arc<DeliveryStats> {
        &self.stats
    }

    /// Claims what is due now and delivers it, up to the concurrency at once, then records
    /// the outcomes; returns how many messages were claimed (0 also when the claim failed,
    /// which is logged).
    pub async fn run_once(&self) -> usize {
        let lease_ends = tokio::time::Instant::now() + self.retry.lease;
        let claimed = self.claim().await;
        let count = claimed.len();
        let outcomes = self.deliver_all(claimed).await;
        self.record(outcomes, lease_ends).await;
        count
    }

    async fn claim(&self) -> Vec<ClaimedMessage> {
        let now = self.clock.now();
        match self
            .outbox
            .claim(now, now.plus(self.retry.lease), self.batch_size)
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "could not claim outbox messages");
                Vec::new()
            }
        }
    }

    /// Sends what was claimed, up to the concurrency at once; the outcomes of the attempts
    /// made, in no particular order.
    async fn deliver_all(&self, claimed: Vec<ClaimedMessage>) -> Vec<AttemptOutcome> {
        let claimed_at = self.clock.now();
        futures_util::stream::iter(claimed)
            .map(|message| async move {
                let outcome = self.deliver(&message, claimed_at).await?;
                Some(AttemptOutcome {
                    id: message.id,
                    attempt: message.attempts,
                    outcome,
                })
            })
            .buffer_unordered(self.concurrency)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Records a batch's outcomes in one write. A failed write is tried again until shortly
    /// before the leases end (`lease_ends`), so that a short outage of the database does not
    /// send the whole batch again once they lapse.
    async fn record(&self, outcomes: Vec<AttemptOutcome>, lease_ends: tokio::time::Instant) {
        if outcomes.is_empty() {
            return;
        }
        let ids: Vec<_> = outcomes.iter().map(|attempt| attempt.id.clone()).collect();
        let give_up_at = lease_ends - self.retry.lease / 8;
        let mut pause = RECORD_RETRY_PAUSE;
        let recorded = loop {
            match self
                .outbox
                .finish_all(outcomes.clone(), self.clock.now())
                .await
            {
                Ok(recorded) => break Ok(recorded),
                Err(error) if tokio::time::Instant::now() + pause < give_up_at => {
                    tracing::warn!(%error, messages = ids.len(), "could not record deliveries; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(error) => break Err(error),
            }
        };
        match recorded {
            Ok(recorded) => {
                for (id, recorded) in ids.iter().zip(recorded) {
                    if !recorded {
                        // Our lease lapsed and another worker holds the message now; its
                        // outcome is the one that counts.
                        tracing::warn!(message = %id, "the delivery outcome came after the lease ended");
                    }
                }
            }
            // The leases run out and other attempts follow: at least once. One line per
            // message, so each message that may arrive twice is named.
            Err(error) => {
                for id in &ids {
                    tracing::error!(%error, message = %id, "could not record a delivery");
                }
            }
        }
    }

    /// One attempt at `message`, claimed at `claimed_at`; `None` when it waited in hand for
    /// more than a quarter of its lease, so that the lease could run out before the send ends
    /// (it is then left, untouched, for the claim that follows the lease).
    async fn deliver(
        &self,
        message: &ClaimedMessage,
        claimed_at: Timestamp,
    ) -> Option<DeliveryOutcome> {
        // Half the lease for the whole attempt (waiting for a connection included), so the
        // outcome is recorded before another worker may take the message.
        let budget = (self.retry.lease / 2).max(Duration::from_secs(1));
        // So a send that starts ends within three quarters of the lease.
        if claimed_at.until(self.clock.now()) > self.retry.lease / 4 {
            tracing::warn!(message = %message.id, "not sent: it waited too long for a free sender; left for the next claim");
            return None;
        }
        Some(self.attempt(message, budget).await)
    }

    async fn attempt(&self, message: &ClaimedMessage, budget: Duration) -> DeliveryOutcome {
        let to = message.recipient.masked();
        if !delivery::should_send(message, self.clock.now()) {
            tracing::info!(message = %message.id, %to, "not sent: its code was replaced, used or expired");
            self.stats.superseded.fetch_add(1, Ordering::Relaxed);
            return DeliveryOutcome::Superseded;
        }
        let mail = match self.prepare(message) {
            Ok(mail) => mail,
            Err(error) => {
                tracing::error!(message = %message.id, %to, %error, "email abandoned");
                self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                return DeliveryOutcome::Abandoned { error };
            }
        };
        let sent = tokio::time::timeout(budget, self.transport.send(&mail))
            .await
            .unwrap_or_else(|_| {
                Err(SendError::temporary(format!(
                    "no answer within {} s",
                    budget.as_secs_f32()
                )))
            });
        let attempt = message.attempts;
        match sent {
            Ok(()) => {
                tracing::info!(message = %message.id, %to, attempt, "email sent");
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                DeliveryOutcome::Sent
            }
            Err(error) => {
                let outcome = self.retry.after_failure(
                    attempt,
                    error.kind,
                    error.message.clone(),
                    self.clock.now(),
                );
                if let DeliveryOutcome::Retry { at, .. } = &outcome {
                    tracing::warn!(message = %message.id, %to, attempt, retry_at = %at, error = %error.message, "email not sent; will retry");
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                } else {
                    let permanent = error.kind == FailureKind::Permanent;
                    tracing::error!(message = %message.id, %to, attempt, permanent, error = %error.message, "email abandoned");
                    self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                }
                outcome
            }
        }
    }

    /// Unseals and renders; an error here will not go away by retrying.
    fn prepare(&self, message: &ClaimedMessage) -> Result<RenderedMail, String> {
        let sealed = message
            .sealed
            .as_deref()
            .ok_or("the message has no content left to send")?;
        let plain = self
            .sealer
            .open(message.id.as_str(), sealed)
            .map_err(|error| format!("the content could not be opened: {error}"))?;
        let content: SealedContent = serde_json::from_slice(&plain)
            .map_err(|error| format!("the opened content is not a message's content: {error}"))?;
        self.renderer
            .render_message(message, &content, &self.settings)
            .map_err(|error| format!("the email could not be rendered: {error}"))
    }

    /// Delivers until `shutdown` completes; between batches it sleeps until woken by a new
    /// message, until the next retry is due, or for at most a second. A batch in progress is
    /// finished first.
    pub async fn run_until_stopped(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        loop {
            if self.run_once().await > 0 {
                // More may be due; a stop still gets through between batches.
                tokio::select! {
                    biased;
                    () = &mut shutdown => return,
                    () = std::future::ready(()) => continue,
                }
            }
            let pause = match self.outbox.next_due().await {
                Ok(Some(due)) => self.clock.now().until(due).clamp(MIN_PAUSE, IDLE_POLL),
                Ok(None) => IDLE_POLL,
                Err(error) => {
                    tracing::warn!(%error, "could not read when the next message is due");
                    IDLE_POLL
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use enroll_core::clock::{ManualClock, SystemClock, Timestamp};
    use enroll_core::code::{CodeSecret, CodeState};
    use enroll_core::email::EmailAddress;
    use enroll_core::ids::{MessageId, OrgId, UserId};
    use enroll_core::model::{CapturedMail, Locale, MailTemplate, MessageState, MessageSummary};
    use enroll_core::ports::{Inbox, MessageFilter};
    use enroll_core::secret::ServerSecret;
    use enroll_testkit::smtp::{Mode, SmtpSink};

    use super::*;
    use crate::transport::{InboxTransport, SmtpTransport};

    const CODE: &str = "7KQX-M2RD-9HTV-PW4C";

    /// A claimed message whose code is active until `expires_at` (no content sealed yet).
    pub(crate) fn claimed(id: &str, expires_at: Option<Timestamp>) -> ClaimedMessage {
        ClaimedMessage {
            id: MessageId::from_trusted(id.to_owned()),
            org_id: OrgId::generate(),
            org_name: "Acme".to_owned(),
            user_id: Some(UserId::generate()),
            template: MailTemplate::Registration,
            locale: Locale::english(),
            recipient: EmailAddress::parse(&format!("{id}@example.com")).unwrap(),
            sealed: None,
            attempts: 0,
            code_state: Some(CodeState::Active),
            code_expires_at: expires_at,
            created_at: Timestamp::from_millis(0),
        }
    }

    fn sealed(sealer: &Sealer, message: &ClaimedMessage, code: &str) -> Vec<u8> {
        let content = serde_json::to_vec(&SealedContent {
            code: Some(CodeSecret::from_user_input(code)),
            url_template: None,
            link: None,
        })
        .unwrap();
        sealer.seal(message.id.as_str(), &content)
    }

    struct Entry {
        message: ClaimedMessage,
        state: MessageState,
        due: Timestamp,
        lease_until: Timestamp,
        last_error: Option<String>,
    }

    /// The outbox as a list, with the claim/lease rules of the real stores.
    #[derive(Default)]
    pub(crate) struct MemoryOutbox {
        entries: Mutex<Vec<Entry>>,
    }

    impl MemoryOutbox {
        fn push(&self, message: ClaimedMessage, due: Timestamp) {
            self.entries.lock().unwrap().push(Entry {
                message,
                state: MessageState::Queued,
                due,
                lease_until: Timestamp::from_millis(0),
                last_error: None,
            });
        }

        fn state(&self, id: &str) -> (MessageState, u32, Option<String>) {
            let entries = self.entries.lock().unwrap();
            let entry = entries
                .iter()
                .find(|entry| entry.message.id.as_str() == id)
                .unwrap();
            (
                entry.state,
                entry.message.attempts,
                entry.last_error.clone(),
            )
        }
    }

    #[async_trait]
    impl Outbox for MemoryOutbox {
        async fn claim(
            &self,
            now: Timestamp,
            lease_until: Timestamp,
            limit: u32,
        ) -> enroll_core::Result<Vec<ClaimedMessage>> {
            let mut entries = self.entries.lock().unwrap();
            let due = entries.iter_mut().filter(|entry| match entry.state {
                MessageState::Queued => entry.due <= now,
                MessageState::Sending => entry.lease_until <= now,
                _ => false,
            });
            Ok(due
                .take(limit as usize)
                .map(|entry| {
                    entry.state = MessageState::Sending;
                    entry.lease_until = lease_until;
                    entry.message.attempts += 1;
                    entry.message.clone()
                })
                .collect())
        }

        async fn finish(
            &self,
            id: &MessageId,
            attempt: u32,
            outcome: DeliveryOutcome,
            _now: Timestamp,
        ) -> enroll_core::Result<bool> {
            let mut entries = self.entries.lock().unwrap();
            let entry = entries
                .iter_mut()
                .find(|entry| &entry.message.id == id)
                .unwrap();
            assert_eq!(
                (entry.state, entry.message.attempts),
                (MessageState::Sending, attempt),
                "finished without holding the claim"
            );
            (entry.state, entry.last_error) = match outcome {
                DeliveryOutcome::Sent => (MessageState::Sent, None),
                DeliveryOutcome::Superseded => (MessageState::Superseded, None),
                DeliveryOutcome::Abandoned { error } => (MessageState::Abandoned, Some(error)),
                DeliveryOutcome::Retry { at, error } => {
                    entry.due = at;
                    (MessageState::Queued, Some(error))
                }
            };
            if entry.state != MessageState::Queued {
                entry.message.sealed = None;
            }
            Ok(true)
        }

        async fn messages(
            &self,
            _filter: &MessageFilter,
        ) -> enroll_core::Result<Vec<MessageSummary>> {
            Ok(Vec::new())
        }

        async fn depth(&self) -> enroll_core::Result<u64> {
            let entries = self.entries.lock().unwrap();
            let open = entries.iter().filter(|entry| {
                matches!(entry.state, MessageState::Queued | MessageState::Sending)
            });
            Ok(open.count() as u64)
        }

        async fn next_due(&self) -> enroll_core::Result<Option<Timestamp>> {
            let entries = self.entries.lock().unwrap();
            let queued = entries
                .iter()
                .filter(|entry| entry.state == MessageState::Queued);
            Ok(queued.map(|entry| entry.due).min())
        }
    }

    /// Records what it is given and answers from a script (then `Ok`).
    #[derive(Default)]
    struct FakeTransport {
        sent: Mutex<Vec<RenderedMail>>,
        answers: Mutex<Vec<Result<(), SendError>>>,
    }

    #[async_trait]
    impl MailTransport for FakeTransport {
        async fn send(&self, mail: &RenderedMail) -> Result<(), SendError> {
            self.sent.lock().unwrap().push(mail.clone());
            let mut answers = self.answers.lock().unwrap();
            if answers.is_empty() {
                Ok(())
            } else {
                answers.remove(0)
            }
        }
    }

    struct Setup {
        outbox: Arc<MemoryOutbox>,
        sealer: Sealer,
        clock: Arc<ManualClock>,
        stats: Arc<DeliveryStats>,
    }

    impl Setup {
        fn new() -> Self {
            Self {
                outbox: Arc::new(MemoryOutbox::default()),
                sealer: ServerSecret::generate().sealer(),
                clock: Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000))),
                stats: Arc::new(DeliveryStats::default()),
            }
        }

        /// Queues a message with a code valid for a day, due now.
        fn enqueue(&self, id: &str) -> ClaimedMessage {
            let now = self.clock.now();
            let mut message = claimed(id, Some(now.plus(Duration::from_secs(86_400))));
            message.created_at = now;
            message.sealed = Some(sealed(&self.sealer, &message, CODE));
            self.outbox.push(message.clone(), now);
            message
        }

        fn worker(
            &self,
            transport: Arc<dyn MailTransport>,
            clock: Arc<dyn Clock>,
            retry: RetryPolicy,
        ) -> OutboxWorker {
            OutboxWorker::new(
                self.outbox.clone(),
                transport,
                Renderer::new(None).unwrap(),
                self.sealer.clone(),
                clock,
                retry,
                MailSettings {
                    from: "enroll <no-reply@localhost>".to_owned(),
                    product_name: "enroll".to_owned(),
                    public_url: "http://localhost:8080".to_owned(),
                },
                4,
                Arc::new(Notify::new()),
                self.stats.clone(),
            )
        }

        fn fake_worker(&self, transport: Arc<FakeTransport>) -> OutboxWorker {
            self.worker(transport, self.clock.clone(), RetryPolicy::default())
        }
    }

    fn count(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_message_is_rendered_with_its_unsealed_code_and_sent() {
        let setup = Setup::new();
        let message = setup.enqueue("ms-1");
        let transport = Arc::new(FakeTransport::default());
        let worker = setup.fake_worker(transport.clone());
        assert_eq!(worker.run_once().await, 1);
        assert_eq!(setup.outbox.state("ms-1").0, MessageState::Sent);
        let sent = transport.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, message.recipient);
        assert_eq!(sent[0].message_id_header, "<ms-1@localhost>");
        assert!(sent[0].text.contains(CODE) && sent[0].html.contains(CODE));
        assert_eq!(count(&setup.stats.sent), 1);
        assert_eq!(
            worker.run_once().await,
            0,
            "a sent message is not claimed again"
        );
    }

    #[tokio::test]
    async fn replaced_used_and_expired_codes_are_not_sent() {
        let setup = Setup::new();
        let now = setup.clock.now();
        for (id, state, expires) in [
            (
                "ms-replaced",
                CodeState::Superseded,
                now.plus(Duration::from_secs(60)),
            ),
            (
                "ms-used",
                CodeState::Used,
                now.plus(Duration::from_secs(60)),
            ),
            ("ms-expired", CodeState::Active, now),
        ] {
            let mut message = claimed(id, Some(expires));
            message.code_state = Some(state);
            message.sealed = Some(sealed(&setup.sealer, &message, CODE));
            setup.outbox.push(message, now);
        }
        let transport = Arc::new(FakeTransport::default());
        assert_eq!(setup.fake_worker(transport.clone()).run_once().await, 3);
        assert!(transport.sent.lock().unwrap().is_empty());
        for id in ["ms-replaced", "ms-used", "ms-expired"] {
            assert_eq!(setup.outbox.state(id).0, MessageState::Superseded, "{id}");
        }
        assert_eq!(count(&setup.stats.superseded), 3);
    }

    #[tokio::test]
    async fn content_that_cannot_be_opened_is_abandoned_without_holding_up_the_others() {
        let setup = Setup::new();
        let now = setup.clock.now();
        let mut foreign = claimed("ms-foreign", Some(now.plus(Duration::from_secs(60))));
        foreign.sealed = Some(sealed(&ServerSecret::generate().sealer(), &foreign, CODE));
        setup.outbox.push(foreign, now);
        let mut empty = claimed("ms-empty", Some(now.plus(Duration::from_secs(60))));
        empty.sealed = None;
        setup.outbox.push(empty, now);
        setup.enqueue("ms-good");
        let transport = Arc::new(FakeTransport::default());
        assert_eq!(setup.fake_worker(transport.clone()).run_once().await, 3);
        let (state, attempts, error) = setup.outbox.state("ms-foreign");
        assert_eq!((state, attempts), (MessageState::Abandoned, 1));
        assert!(error.unwrap().contains("could not be opened"));
        let (state, _, error) = setup.outbox.state("ms-empty");
        assert_eq!(state, MessageState::Abandoned);
        assert!(error.unwrap().contains("no content"));
        assert_eq!(setup.outbox.state("ms-good").0, MessageState::Sent);
        assert_eq!(transport.sent.lock().unwrap().len(), 1);
        assert_eq!(
            (count(&setup.stats.abandoned), count(&setup.stats.sent)),
            (2, 1)
        );
    }

    #[tokio::test]
    async fn temporary_failures_are_retried_later_until_attempts_run_out() {
        let setup = Setup::new();
        setup.enqueue("ms-1");
        let transport = Arc::new(FakeTransport::default());
        let retry = RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        };
        let worker = setup.worker(transport.clone(), setup.clock.clone(), retry);
        *transport.answers.lock().unwrap() = vec![Err(SendError::temporary("421 busy")); 2];
        assert_eq!(worker.run_once().await, 1);
        let (state, attempts, error) = setup.outbox.state("ms-1");
        assert_eq!(
            (state, attempts, error.as_deref()),
            (MessageState::Queued, 1, Some("421 busy"))
        );
        assert_eq!(worker.run_once().await, 0, "not due before its retry time");
        setup.clock.advance(retry.base_delay);
        assert_eq!(worker.run_once().await, 1);
        assert_eq!(setup.outbox.state("ms-1").0, MessageState::Abandoned);
        assert_eq!(
            (count(&setup.stats.retried), count(&setup.stats.abandoned)),
            (1, 1)
        );
    }

    #[tokio::test]
    async fn permanent_failures_are_abandoned_at_once() {
        let setup = Setup::new();
        setup.enqueue("ms-1");
        let transport = Arc::new(FakeTransport::default());
        *transport.answers.lock().unwrap() = vec![Err(SendError::permanent("550 no such user"))];
        assert_eq!(setup.fake_worker(transport).run_once().await, 1);
        let (state, attempts, error) = setup.outbox.state("ms-1");
        assert_eq!(
            (state, attempts, error.as_deref()),
            (MessageState::Abandoned, 1, Some("550 no such user"))
        );
    }

    #[derive(Default)]
    struct MemoryInbox(Mutex<Vec<CapturedMail>>);

    #[async_trait]
    impl Inbox for MemoryInbox {
        async fn capture(&self, mail: &CapturedMail) -> enroll_core::Result<()> {
            self.0.lock().unwrap().push(mail.clone());
            Ok(())
        }

        async fn captured(
            &self,
            _recipient: Option<&str>,
        ) -> enroll_core::Result<Vec<CapturedMail>> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    /// Takes `took` of the manual clock's time per send.
    struct SlowTransport {
        clock: Arc<ManualClock>,
        took: Duration,
    }

    #[async_trait]
    impl MailTransport for SlowTransport {
        async fn send(&self, _mail: &RenderedMail) -> Result<(), SendError> {
            // Lets the other senders start first, as a send over the network would.
            tokio::task::yield_now().await;
            self.clock.advance(self.took);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_message_left_waiting_for_a_quarter_of_its_lease_is_not_sent_but_left_for_the_next_claim()
     {
        let setup = Setup::new();
        for n in 1..=8 {
            setup.enqueue(&format!("ms-{n}"));
        }
        let retry = RetryPolicy::default();
        // Four senders (the setup's concurrency) and eight messages claimed at once: the
        // first four sends take a third of the lease each, so the other four would start past
        // a quarter of it.
        let transport = Arc::new(SlowTransport {
            clock: setup.clock.clone(),
            took: retry.lease / 3,
        });
        let worker = setup.worker(transport, setup.clock.clone(), retry);
        assert_eq!(worker.run_once().await, 8, "all claimed");
        let states: Vec<_> = (1..=8)
            .map(|n| setup.outbox.state(&format!("ms-{n}")).0)
            .collect();
        assert_eq!(
            states
                .iter()
                .filter(|&&state| state == MessageState::Sent)
                .count(),
            4,
            "{states:?}"
        );
        assert_eq!(
            states
                .iter()
                .filter(|&&state| state == MessageState::Sending)
                .count(),
            4,
            "the others keep their lease, to be claimed again once it ends: {states:?}"
        );
        assert_eq!(count(&setup.stats.sent), 4);
    }

    #[tokio::test]
    async fn the_inbox_transport_captures_the_mail_under_its_message_id() {
        let setup = Setup::new();
        let message = setup.enqueue("ms-1");
        let inbox = Arc::new(MemoryInbox::default());
        let transport = Arc::new(InboxTransport::new(inbox.clone(), setup.clock.clone()));
        let worker = setup.worker(transport, setup.clock.clone(), RetryPolicy::default());
        assert_eq!(worker.run_once().await, 1);
        let captured = inbox.0.lock().unwrap().clone();
        assert_eq!(captured.len(), 1);
        assert_eq!(
            (captured[0].id.as_str(), captured[0].message_id.as_str()),
            ("ms-1", "<ms-1@localhost>")
        );
        assert_eq!(captured[0].to, message.recipient.as_str());
        assert_eq!(captured[0].from, "enroll <no-reply@localhost>");
        assert!(captured[0].text.contains(CODE));
        assert_eq!(captured[0].created_at, setup.clock.now());
    }

    #[tokio::test]
    async fn a_wake_up_starts_delivery_at_once_and_a_stop_ends_the_loop() {
        let setup = Setup::new();
        let transport = Arc::new(FakeTransport::default());
        let worker = Arc::new(setup.worker(
            transport.clone(),
            Arc::new(SystemClock),
            RetryPolicy::default(),
        ));
        let signal = WorkerSignal(worker.wake.clone());
        let stop = Arc::new(Notify::new());
        let running = tokio::spawn(worker.clone().run_until_stopped({
            let stop = stop.clone();
            async move { stop.notified().await }
        }));
        // Let the loop go idle, then enqueue "now" (the system clock's now) and signal.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut message = claimed("ms-1", None);
        message.code_state = None;
        message.sealed = Some(sealed(&setup.sealer, &message, CODE));
        setup.outbox.push(message, SystemClock.now());
        signal.message_enqueued();
        let started = tokio::time::Instant::now();
        while setup.outbox.state("ms-1").0 != MessageState::Sent {
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "not delivered promptly"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.notify_one();
        tokio::time::timeout(Duration::from_secs(2), running)
            .await
            .unwrap()
            .unwrap();
    }

    // Through real SMTP: lettre over TCP to the test sink.

    fn sink_worker(setup: &Setup, sink: &SmtpSink) -> Arc<OutboxWorker> {
        let transport = Arc::new(SmtpTransport::from_url(&sink.url(), None, None).unwrap());
        let retry = RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(100),
            lease: Duration::from_secs(10),
        };
        Arc::new(setup.worker(transport, Arc::new(SystemClock), retry))
    }

    fn enqueue_now(setup: &Setup, id: &str) {
        let now = SystemClock.now();
        let mut message = claimed(id, Some(now.plus(Duration::from_secs(86_400))));
        message.created_at = now;
        message.sealed = Some(sealed(&setup.sealer, &message, CODE));
        setup.outbox.push(message, now);
    }

    #[tokio::test]
    async fn a_relay_that_defers_gets_the_message_exactly_once_when_it_recovers() {
        let sink = SmtpSink::start().await;
        sink.set_mode(Mode::TempFail);
        let setup = Setup::new();
        enqueue_now(&setup, "ms-1");
        let worker = sink_worker(&setup, &sink);
        let stop = Arc::new(Notify::new());
        let running = tokio::spawn(worker.clone().run_until_stopped({
            let stop = stop.clone();
            async move { stop.notified().await }
        }));
        let started = tokio::time::Instant::now();
        while setup.outbox.state("ms-1").1 < 3 {
            assert!(started.elapsed() < Duration::from_secs(5), "no retries");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(sink.messages().is_empty());
        let (_, _, error) = setup.outbox.state("ms-1");
        assert!(error.unwrap().contains("421"));
        sink.set_mode(Mode::Accept);
        let received = sink.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(received.len(), 1);
        while setup.outbox.state("ms-1").0 != MessageState::Sent {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not recorded as sent"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sink.messages().len(), 1, "delivered exactly once");
        assert_eq!(received[0].message_id.as_deref(), Some("<ms-1@localhost>"));
        assert_eq!(received[0].registration_code().as_deref(), Some(CODE));
        assert!(count(&setup.stats.retried) >= 2);
        assert_eq!(count(&setup.stats.sent), 1);
        stop.notify_one();
        running.await.unwrap();
    }

    #[tokio::test]
    async fn a_relay_that_refuses_the_recipient_abandons_the_message_after_one_attempt() {
        let sink = SmtpSink::start().await;
        sink.set_mode(Mode::PermFail);
        let setup = Setup::new();
        enqueue_now(&setup, "ms-1");
        let worker = sink_worker(&setup, &sink);
        assert_eq!(worker.run_once().await, 1);
        let (state, attempts, error) = setup.outbox.state("ms-1");
        assert_eq!((state, attempts), (MessageState::Abandoned, 1));
        assert!(error.unwrap().contains("550"));
        assert_eq!(worker.run_once().await, 0);
        assert!(sink.messages().is_empty());
        assert_eq!(count(&setup.stats.abandoned), 1);
    }
}
