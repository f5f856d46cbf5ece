//! Mail: the outbox delivered to an SMTP sink. The seeding's emails (one per Dfns user and
//! Singularity account) are left queued in a copy of the SQLite database while no server
//! runs; a server is started on it and timed from its first answer until its worker has
//! sent them all. The sink's own capacity is measured too, with a lean client, as a baseline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use enroll_testkit::smtp::SmtpSink;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use super::Suite;
use crate::report::Row;
use crate::server::{Memory, Server, ServerConfig, counter_value};

/// Connections of the sink baseline: the server's default `mail_concurrency`.
const SINK_CONNECTIONS: usize = 8;

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let template = suite.sqlite().await?;
    let expected = template.queued_emails;
    let instance = template
        .queued_instance("mail")?
        .context("the SQLite template keeps its queued emails")?;
    let sink = SmtpSink::start().await;
    let config = ServerConfig::on(&suite.options.binary, &instance, sink.url());
    let delivered = deliver(&config, expected).await;
    instance.remove().await;
    let (per_second, memory, counters) = delivered?;
    let received = sink.messages();
    drop(sink);
    let average =
        received.iter().map(|mail| mail.data.len()).sum::<usize>() / received.len().max(1);
    let missing = expected.saturating_sub(received.len());
    suite.push(Row {
        key: "mail.sqlite".to_owned(),
        operation: "deliver the outbox to SMTP (emails/s)".to_owned(),
        store: "SQLite".to_owned(),
        connections: None,
        per_second: Some(per_second),
        p50: None,
        p99: None,
        max: None,
        requests: u64::try_from(expected).unwrap_or(0),
        failures: u64::try_from(missing).unwrap_or(0),
        memory,
        notes: vec![format!(
            "{expected} emails queued before the start, {} received by the sink (about {average} bytes each), timed from the server's first answer; worker counters {counters}",
            received.len()
        )],
        writer: None,
        cpu: None,
        database_cpu: None,
    });

    let sink = SmtpSink::start().await;
    let address: SocketAddr = ([127, 0, 0, 1], sink.port()).into();
    let started = Instant::now();
    send_many(address, expected.max(1_000), average.max(1_000)).await?;
    let elapsed = started.elapsed();
    let taken = sink.messages().len();
    suite.push(Row {
        key: "mail.sink".to_owned(),
        operation: "SMTP sink alone (baseline, emails/s)".to_owned(),
        store: "–".to_owned(),
        connections: Some(SINK_CONNECTIONS),
        per_second: Some(taken as f64 / elapsed.as_secs_f64()),
        p50: None,
        p99: None,
        max: None,
        requests: u64::try_from(taken).unwrap_or(0),
        failures: 0,
        memory: Memory::default(),
        notes: vec![format!(
            "{taken} messages of {} bytes from a lean client, one command at a time as lettre sends",
            average.max(1_000)
        )],
        writer: None,
        cpu: None,
        database_cpu: None,
    });
    // The ratio column compares to /healthz, which means nothing here.
    Ok(())
}

/// Starts the server and waits until `emails_sent` reaches `expected`: emails per second
/// from the first answer, the server's memory, and its delivery counters.
async fn deliver(config: &ServerConfig, expected: usize) -> anyhow::Result<(f64, Memory, String)> {
    let server = Server::start(config).await?;
    let started = Instant::now();
    let already = server.counter("emails_sent").await?;
    let deadline = started + Duration::from_secs(600);
    let mut memory = server.memory();
    loop {
        let sent = server.counter("emails_sent").await?;
        memory = memory.max(server.memory());
        if sent >= expected as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the worker sent {sent} of {expected} emails in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let read = server.counters().await?;
    let counters: Vec<String> = [
        "emails_sent",
        "emails_retried",
        "emails_failed",
        "emails_superseded",
    ]
    .iter()
    .map(|name| format!("{name} {}", counter_value(&read, name)))
    .collect();
    drop(server);
    Ok((
        (expected as f64 - already) / elapsed.as_secs_f64(),
        memory,
        counters.join(", "),
    ))
}

/// Sends `count` messages of about `size` bytes over [`SINK_CONNECTIONS`] connections.
async fn send_many(address: SocketAddr, count: usize, size: usize) -> anyhow::Result<()> {
    let line = "x".repeat(76);
    let mut body = String::from("Subject: bench\r\nMessage-ID: <bench@bench.example>\r\n\r\n");
    while body.len() < size {
        body.push_str(&line);
        body.push_str("\r\n");
    }
    body.push_str(".\r\n");
    let body = std::sync::Arc::new(body);
    let mut connections = Vec::new();
    for connection in 0..SINK_CONNECTIONS {
        let body = body.clone();
        let share = (connection..count).step_by(SINK_CONNECTIONS).count();
        connections.push(tokio::spawn(async move {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let (reader, mut writer) = stream.into_split();
            let mut reader = BufReader::new(reader);
            expect(&mut reader, "220").await?;
            writer.write_all(b"EHLO bench\r\n").await?;
            expect(&mut reader, "250").await?;
            for _ in 0..share {
                for (command, reply) in [
                    (&b"MAIL FROM:<bench@bench.example>\r\n"[..], "250"),
                    (b"RCPT TO:<to@bench.example>\r\n", "250"),
                    (b"DATA\r\n", "354"),
                    (body.as_bytes(), "250"),
                ] {
                    writer.write_all(command).await?;
                    expect(&mut reader, reply).await?;
                }
            }
            writer.write_all(b"QUIT\r\n").await?;
            anyhow::Ok(())
        }));
    }
    for connection in connections {
        connection.await??;
    }
    Ok(())
}

/// Reads one reply (its last line) and checks its code.
async fn expect(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: &str,
) -> anyhow::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            bail!("the sink closed the connection");
        }
        // `250-…` continues, `250 …` ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    if !line.starts_with(code) {
        bail!("expected {code}, the sink answered {}", line.trim_end());
    }
    Ok(())
}
