//! The load generator: N connections (HTTP/1.1, or HTTP/2 for gRPC), each sending its next
//! request as soon as the previous answer is read, for a warm-up and then a measured period;
//! or through a finite list of requests. Records every measured request's latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 without TLS (h2c, prior knowledge), one stream at a time per connection.
    Http2,
}

/// What counts as a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A `2xx` status.
    Success,
    /// `200` and `grpc-status: 0` (in the headers or the trailers).
    Grpc,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A JSON body.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.headers.push((
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        self.body = Bytes::from(body.to_string());
        self
    }

    pub fn bearer(mut self, token: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            self.headers.push((hyper::header::AUTHORIZATION, value));
        }
        self
    }

    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        self
    }

    pub fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
}

/// The request a connection sends next: `(connection, its request number)`; `None` ends it.
pub type Requests = Arc<dyn Fn(usize, u64) -> Option<Call> + Send + Sync>;

/// A load to drive.
#[derive(Clone)]
pub struct Load {
    pub protocol: Protocol,
    pub check: Check,
    pub connections: usize,
    pub requests: Requests,
}

/// What one driven period measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Requests completed inside the measured period (successes and failures).
    pub requests: u64,
    pub failures: u64,
    /// Successes over the whole run, warm-up included.
    pub successes_total: u64,
    pub elapsed: Duration,
    /// Latencies of the measured requests, sorted, in microseconds.
    pub latencies: Vec<u32>,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
}

impl Measured {
    pub fn per_second(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at `quantile` (0..=1).
    pub fn quantile(&self, quantile: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() as f64 * quantile).ceil() as usize)
            .clamp(1, self.latencies.len());
        Duration::from_micros(u64::from(self.latencies[rank - 1]))
    }

    pub fn max(&self) -> Duration {
        self.latencies.last().map_or(Duration::ZERO, |&micros| {
            Duration::from_micros(u64::from(micros))
        })
    }

    /// Adds another period's (a round, or another instance's share) to this one; the
    /// latencies are sorted again.
    pub fn merge(&mut self, other: Self) {
        self.absorb(other);
        self.latencies.sort_unstable();
    }

    /// As [`Self::merge`], leaving the latencies unsorted.
    fn absorb(&mut self, other: Self) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.successes_total += other.successes_total;
        self.latencies.extend(other.latencies);
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// `h2` itself rather than hyper's client over it, which hands each request to the
    /// connection's task through a channel and spawns a task to send its body: the box's two
    /// cores are the server's and the load generator's, so what the generator spends is taken
    /// from the server.
    Http2(h2::client::SendRequest<Bytes>),
}

/// What came back: the status, the `grpc-status` in the headers or the trailers, the body.
struct Answer {
    status: u16,
    grpc_status: Option<HeaderValue>,
    body: Bytes,
}

impl Sender {
    async fn connect(address: SocketAddr, protocol: Protocol) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("could not connect to {address}"))?;
        stream.set_nodelay(true)?;
        Ok(match protocol {
            Protocol::Http1 => {
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                Self::Http1(sender)
            }
            Protocol::Http2 => {
                let (sender, connection) = h2::client::handshake(stream).await?;
                tokio::spawn(connection);
                Self::Http2(sender)
            }
        })
    }

    async fn send(&mut self, address: SocketAddr, call: &Call) -> anyhow::Result<Answer> {
        match self {
            Self::Http1(sender) => {
                let request = head(call, call.path.clone()).header(hyper::header::HOST, "bench");
                sender.ready().await?;
                let response = sender
                    .send_request(request.body(Full::new(call.body.clone()))?)
                    .await?;
                let status = response.status().as_u16();
                let in_headers = grpc_status(response.headers());
                let collected = response.into_body().collect().await?;
                Ok(Answer {
                    status,
                    grpc_status: in_headers.or_else(|| collected.trailers().and_then(grpc_status)),
                    body: collected.to_bytes(),
                })
            }
            Self::Http2(sender) => {
                let request = head(call, format!("http://{address}{}", call.path));
                futures_util::future::poll_fn(|context| sender.poll_ready(context)).await?;
                let (response, mut body) =
                    sender.send_request(request.body(())?, call.body.is_empty())?;
                if !call.body.is_empty() {
                    body.send_data(call.body.clone(), true)?;
                }
                let (head, mut received) = response.await?.into_parts();
                let mut data = Vec::new();
                while let Some(chunk) = received.data().await {
                    let chunk = chunk?;
                    received.flow_control().release_capacity(chunk.len())?;
                    data.extend_from_slice(&chunk);
                }
                let trailers = received.trailers().await?;
                Ok(Answer {
                    status: head.status.as_u16(),
                    grpc_status: grpc_status(&head.headers)
                        .or_else(|| trailers.as_ref().and_then(grpc_status)),
                    body: Bytes::from(data),
                })
            }
        }
    }
}

/// The request's line and headers, to `uri`.
fn head(call: &Call, uri: String) -> hyper::http::request::Builder {
    let mut request = Request::builder().method(call.method.clone()).uri(uri);
    for (name, value) in &call.headers {
        request = request.header(name, value);
    }
    request
}

/// The value shares the answer's buffer: nothing is copied per call.
fn grpc_status(headers: &hyper::HeaderMap) -> Option<HeaderValue> {
    headers.get("grpc-status").cloned()
}

/// Sends `call` and reads the whole answer: whether it succeeded, and its body.
async fn exchange(
    sender: &mut Sender,
    address: SocketAddr,
    call: &Call,
    check: Check,
) -> anyhow::Result<(bool, u16, Bytes)> {
    let answer = sender.send(address, call).await?;
    let ok = match check {
        Check::Success => (200..300).contains(&answer.status),
        Check::Grpc => answer.status == 200 && answer.grpc_status.is_some_and(|grpc| grpc == "0"),
    };
    Ok((ok, answer.status, answer.body))
}

fn describe(call: &Call, status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    format!("{} {} answered {status}: {text}", call.method, call.path)
}

/// Drives `load` against `address` for `warmup`, then measures for `duration`.
pub async fn drive(
    address: SocketAddr,
    load: &Load,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Measured> {
    drive_split(&[address], load, warmup, duration).await
}

/// As [`drive`], the connections spread over several servers in turn.
pub async fn drive_split(
    addresses: &[SocketAddr],
    load: &Load,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let measure_from = started + warmup;
    let stop_at = measure_from + duration;
    let mut workers = Vec::with_capacity(load.connections);
    for connection in 0..load.connections {
        let address = addresses[connection % addresses.len()];
        let load = load.clone();
        workers.push(tokio::spawn(async move {
            let mut measured = Measured::default();
            let mut sender = Sender::connect(address, load.protocol).await?;
            let mut sequence = 0u64;
            while Instant::now() < stop_at {
                let Some(call) = (load.requests)(connection, sequence) else {
                    break;
                };
                sequence += 1;
                let sent = Instant::now();
                let outcome = exchange(&mut sender, address, &call, load.check).await;
                let done = Instant::now();
                let ok = match &outcome {
                    Ok((ok, status, body)) => {
                        if !ok && measured.first_failure.is_none() {
                            measured.first_failure = Some(describe(&call, *status, body));
                        }
                        *ok
                    }
                    Err(error) => {
                        if measured.first_failure.is_none() {
                            measured.first_failure =
                                Some(format!("{} {}: {error:#}", call.method, call.path));
                        }
                        false
                    }
                };
                if ok {
                    measured.successes_total += 1;
                }
                if sent >= measure_from && done <= stop_at {
                    measured.requests += 1;
                    if !ok {
                        measured.failures += 1;
                    }
                    let micros = done.duration_since(sent).as_micros();
                    measured
                        .latencies
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
                if outcome.is_err() {
                    // The connection may be gone: a new one, as a client would.
                    sender = Sender::connect(address, load.protocol).await?;
                }
            }
            anyhow::Ok(measured)
        }));
    }
    let mut total = join(workers).await?;
    total.elapsed = duration;
    Ok(total)
}

/// Sends every request of `load` once (each connection until its requests end), timing the
/// whole: for finite work such as a round of verifications.
pub async fn run_through(address: SocketAddr, load: &Load) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut workers = Vec::with_capacity(load.connections);
    for connection in 0..load.connections {
        let load = load.clone();
        workers.push(tokio::spawn(async move {
            let mut measured = Measured::default();
            let mut sender = Sender::connect(address, load.protocol).await?;
            let mut sequence = 0u64;
            while let Some(call) = (load.requests)(connection, sequence) {
                sequence += 1;
                let sent = Instant::now();
                let outcome = exchange(&mut sender, address, &call, load.check).await;
                let micros = sent.elapsed().as_micros();
                measured.requests += 1;
                measured
                    .latencies
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
                match outcome {
                    Ok((true, _, _)) => measured.successes_total += 1,
                    Ok((false, status, body)) => {
                        measured.failures += 1;
                        if measured.first_failure.is_none() {
                            measured.first_failure = Some(describe(&call, status, &body));
                        }
                    }
                    Err(error) => {
                        measured.failures += 1;
                        if measured.first_failure.is_none() {
                            measured.first_failure =
                                Some(format!("{} {}: {error:#}", call.method, call.path));
                        }
                        sender = Sender::connect(address, load.protocol).await?;
                    }
                }
            }
            anyhow::Ok(measured)
        }));
    }
    let mut total = join(workers).await?;
    // Once every connection is through: the time the whole run took.
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Sends each call once over `connections` connections and returns the answers' bodies in the
/// calls' order; fails on the first answer that is not a success.
pub async fn fetch_all(
    address: SocketAddr,
    protocol: Protocol,
    check: Check,
    connections: usize,
    calls: Vec<Call>,
) -> anyhow::Result<Vec<Bytes>> {
    let calls = Arc::new(calls);
    let connections = connections.clamp(1, calls.len().max(1));
    let mut workers = Vec::with_capacity(connections);
    for connection in 0..connections {
        let calls = calls.clone();
        workers.push(tokio::spawn(async move {
            let mut sender = Sender::connect(address, protocol).await?;
            let mut bodies = Vec::new();
            for index in (connection..calls.len()).step_by(connections) {
                let call = &calls[index];
                let (ok, status, body) = exchange(&mut sender, address, call, check).await?;
                anyhow::ensure!(ok, "{}", describe(call, status, &body));
                bodies.push((index, body));
            }
            anyhow::Ok(bodies)
        }));
    }
    let mut bodies = vec![Bytes::new(); calls.len()];
    for worker in workers {
        for (index, body) in worker.await?? {
            bodies[index] = body;
        }
    }
    Ok(bodies)
}

/// Adds up the connections' measurements, latencies sorted; the caller sets the time they took.
async fn join(
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<Measured>>>,
) -> anyhow::Result<Measured> {
    let mut total = Measured::default();
    for worker in workers {
        total.absorb(worker.await??);
    }
    total.latencies.sort_unstable();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    const DELAY: Duration = Duration::from_millis(30);

    /// An HTTP/1.1 server that answers every request `DELAY` late: 204, or 500 for `/fail`.
    async fn slow_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("its address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            return;
                        }
                        received.extend_from_slice(&buffer[..read]);
                        while let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                            let request: Vec<u8> = received.drain(..end + 4).collect();
                            tokio::time::sleep(DELAY).await;
                            let status = if request.starts_with(b"GET /fail ") {
                                "500 Internal Server Error"
                            } else {
                                "204 No Content"
                            };
                            let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        address
    }

    /// An HTTP/2 server answering as gRPC does: 200, the request's body echoed, and the
    /// status in the trailers, `0` but for `/fail`, which answers `13`.
    async fn grpc_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("its address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut connection = h2::server::handshake(stream).await.expect("h2");
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        let failed = request.uri().path() == "/fail";
                        let mut body = request.into_body();
                        let mut echoed = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            echoed.extend_from_slice(&chunk);
                        }
                        let head = hyper::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .expect("a head");
                        let mut send = respond.send_response(head, false).expect("sent");
                        send.send_data(Bytes::from(echoed), false).expect("data");
                        let mut trailers = hyper::HeaderMap::new();
                        let status = if failed { "13" } else { "0" };
                        trailers.insert("grpc-status", HeaderValue::from_static(status));
                        send.send_trailers(trailers).expect("trailers");
                    }
                });
            }
        });
        address
    }

    /// Over HTTP/2 a call's body is sent, the answer's read whole, and its `grpc-status` is
    /// taken from the trailers.
    #[tokio::test]
    async fn grpc_calls_go_over_http2_and_are_judged_by_their_trailers() {
        let address = grpc_server().await;
        let call = |path: &str, body: &'static [u8]| {
            Call::new(Method::POST, path)
                .header("content-type", "application/grpc")
                .body(Bytes::from_static(body))
        };
        let bodies = fetch_all(
            address,
            Protocol::Http2,
            Check::Grpc,
            2,
            vec![call("/ok", b"one"), call("/ok", b"two"), call("/ok", b"")],
        )
        .await
        .expect("every call succeeds");
        assert_eq!(bodies, [&b"one"[..], &b"two"[..], &b""[..]]);
        let failed = fetch_all(
            address,
            Protocol::Http2,
            Check::Grpc,
            1,
            vec![call("/fail", b"three")],
        )
        .await
        .expect_err("grpc-status 13 is a failure");
        assert!(format!("{failed:#}").contains("/fail"), "{failed:#}");
    }

    /// Each connection's calls go one after the other, so the run lasts as long as its longest
    /// connection: the elapsed time is taken once every connection is through, and the rate
    /// is the requests over it (a run timed from when its connections started once reported
    /// rounds that never added up).
    #[tokio::test]
    async fn a_run_through_lasts_until_every_connection_is_through() {
        let address = slow_server().await;
        let load = Load {
            protocol: Protocol::Http1,
            check: Check::Success,
            connections: 3,
            requests: Arc::new(|connection, sequence| {
                let path = if connection == 2 && sequence == 0 {
                    "/fail"
                } else {
                    "/ok"
                };
                (sequence < 4).then(|| Call::new(Method::GET, path))
            }),
        };
        let measured = run_through(address, &load).await.expect("a run");
        assert_eq!(measured.requests, 12);
        assert_eq!(measured.failures, 1);
        assert_eq!(measured.successes_total, 11);
        assert!(
            measured
                .first_failure
                .as_deref()
                .is_some_and(|failure| failure.contains("/fail")),
            "{:?}",
            measured.first_failure
        );
        assert_eq!(measured.latencies.len(), 12);
        assert!(
            measured.latencies.iter().all(|&micros| micros >= 30_000),
            "{:?}",
            measured.latencies
        );
        assert!(
            measured.elapsed >= 4 * DELAY && measured.elapsed < 40 * DELAY,
            "{:?}",
            measured.elapsed
        );
        let rate = measured.per_second();
        assert!(
            rate > 0.0 && rate <= 12.0 / (4.0 * DELAY.as_secs_f64()),
            "{rate}"
        );
    }
}
