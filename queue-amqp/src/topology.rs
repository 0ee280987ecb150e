//! The broker objects: the names of every exchange and queue under a prefix ([`Topology`],
//! [`KINDS`], the delay tiers), declaring them idempotently, and reading their depths or deleting
//! them (the table of objects is under "Topology" in the crate docs).

use std::time::Duration;

use lapin::{
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    Channel, ExchangeKind,
};

use crate::{
    connection::{AmqpError, AmqpQueue},
    message::long_string,
    publisher::PUBLISH_TIMEOUT,
};

/// Every job kind; one work queue per kind.
pub const KINDS: [&str; 6] = ["init", "resume", "complete", "abort", "expire", "webhook"];

/// Delay tiers in seconds. `Retry(d)` uses the smallest tier `>= d` (the last one for longer
/// delays).
pub const DELAY_TIERS_SECS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 300];

/// Deliveries of one message (crashing handlers, requeues) before the work queue dead-letters
/// it to the parking queue (`x-delivery-limit` of the quorum work queues).
pub const DELIVERY_LIMIT: i32 = 20;

/// Names of every exchange and queue, with the optional prefix applied.
#[derive(Debug, Clone)]
pub struct Topology {
    pub(crate) prefix: String,
    /// The direct exchange the jobs are published to.
    pub exchange: String,
    /// `(kind, work queue)` for every kind, in [`KINDS`] order.
    pub work_queues: Vec<(String, String)>,
    /// `(seconds, exchange = queue name)` for every delay tier.
    pub delay_tiers: Vec<(u64, String)>,
    /// The parking (dead-letter) queue.
    pub parking: String,
    /// The topic exchange events for applications are published to (DESIGN §6), routing
    /// key = event type; applications bind their own queues.
    pub events_exchange: String,
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
            events_exchange: format!("{prefix}partway.events"),
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

pub(crate) fn validate_prefix(prefix: &str) -> Result<(), AmqpError> {
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

impl AmqpQueue {
    /// Declares every exchange, queue and binding (idempotent; fails with PRECONDITION_FAILED
    /// if an existing object was declared with other arguments).
    pub(crate) async fn declare_topology(&self, channel: &Channel) -> Result<(), AmqpError> {
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
        channel
            .exchange_declare(
                topo.events_exchange.as_str().into(),
                ExchangeKind::Topic,
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
        exchanges.push(&topo.events_exchange);
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn bad_prefixes_are_rejected() {
        assert!(validate_prefix("test-1234.").is_ok());
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("a b").is_err());
        assert!(validate_prefix("a/b").is_err());
    }
}
