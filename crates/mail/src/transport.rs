//! Where rendered mail goes: an SMTP relay, or the development inbox.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use enroll_core::clock::Clock;
use enroll_core::delivery::FailureKind;
use enroll_core::model::CapturedMail;
use enroll_core::ports::Inbox;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::render::RenderedMail;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub kind: FailureKind,
    pub message: String,
}

impl SendError {
    fn permanent(message: impl Into<String>) -> Self {
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

/// SMTP through a pool of connections.
pub struct SmtpTransport {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpTransport")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpUrlError {
    #[error("the SMTP URL must look like smtp://host:port or smtps://user:password@host:port, got {0:?}")]
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
    let shape = || SmtpUrlError::Shape(url.to_owned());
    let (implicit_tls, rest) = if let Some(rest) = url.strip_prefix("smtps://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("smtp://") {
        (false, rest)
    } else {
        return Err(shape());
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let starttls = query.split('&').any(|pair| pair == "starttls=required");
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| shape())?),
        None => (hostport, if implicit_tls { 465 } else { 25 }),
    };
    if host.is_empty() {
        return Err(shape());
    }
    let (username, password) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, password)) => (Some(user.to_owned()), Some(password.to_owned())),
            None => (Some(info.to_owned()), None),
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

impl SmtpTransport {
    /// `username`/`password` given here win over those in the URL.
    pub fn from_url(url: &str, username: Option<String>, password: Option<String>) -> Result<Self, SmtpUrlError> {
        let parsed = parse_url(url)?;
        let tls = |host: &str| TlsParameters::new(host.to_owned()).map_err(|error| SmtpUrlError::Tls(error.to_string()));
        let tls = if parsed.implicit_tls {
            Tls::Wrapper(tls(&parsed.host)?)
        } else if parsed.starttls {
            Tls::Required(tls(&parsed.host)?)
        } else {
            Tls::None
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&parsed.host)
            .port(parsed.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(30)))
            .pool_config(PoolConfig::new().max_size(4).idle_timeout(Duration::from_secs(60)));
        let username = username.or(parsed.username);
        if let Some(username) = username {
            let password = password.or(parsed.password).unwrap_or_default();
            builder = builder.credentials(Credentials::new(username, password));
        }
        Ok(Self {
            transport: builder.build(),
        })
    }
}

fn build_message(mail: &RenderedMail) -> Result<Message, SendError> {
    let from: Mailbox = mail
        .from
        .parse()
        .map_err(|error| SendError::permanent(format!("the sender {:?} is not a mailbox: {error}", mail.from)))?;
    let to: Mailbox = mail
        .to
        .as_str()
        .parse()
        .map_err(|error| SendError::permanent(format!("the recipient is not a mailbox: {error}")))?;
    Message::builder()
        .message_id(Some(mail.message_id_header.clone()))
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
        .map_err(|error| SendError::permanent(format!("the message could not be built: {error}")))
}

#[async_trait]
impl MailTransport for SmtpTransport {
    async fn send(&self, mail: &RenderedMail) -> Result<(), SendError> {
        let message = build_message(mail)?;
        self.transport.send(message).await.map(drop).map_err(|error| SendError {
            // 5xx: the relay will refuse it again. Anything else (4xx, refused or dropped
            // connections, timeouts) may pass on a later try.
            kind: if error.is_permanent() {
                FailureKind::Permanent
            } else {
                FailureKind::Temporary
            },
            message: error.to_string(),
        })
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
        let id = mail.message_id_header.trim_matches(['<', '>']).to_owned();
        let captured = CapturedMail {
            id: id.split('@').next().unwrap_or(&id).to_owned(),
            message_id: mail.message_id_header.clone(),
            from: mail.from.clone(),
            to: mail.to.to_string(),
            subject: mail.subject.clone(),
            text: mail.text.clone(),
            html: mail.html.clone(),
            created_at: self.clock.now(),
        };
        self.inbox.capture(&captured).await.map_err(|error| SendError {
            kind: FailureKind::Temporary,
            message: format!("could not store the captured mail: {error}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_with_their_defaults() {
        let plain = parse_url("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((plain.implicit_tls, plain.starttls, plain.host.as_str(), plain.port), (false, false, "127.0.0.1", 2525));
        let tls = parse_url("smtps://user:p%40ss@mail.example.com").unwrap();
        assert_eq!((tls.implicit_tls, tls.port), (true, 465));
        assert_eq!((tls.username.as_deref(), tls.password.as_deref()), (Some("user"), Some("p%40ss")));
        assert!(parse_url("smtp://mail.example.com?starttls=required").unwrap().starttls);
        for bad in ["http://x", "smtp://", "smtp://host:port"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
