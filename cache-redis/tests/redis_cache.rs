//! `RedisCache` against real Redis servers: the shared test instance from
//! `PARTWAY_TEST_REDIS_URL` (scripts/test provides it), plus private `redis-server`
//! processes started here for the outage and recovery cases.
//!
//! Without the variable (or without `redis-server`) the tests that need it print
//! "skipping" and pass, unless `PARTWAY_REQUIRE_SERVICES=1`, where they fail.
use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use partway_cache_redis::RedisCache;
use partway_core::ports::{PresignedUrl, ProgressCache, UploadEvent};
use tokio::{
    sync::broadcast::{self, error::RecvError},
    time::{timeout, Instant},
};
use uuid::Uuid;

/// Generous bound for one cache operation (the cache's own bound is 250 ms).
const OP_BOUND: Duration = Duration::from_secs(1);
/// Deadline for anything that waits on a (re)connection.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(20);

fn services_required() -> bool {
    std::env::var("PARTWAY_REQUIRE_SERVICES").is_ok_and(|v| v.trim() == "1")
}

/// The shared test Redis, or None (after printing "skipping") when it is not configured.
fn redis_url(test: &str) -> Option<String> {
    match std::env::var("PARTWAY_TEST_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                !services_required(),
                "{test}: PARTWAY_TEST_REDIS_URL is not set but PARTWAY_REQUIRE_SERVICES=1; \
                 run `scripts/services start redis` and `eval \"$(scripts/services env)\"`, \
                 or use scripts/test"
            );
            eprintln!("skipping {test}: PARTWAY_TEST_REDIS_URL is not set");
            None
        }
    }
}

async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection to the test Redis")
}

async fn ttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query_async(conn).await.unwrap()
}

async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(conn)
        .await
        .unwrap()
        == 1
}

fn url_expiring_in(seconds: i64) -> Option<PresignedUrl> {
    Some(PresignedUrl {
        url: std::sync::Arc::new(format!(
            "https://s3.example/bucket/object?partNumber=1&X-Amz-Expires={seconds}"
        )),
        expires_at: Utc::now() + chrono::Duration::seconds(seconds),
    })
}

/// Runs `f` and checks that it took less than [`OP_BOUND`].
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let value = timeout(OP_BOUND * 2, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return within {:?}", OP_BOUND * 2));
    assert!(
        started.elapsed() < OP_BOUND,
        "{what} took {:?}",
        started.elapsed()
    );
    value
}

/// Publishes `event` on `publisher` until `events` (subscribed elsewhere) receives it,
/// or panics at the deadline. Re-publishing covers a subscription that is still being
/// (re)established: delivery is at most once per publish, by design.
async fn publish_until_received(
    publisher: &RedisCache,
    events: &mut broadcast::Receiver<UploadEvent>,
    event: UploadEvent,
    deadline: Duration,
) {
    let deadline = Instant::now() + deadline;
    loop {
        publisher.publish(event).await;
        match timeout(Duration::from_millis(300), events.recv()).await {
            Ok(Ok(received)) => {
                assert_eq!(received, event, "received another upload's event");
                return;
            }
            Ok(Err(RecvError::Lagged(_))) => continue,
            Ok(Err(RecvError::Closed)) => panic!("the event channel closed"),
            Err(_) => assert!(
                Instant::now() < deadline,
                "no event received before the deadline"
            ),
        }
    }
}

#[tokio::test]
async fn url_pages_round_trip_with_a_ttl() {
    let Some(url) = redis_url("url_pages_round_trip_with_a_ttl") else {
        return;
    };
    let cache = RedisCache::connect(&url).await;
    assert!(cache.is_connected().await);
    let mut raw = raw_connection(&url).await;
    let id = Uuid::new_v4();

    assert_eq!(cache.url_page(id, 0).await, None);
    let page = vec![url_expiring_in(600), None, url_expiring_in(3600)];
    cache.put_url_page(id, 0, Arc::new(page.clone())).await;
    assert_eq!(cache.url_page(id, 0).await, Some(Arc::new(page)));
    assert_eq!(cache.url_page(id, 1).await, None);
    assert_eq!(cache.url_page(Uuid::new_v4(), 0).await, None);

    // The TTL follows the latest expiry (one hour), and the page set outlives the page.
    let page_ttl = ttl(&mut raw, &format!("partway:{id}:urls:0")).await;
    assert!((3500..=3600).contains(&page_ttl), "page TTL {page_ttl}");
    let set_ttl = ttl(&mut raw, &format!("partway:{id}:pages")).await;
    assert!(
        set_ttl >= page_ttl,
        "page set TTL {set_ttl} < page TTL {page_ttl}"
    );
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("partway:{id}:pages"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(members, ["0"]);

    // A page whose URLs expire soon is still kept for a minute.
    cache
        .put_url_page(id, 1, Arc::new(vec![url_expiring_in(5)]))
        .await;
    let short_ttl = ttl(&mut raw, &format!("partway:{id}:urls:1")).await;
    assert!(
        (1..=60).contains(&short_ttl) && short_ttl > 50,
        "short page TTL {short_ttl}"
    );

    // Garbage under the key is a miss, not an error.
    redis::cmd("SET")
        .arg(format!("partway:{id}:urls:2"))
        .arg("{not json")
        .arg("EX")
        .arg(60)
        .exec_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(cache.url_page(id, 2).await, None);

    cache.forget(id).await;
}

#[tokio::test]
async fn snapshots_round_trip_and_publish_drops_them() {
    let Some(url) = redis_url("snapshots_round_trip_and_publish_drops_them") else {
        return;
    };
    let cache = RedisCache::connect(&url).await;
    let mut raw = raw_connection(&url).await;
    let id = Uuid::new_v4();

    assert_eq!(cache.snapshot(id).await, None);
    cache
        .put_snapshot(id, r#"{"status":"uploading"}"#.into())
        .await;
    assert_eq!(
        cache.snapshot(id).await.as_deref(),
        Some(r#"{"status":"uploading"}"#)
    );
    let snapshot_ttl = ttl(&mut raw, &format!("partway:{id}:snapshot")).await;
    assert!(
        (1..=5).contains(&snapshot_ttl),
        "snapshot TTL {snapshot_ttl}"
    );

    // Another upload's event leaves it alone; its own drops it.
    cache
        .publish(UploadEvent {
            upload_id: Uuid::new_v4(),
        })
        .await;
    assert!(cache.snapshot(id).await.is_some());
    cache.publish(UploadEvent { upload_id: id }).await;
    assert_eq!(cache.snapshot(id).await, None);
}

#[tokio::test]
async fn forget_removes_pages_and_snapshot() {
    let Some(url) = redis_url("forget_removes_pages_and_snapshot") else {
        return;
    };
    let cache = RedisCache::connect(&url).await;
    let mut raw = raw_connection(&url).await;
    let (id, other) = (Uuid::new_v4(), Uuid::new_v4());

    for page in [0, 1, 7] {
        cache
            .put_url_page(id, page, Arc::new(vec![url_expiring_in(3600)]))
            .await;
    }
    cache.put_snapshot(id, "snapshot".into()).await;
    cache
        .put_url_page(other, 0, Arc::new(vec![url_expiring_in(3600)]))
        .await;
    cache.put_snapshot(other, "other".into()).await;
    assert!(cache.url_page(id, 7).await.is_some());

    cache.forget(id).await;
    for page in [0, 1, 7] {
        assert_eq!(cache.url_page(id, page).await, None);
        assert!(!exists(&mut raw, &format!("partway:{id}:urls:{page}")).await);
    }
    assert_eq!(cache.snapshot(id).await, None);
    assert!(!exists(&mut raw, &format!("partway:{id}:pages")).await);
    assert!(!exists(&mut raw, &format!("partway:{id}:snapshot")).await);

    // Only that upload.
    assert!(cache.url_page(other, 0).await.is_some());
    assert_eq!(cache.snapshot(other).await.as_deref(), Some("other"));
    cache.forget(other).await;
    // Forgetting what is not there is fine.
    cache.forget(Uuid::new_v4()).await;
}

#[tokio::test]
async fn events_reach_subscribers_of_another_instance() {
    let Some(url) = redis_url("events_reach_subscribers_of_another_instance") else {
        return;
    };
    // Two instances: what two processes (a worker and an API replica) would hold.
    let worker = RedisCache::connect(&url).await;
    let api = RedisCache::connect(&url).await;
    let (id, other) = (Uuid::new_v4(), Uuid::new_v4());

    let mut events = api.subscribe(id).await;
    let mut second = api.subscribe(id).await;
    let mut others = api.subscribe(other).await;

    // Another upload's event first: the subscriber of `id` must not see it.
    worker.publish(UploadEvent { upload_id: other }).await;
    publish_until_received(
        &worker,
        &mut events,
        UploadEvent { upload_id: id },
        RECOVERY_DEADLINE,
    )
    .await;
    // Every receiver of the upload gets it.
    let received = timeout(Duration::from_secs(5), second.recv())
        .await
        .expect("second receiver");
    assert_eq!(received.unwrap().upload_id, id);
    let received = timeout(Duration::from_secs(5), others.recv())
        .await
        .expect("other upload");
    assert_eq!(received.unwrap().upload_id, other);

    // Dropped receivers do not break later subscriptions.
    drop((events, second, others));
    let mut again = api.subscribe(id).await;
    publish_until_received(
        &worker,
        &mut again,
        UploadEvent { upload_id: id },
        RECOVERY_DEADLINE,
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_redis_is_a_miss_and_never_blocks() {
    let started = Instant::now();
    let cache = RedisCache::connect("redis://:secret@127.0.0.1:1").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "connect took {:?}",
        started.elapsed()
    );
    assert!(!format!("{cache:?}").contains("secret"));

    let id = Uuid::new_v4();
    let mut events = cache.subscribe(id).await;
    // Several rounds: the first attempts, then the backoff between attempts.
    for _ in 0..3 {
        assert!(!bounded("is_connected", cache.is_connected()).await);
        bounded(
            "put_url_page",
            cache.put_url_page(id, 0, Arc::new(vec![url_expiring_in(60)])),
        )
        .await;
        assert_eq!(bounded("url_page", cache.url_page(id, 0)).await, None);
        bounded("put_snapshot", cache.put_snapshot(id, "s".into())).await;
        assert_eq!(bounded("snapshot", cache.snapshot(id)).await, None);
        bounded("forget", cache.forget(id)).await;
        bounded("publish", cache.publish(UploadEvent { upload_id: id })).await;
        // Subscribers of the publishing instance still hear of it.
        assert_eq!(events.try_recv().unwrap().upload_id, id);
        bounded("subscribe", cache.subscribe(Uuid::new_v4())).await;
    }
}

#[tokio::test]
async fn a_server_that_never_answers_does_not_block() {
    // Accepts connections (the kernel does, from the backlog) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let cache = RedisCache::connect(&url).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "connect took {:?}",
        started.elapsed()
    );

    let id = Uuid::new_v4();
    for _ in 0..3 {
        assert!(!bounded("is_connected", cache.is_connected()).await);
        bounded("put_snapshot", cache.put_snapshot(id, "s".into())).await;
        assert_eq!(bounded("snapshot", cache.snapshot(id)).await, None);
        assert_eq!(bounded("url_page", cache.url_page(id, 0)).await, None);
        bounded("publish", cache.publish(UploadEvent { upload_id: id })).await;
        bounded("forget", cache.forget(id)).await;
    }
}

// ---------------------------------------------------------------------------------------
// A private redis-server, to take Redis away and bring it back.

/// A redis-server child process, killed when dropped (even when the test panics).
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Whether `redis-server` can be run; prints "skipping" or panics per
    /// PARTWAY_REQUIRE_SERVICES when it cannot.
    fn available(test: &str) -> bool {
        let ok = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                !services_required(),
                "{test}: redis-server is not on PATH but PARTWAY_REQUIRE_SERVICES=1; \
                 `scripts/services start redis` installs it"
            );
            eprintln!("skipping {test}: redis-server is not on PATH");
        }
        ok
    }

    async fn start_on_free_port() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = PrivateRedis { port, child: None };
        redis.start().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &std::env::temp_dir().to_string_lossy(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        // Wait for it to accept connections (polling a process start, with a deadline).
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            if let Ok(Ok(mut conn)) = timeout(
                Duration::from_secs(1),
                client.get_multiplexed_async_connection(),
            )
            .await
            {
                if redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it holds, panicking at the deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {RECOVERY_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_when_redis_comes_back() {
    if !PrivateRedis::available("recovers_when_redis_comes_back") {
        return;
    }
    let mut server = PrivateRedis::start_on_free_port().await;
    let worker = RedisCache::connect(&server.url()).await;
    let api = RedisCache::connect(&server.url()).await;
    let id = Uuid::new_v4();
    let mut events = api.subscribe(id).await;

    // Working.
    worker.put_snapshot(id, "before".into()).await;
    assert_eq!(api.snapshot(id).await.as_deref(), Some("before"));
    publish_until_received(
        &worker,
        &mut events,
        UploadEvent { upload_id: id },
        RECOVERY_DEADLINE,
    )
    .await;

    // Gone: every operation is a quick miss or no-op.
    server.kill();
    for _ in 0..3 {
        bounded("put_snapshot", worker.put_snapshot(id, "during".into())).await;
        assert_eq!(bounded("snapshot", api.snapshot(id)).await, None);
        assert_eq!(bounded("snapshot", worker.snapshot(id)).await, None);
        bounded(
            "put_url_page",
            worker.put_url_page(id, 0, Arc::new(vec![url_expiring_in(60)])),
        )
        .await;
        assert_eq!(bounded("url_page", api.url_page(id, 0)).await, None);
        bounded("publish", worker.publish(UploadEvent { upload_id: id })).await;
        bounded("forget", worker.forget(id)).await;
        assert!(!bounded("is_connected", api.is_connected()).await);
    }
    // Events published into the outage are lost for other instances.
    while events.try_recv().is_ok() {}

    // Back (empty, same port): both instances reconnect by themselves.
    server.start().await;
    eventually("the API instance reconnects", || api.is_connected()).await;
    eventually("puts and gets work again", || async {
        worker.put_snapshot(id, "after".into()).await;
        api.snapshot(id).await.as_deref() == Some("after")
    })
    .await;
    let page = vec![url_expiring_in(3600)];
    eventually("URL pages work again", || async {
        worker.put_url_page(id, 0, Arc::new(page.clone())).await;
        api.url_page(id, 0).await.as_deref() == Some(&page)
    })
    .await;
    publish_until_received(
        &worker,
        &mut events,
        UploadEvent { upload_id: id },
        RECOVERY_DEADLINE,
    )
    .await;
    // A subscription made after the outage works too.
    let mut fresh = api.subscribe(id).await;
    publish_until_received(
        &worker,
        &mut fresh,
        UploadEvent { upload_id: id },
        RECOVERY_DEADLINE,
    )
    .await;
}

// ---- the Redis rate limiter (GCRA in one Lua script) ----------------------------------

mod rate_limiter {
    use partway_core::{
        domain::{RateLimit, RatePeriod},
        rate_limit::RateLimiter,
    };

    use super::*;

    fn limit(n: u32, period: RatePeriod) -> RateLimit {
        RateLimit::new(n, period).unwrap()
    }

    #[tokio::test]
    async fn the_burst_passes_then_refusals_say_when_to_retry() {
        let Some(url) = redis_url("the_burst_passes_then_refusals_say_when_to_retry") else {
            return;
        };
        let cache = RedisCache::connect(&url).await;
        let limiter = cache.rate_limiter();
        let key = format!("key:test-{}", Uuid::new_v4().simple());
        let l = limit(5, RatePeriod::Hour);
        let mut remaining = Vec::new();
        for _ in 0..5 {
            let d = limiter.check(&key, l).await.expect("Redis answers");
            assert!(d.allowed, "{d:?}");
            assert_eq!(d.limit, 5);
            remaining.push(d.remaining);
        }
        assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
        let refused = limiter.check(&key, l).await.unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // One request costs 12 minutes; the whole burst is back after an hour.
        let interval = Duration::from_secs(720);
        assert!(
            refused.retry_after <= interval
                && refused.retry_after > interval - Duration::from_secs(5),
            "{refused:?}"
        );
        assert!(
            refused.reset <= Duration::from_secs(3600) && refused.reset > Duration::from_secs(3595),
            "{refused:?}"
        );
        // Another key has its own budget; the state lives under a prefixed key that
        // expires when the budget is full again.
        let other = format!("key:test-{}", Uuid::new_v4().simple());
        assert!(limiter.check(&other, l).await.unwrap().allowed);
        let mut raw = raw_connection(&url).await;
        let state_ttl = ttl(&mut raw, &format!("partway:ratelimit:{key}")).await;
        assert!((3590..=3601).contains(&state_ttl), "TTL {state_ttl}");
    }

    #[tokio::test]
    async fn replicas_on_one_redis_share_the_budget() {
        let Some(url) = redis_url("replicas_on_one_redis_share_the_budget") else {
            return;
        };
        let a = RedisCache::connect(&url).await.rate_limiter();
        let b = RedisCache::connect(&url).await.rate_limiter();
        let key = format!("addr:test-{}", Uuid::new_v4().simple());
        let l = limit(10, RatePeriod::Minute);
        let checks = (0..30).map(|i| {
            let limiter = if i % 2 == 0 { &a } else { &b };
            let key = key.clone();
            async move { limiter.check(&key, l).await.unwrap().allowed }
        });
        let allowed = futures::future::join_all(checks)
            .await
            .into_iter()
            .filter(|allowed| *allowed)
            .count();
        assert_eq!(allowed, 10, "30 concurrent requests through two replicas");
    }

    #[tokio::test]
    async fn replicas_taking_batches_never_exceed_the_shared_budget() {
        let Some(url) = redis_url("replicas_taking_batches_never_exceed_the_shared_budget") else {
            return;
        };
        let a = RedisCache::connect(&url).await.rate_limiter();
        let b = RedisCache::connect(&url).await.rate_limiter();
        let key = format!("key:test-{}", Uuid::new_v4().simple());
        // 100/s: a burst of 100, one more every 10 ms, taken 5 at a time.
        let l = limit(100, RatePeriod::Second);
        assert_eq!(l.reservation_size(), 5);
        // Sequential requests through one replica: the burst, all of it.
        let started = Instant::now();
        let mut allowed = 0;
        for _ in 0..150 {
            allowed += usize::from(a.check(&key, l).await.unwrap().allowed);
        }
        let refilled = (started.elapsed().as_millis() / 10) as usize + 1;
        assert!(
            (100..=100 + refilled).contains(&allowed),
            "{allowed} allowed, {refilled} refilled"
        );
        // Then 8 clients at once through both replicas, more than a second's worth:
        // never more than the budget (reserved but unserved requests are lost, not
        // granted twice).
        let started = Instant::now();
        let clients = (0..8).map(|i| {
            let limiter = if i % 2 == 0 { &a } else { &b };
            let key = key.clone();
            async move {
                let mut decisions = Vec::new();
                for _ in 0..50 {
                    decisions.push(limiter.check(&key, l).await.unwrap());
                }
                decisions
            }
        });
        let decisions: Vec<_> = futures::future::join_all(clients)
            .await
            .into_iter()
            .flatten()
            .collect();
        let refilled = (started.elapsed().as_millis() / 10) as usize + 2;
        let allowed = decisions.iter().filter(|d| d.allowed).count();
        assert!(
            allowed <= refilled + 5,
            "{allowed} allowed, {refilled} refilled"
        );
        assert!(decisions
            .iter()
            .all(|d| d.limit == 100 && d.remaining <= 100));
    }

    #[tokio::test]
    async fn the_budget_refills_at_the_rate() {
        let Some(url) = redis_url("the_budget_refills_at_the_rate") else {
            return;
        };
        let limiter = RedisCache::connect(&url).await.rate_limiter();
        let key = format!("key:test-{}", Uuid::new_v4().simple());
        // 20/s: one request per 50 ms.
        let l = limit(20, RatePeriod::Second);
        while limiter.check(&key, l).await.unwrap().allowed {}
        let refused = limiter.check(&key, l).await.unwrap();
        assert!(!refused.allowed);
        assert!(
            refused.retry_after <= Duration::from_millis(50),
            "{refused:?}"
        );
        // One interval later a request passes again (polled, with a deadline).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if limiter.check(&key, l).await.unwrap().allowed {
                break;
            }
            assert!(Instant::now() < deadline, "never refilled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_quickly() {
        let limiter = RedisCache::connect("redis://127.0.0.1:1")
            .await
            .rate_limiter();
        let l = limit(1, RatePeriod::Second);
        let result = bounded("check", limiter.check("key:x", l)).await;
        assert!(result.is_err(), "{result:?}");
    }
}
