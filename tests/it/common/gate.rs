//! A TCP proxy a test steers, to put a client or a worker in a precise spot:
//! - closed, it holds what clients send (connections stay open, pooled ones included)
//!   until it opens again: a worker stopped inside a storage call; or it holds just the
//!   next request containing a given text: a client's init that has not reached the server;
//! - it can lose an answer on the way: the server handles the request, the client sees
//!   its connection closed.
//!
//! A client that goes away does not cancel what it sent: the proxy finishes delivering
//! it and keeps the server's side open until the answer comes back, like a request
//! already in the server's hands.
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

pub struct Gate {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

/// What the proxy's connections share with the test.
#[derive(Default)]
struct Shared {
    /// Closed for everything (not just the next request containing `hold_next`).
    hold_all: AtomicBool,
    /// The next request containing this is held until the gate opens.
    hold_next: Mutex<Option<&'static str>>,
    /// Reads held while the gate was closed (only grows).
    held: AtomicUsize,
    /// Answers that came back for held requests (only grows).
    answered_after_hold: AtomicUsize,
    /// The next request containing this has its answer lost.
    lose_next: Mutex<Option<&'static str>>,
    lost: AtomicUsize,
}

fn contains(chunk: &[u8], needle: &str) -> bool {
    chunk.windows(needle.len()).any(|w| w == needle.as_bytes())
}

impl Shared {
    fn holds(&self, closed: bool, chunk: &[u8]) -> bool {
        if closed && self.hold_all.load(Ordering::SeqCst) {
            return true;
        }
        let mut needle = self.hold_next.lock().unwrap();
        let hit = closed && needle.is_some_and(|n| contains(chunk, n));
        if hit {
            *needle = None;
        }
        hit
    }

    /// Whether this chunk of a request is the one whose answer is to be lost.
    fn loses_answer_to(&self, chunk: &[u8]) -> bool {
        let mut needle = self.lose_next.lock().unwrap();
        let hit = needle.is_some_and(|n| contains(chunk, n));
        if hit {
            *needle = None;
        }
        hit
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Gate {
    /// A proxy to `upstream` (`http://host:port`), open.
    pub async fn start(upstream: &str) -> Gate {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://ip:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, _) = watch::channel(true);
        let shared = Arc::new(Shared::default());
        let (gate, pipes) = (open.clone(), shared.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(client, server, gate.subscribe(), pipes.clone()));
            }
        });
        Gate {
            addr,
            open,
            shared,
            accept,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Holds everything clients send until [`Gate::open`].
    pub fn close(&self) {
        self.shared.hold_all.store(true, Ordering::SeqCst);
        self.open.send_replace(false);
    }

    /// Holds the next request containing `needle` until [`Gate::open`]; everything else
    /// goes through.
    pub fn hold_next(&self, needle: &'static str) {
        self.shared.hold_all.store(false, Ordering::SeqCst);
        *self.shared.hold_next.lock().unwrap() = Some(needle);
        self.open.send_replace(false);
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Reads from clients held while the gate was closed (a count that only grows).
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Answers the server gave to held requests once they went through.
    pub fn answered_after_hold(&self) -> usize {
        self.shared.answered_after_hold.load(Ordering::SeqCst)
    }

    /// The next request containing `needle` reaches the server, but its answer does not
    /// reach the client: the connection is closed instead.
    pub fn lose_next_answer_to(&self, needle: &'static str) {
        *self.shared.lose_next.lock().unwrap() = Some(needle);
    }

    /// Answers lost so far.
    pub fn lost(&self) -> usize {
        self.shared.lost.load(Ordering::SeqCst)
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    mut open: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let lose_answer = Arc::new(AtomicBool::new(false));
    // A held request went through and its answer has not come back yet.
    let was_held = Arc::new(AtomicBool::new(false));
    let (losing, holding, up) = (lose_answer.clone(), was_held.clone(), shared.clone());
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let closed = !*open.borrow();
            if up.holds(closed, &buf[..n]) {
                up.held.fetch_add(1, Ordering::SeqCst);
                holding.store(true, Ordering::SeqCst);
                if open.wait_for(|is_open| *is_open).await.is_err() {
                    break;
                }
            }
            if up.loses_answer_to(&buf[..n]) {
                losing.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        // Not shut down: a server may drop a request whose client closed its side.
        server_write
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if was_held.swap(false, Ordering::SeqCst) {
                shared.answered_after_hold.fetch_add(1, Ordering::SeqCst);
            }
            if lose_answer.load(Ordering::SeqCst) {
                // The server answered; the client never hears it.
                shared.lost.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    // The server's write side lives until its answer has come back.
    let (_server_write, ()) = tokio::join!(upstream, downstream);
}
