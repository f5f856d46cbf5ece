//! Prometheus metrics: requests by route and status, emails queued, delivered and failed, the
//! depth of the outbox, and the store's own counters (the SQLite writer's batches, commits and
//! syncs).

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use enroll_core::ports::{CounterValue, OutboxSignal};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// Counters read from elsewhere at scrape time (the outbox worker's delivery statistics, the
/// store's own).
pub type CounterSource = Arc<dyn Fn() -> Vec<CounterValue> + Send + Sync>;

struct SourcedCounters(CounterSource);

impl std::fmt::Debug for SourcedCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourcedCounters")
    }
}

impl Collector for SourcedCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for CounterValue { name, help, value } in (self.0)() {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    emails_queued: Counter,
    outbox_depth: Gauge<i64, AtomicI64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(deliveries: CounterSource) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request, by route",
            durations.clone(),
        );
        let emails_queued = Counter::default();
        registry.register(
            "emails_queued",
            "Emails committed to the outbox",
            emails_queued.clone(),
        );
        let outbox_depth = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "outbox_depth",
            "Emails waiting in the outbox (queued or being sent)",
            outbox_depth.clone(),
        );
        registry.register_collector(Box::new(SourcedCounters(deliveries)));
        Self {
            registry,
            requests,
            durations,
            emails_queued,
            outbox_depth,
        }
    }

    pub fn set_outbox_depth(&self, depth: u64) {
        self.outbox_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    pub fn email_queued(&self) {
        self.emails_queued.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Counts each request under its route template (`/auth/registration/code`, not the raw path),
/// so unknown paths cannot grow the label set without bound.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .durations
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Tells the worker a message is waiting, and counts it.
pub struct QueuedSignal {
    pub metrics: Arc<Metrics>,
    pub worker: Arc<dyn OutboxSignal>,
}

impl OutboxSignal for QueuedSignal {
    fn message_enqueued(&self) {
        self.metrics.email_queued();
        self.worker.message_enqueued();
    }
}
