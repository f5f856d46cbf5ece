//! Where rendered mail goes: an SMTP relay, or the development inbox.
//!
//! The SMTP transport keeps its own small pool of lettre [`AsyncSmtpConnection`]s rather than
//! using lettre's `AsyncSmtpTransport`: lettre opens its sockets without `TCP_NODELAY` and has no
//! hook to set it, and without it every message waits ~40 ms for a delayed ACK (lettre writes
//! the message and its final `.` in two writes). Here the socket is opened by us, with
//! `TCP_NODELAY`, and handed to lettre, which speaks SMTP, STARTTLS and AUTH over it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use enroll_core::clock::Clock;
use enroll_core::delivery::FailureKind;
use enroll_core::model::CapturedMail;
use enroll_core::ports::Inbox;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::render::RenderedMail;

/// Longest wait for a connection to be set up (TCP, greeting, TLS, AUTH), and for one message
/// to be accepted.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A connection idle longer than this is closed instead of reused.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// A connection idle longer than this is checked with `NOOP` before it is reused.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);
const DEFAULT_POOL_SIZE: usize = 4;

/// Why a message was not sent, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub kind: FailureKind,
    pub message: String,
}

impl SendError {
    pub fn temporary(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Temporary,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            message: message.into(),
        }
    }
}

#[async_trait]
pub trait MailTransport: Send + Sync {
    async fn send(&self, mail: &RenderedMail) -> Result<(), SendError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpUrlError {
    #[error(
        "the SMTP URL must look like smtp://[user[:password]@]host[:port][?starttls=required] or smtps://[user[:password]@]host[:port], got {0:?}"
    )]
    Shape(String),
    #[error("the SMTP TLS settings are not valid: {0}")]
    Tls(String),
}

/// The parts of `smtp[s]://[user[:password]@]host[:port][?starttls=required]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SmtpUrl {
    implicit_tls: bool,
    starttls: bool,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
}

fn parse_url(url: &str) -> Result<SmtpUrl, SmtpUrlError> {
    let shape = || SmtpUrlError::Shape(redact_password(url));
    let (implicit_tls, rest) = if let Some(rest) = url.strip_prefix("smtps://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("smtp://") {
        (false, rest)
    } else {
        return Err(shape());
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut starttls = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair {
            "starttls=required" if !implicit_tls => starttls = true,
            _ => return Err(shape()),
        }
    }
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, rest),
    };
    // `[::1]:25` or `host:25`.
    let (host, port) = match hostport.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').ok_or_else(shape)?;
            (host, after.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        },
    };
    let port = match port {
        Some(port) => port.parse().map_err(|_| shape())?,
        None if implicit_tls => 465,
        None => 25,
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(shape());
    }
    let (username, password) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, password)) => (Some(percent_decode(user)), Some(percent_decode(password))),
            None => (Some(percent_decode(info)), None),
        },
        None => (None, None),
    };
    Ok(SmtpUrl {
        implicit_tls,
        starttls,
        host: host.to_owned(),
        port,
        username,
        password,
    })
}

/// `p%40ss` → `p@ss`; malformed escapes stay as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                at += 3;
            }
            None => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// For error messages: `smtp://user:***@host`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[derive(Clone)]
enum Security {
    None,
    StartTls(TlsParameters),
    ImplicitTls(TlsParameters),
}

struct Relay {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
}

struct Idle {
    connection: AsyncSmtpConnection,
    since: Instant,
}

/// SMTP through a small pool of connections with `TCP_NODELAY`.
pub struct SmtpTransport {
    relay: Relay,
    idle: Mutex<Vec<Idle>>,
    /// One permit per connection that may be open (idle or in use).
    permits: Semaphore,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("host", &self.relay.host)
            .field("port", &self.relay.port)
            .finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// `smtp://host[:port]` (plain; port 25), `smtp://host[:port]?starttls=required`, or
    /// `smtps://host[:port]` (implicit TLS; port 465); user and password may be in the URL
    /// (percent-encoded) or given here, where they win over the URL's.
    pub fn from_url(
        url: &str,
        username: Option<String>,
        password: Option<String>,
    ) -> Result<Self, SmtpUrlError> {
        let parsed = parse_url(url)?;
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned())
                .map_err(|error| SmtpUrlError::Tls(error.to_string()))
        };
        let security = if parsed.implicit_tls {
            Security::ImplicitTls(tls(&parsed.host)?)
        } else if parsed.starttls {
            Security::StartTls(tls(&parsed.host)?)
        } else {
            Security::None
        };
        let credentials = username
            .or(parsed.username)
            .map(|user| Credentials::new(user, password.or(parsed.password).unwrap_or_default()));
        Ok(Self {
            relay: Relay {
                host: parsed.host,
                port: parsed.port,
                security,
                credentials,
                hello: ClientId::default(),
            },
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(DEFAULT_POOL_SIZE),
        })
    }

    /// At most `size` connections open at once (default 4); more senders wait for one.
    #[must_use]
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.permits = Semaphore::new(size.max(1));
        self
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pooled connection if one is fresh enough, else `None`.
    async fn reuse(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let Idle {
                mut connection,
                since,
            } = self.idle().pop()?;
            let idle_for = since.elapsed();
            if idle_for < CHECK_AFTER_IDLE
                || (idle_for < MAX_IDLE && connection.test_connected().await)
            {
                return Some(connection);
            }
            connection.abort().await;
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let relay = &self.relay;
        let setup = async {
            let stream = TcpStream::connect((relay.host.as_str(), relay.port))
                .await
                .map_err(|error| format!("could not connect: {error}"))?;
            stream
                .set_nodelay(true)
                .map_err(|error| format!("could not set TCP_NODELAY: {error}"))?;
            let mut connection = match &relay.security {
                Security::ImplicitTls(parameters) => {
                    let stream = tls::wrap(stream, parameters.clone())
                        .await
                        .map_err(|error| format!("TLS failed: {error}"))?;
                    AsyncSmtpConnection::connect_with_transport(Box::new(stream), &relay.hello)
                        .await
                }
                _ => {
                    AsyncSmtpConnection::connect_with_transport(Box::new(stream), &relay.hello)
                        .await
                }
            }
            .map_err(|error| format!("the greeting failed: {error}"))?;
            if let Security::StartTls(parameters) = &relay.security {
                connection
                    .starttls(parameters.clone(), &relay.hello)
                    .await
                    .map_err(|error| format!("STARTTLS failed: {error}"))?;
            }
            if let Some(credentials) = &relay.credentials {
                connection
                    .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await
                    .map_err(|error| format!("authentication failed: {error}"))?;
            }
            Ok::<_, String>(connection)
        };
        let address = format!("{}:{}", relay.host, relay.port);
        // Whatever goes wrong before a message is offered is the relay's state or our settings,
        // not the message's: temporary, so a fixed relay delivers the backlog.
        match tokio::time::timeout(TIMEOUT, setup).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(SendError::temporary(format!(
                "SMTP relay {address}: {error}"
            ))),
            Err(_) => Err(SendError::temporary(format!(
                "SMTP relay {address}: no connection within {} s",
                TIMEOUT.as_secs()
            ))),
        }
    }

    /// One attempt on `connection`; it is returned to the pool only if it is still sound.
    async fn send_on(
        &self,
        mut connection: AsyncSmtpConnection,
        message: &Message,
    ) -> Result<(), Failure> {
        let raw = message.formatted();
        match tokio::time::timeout(TIMEOUT, connection.send(message.envelope(), &raw)).await {
            Ok(Ok(_)) => {
                if !connection.has_broken() {
                    self.idle().push(Idle {
                        connection,
                        since: Instant::now(),
                    });
                }
                Ok(())
            }
            Ok(Err(error)) => {
                connection.abort().await;
                // 5xx: the relay will refuse it again. 4xx, I/O errors: a later try may pass.
                let kind = if error.is_permanent() {
                    FailureKind::Permanent
                } else {
                    FailureKind::Temporary
                };
                Err(Failure {
                    error: SendError {
                        kind,
                        message: format!("SMTP: {error}"),
                    },
                    no_reply: error.status().is_none() && !error.is_client() && !error.is_timeout(),
                })
            }
            Err(_) => Err(Failure {
                error: SendError::temporary(format!(
                    "SMTP: the relay did not accept the message within {} s",
                    TIMEOUT.as_secs()
                )),
                no_reply: false,
            }),
        }
    }
}

/// A failed attempt; `no_reply` when the connection failed without an SMTP reply.
struct Failure {
    error: SendError,
    no_reply: bool,
}

fn build_message(mail: &RenderedMail) -> Result<Message, SendError> {
    let from: Mailbox = mail.from.parse().map_err(|error| {
        SendError::permanent(format!(
            "the sender {:?} is not a mailbox: {error}",
            mail.from
        ))
    })?;
    let to: Address = mail.to.as_str().parse().map_err(|error| {
        SendError::permanent(format!("the recipient is not an address: {error}"))
    })?;
    Message::builder()
        .message_id(Some(mail.message_id_header.clone()))
        .from(from)
        .to(Mailbox::new(None, to))
        .subject(mail.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|error| SendError::permanent(format!("the message could not be built: {error}")))
}

#[async_trait]
impl MailTransport for SmtpTransport {
    async fn send(&self, mail: &RenderedMail) -> Result<(), SendError> {
        let message = build_message(mail)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SendError::temporary("the SMTP transport is closed"))?;
        if let Some(connection) = self.reuse().await {
            match self.send_on(connection, &message).await {
                // A pooled connection the relay closed meanwhile fails without a reply; that
                // says nothing about the message, so it gets a fresh connection at once.
                Err(failure) if failure.no_reply => {
                    tracing::debug!(error = %failure.error, "a pooled SMTP connection failed; reconnecting");
                }
                done => return done.map_err(|failure| failure.error),
            }
        }
        let connection = self.connect().await?;
        self.send_on(connection, &message)
            .await
            .map_err(|failure| failure.error)
    }
}

/// Implicit TLS (`smtps://`): lettre's TLS, under our own socket.
mod tls {
    #![allow(
        deprecated,
        reason = "AsyncNetworkStream is lettre's only way to wrap our socket in its TLS"
    )]

    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_util::io::{AsyncRead as _, AsyncWrite as _};
    use lettre::transport::smtp::client::{AsyncNetworkStream, AsyncTokioStream, TlsParameters};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::TcpStream;

    /// A TLS stream as lettre builds it, seen as a tokio stream.
    #[derive(Debug)]
    pub(super) struct TlsStream(AsyncNetworkStream);

    pub(super) async fn wrap(
        stream: TcpStream,
        parameters: TlsParameters,
    ) -> Result<TlsStream, lettre::transport::smtp::Error> {
        let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(stream));
        stream.upgrade_tls(parameters).await?;
        Ok(TlsStream(stream))
    }

    impl AsyncRead for TlsStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let read = Pin::new(&mut self.0).poll_read(cx, buf.initialize_unfilled());
            read.map_ok(|count| buf.advance(count))
        }
    }

    impl AsyncWrite for TlsStream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_close(cx)
        }
    }

    impl AsyncTokioStream for TlsStream {
        fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
            self.0.peer_addr()
        }
    }
}

/// The development inbox: mail is stored for `/dev/mail` instead of being sent.
pub struct InboxTransport {
    inbox: Arc<dyn Inbox>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for InboxTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InboxTransport")
    }
}

impl InboxTransport {
    pub fn new(inbox: Arc<dyn Inbox>, clock: Arc<dyn Clock>) -> Self {
        Self { inbox, clock }
    }
}

#[async_trait]
impl MailTransport for InboxTransport {
    async fn send(&self, mail: &RenderedMail) -> Result<(), SendError> {
        // `<ms-…@domain>` → `ms-…`: the outbox message's id.
        let inner = mail.message_id_header.trim_matches(['<', '>']);
        let id = inner.split_once('@').map_or(inner, |(id, _)| id);
        let captured = CapturedMail {
            id: id.to_owned(),
            message_id: mail.message_id_header.clone(),
            from: mail.from.clone(),
            to: mail.to.to_string(),
            subject: mail.subject.clone(),
            text: mail.text.clone(),
            html: mail.html.clone(),
            created_at: self.clock.now(),
        };
        self.inbox.capture(&captured).await.map_err(|error| {
            SendError::temporary(format!("could not store the captured mail: {error}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use enroll_testkit::smtp::{Mode, SmtpSink};

    use super::*;

    #[test]
    fn urls_are_parsed_with_their_defaults() {
        let plain = parse_url("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (
                plain.implicit_tls,
                plain.starttls,
                plain.host.as_str(),
                plain.port
            ),
            (false, false, "127.0.0.1", 2525)
        );
        assert_eq!(parse_url("smtp://mail.example.com").unwrap().port, 25);
        let tls = parse_url("smtps://user:p%40ss@mail.example.com").unwrap();
        assert_eq!((tls.implicit_tls, tls.port), (true, 465));
        assert_eq!(
            (tls.username.as_deref(), tls.password.as_deref()),
            (Some("user"), Some("p@ss"))
        );
        let starttls = parse_url("smtp://mail.example.com:587?starttls=required").unwrap();
        assert!(starttls.starttls && !starttls.implicit_tls);
        assert_eq!(parse_url("smtp://[::1]:2525").unwrap().host, "::1");
        for bad in [
            "http://x",
            "smtp://",
            "smtp://host:port",
            "smtp://host?tls=maybe",
            "smtps://host?starttls=required",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_stay_out_of_error_messages() {
        let error = parse_url("smtp://user:secret@host:nope")
            .unwrap_err()
            .to_string();
        assert!(
            !error.contains("secret") && error.contains("user:***@host"),
            "{error}"
        );
    }

    fn mail(locale: &str, to: &str) -> RenderedMail {
        use enroll_core::clock::Timestamp;
        use enroll_core::email::EmailAddress;
        use enroll_core::model::{Locale, MailTemplate};

        let recipient = EmailAddress::parse(to).unwrap();
        let created_at = Timestamp::from_millis(1_800_000_000_000);
        let context = crate::MailContext {
            org_name: "Bäckerei Müller",
            recipient: &recipient,
            code: "7KQX-M2RD-9HTV-PW4C",
            expires_at: Some(created_at.plus(Duration::from_secs(3600))),
            created_at,
            link: None,
        };
        let settings = crate::MailSettings {
            from: "enroll <no-reply@localhost>".to_owned(),
            product_name: "enroll".to_owned(),
            public_url: "http://localhost:8080".to_owned(),
        };
        crate::Renderer::new(None)
            .unwrap()
            .render(
                MailTemplate::Registration,
                &Locale::parse(locale).unwrap(),
                &context,
                &settings,
                "<ms-test@localhost>".to_owned(),
            )
            .unwrap()
    }

    #[tokio::test]
    async fn a_message_reaches_a_real_smtp_server() {
        let sink = SmtpSink::start().await;
        let transport = SmtpTransport::from_url(&sink.url(), None, None).unwrap();
        transport
            .send(&mail("de", "jane@example.com"))
            .await
            .unwrap();
        let received = sink.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(received.len(), 1);
        let received = &received[0];
        assert_eq!(received.from, "no-reply@localhost");
        assert_eq!(received.to, ["jane@example.com"]);
        assert_eq!(received.message_id.as_deref(), Some("<ms-test@localhost>"));
        assert_eq!(
            received.subject.as_deref(),
            Some("Ihr Registrierungscode für Bäckerei Müller")
        );
        assert_eq!(
            received.header("From").as_deref(),
            Some("enroll <no-reply@localhost>")
        );
        assert!(
            received
                .header("Content-Type")
                .unwrap()
                .starts_with("multipart/alternative")
        );
        let text = received.text_body().unwrap();
        assert!(text.contains("Er ist eine Stunde gültig"), "{text}");
        assert!(
            received
                .html_body()
                .unwrap()
                .contains("<strong>Bäckerei Müller</strong>")
        );
        assert_eq!(
            received.registration_code().as_deref(),
            Some("7KQX-M2RD-9HTV-PW4C")
        );
    }

    #[tokio::test]
    async fn relay_answers_map_to_temporary_and_permanent_failures() {
        let sink = SmtpSink::start().await;
        let transport = SmtpTransport::from_url(&sink.url(), None, None).unwrap();
        let message = mail("en", "jane@example.com");
        for (mode, kind, reply) in [
            (Mode::TempFail, FailureKind::Temporary, "421"),
            (Mode::PermFail, FailureKind::Permanent, "550"),
            (Mode::RefuseConnections, FailureKind::Temporary, "greeting"),
        ] {
            sink.set_mode(mode);
            let error = transport.send(&message).await.unwrap_err();
            assert_eq!(error.kind, kind, "{mode:?}: {error}");
            assert!(error.message.contains(reply), "{mode:?}: {error}");
        }
        sink.set_mode(Mode::Accept);
        transport.send(&message).await.unwrap();
        assert_eq!(sink.messages().len(), 1);
        let closed = SmtpTransport::from_url(
            &format!("smtp://127.0.0.1:{}", unused_port().await),
            None,
            None,
        )
        .unwrap();
        let error = closed.send(&message).await.unwrap_err();
        assert_eq!(error.kind, FailureKind::Temporary, "{error}");
        assert!(error.message.contains("could not connect"), "{error}");
    }

    async fn unused_port() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// Without `TCP_NODELAY` each message waits ~40 ms for a delayed ACK: 100 messages on one
    /// connection would take 4 s.
    #[tokio::test]
    async fn one_connection_carries_many_messages_without_delayed_ack_stalls() {
        let sink = SmtpSink::start().await;
        let transport = SmtpTransport::from_url(&sink.url(), None, None)
            .unwrap()
            .with_pool_size(1);
        let message = mail("en", "jane@example.com");
        transport.send(&message).await.unwrap();
        let started = std::time::Instant::now();
        for _ in 0..100 {
            transport.send(&message).await.unwrap();
        }
        let elapsed = started.elapsed();
        assert_eq!(sink.messages().len(), 101);
        assert_eq!(transport.idle().len(), 1, "the connection is reused");
        assert!(
            elapsed < Duration::from_millis(1500),
            "100 messages took {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn a_pooled_connection_the_relay_closed_is_replaced_at_once() {
        let sink = SmtpSink::start().await;
        let transport = SmtpTransport::from_url(&sink.url(), None, None).unwrap();
        let message = mail("en", "jane@example.com");
        transport.send(&message).await.unwrap();
        sink.close_connections();
        tokio::time::sleep(Duration::from_millis(20)).await;
        transport.send(&message).await.unwrap();
        assert_eq!(sink.messages().len(), 2);
    }

    #[test]
    fn credentials_given_apart_win_over_the_url() {
        let transport = SmtpTransport::from_url("smtp://a:b@host", Some("c".into()), None).unwrap();
        assert_eq!(
            transport.relay.credentials,
            Some(Credentials::new("c".into(), "b".into()))
        );
    }
}
