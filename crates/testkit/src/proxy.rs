//! A TCP fault proxy: it forwards a local port to a target (PostgreSQL, an SMTP server) and
//! can be switched, while connections are open, into refusing, black-holing, delaying, or
//! resetting after some bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How the proxy treats traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    #[default]
    Pass,
    /// New connections are closed at once; open ones are cut.
    Refuse,
    /// Connections are accepted and nothing is forwarded either way: the peer waits.
    Blackhole,
    /// Every chunk waits this long before it is forwarded.
    Delay(Duration),
    /// Each connection is cut after this many bytes towards the target.
    ResetAfter(usize),
}

#[derive(Default)]
struct Shared {
    mode: Mutex<ProxyMode>,
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Shared {
    fn mode(&self) -> ProxyMode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cut_all(&self) {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections.drain(..).for_each(|task| task.abort());
    }
}

/// The proxy; it stops when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.cut_all();
    }
}

impl FaultProxy {
    /// Listens on a free local port and forwards to `target`.
    ///
    /// # Panics
    /// When no local port can be bound.
    #[allow(
        clippy::expect_used,
        reason = "test support: failing to bind fails the test"
    )]
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let address = listener.local_addr().expect("a local address");
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = Arc::clone(&accepting);
                let connection = tokio::spawn(async move {
                    let _ = forward(client, target, &shared).await;
                });
                let mut connections = accepting
                    .connections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                connections.retain(|task| !task.is_finished());
                connections.push(connection.abort_handle());
            }
        });
        Self {
            address,
            shared,
            task,
        }
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Takes effect for new connections; `Refuse` also cuts the open ones.
    pub fn set_mode(&self, mode: ProxyMode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
        if mode == ProxyMode::Refuse {
            self.shared.cut_all();
        }
    }

    /// Cuts every open connection, whatever the mode.
    pub fn cut_connections(&self) {
        self.shared.cut_all();
    }
}

async fn forward(client: TcpStream, target: SocketAddr, shared: &Shared) -> std::io::Result<()> {
    match shared.mode() {
        ProxyMode::Refuse => return Ok(()),
        ProxyMode::Blackhole => {
            // Hold the connection open, answer nothing.
            let mut client = client;
            let mut sink = [0u8; 4096];
            while client.read(&mut sink).await? > 0 {}
            return Ok(());
        }
        _ => {}
    }
    let server = TcpStream::connect(target).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mode = shared.mode();
    let upstream = async {
        let mut sent = 0usize;
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let read = client_read.read(&mut buffer).await?;
            if read == 0 {
                return server_write.shutdown().await;
            }
            if let ProxyMode::Delay(delay) = mode {
                tokio::time::sleep(delay).await;
            }
            let allowed = match mode {
                ProxyMode::ResetAfter(limit) => read.min(limit.saturating_sub(sent)),
                _ => read,
            };
            server_write.write_all(&buffer[..allowed]).await?;
            sent += allowed;
            if allowed < read {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
            }
        }
    };
    let downstream = async {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let read = server_read.read(&mut buffer).await?;
            if read == 0 {
                return client_write.shutdown().await;
            }
            if let ProxyMode::Delay(delay) = mode {
                tokio::time::sleep(delay).await;
            }
            client_write.write_all(&buffer[..read]).await?;
        }
    };
    tokio::try_join!(upstream, downstream).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(address: SocketAddr, message: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(message).await?;
        let mut answer = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_millis(500), stream.read_exact(&mut answer))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        Ok(answer)
    }

    #[tokio::test]
    async fn it_passes_refuses_holds_and_cuts() {
        let proxy = FaultProxy::start(echo_server().await).await;
        assert_eq!(
            round_trip(proxy.address(), b"hello").await.unwrap(),
            b"hello"
        );
        proxy.set_mode(ProxyMode::Refuse);
        assert!(round_trip(proxy.address(), b"hello").await.is_err());
        proxy.set_mode(ProxyMode::Blackhole);
        let held = round_trip(proxy.address(), b"hello").await.unwrap_err();
        assert_eq!(held.kind(), std::io::ErrorKind::TimedOut);
        proxy.set_mode(ProxyMode::ResetAfter(3));
        assert!(round_trip(proxy.address(), b"hello").await.is_err());
        proxy.set_mode(ProxyMode::Pass);
        assert_eq!(
            round_trip(proxy.address(), b"again").await.unwrap(),
            b"again"
        );
    }
}
