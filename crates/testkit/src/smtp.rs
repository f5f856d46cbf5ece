//! A real SMTP server for tests: it speaks enough ESMTP for lettre over TCP, records what it
//! accepts, and can be switched into failure modes while it runs.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Accept,
    /// `421` at `MAIL FROM`, then the connection is closed: a temporary failure.
    TempFail,
    /// `550` at `RCPT TO`: a permanent failure.
    PermFail,
    /// Closes every new connection at once, before the greeting.
    RefuseConnections,
    /// `451` at `RCPT TO`: a temporary failure of one recipient.
    TempFailRecipient,
    /// Takes the whole message, then closes the connection before answering `250`: the
    /// message arrived, but its sender cannot know, and sends it again.
    DropBeforeOk,
    /// Waits this long before every reply.
    Tarpit(Duration),
}

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, lines ending in `\n`.
    pub data: String,
    pub message_id: Option<String>,
    /// Decoded (RFC 2047 encoded words are undone).
    pub subject: Option<String>,
}

impl ReceivedMail {
    /// A header of the message (the first one of that name), unfolded, as sent.
    pub fn header(&self, name: &str) -> Option<String> {
        split(&self.data)
            .0
            .into_iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// The `text/plain` part, transfer encoding undone.
    pub fn text_body(&self) -> Option<String> {
        find_part(&self.data, "text/plain")
    }

    /// The `text/html` part, transfer encoding undone.
    pub fn html_body(&self) -> Option<String> {
        find_part(&self.data, "text/html")
    }

    /// The first registration code (`XXXX-XXXX-XXXX-XXXX`) in the text part, else in the raw data.
    pub fn registration_code(&self) -> Option<String> {
        self.text_body()
            .and_then(|text| find_registration_code(&text))
            .or_else(|| find_registration_code(&self.data))
    }
}

/// Finds `[2-9A-HJ-NP-Z]{4}(-[2-9A-HJ-NP-Z]{4}){3}`, standing alone, in `text`.
pub fn find_registration_code(text: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let bytes = text.as_bytes();
    let bounded = |at: Option<&u8>| at.is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'-');
    (0..bytes.len().saturating_sub(18)).find_map(|start| {
        let candidate = bytes.get(start..start + 19)?;
        let shaped = candidate.iter().enumerate().all(|(index, byte)| {
            if index % 5 == 4 {
                *byte == b'-'
            } else {
                ALPHABET.contains(byte)
            }
        });
        let before = start.checked_sub(1).and_then(|index| bytes.get(index));
        (shaped && bounded(before) && bounded(bytes.get(start + 19)))
            .then(|| String::from_utf8_lossy(candidate).into_owned())
    })
}

type Headers = Vec<(String, String)>;

/// Headers (unfolded) and body of a message or MIME part.
fn split(entity: &str) -> (Headers, &str) {
    let (head, body) = entity.split_once("\n\n").unwrap_or((entity, ""));
    let mut headers: Headers = Vec::new();
    for line in head.lines() {
        match (line.starts_with([' ', '\t']), headers.last_mut()) {
            (true, Some((_, value))) => {
                value.push(' ');
                value.push_str(line.trim());
            }
            _ => {
                if let Some((key, value)) = line.split_once(':') {
                    headers.push((key.trim().to_owned(), value.trim().to_owned()));
                }
            }
        }
    }
    (headers, body)
}

fn find_part(entity: &str, mime: &str) -> Option<String> {
    let (headers, body) = split(entity);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let content_type = get("Content-Type").unwrap_or("text/plain");
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        let boundary = content_type.split(';').find_map(|param| {
            let (key, value) = param.split_once('=')?;
            (key.trim().eq_ignore_ascii_case("boundary"))
                .then(|| value.trim().trim_matches('"').to_owned())
        })?;
        let delimiter = format!("--{boundary}");
        let parts: Vec<&str> = body.split(&delimiter).skip(1).collect();
        return parts
            .into_iter()
            .filter(|part| !part.starts_with("--"))
            .find_map(|part| find_part(part.strip_prefix('\n').unwrap_or(part), mime));
    }
    if !content_type.to_ascii_lowercase().starts_with(mime) {
        return None;
    }
    let body = body.strip_suffix('\n').unwrap_or(body);
    let bytes = match get("Content-Transfer-Encoding")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("quoted-printable") => quoted_printable(body),
        Some("base64") => base64_lines(body)?,
        _ => body.as_bytes().to_vec(),
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn quoted_printable(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut soft_break = true;
    for line in text.split('\n') {
        if !soft_break {
            out.push(b'\n');
        }
        let line = match line.strip_suffix('=') {
            Some(line) => {
                soft_break = true;
                line
            }
            None => {
                soft_break = false;
                line
            }
        };
        let bytes = line.as_bytes();
        let mut at = 0;
        while let Some(&byte) = bytes.get(at) {
            let hex = bytes
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
            match (byte, hex) {
                (b'=', Some(decoded)) => {
                    out.push(decoded);
                    at += 3;
                }
                _ => {
                    out.push(byte);
                    at += 1;
                }
            }
        }
    }
    out
}

fn base64_lines(text: &str) -> Option<Vec<u8>> {
    let joined: String = text.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .ok()
}

/// Undoes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) in a header value.
fn decode_words(value: &str) -> String {
    let decode = |word: &str| -> Option<String> {
        let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
        let mut parts = inner.splitn(3, '?');
        let (_charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
        let bytes = match encoding {
            "b" | "B" => base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()?,
            "q" | "Q" => quoted_printable(&text.replace('_', " ")),
            _ => return None,
        };
        Some(String::from_utf8_lossy(&bytes).into_owned())
    };
    let mut out = String::new();
    let mut previous_was_word = false;
    for (index, token) in value.split(' ').enumerate() {
        let decoded = decode(token);
        // Space between two encoded words is not part of the text.
        if index > 0 && !(previous_was_word && decoded.is_some()) {
            out.push(' ');
        }
        previous_was_word = decoded.is_some();
        out.push_str(decoded.as_deref().unwrap_or(token));
    }
    out
}

#[derive(Default)]
struct Shared {
    mode: Mutex<Mode>,
    messages: Mutex<Vec<ReceivedMail>>,
    /// Messages taken in [`Mode::DropBeforeOk`], whose `250` never went out.
    dropped: std::sync::atomic::AtomicUsize,
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn messages(&self) -> std::sync::MutexGuard<'_, Vec<ReceivedMail>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close_connections(&self) {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections
            .drain(..)
            .for_each(|connection| connection.abort());
    }
}

/// The server; it stops listening and closes its connections when dropped.
pub struct SmtpSink {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.close_connections();
    }
}

impl SmtpSink {
    /// Listens on `127.0.0.1` at a free port.
    ///
    /// # Panics
    /// When no local port can be bound.
    #[allow(
        clippy::expect_used,
        reason = "test support: failing to bind fails the test"
    )]
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let port = listener.local_addr().expect("a local address").port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accepting.clone();
                let connection = tokio::spawn(async move {
                    let _ = serve(stream, &shared).await;
                });
                let mut connections = accepting
                    .connections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                connections.retain(|connection| !connection.is_finished());
                connections.push(connection.abort_handle());
            }
        });
        Self { port, shared, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Takes effect at the next command, on open connections too.
    pub fn set_mode(&self, mode: Mode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// Drops every open connection, as a relay does that restarts or times idle clients out.
    pub fn close_connections(&self) {
        self.shared.close_connections();
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.messages().clone()
    }

    /// How many messages were taken without their `250` ([`Mode::DropBeforeOk`]).
    pub fn dropped(&self) -> usize {
        self.shared
            .dropped
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `count` messages arrived or `timeout` passed; returns what arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count || tokio::time::Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    if shared.mode() == Mode::RefuseConnections {
        return Ok(());
    }
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    writer.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if let Mode::Tarpit(delay) = shared.mode() {
            tokio::time::sleep(delay).await;
        }
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 sink.test\r\n",
            "MAIL" if shared.mode() == Mode::TempFail => {
                writer.write_all(b"421 4.3.0 try again later\r\n").await?;
                return Ok(());
            }
            "MAIL" => {
                from = address(command);
                to.clear();
                b"250 2.1.0 ok\r\n"
            }
            "RCPT" if shared.mode() == Mode::PermFail => b"550 5.1.1 no such mailbox\r\n",
            "RCPT" if shared.mode() == Mode::TempFailRecipient => {
                b"451 4.3.0 mailbox busy, try again later\r\n"
            }
            "RCPT" => {
                to.push(address(command));
                b"250 2.1.5 ok\r\n"
            }
            "DATA" if to.is_empty() => b"503 5.5.1 no valid recipients\r\n",
            "DATA" => {
                writer.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let data = read_data(&mut reader).await?;
                let mail = ReceivedMail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    message_id: split(&data)
                        .0
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("Message-ID"))
                        .map(|(_, v)| v.clone()),
                    subject: split(&data)
                        .0
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("Subject"))
                        .map(|(_, v)| decode_words(v)),
                    data,
                };
                shared.messages().push(mail);
                if shared.mode() == Mode::DropBeforeOk {
                    shared
                        .dropped
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return Ok(());
                }
                b"250 2.0.0 queued\r\n"
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 2.0.0 ok\r\n"
            }
            "NOOP" => b"250 2.0.0 ok\r\n",
            "QUIT" => {
                writer.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 command not implemented\r\n",
        };
        writer.write_all(reply).await?;
    }
}

/// `MAIL FROM:<a@b> BODY=8BITMIME` → `a@b`.
fn address(command: &str) -> String {
    let start = command.find('<').map_or(0, |index| index + 1);
    let end = command[start..]
        .find('>')
        .map_or(command.len(), |index| start + index);
    command[start..end].to_owned()
}

async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(data);
        }
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "." {
            return Ok(data);
        }
        data.push_str(content.strip_prefix('.').unwrap_or(content));
        data.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_found_only_whole() {
        let found = find_registration_code("Your code: 7KQX-M2RD-9HTV-PW4C.");
        assert_eq!(found.as_deref(), Some("7KQX-M2RD-9HTV-PW4C"));
        assert_eq!(find_registration_code("X7KQX-M2RD-9HTV-PW4C"), None);
        assert_eq!(find_registration_code("1KQX-M2RD-9HTV-PW4C"), None);
        assert_eq!(
            find_registration_code("Ümlaut 7KQX-M2RD-9HTV-PW4C").as_deref(),
            Some("7KQX-M2RD-9HTV-PW4C")
        );
    }

    #[test]
    fn parts_are_decoded() {
        let data = "Subject: =?utf-8?b?R3LDvMOfZQ==?= und =?utf-8?q?f=C3=BCr_Sie?=\n\
            Content-Type: multipart/alternative;\n boundary=\"b1\"\n\n\
            --b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
            F=C3=BCr Sie: 7KQX-M2RD-=\n9HTV-PW4C\n\
            --b1\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n\
            PHA+SGk8L3A+\n--b1--\n";
        assert_eq!(decode_words(&split(data).0[0].1), "Grüße und für Sie");
        let mail = ReceivedMail {
            from: String::new(),
            to: Vec::new(),
            data: data.to_owned(),
            message_id: None,
            subject: None,
        };
        assert_eq!(
            mail.text_body().as_deref(),
            Some("Für Sie: 7KQX-M2RD-9HTV-PW4C")
        );
        assert_eq!(mail.html_body().as_deref(), Some("<p>Hi</p>"));
        assert_eq!(
            mail.registration_code().as_deref(),
            Some("7KQX-M2RD-9HTV-PW4C")
        );
    }
}
