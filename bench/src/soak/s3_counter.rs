//! A TCP proxy in front of moto that counts CompleteMultipartUpload requests per object
//! key and upload id, so the soak can tell "completed twice" from storage's side rather
//! than from what clients saw. Every storage call of the cluster (and the clients' part
//! PUTs, which go to the presigned endpoint) passes through it.
//!
//! The request line `POST /{bucket}/{key}?uploadId=…` is found by the bucket's unique
//! name in the client→server stream; the tail of each chunk is kept so a line split
//! across reads is still seen, and a line is counted where it ends, so exactly once.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// key → the upload ids a complete was sent for, and how many complete requests.
#[derive(Default)]
pub struct Completes {
    pub by_key: BTreeMap<String, (BTreeSet<String>, u64)>,
}

pub struct Counter {
    pub addr: SocketAddr,
    pub completes: Arc<Mutex<Completes>>,
    upstream: SocketAddr,
    needle: Arc<Vec<u8>>,
    /// The accept loop of the current listener (None while the proxy is down).
    accept: Mutex<Option<JoinHandle<()>>>,
    /// Bumped by `restart`: every open connection ends when it changes.
    generation: watch::Sender<u64>,
    /// Connections open now (client side).
    pub open: Arc<AtomicUsize>,
}

impl Drop for Counter {
    fn drop(&mut self) {
        if let Ok(Some(a)) = self.accept.lock().map(|mut a| a.take()) {
            a.abort();
        }
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Counter {
    pub async fn start(upstream: SocketAddr, bucket: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (generation, _) = watch::channel(0);
        let c = Self {
            addr,
            completes: Arc::new(Mutex::new(Completes::default())),
            upstream,
            needle: Arc::new(format!("POST /{bucket}/").into_bytes()),
            accept: Mutex::new(None),
            generation,
            open: Arc::new(AtomicUsize::new(0)),
        };
        c.listen(listener);
        Ok(c)
    }

    fn listen(&self, listener: TcpListener) {
        let (c, needle, upstream) = (self.completes.clone(), self.needle.clone(), self.upstream);
        let (generation, open) = (self.generation.clone(), self.open.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (c, needle, open) = (c.clone(), needle.clone(), open.clone());
                let mut restarted = generation.subscribe();
                tokio::spawn(async move {
                    open.fetch_add(1, Ordering::Relaxed);
                    // A broken connection ends only itself; the client sees it closed.
                    tokio::select! {
                        _ = forward(client, upstream, &needle, &c) => {}
                        // A restart drops the connection mid-request (both sockets close).
                        _ = restarted.changed() => {}
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        if let Ok(mut a) = self.accept.lock() {
            *a = Some(task);
        }
    }

    /// Restarts the proxy as a crashed and restarted process would look to its clients:
    /// every open connection is dropped, the port refuses connections for `down`, then
    /// accepts again on the same address.
    pub async fn restart(&self, down: Duration) -> std::io::Result<()> {
        let task = self.accept.lock().ok().and_then(|mut a| a.take());
        if let Some(t) = task {
            t.abort();
            let _ = t.await; // the listener is closed once the task is gone
        }
        self.generation.send_modify(|g| *g += 1);
        tokio::time::sleep(down).await;
        // The port was ours a moment ago; retried in case a connect races the bind.
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        self.listen(listener);
        Ok(())
    }
}

/// Longest request line kept across reads.
const TAIL: usize = 4096;

fn scan(window: &[u8], fresh_from: usize, needle: &[u8], completes: &Mutex<Completes>) {
    let mut at = 0;
    while let Some(i) = find(&window[at..], needle) {
        let start = at + i;
        let Some(len) = find(&window[start..], b"\r\n") else {
            return; // the line goes on in the next read
        };
        let end = start + len;
        at = start + 1;
        // Counted where its `\n` arrived: a line finished in an earlier read was counted then.
        if end + 1 < fresh_from {
            continue;
        }
        let line = String::from_utf8_lossy(&window[start + needle.len()..end]);
        let target = line.split(' ').next().unwrap_or_default();
        let Some((key, query)) = target.split_once('?') else {
            continue;
        };
        if query.contains("partNumber=") {
            continue;
        }
        if let Some(id) = query.split('&').find_map(|kv| kv.strip_prefix("uploadId=")) {
            if let Ok(mut c) = completes.lock() {
                let e = c.by_key.entry(key.to_string()).or_default();
                e.0.insert(id.to_string());
                e.1 += 1;
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    needle: &[u8],
    completes: &Mutex<Completes>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut window: Vec<u8> = Vec::new();
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return server_write.shutdown().await;
            }
            let fresh_from = window.len();
            window.extend_from_slice(&buf[..n]);
            scan(&window, fresh_from, needle, completes);
            let keep = window.len().saturating_sub(TAIL);
            window.drain(..keep);
            server_write.write_all(&buf[..n]).await?;
        }
    };
    let answers = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::try_join!(requests, answers)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_complete_split_across_reads_once() {
        let c = Mutex::new(Completes::default());
        let needle = b"POST /b/";
        let req = b"PUT /b/k?partNumber=1&uploadId=u HTTP/1.1\r\n\r\nPOST /b/k?uploadId=u HTTP/1.1\r\nHost: x\r\n";
        let mut window = Vec::new();
        for chunk in req.chunks(7) {
            let fresh = window.len();
            window.extend_from_slice(chunk);
            scan(&window, fresh, needle, &c);
        }
        let c = c.lock().unwrap();
        assert_eq!(c.by_key["k"].1, 1);
        assert!(c.by_key["k"].0.contains("u"));
    }
}
