//! The [`AmqpQueue`] handle and its connections: URL checks and defaults, connecting (one
//! bounded attempt), readiness, closing, [`AmqpError`], and scrubbing the password out of every
//! message (see "Connections" and "Secrets" in the crate docs).

use std::{
    fmt,
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use lapin::{uri::AMQPUri, Connection, ConnectionProperties};

use crate::{
    publisher::PubSession,
    topology::{validate_prefix, Topology},
};

/// Bound on connecting (TCP + AMQP handshake + topology declaration).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat requested when the URL does not set one (detects dead peers in ~2 × this).
pub const DEFAULT_HEARTBEAT_SECS: u16 = 20;

/// How long the bounded background operations of a shutdown (cancel, close) may take.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `is_connected` may spend on a reconnect attempt.
const IS_CONNECTED_TIMEOUT: Duration = Duration::from_secs(3);

/// Transport errors. Their messages never contain the URL or its password.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("invalid AMQP URL (expected amqp[s]://user:password@host:port/vhost)")]
    InvalidUrl,
    #[error("invalid queue prefix {0:?} (allowed: letters, digits, '.', '-', '_'; at most 100 characters)")]
    InvalidPrefix(String),
    #[error("unknown job kind {0:?}")]
    UnknownKind(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    #[error("could not connect to RabbitMQ at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("RabbitMQ {operation} timed out after {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    #[error("RabbitMQ {operation} failed: {reason}")]
    Broker {
        operation: &'static str,
        reason: String,
    },
    #[error("RabbitMQ did not confirm the message: {0}")]
    NotConfirmed(String),
    #[error("could not encode the job message: {0}")]
    Encode(String),
}

impl AmqpError {
    /// True when the broker could not be reached (or answered too late), as opposed to a
    /// bad argument or a broker refusing what was asked.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, AmqpError::Connect { .. } | AmqpError::Timeout { .. })
    }

    /// True when the error means the connection/channel is unusable (as opposed to a broker nack
    /// or a caller mistake).
    pub(crate) fn is_connection_problem(&self) -> bool {
        matches!(
            self,
            AmqpError::Connect { .. } | AmqpError::Timeout { .. } | AmqpError::Broker { .. }
        )
    }
}

/// Scrubs the password out of library/broker messages (belt and braces: they should not carry
/// it anyway).
#[derive(Clone)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub(crate) fn new(url: &str, uri: &AMQPUri) -> Self {
        let mut secrets = Vec::new();
        if !uri.authority.userinfo.password.is_empty() {
            secrets.push(uri.authority.userinfo.password.clone());
        }
        // The raw (possibly percent-encoded) form as written in the URL.
        if let Some(rest) = url.split_once("://").map(|(_, r)| r) {
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if let Some((_, raw)) = userinfo.split_once(':') {
                    if !raw.is_empty() {
                        secrets.push(raw.to_string());
                    }
                }
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    pub(crate) fn scrub(&self, text: impl fmt::Display) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }
}

pub(crate) struct Inner {
    /// Holds the password: never printed (no Debug on `Inner`).
    uri: AMQPUri,
    pub(crate) endpoint: String,
    pub(crate) redactor: Redactor,
    pub(crate) topology: Arc<Topology>,
    pub(crate) publisher: tokio::sync::Mutex<Option<Arc<PubSession>>>,
    pub(crate) generation: AtomicU64,
}

/// A cheap, clonable handle to the RabbitMQ transport.
#[derive(Clone)]
pub struct AmqpQueue {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("endpoint", &self.inner.endpoint)
            .field("prefix", &self.inner.topology.prefix)
            .finish_non_exhaustive()
    }
}

impl AmqpQueue {
    /// Connects (bounded timeout), declares the topology idempotently, enables publisher confirms.
    pub async fn connect(url: &str) -> Result<AmqpQueue, AmqpError> {
        Self::connect_with_prefix(url, "").await
    }

    /// [`connect`](Self::connect) with every exchange and queue name prefixed by `prefix`
    /// (tests use `test-<uuid>.` to get a private topology on a shared broker).
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<AmqpQueue, AmqpError> {
        let queue = Self::unconnected(url, prefix)?;
        queue.connect_now().await?;
        Ok(queue)
    }

    /// A handle that connects on first use (publish, consume, readiness). Checks the URL
    /// and prefix only: for services that start while the broker is still unreachable.
    pub fn unconnected(url: &str, prefix: &str) -> Result<AmqpQueue, AmqpError> {
        validate_prefix(prefix)?;
        let mut uri: AMQPUri = url.parse().map_err(|_| AmqpError::InvalidUrl)?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(DEFAULT_HEARTBEAT_SECS);
        }
        if uri.query.connection_timeout.is_none() {
            uri.query.connection_timeout = Some(CONNECT_TIMEOUT.as_millis() as u64);
        }
        let redactor = Redactor::new(url, &uri);
        let endpoint = format!("{}:{}", uri.authority.host, uri.authority.port);
        let queue = AmqpQueue {
            inner: Arc::new(Inner {
                uri,
                endpoint,
                redactor,
                topology: Arc::new(Topology::new(prefix)),
                publisher: tokio::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
            }),
        };
        Ok(queue)
    }

    /// Connects (and declares the topology) now rather than on first use.
    pub async fn connect_now(&self) -> Result<(), AmqpError> {
        self.publisher_session().await.map(drop)
    }

    /// The names of every exchange and queue of this handle.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    pub(crate) fn broker_error(&self, operation: &'static str, err: lapin::Error) -> AmqpError {
        AmqpError::Broker {
            operation,
            reason: self.inner.redactor.scrub(err),
        }
    }

    /// Opens a connection (one attempt, bounded by [`CONNECT_TIMEOUT`]).
    pub(crate) async fn open_connection(&self, role: &str) -> Result<Connection, AmqpError> {
        let props =
            ConnectionProperties::default().with_connection_name(format!("partway-{role}").into());
        let attempt = Connection::connect_uri(self.inner.uri.clone(), props);
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Err(_) => Err(AmqpError::Timeout {
                operation: "connect",
                after: CONNECT_TIMEOUT,
            }),
            Ok(Err(err)) => Err(AmqpError::Connect {
                endpoint: self.inner.endpoint.clone(),
                reason: self.inner.redactor.scrub(err),
            }),
            Ok(Ok(conn)) => Ok(conn),
        }
    }

    /// True when the publishing connection is up. When it is not, makes one bounded reconnect
    /// attempt (so readiness recovers without waiting for the next publish).
    pub async fn is_connected(&self) -> bool {
        {
            let guard = self.inner.publisher.lock().await;
            if guard.as_ref().is_some_and(|s| s.usable()) {
                return true;
            }
        }
        matches!(
            tokio::time::timeout(IS_CONNECTED_TIMEOUT, self.publisher_session()).await,
            Ok(Ok(_))
        )
    }

    /// Closes the publishing connection (a later publish reconnects).
    pub async fn close(&self) {
        let session = self.inner.publisher.lock().await.take();
        if let Some(session) = session {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.conn.close(200, "OK".into())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_scrubs_raw_and_decoded_passwords() {
        let url = "amqp://user:p%40ss@host:5672/%2f";
        let uri: AMQPUri = url.parse().unwrap();
        let r = Redactor::new(url, &uri);
        assert_eq!(r.scrub("x p@ss y p%40ss"), "x *** y ***");
    }
}
