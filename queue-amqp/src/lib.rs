//! RabbitMQ (lapin) job transport for partway.
//!
//! This crate moves **job ids**, nothing else: a [`JobMessage`] is `{"jobId": "<uuid>", "kind":
//! "<kind>"}` (JSON, camelCase). The database is the source of truth; the caller (the outbox
//! relay on the publishing side, the worker on the consuming side) wires this transport to it.
//! It does not depend on `partway-core`.
//!
//! # Delivery guarantees ("nothing is lost", DESIGN.md §1)
//!
//! * [`AmqpQueue::publish`] publishes a persistent message with the `mandatory` flag on a channel
//!   in publisher-confirm mode and returns `Ok` only once the broker has confirmed it (an
//!   unroutable message, a nack, a timeout or a closed connection is an `Err`; the outbox row stays
//!   and is retried later).
//! * [`AmqpQueue::consume_with_info`] acks a delivery only after the handler has returned
//!   [`Disposition::Ack`], i.e. after the job's effect is committed. [`Disposition::Retry`]
//!   republishes the message (with confirm) to the delay tier whose TTL is the smallest one
//!   `>=` the requested delay, then acks; when the TTL expires the broker dead-letters the message
//!   back to its kind's work queue. [`Disposition::Park`] republishes it (with confirm) to the
//!   parking queue with the reason in the `x-partway-park-reason` header, then acks. If the
//!   republish fails the delivery is nacked with requeue, so it is handled again (handlers are
//!   idempotent). A handler that panics gets its delivery nacked with requeue; a worker that dies
//!   leaves its deliveries unacked and the broker redelivers them to another consumer.
//! * The work queues are quorum queues with a delivery limit ([`DELIVERY_LIMIT`]): a message
//!   that keeps crashing its handler (requeued again and again) is dead-lettered (at-least-once
//!   strategy) to the parking queue instead of looping forever.
//!
//! # Topology (all durable, declared idempotently by `connect` and on every reconnect)
//!
//! | object | kind | purpose |
//! |---|---|---|
//! | `partway.jobs` | direct exchange | routing key = job kind |
//! | `partway.jobs.<kind>` | quorum queue, bound to `partway.jobs` with `<kind>` | work queue per kind |
//! | `partway.delay.<n>s` (n = 1, 2, 4, 8, 16, 32, 64, 128, 300) | fanout exchange + classic queue of the same name | delay tier: `x-message-ttl` = n s, `x-dead-letter-exchange` = `partway.jobs` |
//! | `partway.parking` | quorum queue (default exchange) | parked messages, reason in a header |
//!
//! A delayed message is published to the tier's *fanout exchange* with the job kind as routing
//! key: dead-lettering keeps the original routing key, so the expired message goes back through
//! `partway.jobs` to its kind's work queue. (Publishing straight to the tier queue through the
//! default exchange would make the queue name the routing key, and the expired message would be
//! unroutable.) Each tier has a single TTL, so messages expire in FIFO order at the queue head.
//!
//! [`AmqpQueue::connect_with_prefix`] prefixes every exchange and queue name (tests use
//! `test-<uuid>.`); production uses no prefix.
//!
//! # Connections
//!
//! The publishing side keeps one connection with one confirm-mode channel; when it is gone,
//! `publish` reconnects lazily (one attempt, bounded by [`CONNECT_TIMEOUT`]). Each `consume_with_info`
//! call uses its own connection (so publisher flow control never blocks acks) and reconnects
//! with exponential backoff (capped at [`RECONNECT_BACKOFF_MAX`]) until shutdown. A heartbeat of
//! [`DEFAULT_HEARTBEAT_SECS`] seconds is requested unless the URL sets `?heartbeat=`.
//!
//! # Prefetch
//!
//! `consume_with_info(prefetch, ..)` sets a per-consumer QoS (`global = false`; quorum queues do not
//! support global QoS): every kind's work queue has at most `prefetch` unacked deliveries in
//! this consumer, so at most `5 × prefetch` handlers run at once.
//!
//! # Secrets
//!
//! Errors and logs never contain the URL or its password (the endpoint is reported as
//! `host:port`, and every broker/library message is scrubbed of the password).

use std::{
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::{stream::SelectAll, FutureExt, StreamExt};
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
        ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
    uri::AMQPUri,
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind,
};
use serde::{Deserialize, Serialize};
use tokio::{sync::watch, task::JoinSet};
use tracing::{debug, error, info, warn};

/// Every job kind; one work queue per kind.
pub const KINDS: [&str; 5] = ["init", "resume", "complete", "abort", "expire"];

/// Delay tiers in seconds. `Retry(d)` uses the smallest tier `>= d` (the last one for longer
/// delays).
pub const DELAY_TIERS_SECS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 300];

/// Bound on connecting (TCP + AMQP handshake + topology declaration).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one publish, from `basic.publish` to the broker's confirm.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of the consumer's reconnect backoff.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// First reconnect delay of the consumer.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Heartbeat requested when the URL does not set one (detects dead peers in ~2 × this).
pub const DEFAULT_HEARTBEAT_SECS: u16 = 20;
/// Deliveries of one message (crashing handlers, requeues) before the work queue dead-letters
/// it to the parking queue (`x-delivery-limit` of the quorum work queues).
pub const DELIVERY_LIMIT: i32 = 20;

/// Header carrying the reason of a parked message (a string).
pub const PARK_REASON_HEADER: &str = "x-partway-park-reason";
/// Header carrying how many times a message went through a delay tier (an integer).
pub const RETRIES_HEADER: &str = "x-partway-retries";

/// How long the bounded background operations of a shutdown (cancel, close) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `is_connected` may spend on a reconnect attempt.
const IS_CONNECTED_TIMEOUT: Duration = Duration::from_secs(3);

/// The only payload this transport carries: a job id and its kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobMessage {
    pub job_id: uuid::Uuid,
    pub kind: String,
}

impl JobMessage {
    pub fn new(job_id: uuid::Uuid, kind: impl Into<String>) -> Self {
        Self {
            job_id,
            kind: kind.into(),
        }
    }
}

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
    fn is_connection_problem(&self) -> bool {
        matches!(
            self,
            AmqpError::Connect { .. } | AmqpError::Timeout { .. } | AmqpError::Broker { .. }
        )
    }
}

/// What the consumer does with a delivery once the handler has run.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// The job's effect is committed: ack.
    Ack,
    /// Try again after (at least) this long, through the delay tier `>=` the duration (capped at
    /// the largest tier).
    Retry(Duration),
    /// Give up: move the message to the parking queue with this reason.
    Park(String),
}

/// Extra facts about a delivery, for handlers that want them ([`AmqpQueue::consume_with_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryInfo {
    /// The broker delivered this message before (a consumer died or requeued it).
    pub redelivered: bool,
    /// How many times this message already went through a delay tier (`Retry`).
    pub retries: u32,
}

/// Names of every exchange and queue, with the optional prefix applied.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    /// The direct exchange the jobs are published to.
    pub exchange: String,
    /// `(kind, work queue)` for every kind, in [`KINDS`] order.
    pub work_queues: Vec<(String, String)>,
    /// `(seconds, exchange = queue name)` for every delay tier.
    pub delay_tiers: Vec<(u64, String)>,
    /// The parking (dead-letter) queue.
    pub parking: String,
}

impl Topology {
    /// The names used under `prefix` (empty in production), without touching the broker.
    pub fn new(prefix: &str) -> Self {
        let exchange = format!("{prefix}partway.jobs");
        Self {
            prefix: prefix.to_string(),
            work_queues: KINDS
                .iter()
                .map(|k| (k.to_string(), format!("{exchange}.{k}")))
                .collect(),
            delay_tiers: DELAY_TIERS_SECS
                .iter()
                .map(|s| (*s, format!("{prefix}partway.delay.{s}s")))
                .collect(),
            parking: format!("{prefix}partway.parking"),
            exchange,
        }
    }

    /// The prefix given to [`AmqpQueue::connect_with_prefix`] (empty in production).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The work queue of `kind`.
    pub fn work_queue(&self, kind: &str) -> Option<&str> {
        self.work_queues
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, q)| q.as_str())
    }

    /// The delay tier (seconds, exchange/queue name) used for a retry after `delay`.
    pub fn delay_tier(&self, delay: Duration) -> (u64, &str) {
        let tier = self
            .delay_tiers
            .iter()
            .find(|(secs, _)| Duration::from_secs(*secs) >= delay)
            .unwrap_or_else(|| self.delay_tiers.last().expect("at least one delay tier"));
        (tier.0, tier.1.as_str())
    }
}

/// Scrubs the password out of library/broker messages (belt and braces: they should not carry
/// it anyway).
#[derive(Clone)]
struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    fn new(url: &str, uri: &AMQPUri) -> Self {
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

    fn scrub(&self, text: impl fmt::Display) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }
}

/// The publishing side's connection and its confirm-mode channel.
struct PubSession {
    generation: u64,
    conn: Connection,
    channel: Channel,
}

impl PubSession {
    fn usable(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }
}

struct Inner {
    /// Holds the password: never printed (no Debug on `Inner`).
    uri: AMQPUri,
    endpoint: String,
    redactor: Redactor,
    topology: Arc<Topology>,
    publisher: tokio::sync::Mutex<Option<Arc<PubSession>>>,
    generation: AtomicU64,
}

/// A cheap, clonable handle to the RabbitMQ transport.
#[derive(Clone)]
pub struct AmqpQueue {
    inner: Arc<Inner>,
}

impl fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("endpoint", &self.inner.endpoint)
            .field("prefix", &self.inner.topology.prefix)
            .finish_non_exhaustive()
    }
}

/// An open consuming connection: the consuming channel (QoS applied) and a confirm-mode channel
/// for retry/park republishing.
struct ConsumerSession {
    conn: Connection,
    channel: Channel,
    publisher: Channel,
    tags: Vec<String>,
}

fn validate_prefix(prefix: &str) -> Result<(), AmqpError> {
    let ok = prefix.len() <= 100
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(AmqpError::InvalidPrefix(prefix.to_string()))
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

fn header_u32(properties: &BasicProperties, name: &str) -> Option<u32> {
    let headers = properties.headers().as_ref()?;
    let value = headers.inner().get(name)?;
    let n: i128 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => (*v).into(),
        AMQPValue::Timestamp(v) => (*v).into(),
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// The string value of a header (for [`PARK_REASON_HEADER`]); `None` when absent or not a string.
pub fn header_str(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn message_properties(message_id: Option<&str>, headers: FieldTable) -> BasicProperties {
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(headers);
    if let Some(id) = message_id {
        props = props.with_message_id(id.into());
    }
    props
}

/// Parses a delivery body into a job message, or explains why it is malformed.
fn parse_message(body: &[u8]) -> Result<JobMessage, String> {
    let message: JobMessage =
        serde_json::from_slice(body).map_err(|e| format!("malformed job message: {e}"))?;
    if !KINDS.contains(&message.kind.as_str()) {
        return Err(format!(
            "malformed job message: unknown kind {:?}",
            message.kind
        ));
    }
    Ok(message)
}

/// Resolves when shutdown is requested (or the sender is gone, which can never request it).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn shutdown_now(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow() || rx.has_changed().is_err()
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

    fn broker_error(&self, operation: &'static str, err: lapin::Error) -> AmqpError {
        AmqpError::Broker {
            operation,
            reason: self.inner.redactor.scrub(err),
        }
    }

    /// Opens a connection (one attempt, bounded by [`CONNECT_TIMEOUT`]).
    async fn open_connection(&self, role: &str) -> Result<Connection, AmqpError> {
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

    /// Declares every exchange, queue and binding (idempotent; fails with PRECONDITION_FAILED
    /// if an existing object was declared with other arguments).
    async fn declare_topology(&self, channel: &Channel) -> Result<(), AmqpError> {
        const OP: &str = "topology declaration";
        let topo = &self.inner.topology;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let e = |err| self.broker_error(OP, err);

        channel
            .exchange_declare(
                topo.exchange.as_str().into(),
                ExchangeKind::Direct,
                durable_exchange,
                FieldTable::default(),
            )
            .await
            .map_err(e)?;

        let mut parking_args = FieldTable::default();
        parking_args.insert("x-queue-type".into(), long_string("quorum"));
        channel
            .queue_declare(topo.parking.as_str().into(), durable, parking_args)
            .await
            .map_err(e)?;

        for (kind, queue) in &topo.work_queues {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), long_string("quorum"));
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongInt(DELIVERY_LIMIT),
            );
            args.insert("x-dead-letter-exchange".into(), long_string(""));
            args.insert(
                "x-dead-letter-routing-key".into(),
                long_string(&topo.parking),
            );
            // Dead-letter at least once (needs reject-publish overflow; there is no length limit).
            args.insert(
                "x-dead-letter-strategy".into(),
                long_string("at-least-once"),
            );
            args.insert("x-overflow".into(), long_string("reject-publish"));
            channel
                .queue_declare(queue.as_str().into(), durable, args)
                .await
                .map_err(e)?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    topo.exchange.as_str().into(),
                    kind.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(e)?;
        }

        for (secs, name) in &topo.delay_tiers {
            channel
                .exchange_declare(
                    name.as_str().into(),
                    ExchangeKind::Fanout,
                    durable_exchange,
                    FieldTable::default(),
                )
                .await
                .map_err(e)?;
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), long_string("classic"));
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongInt(i32::try_from(secs * 1000).expect("tier fits in i32")),
            );
            args.insert("x-dead-letter-exchange".into(), long_string(&topo.exchange));
            channel
                .queue_declare(name.as_str().into(), durable, args)
                .await
                .map_err(e)?;
            channel
                .queue_bind(
                    name.as_str().into(),
                    name.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(e)?;
        }
        Ok(())
    }

    /// The current publishing session, reconnecting once (bounded) when it is gone.
    async fn publisher_session(&self) -> Result<Arc<PubSession>, AmqpError> {
        let mut guard = self.inner.publisher.lock().await;
        if let Some(session) = guard.as_ref() {
            if session.usable() {
                return Ok(session.clone());
            }
            debug!(endpoint = %self.inner.endpoint, "AMQP publisher connection lost; reconnecting");
        }
        *guard = None;
        let session = tokio::time::timeout(CONNECT_TIMEOUT, self.open_publisher())
            .await
            .map_err(|_| AmqpError::Timeout {
                operation: "connect",
                after: CONNECT_TIMEOUT,
            })??;
        let session = Arc::new(session);
        *guard = Some(session.clone());
        Ok(session)
    }

    async fn open_publisher(&self) -> Result<PubSession, AmqpError> {
        let conn = self.open_connection("publisher").await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| self.broker_error("channel open", e))?;
        self.declare_topology(&channel).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.broker_error("confirm.select", e))?;
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        info!(endpoint = %self.inner.endpoint, "AMQP publisher connected");
        Ok(PubSession {
            generation,
            conn,
            channel,
        })
    }

    /// Forgets the publishing session `generation` (so the next call reconnects).
    async fn invalidate_publisher(&self, generation: u64) {
        let mut guard = self.inner.publisher.lock().await;
        if guard.as_ref().map(|s| s.generation) == Some(generation) {
            *guard = None;
        }
    }

    /// Publishes and waits for the broker's confirm; `Err` when not confirmed (nack, unroutable,
    /// timeout, connection closed or broker down). Reconnects lazily (one attempt) first when the
    /// connection is gone.
    pub async fn publish(&self, message: &JobMessage) -> Result<(), AmqpError> {
        if !KINDS.contains(&message.kind.as_str()) {
            return Err(AmqpError::UnknownKind(message.kind.clone()));
        }
        let body = serde_json::to_vec(message).map_err(|e| AmqpError::Encode(e.to_string()))?;
        let session = self.publisher_session().await?;
        let props = message_properties(Some(&message.job_id.to_string()), FieldTable::default());
        let result = self
            .publish_confirmed(
                &session.channel,
                &self.inner.topology.exchange,
                &message.kind,
                &body,
                props,
            )
            .await;
        if let Err(err) = &result {
            if err.is_connection_problem() {
                self.invalidate_publisher(session.generation).await;
            }
        }
        result
    }

    /// `basic.publish` (mandatory) on a confirm-mode channel, then waits for the confirm.
    async fn publish_confirmed(
        &self,
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        let attempt = async {
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    body,
                    properties,
                )
                .await
                .map_err(|e| self.broker_error("basic.publish", e))?;
            let confirmation = confirm
                .await
                .map_err(|e| self.broker_error("publisher confirm", e))?;
            match confirmation {
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Ack(Some(returned)) => Err(AmqpError::NotConfirmed(format!(
                    "unroutable ({} {}) to exchange {exchange:?} with routing key {routing_key:?}",
                    returned.reply_code, returned.reply_text
                ))),
                Confirmation::Nack(_) => Err(AmqpError::NotConfirmed(
                    "the broker nacked the message".into(),
                )),
                Confirmation::NotRequested => Err(AmqpError::NotConfirmed(
                    "publisher confirms are not enabled on the channel".into(),
                )),
            }
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, attempt)
            .await
            .map_err(|_| AmqpError::Timeout {
                operation: "publish",
                after: PUBLISH_TIMEOUT,
            })?
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

    /// Messages ready (not delivered) in each work queue, `(queue name, count)` in [`KINDS`]
    /// order.
    pub async fn depths(&self) -> Result<Vec<(String, u32)>, AmqpError> {
        let queues: Vec<String> = self
            .inner
            .topology
            .work_queues
            .iter()
            .map(|(_, q)| q.clone())
            .collect();
        self.queue_depths(&queues).await
    }

    /// Messages waiting in the parking queue.
    pub async fn parked(&self) -> Result<u32, AmqpError> {
        let parking = self.inner.topology.parking.clone();
        Ok(self.queue_depths(&[parking]).await?[0].1)
    }

    async fn queue_depths(&self, queues: &[String]) -> Result<Vec<(String, u32)>, AmqpError> {
        let session = self.publisher_session().await?;
        let work = async {
            // A short-lived channel: a failed passive declare closes its channel, and that must
            // not be the publishing one.
            let channel = session
                .conn
                .create_channel()
                .await
                .map_err(|e| self.broker_error("channel open", e))?;
            let mut out = Vec::with_capacity(queues.len());
            for queue in queues {
                let declared = channel
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| self.broker_error("queue depth (passive declare)", e))?;
                out.push((queue.clone(), declared.message_count()));
            }
            let _ = channel.close(200, "OK".into()).await;
            Ok(out)
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, work)
            .await
            .map_err(|_| AmqpError::Timeout {
                operation: "queue depth",
                after: PUBLISH_TIMEOUT,
            })?
    }

    /// Deletes every exchange and queue of this handle's topology (with their messages) and
    /// closes the publishing connection. Meant for tests and tooling with a prefix; never call
    /// it on a production topology.
    pub async fn delete_topology(&self) -> Result<(), AmqpError> {
        let session = self.publisher_session().await?;
        let channel = session
            .conn
            .create_channel()
            .await
            .map_err(|e| self.broker_error("channel open", e))?;
        let topo = &self.inner.topology;
        let e = |err| self.broker_error("topology deletion", err);
        let mut queues: Vec<&str> = topo.work_queues.iter().map(|(_, q)| q.as_str()).collect();
        queues.extend(topo.delay_tiers.iter().map(|(_, q)| q.as_str()));
        queues.push(&topo.parking);
        for queue in queues {
            channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await
                .map_err(e)?;
        }
        let mut exchanges: Vec<&str> = topo.delay_tiers.iter().map(|(_, x)| x.as_str()).collect();
        exchanges.push(&topo.exchange);
        for exchange in exchanges {
            channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await
                .map_err(e)?;
        }
        let _ = channel.close(200, "OK".into()).await;
        self.close().await;
        Ok(())
    }

    /// Closes the publishing connection (a later publish reconnects).
    pub async fn close(&self) {
        let session = self.inner.publisher.lock().await.take();
        if let Some(session) = session {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.conn.close(200, "OK".into())).await;
        }
    }

    /// Consumes every kind's work queue with this prefetch until `shutdown` is true (or its
    /// sender is dropped). For each delivery calls `handler(message, info)`, with
    /// [`DeliveryInfo`] (redelivery flag, retry count):
    ///
    /// * `Ack` → `basic.ack`;
    /// * `Retry(d)` → publish (with confirm) to the delay tier `>= d`, then ack;
    /// * `Park(reason)` → publish (with confirm) to the parking queue with the reason in the
    ///   [`PARK_REASON_HEADER`] header, then ack;
    /// * a malformed message (not a `JobMessage` of a known kind) is parked;
    /// * a panicking handler gets its delivery nacked with requeue;
    /// * when the connection or channel dies, reconnects with backoff (capped at
    ///   [`RECONNECT_BACKOFF_MAX`]) and resumes consuming.
    ///
    /// On shutdown: cancels the consumers, waits up to `grace` for in-flight handlers, aborts
    /// the rest, then closes the channel (unacked deliveries return to their queue).
    /// Returns `Err` only for an invalid argument (`prefetch == 0`).
    pub async fn consume_with_info<F, Fut>(
        &self,
        prefetch: u16,
        handler: F,
        mut shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) -> Result<(), AmqpError>
    where
        F: Fn(JobMessage, DeliveryInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Disposition> + Send + 'static,
    {
        if prefetch == 0 {
            return Err(AmqpError::InvalidArgument(
                "prefetch must be at least 1 (0 would mean unlimited)",
            ));
        }
        let handler = Arc::new(handler);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut backoff = RECONNECT_BACKOFF_MIN;

        loop {
            while tasks.try_join_next().is_some() {}
            if shutdown_now(&shutdown) {
                break;
            }
            let opened = tokio::select! {
                opened = self.open_consumer(prefetch) => opened,
                _ = shutdown_requested(&mut shutdown) => break,
            };
            let (session, mut deliveries) = match opened {
                Ok(opened) => opened,
                Err(err) => {
                    warn!(error = %err, retry_in = ?backoff, "AMQP consumer could not connect");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown_requested(&mut shutdown) => break,
                    }
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                    continue;
                }
            };
            backoff = RECONNECT_BACKOFF_MIN;
            info!(endpoint = %self.inner.endpoint, prefetch, "AMQP consumer started");

            let stop = loop {
                tokio::select! {
                    _ = shutdown_requested(&mut shutdown) => break true,
                    Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                        if let Err(err) = joined {
                            if err.is_panic() {
                                error!("AMQP delivery task panicked");
                            }
                        }
                    }
                    next = deliveries.next() => match next {
                        Some(Ok(delivery)) => {
                            tasks.spawn(handle_delivery(
                                handler.clone(),
                                delivery,
                                session.publisher.clone(),
                                self.clone(),
                            ));
                        }
                        Some(Err(err)) => {
                            warn!(error = %self.inner.redactor.scrub(err), "AMQP consumer lost its connection; reconnecting");
                            break false;
                        }
                        None => {
                            warn!("AMQP consumer was cancelled by the broker; reconnecting");
                            break false;
                        }
                    },
                }
            };
            if stop {
                self.stop_consumer(session, deliveries, &mut tasks, grace)
                    .await;
                return Ok(());
            }
            // Connection lost: in-flight handlers keep running; their acks fail and the broker
            // redelivers their messages. Drop this session and reconnect after a pause.
            drop(deliveries);
            drop(session);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown_requested(&mut shutdown) => break,
            }
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
        }

        // Shutdown while not connected: give in-flight handlers their grace period.
        drain(&mut tasks, grace).await;
        Ok(())
    }

    async fn open_consumer(
        &self,
        prefetch: u16,
    ) -> Result<(ConsumerSession, SelectAll<Consumer>), AmqpError> {
        let open = async {
            let conn = self.open_connection("consumer").await?;
            let channel = conn
                .create_channel()
                .await
                .map_err(|e| self.broker_error("channel open", e))?;
            self.declare_topology(&channel).await?;
            channel
                .basic_qos(prefetch, BasicQosOptions { global: false })
                .await
                .map_err(|e| self.broker_error("basic.qos", e))?;
            let publisher = conn
                .create_channel()
                .await
                .map_err(|e| self.broker_error("channel open", e))?;
            publisher
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| self.broker_error("confirm.select", e))?;
            let mut consumers = Vec::new();
            let mut tags = Vec::new();
            let session_id = uuid::Uuid::new_v4().simple().to_string();
            for (kind, queue) in &self.inner.topology.work_queues {
                let tag = format!("partway-{kind}-{session_id}");
                let consumer = channel
                    .basic_consume(
                        queue.as_str().into(),
                        tag.as_str().into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| self.broker_error("basic.consume", e))?;
                consumers.push(consumer);
                tags.push(tag);
            }
            Ok((
                ConsumerSession {
                    conn,
                    channel,
                    publisher,
                    tags,
                },
                futures::stream::select_all(consumers),
            ))
        };
        tokio::time::timeout(CONNECT_TIMEOUT * 2, open)
            .await
            .map_err(|_| AmqpError::Timeout {
                operation: "consumer setup",
                after: CONNECT_TIMEOUT * 2,
            })?
    }

    async fn stop_consumer(
        &self,
        session: ConsumerSession,
        deliveries: SelectAll<Consumer>,
        tasks: &mut JoinSet<()>,
        grace: Duration,
    ) {
        info!(in_flight = tasks.len(), "AMQP consumer stopping");
        for tag in &session.tags {
            let cancel = session.channel.basic_cancel(
                ShortString::from(tag.as_str()),
                BasicCancelOptions::default(),
            );
            match tokio::time::timeout(CLOSE_TIMEOUT, cancel).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    debug!(error = %self.inner.redactor.scrub(err), "basic.cancel failed")
                }
                Err(_) => debug!("basic.cancel timed out"),
            }
        }
        // Deliveries buffered but not yet handed to a handler stay unacked: the broker requeues
        // them when the channel closes.
        drop(deliveries);
        drain(tasks, grace).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.channel.close(200, "OK".into())).await;
        let _ =
            tokio::time::timeout(CLOSE_TIMEOUT, session.publisher.close(200, "OK".into())).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.conn.close(200, "OK".into())).await;
        info!("AMQP consumer stopped");
    }
}

/// Waits up to `grace` for the tasks, then aborts what is left.
async fn drain(tasks: &mut JoinSet<()>, grace: Duration) {
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        warn!(
            unfinished = tasks.len(),
            "AMQP handlers still running after the grace period; aborting them (their messages are redelivered)"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Runs the handler for one delivery and settles it.
async fn handle_delivery<F, Fut>(
    handler: Arc<F>,
    delivery: Delivery,
    publisher: Channel,
    queue: AmqpQueue,
) where
    F: Fn(JobMessage, DeliveryInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
{
    let topo = queue.inner.topology.clone();
    let retries = header_u32(&delivery.properties, RETRIES_HEADER).unwrap_or(0);
    let message = match parse_message(&delivery.data) {
        Ok(message) => message,
        Err(reason) => {
            warn!(routing_key = %delivery.routing_key, %reason, "parking a malformed AMQP message");
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_string());
            let mut headers = FieldTable::default();
            headers.insert(PARK_REASON_HEADER.into(), long_string(&reason));
            let props = message_properties(message_id.as_deref(), headers);
            let parked = queue
                .publish_confirmed(&publisher, "", &topo.parking, &delivery.data, props)
                .await;
            settle(&delivery, parked, "park").await;
            return;
        }
    };
    let info = DeliveryInfo {
        redelivered: delivery.redelivered,
        retries,
    };
    let job_id = message.job_id;
    let kind = message.kind.clone();

    let call = {
        let handler = handler.clone();
        let message = message.clone();
        async move { handler(message, info).await }
    };
    let outcome = AssertUnwindSafe(call).catch_unwind().await;
    let disposition = match outcome {
        Ok(disposition) => disposition,
        Err(_) => {
            error!(%job_id, %kind, "job handler panicked; requeueing the message");
            match delivery
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    debug!(%job_id, "nack not sent (channel closed); the broker redelivers")
                }
                Err(err) => {
                    debug!(%job_id, error = %queue.inner.redactor.scrub(err), "nack failed")
                }
            }
            return;
        }
    };

    match disposition {
        Disposition::Ack => match delivery.ack(BasicAckOptions::default()).await {
            Ok(true) => {}
            Ok(false) => {
                warn!(%job_id, %kind, "could not ack (channel closed); the message will be redelivered")
            }
            Err(err) => {
                warn!(%job_id, %kind, error = %queue.inner.redactor.scrub(err), "ack failed; the message will be redelivered")
            }
        },
        Disposition::Retry(delay) => {
            let (secs, tier) = topo.delay_tier(delay);
            debug!(%job_id, %kind, ?delay, tier_secs = secs, "retrying job later");
            let body = serde_json::to_vec(&message).expect("JobMessage serializes");
            let mut headers = FieldTable::default();
            headers.insert(
                RETRIES_HEADER.into(),
                AMQPValue::LongLongInt(i64::from(retries) + 1),
            );
            let props = message_properties(Some(&job_id.to_string()), headers);
            let published = queue
                .publish_confirmed(&publisher, tier, &kind, &body, props)
                .await;
            settle(&delivery, published, "retry").await;
        }
        Disposition::Park(reason) => {
            warn!(%job_id, %kind, %reason, "parking job message");
            let body = serde_json::to_vec(&message).expect("JobMessage serializes");
            let mut headers = FieldTable::default();
            headers.insert(PARK_REASON_HEADER.into(), long_string(&reason));
            headers.insert(
                RETRIES_HEADER.into(),
                AMQPValue::LongLongInt(retries.into()),
            );
            let props = message_properties(Some(&job_id.to_string()), headers);
            let published = queue
                .publish_confirmed(&publisher, "", &topo.parking, &body, props)
                .await;
            settle(&delivery, published, "park").await;
        }
    }
}

/// Acks after a successful republish; nacks with requeue when the republish failed (so the
/// message is handled again rather than lost).
async fn settle(delivery: &Delivery, republished: Result<(), AmqpError>, what: &str) {
    match republished {
        Ok(()) => match delivery.ack(BasicAckOptions::default()).await {
            Ok(true) => {}
            Ok(false) => warn!(
                what,
                "could not ack after republishing (channel closed); the message will be handled again"
            ),
            Err(err) => warn!(what, error = %err, "ack after republishing failed"),
        },
        Err(err) => {
            warn!(what, error = %err, "republishing failed; requeueing the message");
            let _ = delivery
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_message_json_is_camel_case_and_nothing_else() {
        let id = uuid::Uuid::nil();
        let json = serde_json::to_value(JobMessage::new(id, "init")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"jobId": "00000000-0000-0000-0000-000000000000", "kind": "init"})
        );
    }

    #[test]
    fn delay_tier_is_smallest_tier_at_least_the_delay() {
        let t = Topology::new("");
        assert_eq!(t.delay_tier(Duration::ZERO).0, 1);
        assert_eq!(t.delay_tier(Duration::from_millis(1500)).0, 2);
        assert_eq!(t.delay_tier(Duration::from_secs(2)).0, 2);
        assert_eq!(t.delay_tier(Duration::from_secs(129)).0, 300);
        assert_eq!(t.delay_tier(Duration::from_secs(3600)).0, 300);
        assert_eq!(t.delay_tier(Duration::from_secs(4)).1, "partway.delay.4s");
    }

    #[test]
    fn topology_names() {
        let t = Topology::new("test-x.");
        assert_eq!(t.exchange, "test-x.partway.jobs");
        assert_eq!(t.work_queue("expire"), Some("test-x.partway.jobs.expire"));
        assert_eq!(t.parking, "test-x.partway.parking");
        assert_eq!(t.delay_tiers.len(), 9);
        let p = Topology::new("");
        assert_eq!(p.work_queue("init"), Some("partway.jobs.init"));
        assert_eq!(p.delay_tiers[8].1, "partway.delay.300s");
    }

    #[test]
    fn malformed_messages_are_detected() {
        assert!(parse_message(b"not json").is_err());
        assert!(parse_message(
            br#"{"jobId":"00000000-0000-0000-0000-000000000000","kind":"nope"}"#
        )
        .is_err());
        assert!(parse_message(
            br#"{"jobId":"00000000-0000-0000-0000-000000000000","kind":"abort"}"#
        )
        .is_ok());
    }

    #[test]
    fn redactor_scrubs_raw_and_decoded_passwords() {
        let url = "amqp://user:p%40ss@host:5672/%2f";
        let uri: AMQPUri = url.parse().unwrap();
        let r = Redactor::new(url, &uri);
        assert_eq!(r.scrub("x p@ss y p%40ss"), "x *** y ***");
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        assert!(validate_prefix("test-1234.").is_ok());
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("a b").is_err());
        assert!(validate_prefix("a/b").is_err());
    }
}
