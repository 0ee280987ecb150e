//! Limits on connections (DESIGN §7, slow or hostile clients): at most
//! `PARTWAY_MAX_CONNECTIONS` open at once, and a deadline on reading each request's
//! headers.
//!
//! The cap is a semaphore taken before `accept`: at the cap, new clients wait in the
//! kernel's listen backlog until a connection closes (idle ones close at the header
//! deadline), instead of each costing a task, buffers and a file descriptor.
//!
//! poem 3.1 builds hyper's connection itself and sets no timer, so hyper's own
//! `header_read_timeout` never fires, and poem's `idle_timeout` only closes a
//! connection on which *no* byte moves, which a slow-loris client that trickles one
//! header byte at a time never is. So the acceptor wraps every connection's IO in
//! [`HeaderDeadline`], which watches the bytes read for the blank line that ends a
//! request's headers: from the connection's start (and, on a kept-alive connection,
//! from the first byte of each next request) the headers must be complete within the
//! deadline, or the read fails with `TimedOut` and hyper drops the connection. Once
//! the headers are in, the clock stops until the server has written its answer; body
//! reads are bounded where JSON bodies are read (`body.rs`), and responses that
//! stream (event streams) are never cut.
use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use poem::{
    http::uri::Scheme,
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};
use std::sync::Arc;

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};

/// What every client connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `PARTWAY_HEADER_READ_TIMEOUT`.
    pub header_read_timeout: Duration,
    /// `PARTWAY_MAX_CONNECTIONS`.
    pub max_connections: u32,
}

/// Wraps an acceptor: takes a connection slot before each accept, and gives each
/// connection a [`HeaderDeadline`].
pub struct LimitedAcceptor<A> {
    inner: A,
    header_read_timeout: Duration,
    slots: Arc<Semaphore>,
}

impl<A> LimitedAcceptor<A> {
    pub fn new(inner: A, limits: ConnectionLimits) -> Self {
        Self {
            inner,
            header_read_timeout: limits.header_read_timeout,
            slots: Arc::new(Semaphore::new(limits.max_connections as usize)),
        }
    }
}

impl<A: Acceptor> Acceptor for LimitedAcceptor<A> {
    type Io = Connection<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("connection slots closed"))?;
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let io = Connection {
            io: HeaderDeadline::new(io, self.header_read_timeout),
            _slot: slot,
        };
        Ok((io, local, remote, scheme))
    }
}

/// A served connection: its IO under the header deadline, and its slot, given back
/// when hyper drops the connection.
pub struct Connection<Io> {
    io: HeaderDeadline<Io>,
    _slot: OwnedSemaphorePermit,
}

impl<Io: AsyncRead + Unpin> AsyncRead for Connection<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Connection<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    // Vectored writes pass through: without them hyper copies every answer's body
    // into one flat buffer before writing it (13 MB more for a 10,000-part init).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

enum Phase {
    /// Reading a request's headers; they must end before the sleep does.
    Headers {
        deadline: Pin<Box<Sleep>>,
        /// Bytes other than CR since the last LF.
        line_len: usize,
        /// Whether any non-blank byte came in this phase (leading blank lines are
        /// not the end of the headers).
        started: bool,
    },
    /// Headers complete; waiting for the server to answer.
    Answering,
    /// The server wrote; the next byte read starts the next request's headers.
    Between,
    /// An HTTP/2 connection (prior knowledge): its frames are binary, there is no
    /// blank line to watch for, so no deadline applies (the service is reached over
    /// HTTP/1.1; an h2c client is left to hyper's own limits).
    Off,
}

pub struct HeaderDeadline<Io> {
    inner: Io,
    timeout: Duration,
    phase: Phase,
}

impl<Io> HeaderDeadline<Io> {
    pub fn new(inner: Io, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            phase: Self::headers(timeout),
        }
    }

    fn headers(timeout: Duration) -> Phase {
        Phase::Headers {
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            line_len: 0,
            started: false,
        }
    }

    /// Follows the bytes just read; moves to `Answering` at the blank line.
    fn scan(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if matches!(self.phase, Phase::Between) {
            self.phase = Self::headers(self.timeout);
        }
        let Phase::Headers {
            line_len, started, ..
        } = &mut self.phase
        else {
            return;
        };
        if !*started && *line_len == 0 && bytes.starts_with(b"PRI * HTTP/2") {
            self.phase = Phase::Off;
            return;
        }
        for &b in bytes {
            match b {
                b'\n' if *line_len == 0 && *started => {
                    self.phase = Phase::Answering;
                    return;
                }
                b'\n' => *line_len = 0,
                b'\r' => {}
                _ => {
                    *line_len += 1;
                    *started = true;
                }
            }
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for HeaderDeadline<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Phase::Headers { deadline, .. } = &mut this.phase {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request headers not received in time",
                )));
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.scan(&buf.filled()[before..]);
        }
        polled
    }
}

impl<Io> HeaderDeadline<Io> {
    /// The first bytes of an answer end its request's phase.
    fn wrote(&mut self, polled: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = polled {
            if *n > 0 && matches!(self.phase, Phase::Answering) {
                self.phase = Phase::Between;
            }
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for HeaderDeadline<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase_after(chunks: &[&[u8]]) -> &'static str {
        let mut io = HeaderDeadline::new((), Duration::from_secs(10));
        for c in chunks {
            io.scan(c);
        }
        match io.phase {
            Phase::Headers { .. } => "headers",
            Phase::Answering => "answering",
            Phase::Between => "between",
            Phase::Off => "off",
        }
    }

    #[tokio::test]
    async fn the_blank_line_ends_the_headers_even_split_across_reads() {
        assert_eq!(phase_after(&[b"GET / HTTP/1.1\r\nHost: x\r\n"]), "headers");
        assert_eq!(
            phase_after(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]),
            "answering"
        );
        assert_eq!(
            phase_after(&[b"GET / HTTP/1.1\r\n", b"\r", b"\n"]),
            "answering"
        );
        assert_eq!(phase_after(&[b"GET / HTTP/1.1\n\n"]), "answering");
        // Leading blank lines are not an end.
        assert_eq!(phase_after(&[b"\r\n\r\nGET /"]), "headers");
        // HTTP/2 prior knowledge: no blank line to wait for.
        assert_eq!(phase_after(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]), "off");
    }
}
