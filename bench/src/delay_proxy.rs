//! A TCP proxy that holds every request back for a random 20–50 ms before passing it on,
//! so that a storage endpoint on loopback answers with the latency of a real one.
//!
//! "A request" is the first chunk a client sends after being quiet for a moment: the
//! chunks of one request's body follow each other closely and are not delayed again, and
//! answers flow back untouched.
use std::{
    net::SocketAddr,
    ops::RangeInclusive,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// A chunk that follows the previous one within this gap belongs to the same request.
const SAME_REQUEST: Duration = Duration::from_millis(2);

pub struct DelayProxy {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(
        upstream: SocketAddr,
        delay_ms: RangeInclusive<u64>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let delay_ms = delay_ms.clone();
                tokio::spawn(async move {
                    // A broken connection ends only itself; the client sees it closed.
                    let _ = forward(client, upstream, delay_ms).await;
                });
            }
        });
        Ok(Self { addr, accept })
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    delay_ms: RangeInclusive<u64>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_chunk: Option<Instant> = None;
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return server_write.shutdown().await;
            }
            if last_chunk.is_none_or(|t| t.elapsed() > SAME_REQUEST) {
                tokio::time::sleep(Duration::from_millis(random_in(&delay_ms))).await;
            }
            server_write.write_all(&buf[..n]).await?;
            last_chunk = Some(Instant::now());
        }
    };
    let answers = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::try_join!(requests, answers)?;
    Ok(())
}

fn random_in(range: &RangeInclusive<u64>) -> u64 {
    let span = range.end() - range.start() + 1;
    range.start() + (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u64
}
