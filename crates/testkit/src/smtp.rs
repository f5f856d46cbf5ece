//! A real SMTP server for tests: it speaks enough ESMTP for lettre over TCP, records what it
//! accepts, and can be switched into failure modes while it runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// `421` at `MAIL FROM`: a temporary failure.
    TempFail,
    /// `550` at `RCPT TO`: a permanent failure.
    PermFail,
    /// Closes every connection at once, as if nothing listened.
    RefuseConnections,
}

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed.
    pub data: String,
    pub message_id: Option<String>,
    pub subject: Option<String>,
}

impl ReceivedMail {
    /// The first registration code (`XXXX-XXXX-XXXX-XXXX`) in the message.
    pub fn registration_code(&self) -> Option<String> {
        find_registration_code(&self.data)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.data, name)
    }
}

fn header(data: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    data.lines()
        .take_while(|line| !line.is_empty())
        .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
        .map(|line| line[prefix.len()..].trim().to_owned())
}

/// Finds `XXXX-XXXX-XXXX-XXXX` from the registration-code alphabet in `text`.
pub fn find_registration_code(text: &str) -> Option<String> {
    const ALPHABET: &str = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(18)).find_map(|start| {
        let candidate = text.get(start..start + 19)?;
        let shaped = candidate.char_indices().all(|(index, c)| {
            if index % 5 == 4 {
                c == '-'
            } else {
                ALPHABET.contains(c)
            }
        });
        let bounded = |at: Option<&u8>| at.is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'-');
        let before = start.checked_sub(1).and_then(|index| bytes.get(index));
        (shaped && bounded(before) && bounded(bytes.get(start + 19))).then(|| candidate.to_owned())
    })
}

#[derive(Default)]
struct Shared {
    mode: Mutex<Option<Mode>>,
    messages: Mutex<Vec<ReceivedMail>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        self.mode.lock().map(|mode| mode.unwrap_or(Mode::Accept)).unwrap_or(Mode::Accept)
    }
}

/// The server; it stops when dropped.
pub struct SmtpSink {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Listens on `127.0.0.1` at a free port.
    ///
    /// # Panics
    /// When no local port can be bound.
    #[allow(clippy::expect_used, reason = "test support: failing to bind fails the test")]
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let port = listener.local_addr().expect("a local address").port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accepting.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &shared).await;
                });
            }
        });
        Self { port, shared, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        if let Ok(mut current) = self.shared.mode.lock() {
            *current = Some(mode);
        }
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.messages.lock().map(|messages| messages.clone()).unwrap_or_default()
    }

    /// Waits until `count` messages arrived or `timeout` passed; returns what arrived.
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
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 sink.test\r\n",
            "MAIL" if shared.mode() == Mode::TempFail => b"421 4.3.0 try again later\r\n",
            "MAIL" => {
                from = address(&command);
                to.clear();
                b"250 2.1.0 ok\r\n"
            }
            "RCPT" if shared.mode() == Mode::PermFail => b"550 5.1.1 no such mailbox\r\n",
            "RCPT" => {
                to.push(address(&command));
                b"250 2.1.5 ok\r\n"
            }
            "DATA" => {
                writer.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let data = read_data(&mut reader).await?;
                if let Ok(mut messages) = shared.messages.lock() {
                    messages.push(ReceivedMail {
                        from: from.clone(),
                        to: to.clone(),
                        message_id: header(&data, "Message-ID"),
                        subject: header(&data, "Subject"),
                        data,
                    });
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

/// `MAIL FROM:<a@b>` → `a@b`.
fn address(command: &str) -> String {
    let start = command.find('<').map_or(0, |index| index + 1);
    let end = command[start..].find('>').map_or(command.len(), |index| start + index);
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
        assert_eq!(
            find_registration_code("Your code: 7KQX-M2RD-9HTV-PW4C.").as_deref(),
            Some("7KQX-M2RD-9HTV-PW4C")
        );
        assert_eq!(find_registration_code("X7KQX-M2RD-9HTV-PW4C"), None);
        assert_eq!(find_registration_code("1KQX-M2RD-9HTV-PW4C"), None);
    }
}
