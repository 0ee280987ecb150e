//! The distributed transport: jobs leave through the outbox (the `jobs` table) and a
//! relay publishes them to RabbitMQ with confirms; workers consume them and ack only
//! after the job's effect is committed; Redis carries the cache and the events.
use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use partway_cache_redis::RedisCache;
use partway_core::{
    cache::InMemoryCache,
    config::Config,
    ports::{JobQueue, JobRun, ProgressCache},
    rate_limit::{LocalRateLimiter, RateLimiter},
    store::Store,
    App,
};
use partway_queue_amqp::{AmqpQueue, DeliveryInfo, Disposition, JobMessage};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

/// The progress cache and the request rate limiter: on Redis when `PARTWAY_REDIS_URL`
/// is set (one connection; every API replica then shares the rate budgets), else
/// in-process.
pub async fn cache_from(config: &Config) -> (Arc<dyn ProgressCache>, Arc<dyn RateLimiter>) {
    match &config.redis_url {
        Some(url) => {
            let cache = RedisCache::connect(url.expose()).await;
            let limiter = Arc::new(cache.rate_limiter());
            (Arc::new(cache), limiter)
        }
        None => (
            Arc::new(InMemoryCache::new(config.cache_max_bytes)),
            Arc::new(LocalRateLimiter::new()),
        ),
    }
}

/// `JobQueue` for the distributed mode: submitting wakes the local outbox relay.
#[derive(Clone)]
pub struct AmqpJobQueue {
    amqp: AmqpQueue,
    relay: Arc<Notify>,
}

impl AmqpJobQueue {
    pub fn new(amqp: AmqpQueue) -> Self {
        Self {
            amqp,
            relay: Arc::new(Notify::new()),
        }
    }

    pub fn amqp(&self) -> &AmqpQueue {
        &self.amqp
    }

    pub fn relay_waker(&self) -> Arc<Notify> {
        self.relay.clone()
    }
}

#[async_trait]
impl JobQueue for AmqpJobQueue {
    async fn wake(&self) {
        self.relay.notify_one();
    }

    async fn is_ready(&self) -> bool {
        self.amqp.is_connected().await
    }
}

/// How often the relay looks for work nobody woke it for (other replicas' jobs after
/// a crash, messages the broker lost, leases that lapsed).
const RELAY_TICK: Duration = Duration::from_secs(2);
const RELAY_BATCH: u64 = 200;

/// Publishes outbox rows until `shutdown`. Safe with many replicas: the store takes
/// rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL; a row published twice is harmless
/// because a job is claimed with a conditional update.
pub async fn run_outbox_relay(
    app: Arc<App>,
    queue: AmqpJobQueue,
    mut shutdown: watch::Receiver<bool>,
) {
    let wake = queue.relay_waker();
    while !*shutdown.borrow() {
        crate::events::relay_events(app.store(), queue.amqp()).await;
        loop {
            match relay_once(app.store(), queue.amqp()).await {
                Ok(n) if n as u64 == RELAY_BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    debug!(error = %e, "outbox relay could not publish; will retry");
                    break;
                }
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(RELAY_TICK) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One batch: unpublished pending jobs, and published ones that look lost.
async fn relay_once(store: &Store, amqp: &AmqpQueue) -> Result<usize, String> {
    let batch = store
        .outbox_batch(RELAY_BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let mut published = Vec::with_capacity(batch.jobs().len());
    for &(job_id, kind) in batch.jobs() {
        let message = JobMessage {
            job_id,
            kind: kind.as_str().to_string(),
        };
        if let Err(e) = amqp.publish(&message).await {
            // Keep what was confirmed so far; the rest goes next time.
            debug!(error = %e, "publish failed");
            break;
        }
        published.push(job_id);
    }
    let count = published.len();
    batch.commit(&published).await.map_err(|e| e.to_string())?;
    Ok(count)
}

/// Consumes jobs until `shutdown`, at most `concurrency` of each kind at once; acks after
/// the job's outcome is committed.
pub async fn run_amqp_worker(
    app: Arc<App>,
    amqp: AmqpQueue,
    concurrency: u16,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let handler = move |message: JobMessage, delivery: DeliveryInfo| {
        let app = app.clone();
        async move {
            match app.process_job(message.job_id, delivery.redelivered).await {
                Ok(JobRun::Settled) => Disposition::Ack,
                Ok(JobRun::RetryAfter(delay)) => Disposition::Retry(delay),
                Ok(JobRun::GaveUp(reason)) => Disposition::Park(reason),
                Err(e) => {
                    // The database is unreachable: the row is untouched; try again soon.
                    warn!(job = %message.job_id, error = %e, "job could not be processed");
                    Disposition::Retry(Duration::from_secs(2))
                }
            }
        }
    };
    if let Err(e) = amqp
        .consume_with_info(concurrency, handler, shutdown, grace)
        .await
    {
        warn!(error = %e, "consumer stopped");
    }
    info!("worker stopped consuming");
}

/// RabbitMQ at `url`, connected now if it can be reached. If it cannot, the service starts
/// anyway (readiness answers 503): jobs wait in the outbox and consumers retry until the
/// broker is back, so processes need not start in order. A bad URL or prefix, or a broker
/// that refuses the topology, stops the start.
pub async fn connect_amqp(url: &str, prefix: &str) -> Result<AmqpQueue, crate::StartupError> {
    let rabbitmq =
        |e: partway_queue_amqp::AmqpError| crate::StartupError::Config(format!("RabbitMQ: {e}"));
    let queue = AmqpQueue::unconnected(url, prefix).map_err(rabbitmq)?;
    match queue.connect_now().await {
        Ok(()) => Ok(queue),
        Err(e) if e.is_unreachable() => {
            warn!(error = %e, "RabbitMQ is unreachable; starting anyway: jobs wait in the outbox and run once it is back");
            Ok(queue)
        }
        Err(e) => Err(rabbitmq(e)),
    }
}

#[cfg(test)]
mod tests {
    use partway_core::jobs::JobKind;

    #[test]
    fn rabbitmq_has_a_work_queue_for_every_job_kind() {
        assert_eq!(
            partway_queue_amqp::KINDS.to_vec(),
            JobKind::all().map(JobKind::as_str).collect::<Vec<_>>(),
            "queue-amqp's KINDS and core's JobKind::all() must list the same kinds"
        );
    }
}
