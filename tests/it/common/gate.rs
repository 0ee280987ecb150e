//! A TCP proxy that can hold what clients send: while it is closed, bytes from the client
//! wait in the proxy (connections stay open, pooled ones included) until it opens again.
//! Lets a test stop a worker in the middle of a storage call, deterministically. It can
//! also lose an answer on the way: the server handles the request, the client sees its
//! connection closed.
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
    held: Arc<AtomicUsize>,
    losses: Arc<Losses>,
    accept: JoinHandle<()>,
}

/// Answers to lose: the next request containing `needle`, and how many were lost.
#[derive(Default)]
struct Losses {
    needle: Mutex<Option<&'static str>>,
    lost: AtomicUsize,
}

impl Losses {
    /// Whether this chunk of a request is the one whose answer is to be lost.
    fn take_if_in(&self, chunk: &[u8]) -> bool {
        let mut needle = self.needle.lock().unwrap();
        let hit = needle.is_some_and(|n| chunk.windows(n.len()).any(|w| w == n.as_bytes()));
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
        let held = Arc::new(AtomicUsize::new(0));
        let losses = Arc::new(Losses::default());
        let (gate, count, lose) = (open.clone(), held.clone(), losses.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(
                    client,
                    server,
                    gate.subscribe(),
                    count.clone(),
                    lose.clone(),
                ));
            }
        });
        Gate {
            addr,
            open,
            held,
            losses,
            accept,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn close(&self) {
        self.open.send_replace(false);
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Reads from clients that arrived while the gate was closed (a count that only grows).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// The next request containing `needle` reaches the server, but its answer does not
    /// reach the client: the connection is closed instead.
    pub fn lose_next_answer_to(&self, needle: &'static str) {
        *self.losses.needle.lock().unwrap() = Some(needle);
    }

    /// Answers lost so far.
    pub fn lost(&self) -> usize {
        self.losses.lost.load(Ordering::SeqCst)
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    mut open: watch::Receiver<bool>,
    held: Arc<AtomicUsize>,
    losses: Arc<Losses>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let lose_answer = Arc::new(AtomicBool::new(false));
    let (losing, lost) = (lose_answer.clone(), losses.clone());
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !*open.borrow() {
                held.fetch_add(1, Ordering::SeqCst);
                if open.wait_for(|is_open| *is_open).await.is_err() {
                    break;
                }
            }
            if losses.take_if_in(&buf[..n]) {
                losing.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if lose_answer.load(Ordering::SeqCst) {
                // The server answered; the client never hears it.
                lost.lost.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}
