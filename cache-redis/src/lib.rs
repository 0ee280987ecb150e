//! Redis implementation of partway's [`ProgressCache`] for the distributed mode.
//!
//! The database is the truth and this is only a cache: every operation is bounded by
//! a short timeout, and any Redis error or timeout is a miss (reads) or a no-op
//! (writes), so callers answer from the database. Redis being down at start, going
//! away or coming back never fails or blocks the service.
//!
//! Key layout (all with TTLs):
//! - `partway:{upload_id}:urls:{page}`: a JSON page of presigned URLs, kept until its
//!   last URL expires (at most 24 h, at least 60 s);
//! - `partway:{upload_id}:pages`: the SET of cached page numbers, for `forget` (its TTL
//!   is refreshed to 24 h by every page written, so it outlives every page);
//! - `partway:{upload_id}:snapshot`: the serialized status snapshot, 5 s;
//! - channel `partway:events:{upload_id}`: the upload's events (JSON [`UploadEvent`]);
//! - `partway:ratelimit:{subject}`: a rate limit's state ([`RedisRateLimiter`]), until
//!   the subject's budget is full again.
//!
//! Events reach subscribers in every process: each [`RedisCache`] keeps one pub/sub
//! connection (PSUBSCRIBE `partway:events:*`) that feeds local broadcast channels and
//! reconnects with backoff. An event published while that connection is down is lost
//! (callers re-check the database anyway), except for subscribers of the publishing
//! instance itself, which then get it directly.
mod keys;
mod rate_limit;

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use futures::{
    future::{BoxFuture, Shared},
    FutureExt, StreamExt,
};
use partway_core::ports::{ProgressCache, UploadEvent, UrlPage};
use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Client, RedisError, RedisResult};
use tokio::{
    sync::{broadcast, watch},
    task::JoinHandle,
    time::{timeout, timeout_at, Instant, MissedTickBehavior},
};
use tracing::{debug, info, warn};
use uuid::Uuid;

pub use rate_limit::RedisRateLimiter;

/// Upper bound of every cache operation, waiting for a connection included.
const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// Upper bound of one connection attempt (TCP, AUTH, SELECT; PSUBSCRIBE for events).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `connect` waits for the first connection and the event subscription.
const STARTUP_WAIT: Duration = Duration::from_secs(1);
/// Delay before the next connection attempt after a failed one, doubling up to the max.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// The event subscription pings this often, to notice a connection that went silent.
const LISTENER_PING_EVERY: Duration = Duration::from_secs(10);
/// At most one warning about Redis trouble per this interval (the rest go to debug).
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Events buffered per local subscriber (an event only means "look again").
const CHANNEL_CAPACITY: usize = 64;

/// Deletes the snapshot, the page set and every page it names, atomically.
/// KEYS[1] = page set, KEYS[2] = snapshot; ARGV[1] = the page key prefix.
const FORGET_SCRIPT: &str = r"
local pages = redis.call('SMEMBERS', KEYS[1])
for _, page in ipairs(pages) do
  redis.call('DEL', ARGV[1] .. page)
end
redis.call('DEL', KEYS[1], KEYS[2])
return #pages
";

type Connected = (u64, MultiplexedConnection);
type Attempt = Shared<BoxFuture<'static, Option<Connected>>>;

/// A Redis-backed [`ProgressCache`]. See the crate docs for the key layout.
pub struct RedisCache {
    inner: Arc<Inner>,
    /// The event listener task, stopped when the cache is dropped.
    _listener: Option<AbortOnDrop>,
}

struct Inner {
    /// None when the URL did not parse: the cache then always misses.
    client: Option<Client>,
    /// `host:port` (never the URL: it may hold a password).
    addr: String,
    link: Mutex<Link>,
    channels: Mutex<HashMap<Uuid, broadcast::Sender<UploadEvent>>>,
    /// Whether the event subscription is up.
    listening: watch::Sender<bool>,
    last_warning: Mutex<Option<Instant>>,
    forget_script: redis::Script,
}

/// The command connection (multiplexed: one socket shared by all operations).
struct Link {
    slot: Slot,
    /// Consecutive failed connection attempts, for the backoff.
    failures: u32,
    /// Numbers connections, so that an operation failing on an old connection does not
    /// drop a newer one.
    generation: u64,
}

enum Slot {
    /// Not connected; the next operation after `retry_at` starts an attempt.
    Idle { retry_at: Instant },
    /// An attempt is under way (in its own task); operations wait for it, within
    /// their timeout.
    Connecting(Attempt),
    Ready {
        generation: u64,
        conn: MultiplexedConnection,
    },
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RedisCache {
    /// Connects to Redis at `url` (`redis://[user:password@]host:port[/db]`).
    ///
    /// Never fails: when Redis is unreachable (or the URL is invalid) the cache misses
    /// on every read and ignores writes, and keeps trying to reconnect. Waits at most
    /// about a second for the first connection and the event subscription.
    pub async fn connect(url: &str) -> RedisCache {
        let (client, addr) = match Client::open(url) {
            Ok(client) => {
                let addr = client.get_connection_info().addr().to_string();
                (Some(client), addr)
            }
            Err(e) => {
                // The error names what is wrong, never the URL's contents.
                warn!(
                    "progress cache: invalid Redis URL ({e}); caching is off and status is \
                     answered from the database"
                );
                (None, "<invalid Redis URL>".to_owned())
            }
        };
        let inner = Arc::new(Inner {
            client,
            addr,
            link: Mutex::new(Link {
                slot: Slot::Idle {
                    retry_at: Instant::now(),
                },
                failures: 0,
                generation: 0,
            }),
            channels: Mutex::new(HashMap::new()),
            listening: watch::channel(false).0,
            last_warning: Mutex::new(None),
            forget_script: redis::Script::new(FORGET_SCRIPT),
        });
        if inner.client.is_none() {
            return RedisCache {
                inner,
                _listener: None,
            };
        }

        let listener = AbortOnDrop(tokio::spawn(listen(inner.clone())));
        let deadline = Instant::now() + STARTUP_WAIT;
        let mut listening = inner.listening.subscribe();
        if matches!(timeout_at(deadline, inner.connection()).await, Ok(Some(_))) {
            // So that events published right after start reach this process.
            let subscribed = timeout_at(deadline, listening.wait_for(|up| *up)).await;
            info!(
                redis = %inner.addr,
                events = matches!(subscribed, Ok(Ok(_))),
                "progress cache: using Redis"
            );
        } else {
            warn!(
                redis = %inner.addr,
                "progress cache: Redis is unreachable; answering from the database and \
                 retrying in the background"
            );
        }
        RedisCache {
            inner,
            _listener: Some(listener),
        }
    }

    /// The request rate limiter on the same Redis and connection (DESIGN §7).
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter::new(self.inner.clone())
    }

    /// Whether Redis answers a PING right now (within the operation timeout).
    pub async fn is_connected(&self) -> bool {
        self.inner
            .run("ping", |mut conn| async move {
                redis::cmd("PING").query_async::<String>(&mut conn).await
            })
            .await
            .is_some()
    }
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("redis", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ProgressCache for RedisCache {
    async fn put_url_page(&self, upload_id: Uuid, page: u32, urls: Arc<UrlPage>) {
        let ttl = keys::page_ttl(&urls, unix_now()).as_secs();
        let json = match serde_json::to_string(&*urls) {
            Ok(json) => json,
            Err(e) => {
                debug!("progress cache: cannot serialize a URL page: {e}");
                return;
            }
        };
        let page_key = keys::page_key(upload_id, page);
        let pages_key = keys::pages_key(upload_id);
        self.inner
            .run("put_url_page", move |mut conn| async move {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("SET")
                    .arg(&page_key)
                    .arg(json)
                    .arg("EX")
                    .arg(ttl)
                    .ignore()
                    .cmd("SADD")
                    .arg(&pages_key)
                    .arg(page)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&pages_key)
                    .arg(keys::PAGE_TTL_MAX.as_secs())
                    .ignore();
                pipe.exec_async(&mut conn).await
            })
            .await;
    }

    async fn url_page(&self, upload_id: Uuid, page: u32) -> Option<Arc<UrlPage>> {
        let json = self
            .inner
            .get("url_page", keys::page_key(upload_id, page))
            .await?;
        match serde_json::from_str(&json) {
            Ok(urls) => Some(Arc::new(urls)),
            Err(e) => {
                debug!(%upload_id, page, "progress cache: malformed URL page, treated as a miss: {e}");
                None
            }
        }
    }

    async fn put_snapshot(&self, upload_id: Uuid, snapshot: String) {
        let key = keys::snapshot_key(upload_id);
        self.inner
            .run("put_snapshot", move |mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(snapshot)
                    .arg("EX")
                    .arg(keys::SNAPSHOT_TTL.as_secs())
                    .exec_async(&mut conn)
                    .await
            })
            .await;
    }

    async fn snapshot(&self, upload_id: Uuid) -> Option<String> {
        self.inner
            .get("snapshot", keys::snapshot_key(upload_id))
            .await
    }

    async fn forget(&self, upload_id: Uuid) {
        let inner = self.inner.clone();
        self.inner
            .run("forget", move |mut conn| async move {
                let prefix = keys::page_key_prefix(upload_id);
                inner
                    .forget_script
                    .key(keys::pages_key(upload_id))
                    .key(keys::snapshot_key(upload_id))
                    .arg(prefix)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await;
    }

    async fn publish(&self, event: UploadEvent) {
        let snapshot_key = keys::snapshot_key(event.upload_id);
        let channel = keys::event_channel(event.upload_id);
        let payload = match serde_json::to_string(&event) {
            Ok(payload) => payload,
            Err(e) => {
                debug!("progress cache: cannot serialize an event: {e}");
                return;
            }
        };
        let published = self
            .inner
            .run("publish", move |mut conn| async move {
                let mut pipe = redis::pipe();
                pipe.cmd("DEL")
                    .arg(&snapshot_key)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(&channel)
                    .arg(payload)
                    .ignore();
                pipe.exec_async(&mut conn).await
            })
            .await
            .is_some();
        // Our own listener would bring it back; when it is down (or the publish failed)
        // at least this process's subscribers hear of it.
        if !published || !*self.inner.listening.borrow() {
            self.inner.deliver_locally(event);
        }
    }

    async fn subscribe(&self, upload_id: Uuid) -> broadcast::Receiver<UploadEvent> {
        let mut channels = lock(&self.inner.channels);
        channels.retain(|_, sender| sender.receiver_count() > 0);
        channels
            .entry(upload_id)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }
}

impl Inner {
    /// Runs one operation on the command connection, within [`OP_TIMEOUT`] (waiting for
    /// the connection included). Any failure is logged and gives None.
    async fn run<T, F, Fut>(self: &Arc<Self>, what: &'static str, op: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut + Send,
        Fut: Future<Output = RedisResult<T>> + Send,
        T: Send,
    {
        self.client.as_ref()?;
        let deadline = Instant::now() + OP_TIMEOUT;
        let (generation, conn) = match timeout_at(deadline, self.connection()).await {
            Ok(Some(connected)) => connected,
            Ok(None) => {
                debug!(redis = %self.addr, "progress cache: {what}: not connected to Redis");
                return None;
            }
            Err(_) => {
                self.trouble(what, &"timed out waiting for a connection");
                return None;
            }
        };
        match timeout_at(deadline, op(conn)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                if is_connection_error(&e) {
                    self.invalidate(generation);
                }
                self.trouble(what, &e);
                None
            }
            Err(_) => {
                // A connection that stopped answering is replaced.
                self.invalidate(generation);
                self.trouble(what, &"timed out");
                None
            }
        }
    }

    async fn get(self: &Arc<Self>, what: &'static str, key: String) -> Option<String> {
        self.run(what, move |mut conn| async move {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<String>>(&mut conn)
                .await
        })
        .await
        .flatten()
    }

    /// The command connection: the current one, the outcome of the attempt under way,
    /// or of a new attempt; None while backing off after a failed attempt.
    async fn connection(self: &Arc<Self>) -> Option<Connected> {
        let attempt = {
            let mut link = lock(&self.link);
            match &link.slot {
                Slot::Ready { generation, conn } => return Some((*generation, conn.clone())),
                Slot::Connecting(attempt) => attempt.clone(),
                Slot::Idle { retry_at } if Instant::now() < *retry_at => return None,
                Slot::Idle { .. } => {
                    let attempt = self.start_attempt()?;
                    link.slot = Slot::Connecting(attempt.clone());
                    attempt
                }
            }
        };
        attempt.await
    }

    /// Starts a connection attempt in its own task, so that it completes (and is
    /// recorded) even when every operation waiting for it gave up.
    fn start_attempt(self: &Arc<Self>) -> Option<Attempt> {
        let client = self.client.clone()?;
        let inner = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(OP_TIMEOUT));
            let result = match timeout(
                CONNECT_TIMEOUT,
                client.get_multiplexed_async_connection_with_config(&config),
            )
            .await
            {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err("connection attempt timed out".to_owned()),
            };
            inner.upgrade()?.finish_attempt(result)
        });
        Some(async move { task.await.ok().flatten() }.boxed().shared())
    }

    fn finish_attempt(&self, result: Result<MultiplexedConnection, String>) -> Option<Connected> {
        let mut link = lock(&self.link);
        match result {
            Ok(conn) => {
                link.generation += 1;
                let generation = link.generation;
                let recovered = link.failures > 0;
                link.failures = 0;
                link.slot = Slot::Ready {
                    generation,
                    conn: conn.clone(),
                };
                drop(link);
                if recovered {
                    info!(redis = %self.addr, "progress cache: connected to Redis again");
                } else {
                    debug!(redis = %self.addr, "progress cache: connected to Redis");
                }
                Some((generation, conn))
            }
            Err(e) => {
                let delay = backoff(link.failures);
                link.failures = link.failures.saturating_add(1);
                link.slot = Slot::Idle {
                    retry_at: Instant::now() + delay,
                };
                drop(link);
                self.trouble("connect", &e);
                None
            }
        }
    }

    /// Drops the connection `generation` (broken or silent); the next operation
    /// reconnects.
    fn invalidate(&self, generation: u64) {
        let mut link = lock(&self.link);
        if matches!(link.slot, Slot::Ready { generation: current, .. } if current == generation) {
            link.slot = Slot::Idle {
                retry_at: Instant::now(),
            };
        }
    }

    /// Logs a failure: always at debug, and as a warning at most once per [`WARN_EVERY`].
    fn trouble(&self, what: &str, error: &dyn fmt::Display) {
        debug!(redis = %self.addr, "progress cache: {what} failed: {error}");
        let now = Instant::now();
        let mut last = lock(&self.last_warning);
        if last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *last = Some(now);
            drop(last);
            warn!(
                redis = %self.addr,
                "Redis {what} failed ({error}); answering from the database and not \
                 enforcing rate limits meanwhile (further warnings are held back for {}s)",
                WARN_EVERY.as_secs()
            );
        }
    }

    fn deliver_locally(&self, event: UploadEvent) {
        let mut channels = lock(&self.channels);
        if let Some(sender) = channels.get(&event.upload_id) {
            if sender.send(event).is_err() {
                // Nobody listens any more.
                channels.remove(&event.upload_id);
            }
        }
    }

    fn dispatch(&self, message: &redis::Msg) {
        let upload_id = keys::upload_id_from_channel(message.get_channel_name()).or_else(|| {
            serde_json::from_slice::<UploadEvent>(message.get_payload_bytes())
                .ok()
                .map(|event| event.upload_id)
        });
        match upload_id {
            Some(upload_id) => self.deliver_locally(UploadEvent { upload_id }),
            None => debug!(
                channel = message.get_channel_name(),
                "progress cache: ignoring a malformed event"
            ),
        }
    }

    /// Forwards events until the subscription connection fails; returns why it did.
    async fn pump(&self, pubsub: redis::aio::PubSub) -> String {
        let (mut sink, mut stream) = pubsub.split();
        let mut ping =
            tokio::time::interval_at(Instant::now() + LISTENER_PING_EVERY, LISTENER_PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => self.dispatch(&message),
                    None => return "the event subscription connection closed".to_owned(),
                },
                _ = ping.tick() => {
                    match timeout(CONNECT_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return e.to_string(),
                        Err(_) => {
                            return "the event subscription connection stopped answering"
                                .to_owned()
                        }
                    }
                }
            }
        }
    }
}

/// The event listener: one pub/sub connection per cache, re-established with backoff.
async fn listen(inner: Arc<Inner>) {
    let Some(client) = inner.client.clone() else {
        return;
    };
    let mut failures = 0u32;
    loop {
        let subscribed = timeout(CONNECT_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(keys::EVENT_PATTERN).await?;
            Ok::<_, RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                failures = 0;
                inner.listening.send_replace(true);
                debug!(redis = %inner.addr, "progress cache: listening for upload events");
                let why = inner.pump(pubsub).await;
                inner.listening.send_replace(false);
                inner.trouble("event subscription", &why);
            }
            Ok(Err(e)) => inner.trouble("event subscription", &e),
            Err(_) => inner.trouble("event subscription", &"connection attempt timed out"),
        }
        tokio::time::sleep(backoff(failures)).await;
        failures = failures.saturating_add(1);
    }
}

fn backoff(failures: u32) -> Duration {
    RECONNECT_MIN
        .saturating_mul(1 << failures.min(16))
        .min(RECONNECT_MAX)
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        assert_eq!(backoff(0), RECONNECT_MIN);
        assert_eq!(backoff(1), RECONNECT_MIN * 2);
        assert_eq!(backoff(2), RECONNECT_MIN * 4);
        assert_eq!(backoff(10), RECONNECT_MAX);
        assert_eq!(backoff(u32::MAX), RECONNECT_MAX);
    }

    #[tokio::test]
    async fn an_invalid_url_gives_a_cache_that_always_misses() {
        let cache = RedisCache::connect("not a url").await;
        assert!(!cache.is_connected().await);
        let id = Uuid::new_v4();
        cache.put_snapshot(id, "{}".into()).await;
        assert_eq!(cache.snapshot(id).await, None);
        let mut events = cache.subscribe(id).await;
        cache.publish(UploadEvent { upload_id: id }).await;
        assert_eq!(events.try_recv().unwrap(), UploadEvent { upload_id: id });
        assert!(!format!("{cache:?}").contains("not a url"));
    }

    #[tokio::test]
    async fn debug_output_hides_the_password() {
        let cache = RedisCache::connect("redis://user:s3cret@127.0.0.1:1/0").await;
        let shown = format!("{cache:?}");
        assert!(shown.contains("127.0.0.1:1"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
