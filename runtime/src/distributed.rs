//! The distributed transport: jobs leave through the outbox (the `jobs` table) and a
//! relay publishes them to RabbitMQ with confirms; workers consume them and ack only
//! after the job's effect is committed; Redis carries the cache and the events.
use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::Utc;
use partway_cache_redis::RedisCache;
use partway_core::{
    cache::InMemoryCache,
    config::Config,
    jobs::{self},
    ports::{JobQueue, JobRun, ProgressCache},
    service::Services,
};
use partway_entity::job;
use partway_queue_amqp::{AmqpQueue, DeliveryInfo, Disposition, JobMessage};
use sea_orm::{
    sea_query::{Expr, LockBehavior, LockType},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

/// Redis when `PARTWAY_REDIS_URL` is set, else in-process.
pub async fn cache_from(config: &Config) -> Arc<dyn ProgressCache> {
    match &config.redis_url {
        Some(url) => Arc::new(RedisCache::connect(url.expose()).await),
        None => Arc::new(InMemoryCache::new()),
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
    async fn submit(&self, _job_ids: &[uuid::Uuid]) {
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
/// A published job still pending this long after it was due is published again.
const REPUBLISH_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// Publishes outbox rows until `shutdown`. Safe with many replicas: on PostgreSQL the
/// rows are taken with `FOR UPDATE SKIP LOCKED`; a row published twice is harmless
/// because a job is claimed with a conditional update.
pub async fn run_outbox_relay(
    db: DatabaseConnection,
    queue: AmqpJobQueue,
    mut shutdown: watch::Receiver<bool>,
) {
    let wake = queue.relay_waker();
    while !*shutdown.borrow() {
        loop {
            match relay_once(&db, queue.amqp()).await {
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
pub async fn relay_once(db: &DatabaseConnection, amqp: &AmqpQueue) -> Result<usize, String> {
    let now = Utc::now();
    let txn = db.begin().await.map_err(|e| e.to_string())?;
    let lost = now - REPUBLISH_AFTER;
    let due = Condition::any()
        .add(
            Condition::all()
                .add(job::Column::State.eq(jobs::JobState::Pending))
                .add(job::Column::PublishedAt.is_null()),
        )
        .add(
            Condition::all()
                .add(job::Column::State.eq(jobs::JobState::Pending))
                .add(job::Column::RunAfter.lt(lost))
                .add(job::Column::PublishedAt.lt(lost)),
        )
        .add(
            Condition::all()
                .add(job::Column::State.eq(jobs::JobState::Running))
                .add(job::Column::LeasedUntil.lt(now))
                .add(job::Column::PublishedAt.lt(lost)),
        );
    let mut query = job::Entity::find()
        .filter(due)
        .order_by_asc(job::Column::CreatedAt)
        .limit(RELAY_BATCH);
    if txn.get_database_backend() == DbBackend::Postgres {
        query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let rows = query.all(&txn).await.map_err(|e| e.to_string())?;
    let mut published = Vec::with_capacity(rows.len());
    for row in &rows {
        let message = JobMessage {
            job_id: row.id,
            kind: row.kind.as_str().to_string(),
        };
        if let Err(e) = amqp.publish(&message).await {
            // Keep what was confirmed so far; the rest goes next time.
            debug!(error = %e, "publish failed");
            break;
        }
        published.push(row.id);
    }
    if !published.is_empty() {
        mark_published(&txn, &published)
            .await
            .map_err(|e| e.to_string())?;
    }
    txn.commit().await.map_err(|e| e.to_string())?;
    Ok(published.len())
}

async fn mark_published(db: &impl ConnectionTrait, ids: &[uuid::Uuid]) -> Result<(), DbErr> {
    job::Entity::update_many()
        .col_expr(job::Column::PublishedAt, Expr::value(Some(Utc::now())))
        .filter(job::Column::Id.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// Consumes jobs until `shutdown`, at most `concurrency` of each kind at once; acks after
/// the job's outcome is committed.
pub async fn run_amqp_worker(
    services: Arc<Services>,
    amqp: AmqpQueue,
    concurrency: u16,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let handler = move |message: JobMessage, delivery: DeliveryInfo| {
        let services = services.clone();
        async move {
            match services
                .process_job(message.job_id, delivery.redelivered)
                .await
            {
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

/// What `partway-api` and `partway-worker` share: PostgreSQL (or any configured
/// database), the configured storage, RabbitMQ and Redis. Nothing embedded.
pub async fn distributed_services(
    config: &Config,
) -> Result<(Arc<Services>, AmqpJobQueue), crate::StartupError> {
    use crate::StartupError;
    let amqp_url = config.amqp_url.as_ref().ok_or_else(|| {
        StartupError::Config(
            "PARTWAY_AMQP_URL is required (or run `partway` for the all-in-one service)".into(),
        )
    })?;
    if config.database_url.is_none() {
        warn!("PARTWAY_DATABASE_URL is not set: using SQLite in the data dir, which other hosts cannot share");
    }
    let targets = crate::server_targets(config, None)?;
    if targets.is_empty() {
        return Err(StartupError::Config(
            "no storage configured: set PARTWAY_S3_BUCKET (+ keys, + PARTWAY_S3_ENDPOINT for MinIO) or the PARTWAY_R2_* variables".into(),
        ));
    }
    let master_key = crate::master_key(config, None)?;
    info!(
        database = %config.database_url.as_ref().map_or_else(|| "sqlite (data dir)".to_string(), |u| crate::endpoint_of(u.expose())),
        queue = %crate::endpoint_of(amqp_url.expose()),
        cache = %config.redis_url.as_ref().map_or_else(|| "in-process".to_string(), |u| crate::endpoint_of(u.expose())),
        storage = %config.s3_endpoint.as_deref().map_or_else(|| "AWS / R2 endpoints".to_string(), crate::endpoint_of),
        "connecting"
    );
    let db = crate::connect_database(config).await?;
    let queue = AmqpJobQueue::new(connect_amqp(amqp_url.expose(), &config.amqp_prefix).await?);
    let cache = cache_from(config).await;
    let services = crate::services(
        config,
        db,
        targets,
        master_key,
        cache,
        Arc::new(queue.clone()),
    )?;
    Ok((Arc::new(services), queue))
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
