//! Integration tests against a real RabbitMQ (`PARTWAY_TEST_AMQP_URL`).
//!
//! Start one with `scripts/services start rabbitmq && eval "$(scripts/services env)"`.
//! Without the variable the tests print "skipping" and pass, unless `PARTWAY_REQUIRE_SERVICES=1`,
//! which makes them fail.
//!
//! Every test declares its own topology under a random `test-<uuid>.` prefix and deletes it at
//! the end, so tests can run in parallel on one broker. Waiting is done by polling with a
//! deadline, never by sleeping a fixed time and hoping.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use lapin::{
    options::{
        BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
        QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};
use partway_queue_amqp::{
    header_str, AmqpError, AmqpQueue, DeliveryInfo, Disposition, JobMessage, Topology, KINDS,
    PARK_REASON_HEADER, RETRIES_HEADER,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
    task::{AbortHandle, JoinHandle},
};
use uuid::Uuid;

// ------------------------------------------------------------------------------------------
// helpers

fn amqp_url() -> Option<String> {
    match std::env::var("PARTWAY_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("PARTWAY_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!(
                    "PARTWAY_TEST_AMQP_URL is not set but PARTWAY_REQUIRE_SERVICES=1: start RabbitMQ \
                     with `scripts/services start rabbitmq` and `eval \"$(scripts/services env)\"`"
                );
            }
            eprintln!("skipping: PARTWAY_TEST_AMQP_URL is not set");
            None
        }
    }
}

macro_rules! url_or_skip {
    () => {
        match amqp_url() {
            Some(url) => url,
            None => return,
        }
    };
}

/// A private `test-<uuid>.` namespace, and a guard that deletes it if the test panics (a
/// passing test deletes it itself with `delete_topology`, which is under test too).
fn namespace(url: &str) -> (String, Cleanup) {
    let prefix = format!("test-{}.", Uuid::new_v4().simple());
    let cleanup = Cleanup {
        url: url.to_string(),
        prefix: prefix.clone(),
        extra_queues: Mutex::default(),
    };
    (prefix, cleanup)
}

struct Cleanup {
    url: String,
    prefix: String,
    extra_queues: Mutex<Vec<String>>,
}

impl Cleanup {
    fn also_delete_queue(&self, name: &str) {
        self.extra_queues.lock().unwrap().push(name.to_string());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let url = self.url.clone();
        let prefix = self.prefix.clone();
        let extra = std::mem::take(&mut *self.extra_queues.lock().unwrap());
        // Drop cannot await: use a private runtime on a helper thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let work = async {
                    // Delete by name, without declaring anything.
                    let Ok((_conn, channel)) = try_raw_channel(&url).await else {
                        return;
                    };
                    let topology = Topology::new(&prefix);
                    let queues = topology
                        .work_queues
                        .iter()
                        .map(|(_, q)| q)
                        .chain(topology.delay_tiers.iter().map(|(_, q)| q))
                        .chain([&topology.parking])
                        .chain(extra.iter());
                    for queue in queues {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                    let exchanges = topology
                        .delay_tiers
                        .iter()
                        .map(|(_, x)| x)
                        .chain([&topology.exchange]);
                    for exchange in exchanges {
                        let _ = channel
                            .exchange_delete(
                                exchange.as_str().into(),
                                ExchangeDeleteOptions::default(),
                            )
                            .await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(30), work).await;
            })
        })
        .join();
    }
}

async fn try_raw_channel(url: &str) -> Result<(Connection, Channel), lapin::Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    Ok((conn, channel))
}

async fn raw_channel(url: &str) -> (Connection, Channel) {
    try_raw_channel(url)
        .await
        .expect("raw connection and channel")
}

/// Polls `check` until it yields `Some`, failing the test after `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, within: Duration, what: &str) -> T {
    tokio::time::timeout(within, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out after {within:?} waiting for {what}"))
        .expect("sender alive")
}

/// A consumer running in the background, stopped through its watch channel.
struct Running {
    stop: watch::Sender<bool>,
    handle: JoinHandle<Result<(), AmqpError>>,
}

impl Running {
    /// Requests shutdown and waits for `consume` to return (bounded).
    async fn stop(self, within: Duration) -> Duration {
        let started = Instant::now();
        self.stop.send_replace(true);
        tokio::time::timeout(within, self.handle)
            .await
            .expect("consume returns after shutdown")
            .expect("consume task not panicked")
            .expect("consume returns Ok");
        started.elapsed()
    }
}

fn start_consumer<F, Fut>(queue: &AmqpQueue, prefetch: u16, grace: Duration, handler: F) -> Running
where
    F: Fn(JobMessage, DeliveryInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
{
    let (stop, rx) = watch::channel(false);
    let queue = queue.clone();
    let handle =
        tokio::spawn(async move { queue.consume_with_info(prefetch, handler, rx, grace).await });
    Running { stop, handle }
}

type Delivered = mpsc::UnboundedReceiver<(JobMessage, DeliveryInfo)>;

/// A handler that forwards this test's deliveries into a channel and acks everything.
fn forwarding_acker() -> (
    impl Fn(JobMessage, DeliveryInfo) -> std::future::Ready<Disposition> + Send + Sync + 'static,
    Delivered,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |message: JobMessage, info: DeliveryInfo| {
        let _ = tx.send((message, info));
        std::future::ready(Disposition::Ack)
    };
    (handler, rx)
}

/// A TCP proxy in front of the broker whose connections the test can cut, to simulate a killed
/// worker or a broker restart without disturbing the shared broker.
struct Proxy {
    addr: SocketAddr,
    accepting: Arc<AtomicBool>,
    /// Connections refused while not accepting.
    refused: Arc<AtomicUsize>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept_task: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicUsize::new(0));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept_task = {
            let accepting = accepting.clone();
            let refused = refused.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if !accepting.load(Ordering::SeqCst) {
                        drop(client); // the "broker" is down
                        refused.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().unwrap().push(task.abort_handle());
                }
            })
        };
        Proxy {
            addr,
            accepting,
            refused,
            connections,
            accept_task,
        }
    }

    /// Closes every proxied connection (both sides see the socket close).
    fn cut(&self) {
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::SeqCst);
    }

    /// `url` with its host:port replaced by the proxy's.
    fn url(&self, url: &str) -> String {
        let uri: lapin::uri::AMQPUri = url.parse().unwrap();
        let hostport = format!("{}:{}", uri.authority.host, uri.authority.port);
        let at = url.find('@').map_or(0, |i| i + 1);
        let (head, tail) = url.split_at(at);
        assert!(
            tail.starts_with(&hostport),
            "URL must spell host:port explicitly"
        );
        format!("{head}{}{}", self.addr, &tail[hostport.len()..])
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept_task.abort();
    }
}

fn upstream(url: &str) -> String {
    let uri: lapin::uri::AMQPUri = url.parse().unwrap();
    format!("{}:{}", uri.authority.host, uri.authority.port)
}

async fn depth_of(queue: &AmqpQueue, kind: &str) -> u32 {
    let name = queue.topology().work_queue(kind).unwrap().to_string();
    queue
        .depths()
        .await
        .unwrap()
        .into_iter()
        .find(|(q, _)| *q == name)
        .unwrap()
        .1
}

const WAIT: Duration = Duration::from_secs(15);

// ------------------------------------------------------------------------------------------
// tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_consume_ack_delivers_once() {
    let url = url_or_skip!();
    let (prefix, _cleanup) = namespace(&url);
    let queue = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    assert!(queue.is_connected().await);
    let id = Uuid::new_v4();
    queue
        .publish(&JobMessage::new(id, "complete"))
        .await
        .unwrap();

    let (handler, mut rx) = forwarding_acker();
    let consumer = start_consumer(&queue, 4, Duration::from_secs(5), handler);
    let (message, info) = recv(&mut rx, WAIT, "the delivery").await;
    assert_eq!(message, JobMessage::new(id, "complete"));
    assert!(!info.redelivered);
    assert_eq!(info.retries, 0);

    // A graceful stop closes the channel: an unacked message would go back to its queue.
    consumer.stop(WAIT).await;
    assert!(rx.try_recv().is_err(), "delivered more than once");
    let depths = queue.depths().await.unwrap();
    assert_eq!(depths.len(), KINDS.len());
    assert!(
        depths.iter().all(|(_, n)| *n == 0),
        "acked: nothing left: {depths:?}"
    );
    queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_message_format_and_confirms() {
    let url = url_or_skip!();
    let (prefix, cleanup) = namespace(&url);
    let queue = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    let id = Uuid::new_v4();
    queue.publish(&JobMessage::new(id, "init")).await.unwrap();
    // publish returned after the broker's confirm: the message is already in its queue.
    assert_eq!(depth_of(&queue, "init").await, 1);

    let (_conn, channel) = raw_channel(&url).await;
    let got = channel
        .basic_get(
            queue.topology().work_queue("init").unwrap().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("a message");
    let props = &got.delivery.properties;
    assert_eq!(*props.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str().to_string()),
        Some(id.to_string())
    );
    let body: serde_json::Value = serde_json::from_slice(&got.delivery.data).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"jobId": id.to_string(), "kind": "init"})
    );

    // Unknown kinds are refused before anything is sent.
    let err = queue
        .publish(&JobMessage::new(id, "explode"))
        .await
        .unwrap_err();
    assert!(matches!(err, AmqpError::UnknownKind(_)), "{err:?}");

    // A broker nack is an Err: an extra queue that rejects every publish, bound to "abort".
    let rejecting = format!("{prefix}rejecting");
    cleanup.also_delete_queue(&rejecting);
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(
            rejecting.as_str().into(),
            QueueDeclareOptions::default(),
            args,
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            rejecting.as_str().into(),
            queue.topology().exchange.as_str().into(),
            "abort".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let err = queue
        .publish(&JobMessage::new(Uuid::new_v4(), "abort"))
        .await
        .unwrap_err();
    assert!(matches!(err, AmqpError::NotConfirmed(_)), "{err:?}");
    // The handle stays usable after a nack.
    queue.publish(&JobMessage::new(id, "resume")).await.unwrap();
    assert_eq!(depth_of(&queue, "resume").await, 1);

    channel
        .queue_delete(rejecting.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_declared_twice_is_fine_and_has_the_right_types() {
    let url = url_or_skip!();
    let (prefix, _cleanup) = namespace(&url);
    let first = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    let second = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    second
        .publish(&JobMessage::new(Uuid::new_v4(), "expire"))
        .await
        .unwrap();
    assert_eq!(depth_of(&first, "expire").await, 1);

    let topo = first.topology().clone();
    assert_eq!(topo.exchange, format!("{prefix}partway.jobs"));
    let (conn, channel) = raw_channel(&url).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    for kind in KINDS {
        let name = format!("{prefix}partway.jobs.{kind}");
        assert_eq!(topo.work_queue(kind), Some(name.as_str()));
        channel
            .queue_declare(name.as_str().into(), passive, FieldTable::default())
            .await
            .unwrap_or_else(|e| panic!("{name} exists: {e}"));
    }
    let tiers: Vec<u64> = topo.delay_tiers.iter().map(|(s, _)| *s).collect();
    assert_eq!(tiers, [1, 2, 4, 8, 16, 32, 64, 128, 300]);
    for (secs, name) in &topo.delay_tiers {
        assert_eq!(*name, format!("{prefix}partway.delay.{secs}s"));
        channel
            .queue_declare(name.as_str().into(), passive, FieldTable::default())
            .await
            .unwrap_or_else(|e| panic!("{name} exists: {e}"));
        channel
            .exchange_declare(
                name.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("exchange {name} exists: {e}"));
    }
    channel
        .queue_declare(topo.parking.as_str().into(), passive, FieldTable::default())
        .await
        .unwrap();
    channel
        .exchange_declare(
            topo.exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    // The broker refuses a redeclaration with other arguments: that proves the types.
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut classic = FieldTable::default();
    classic.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    for name in [topo.work_queue("init").unwrap(), topo.parking.as_str()] {
        let ch = conn.create_channel().await.unwrap();
        let err = ch
            .queue_declare(name.into(), durable, classic.clone())
            .await
            .expect_err("a quorum queue cannot be redeclared as classic");
        assert!(
            err.to_string().contains("PRECONDITION_FAILED"),
            "{name}: {err}"
        );
    }
    let mut ttl = FieldTable::default();
    ttl.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    ttl.insert("x-message-ttl".into(), AMQPValue::LongInt(1234));
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .queue_declare(topo.delay_tiers[0].1.as_str().into(), durable, ttl)
        .await
        .expect_err("the 1 s tier has another TTL");
    assert!(err.to_string().contains("x-message-ttl"), "{err}");

    second.close().await;
    first.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_comes_back_through_the_delay_tier() {
    let url = url_or_skip!();
    let (prefix, _cleanup) = namespace(&url);
    let queue = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let first_seen: Arc<Mutex<Option<Instant>>> = Arc::default();
    let handler = {
        let first_seen = first_seen.clone();
        move |message: JobMessage, info: DeliveryInfo| {
            let mut first = first_seen.lock().unwrap();
            let disposition = if first.is_none() {
                *first = Some(Instant::now());
                Disposition::Retry(Duration::from_secs(1))
            } else {
                let _ = tx.send((message, info, Instant::now()));
                Disposition::Ack
            };
            std::future::ready(disposition)
        }
    };
    let consumer = start_consumer(&queue, 4, Duration::from_secs(5), handler);
    let id = Uuid::new_v4();
    queue.publish(&JobMessage::new(id, "resume")).await.unwrap();

    let (message, info, at) = recv(&mut rx, WAIT, "the retried delivery").await;
    let waited = at - first_seen.lock().unwrap().unwrap();
    assert_eq!(
        message,
        JobMessage::new(id, "resume"),
        "same message, same kind"
    );
    assert_eq!(info.retries, 1);
    assert!(
        waited >= Duration::from_millis(900),
        "came back after the TTL: {waited:?}"
    );
    eprintln!("retry via the 1 s tier came back after {waited:?}");

    consumer.stop(WAIT).await;
    assert!(queue.depths().await.unwrap().iter().all(|(_, n)| *n == 0));
    queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn park_and_malformed_messages_go_to_the_parking_queue() {
    let url = url_or_skip!();
    let (prefix, _cleanup) = namespace(&url);
    let queue = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        move |_message: JobMessage, _info: DeliveryInfo| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Disposition::Park("storage said: NoSuchUpload".into()))
        }
    };
    let consumer = start_consumer(&queue, 4, Duration::from_secs(5), handler);
    let id = Uuid::new_v4();
    queue.publish(&JobMessage::new(id, "abort")).await.unwrap();

    let (conn, channel) = raw_channel(&url).await;
    let parking = queue.topology().parking.clone();
    let parked = eventually(WAIT, "the parked message", || {
        let channel = channel.clone();
        let parking = parking.clone();
        async move {
            channel
                .basic_get(parking.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
        }
    })
    .await;
    let props = &parked.delivery.properties;
    assert_eq!(
        header_str(props, PARK_REASON_HEADER).as_deref(),
        Some("storage said: NoSuchUpload")
    );
    assert_eq!(*props.delivery_mode(), Some(2));
    let body: JobMessage = serde_json::from_slice(&parked.delivery.data).unwrap();
    assert_eq!(body, JobMessage::new(id, "abort"));
    assert!(props
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .contains_key(RETRIES_HEADER));

    // A malformed message is parked without calling the handler.
    let calls_before = calls.load(Ordering::SeqCst);
    let garbage = b"{\"jobId\": 42, \"password\": \"nope\"".to_vec();
    channel
        .basic_publish(
            queue.topology().exchange.as_str().into(),
            "init".into(),
            BasicPublishOptions::default(),
            &garbage,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let parked = eventually(WAIT, "the parked malformed message", || {
        let channel = channel.clone();
        let parking = parking.clone();
        async move {
            channel
                .basic_get(parking.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(parked.delivery.data, garbage, "parked as received");
    let reason = header_str(&parked.delivery.properties, PARK_REASON_HEADER).unwrap();
    assert!(reason.starts_with("malformed job message"), "{reason}");
    assert_eq!(calls.load(Ordering::SeqCst), calls_before);

    consumer.stop(WAIT).await;
    assert_eq!(queue.parked().await.unwrap(), 0);
    drop(conn);
    queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_handler_message_is_redelivered_after_shutdown() {
    let url = url_or_skip!();
    let (prefix, _cleanup) = namespace(&url);
    let queue = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    let (tx, mut started) = mpsc::unbounded_channel();
    let stuck = start_consumer(&queue, 4, Duration::from_millis(300), move |m, _| {
        let _ = tx.send(m);
        std::future::pending::<Disposition>() // never returns
    });
    let id = Uuid::new_v4();
    queue.publish(&JobMessage::new(id, "init")).await.unwrap();
    assert_eq!(
        recv(&mut started, WAIT, "the stuck handler").await.job_id,
        id
    );

    let took = stuck.stop(WAIT).await;
    eprintln!("shutdown with a stuck handler (grace 300 ms) took {took:?}");

    let (handler, mut rx) = forwarding_acker();
    let second = start_consumer(&queue, 4, Duration::from_secs(5), handler);
    let (message, info) = recv(&mut rx, WAIT, "the redelivery").await;
    assert_eq!(message.job_id, id);
    assert!(info.redelivered);
    second.stop(WAIT).await;
    queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_message_is_redelivered_to_another_consumer() {
    let url = url_or_skip!();
    let (prefix, _cleanup) = namespace(&url);
    let queue = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    let proxy = Proxy::start(upstream(&url)).await;
    let doomed_handle = AmqpQueue::connect_with_prefix(&proxy.url(&url), &prefix)
        .await
        .unwrap();
    let (tx, mut started) = mpsc::unbounded_channel();
    let doomed = start_consumer(
        &doomed_handle,
        4,
        Duration::from_millis(200),
        move |m, _| {
            let _ = tx.send(m);
            std::future::pending::<Disposition>()
        },
    );
    let id = Uuid::new_v4();
    queue
        .publish(&JobMessage::new(id, "complete"))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut started, WAIT, "the doomed worker's delivery")
            .await
            .job_id,
        id
    );

    let (handler, mut rx) = forwarding_acker();
    let survivor = start_consumer(&queue, 4, Duration::from_secs(5), handler);
    // Kill the worker's connection while its delivery is unacked; it cannot come back.
    proxy.set_accepting(false);
    proxy.cut();
    let cut_at = Instant::now();
    let (message, info) = recv(&mut rx, WAIT, "the redelivery to the survivor").await;
    eprintln!(
        "redelivered {:?} after the connection was cut",
        cut_at.elapsed()
    );
    assert_eq!(message.job_id, id);
    assert!(info.redelivered);

    // The dead worker is retrying its connection; shutdown still ends it promptly.
    let took = doomed.stop(Duration::from_secs(10)).await;
    assert!(
        took < Duration::from_secs(8),
        "shutdown while reconnecting took {took:?}"
    );
    survivor.stop(WAIT).await;
    queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reconnects_after_the_connection_dies() {
    let url = url_or_skip!();
    let (prefix, _cleanup) = namespace(&url);
    let queue = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    let proxy = Proxy::start(upstream(&url)).await;
    let worker_handle = AmqpQueue::connect_with_prefix(&proxy.url(&url), &prefix)
        .await
        .unwrap();
    let (handler, mut rx) = forwarding_acker();
    let worker = start_consumer(&worker_handle, 4, Duration::from_secs(5), handler);

    let first = Uuid::new_v4();
    queue
        .publish(&JobMessage::new(first, "init"))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut rx, WAIT, "the first delivery").await.0.job_id,
        first
    );

    // "Broker restart" as seen by the worker: its connection dies, the broker comes back later.
    proxy.set_accepting(false);
    proxy.cut();
    let second = Uuid::new_v4();
    queue
        .publish(&JobMessage::new(second, "init"))
        .await
        .unwrap();
    let down_at = Instant::now();
    // Let the worker fail at least two reconnect attempts, then bring the "broker" back.
    eventually(WAIT, "failed reconnect attempts", || {
        let refused = proxy.refused.load(Ordering::SeqCst);
        async move { (refused >= 2).then_some(()) }
    })
    .await;
    // The second message waits (and the first one too if its ack was lost with the connection:
    // the handler forwarded it before acking).
    assert!(
        depth_of(&queue, "init").await >= 1,
        "waiting while the worker is down"
    );
    proxy.set_accepting(true);
    loop {
        let (message, info) = recv(
            &mut rx,
            Duration::from_secs(30),
            "the delivery after reconnect",
        )
        .await;
        if message.job_id == second {
            break;
        }
        assert_eq!(
            message.job_id, first,
            "only a lost ack may repeat the first one"
        );
        assert!(info.redelivered);
    }
    eprintln!(
        "consumer resumed {:?} after its connection died",
        down_at.elapsed()
    );

    worker.stop(WAIT).await;
    assert_eq!(depth_of(&queue, "init").await, 0);
    queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reconnects_lazily_and_fails_while_the_broker_is_down() {
    let url = url_or_skip!();
    let (prefix, _cleanup) = namespace(&url);
    let direct = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    let proxy = Proxy::start(upstream(&url)).await;
    let relay = AmqpQueue::connect_with_prefix(&proxy.url(&url), &prefix)
        .await
        .unwrap();
    relay
        .publish(&JobMessage::new(Uuid::new_v4(), "abort"))
        .await
        .unwrap();

    proxy.set_accepting(false);
    proxy.cut();
    let started = Instant::now();
    let err = relay
        .publish(&JobMessage::new(Uuid::new_v4(), "abort"))
        .await
        .expect_err("broker down: not confirmed");
    eprintln!(
        "publish with the broker down failed after {:?}: {err}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(12), "bounded");
    // Still down: the lazy reconnect fails too.
    assert!(relay
        .publish(&JobMessage::new(Uuid::new_v4(), "abort"))
        .await
        .is_err());
    assert!(!relay.is_connected().await);

    proxy.set_accepting(true);
    let id = Uuid::new_v4();
    relay.publish(&JobMessage::new(id, "abort")).await.unwrap();
    assert!(relay.is_connected().await);
    // First and last publishes arrived; the failed ones did not claim success.
    assert!(depth_of(&direct, "abort").await >= 2);

    relay.close().await;
    direct.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_fast_and_never_show_the_password() {
    let Some(url) = amqp_url() else { return };
    // A closed port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let secret = "Sup3r-s3cret-pw";
    let started = Instant::now();
    let err = AmqpQueue::connect(&format!("amqp://partway:{secret}@127.0.0.1:{port}/%2f"))
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(secret), "leaks the password: {text}");
    }
    eprintln!("closed port: {err} ({:?})", started.elapsed());

    // The real broker with a wrong password.
    let uri: lapin::uri::AMQPUri = url.parse().unwrap();
    let wrong = format!(
        "amqp://{}:{secret}@{}:{}/%2f",
        uri.authority.userinfo.username, uri.authority.host, uri.authority.port
    );
    let started = Instant::now();
    let err = AmqpQueue::connect(&wrong)
        .await
        .expect_err("wrong password");
    assert!(
        started.elapsed() < Duration::from_secs(11),
        "{:?}",
        started.elapsed()
    );
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(secret), "leaks the password: {text}");
    }
    eprintln!("wrong password: {err} ({:?})", started.elapsed());

    assert!(matches!(
        AmqpQueue::connect("http://nope").await,
        Err(AmqpError::InvalidUrl)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_bounds_in_flight_deliveries() {
    let url = url_or_skip!();
    let (prefix, _cleanup) = namespace(&url);
    let queue = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let (release, released) = watch::channel(false);
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let handler = {
        let in_flight = in_flight.clone();
        let max_in_flight = max_in_flight.clone();
        move |message: JobMessage, _info: DeliveryInfo| {
            let in_flight = in_flight.clone();
            let max_in_flight = max_in_flight.clone();
            let mut released = released.clone();
            let done_tx = done_tx.clone();
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max_in_flight.fetch_max(now, Ordering::SeqCst);
                let _ = released.wait_for(|r| *r).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let _ = done_tx.send(message.job_id);
                Disposition::Ack
            }
        }
    };
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        queue
            .publish(&JobMessage::new(*id, "expire"))
            .await
            .unwrap();
    }
    let consumer = start_consumer(&queue, 2, Duration::from_secs(5), handler);

    eventually(WAIT, "two deliveries in flight", || {
        let n = in_flight.load(Ordering::SeqCst);
        async move { (n == 2).then_some(()) }
    })
    .await;
    // The broker holds back the other three while two are unacked.
    assert_eq!(depth_of(&queue, "expire").await, 3);
    assert_eq!(in_flight.load(Ordering::SeqCst), 2);

    release.send_replace(true);
    let mut seen = HashMap::new();
    for _ in 0..5 {
        *seen
            .entry(recv(&mut done, WAIT, "the handled messages").await)
            .or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(max_in_flight.load(Ordering::SeqCst), 2);
    consumer.stop(WAIT).await;
    queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_gets_the_message_requeued() {
    let url = url_or_skip!();
    let (prefix, _cleanup) = namespace(&url);
    let queue = AmqpQueue::connect_with_prefix(&url, &prefix).await.unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = {
        let attempts = attempts.clone();
        move |message: JobMessage, info: DeliveryInfo| {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                if attempt == 0 {
                    panic!("handler bug (expected by the test)");
                }
                let _ = tx.send((message, info));
                Disposition::Ack
            }
        }
    };
    let consumer = start_consumer(&queue, 4, Duration::from_secs(5), handler);
    let id = Uuid::new_v4();
    queue.publish(&JobMessage::new(id, "init")).await.unwrap();
    let (message, info) = recv(&mut rx, WAIT, "the delivery after the panic").await;
    assert_eq!(message.job_id, id);
    assert!(info.redelivered);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    consumer.stop(WAIT).await;
    assert_eq!(depth_of(&queue, "init").await, 0);
    queue.delete_topology().await.unwrap();
}
