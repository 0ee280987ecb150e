//! The consuming side: [`AmqpQueue::consume_with_info`] (its own connection, per-consumer
//! prefetch, reconnecting with backoff, graceful shutdown), what a handler returns
//! ([`Disposition`]) and is told ([`DeliveryInfo`]), and how one delivery is handled and settled
//! (see "Delivery guarantees" and "Prefetch" in the crate docs).

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::{stream::SelectAll, FutureExt, StreamExt};
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicQosOptions, ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
    Channel, Connection, Consumer,
};
use tokio::{sync::watch, task::JoinSet};
use tracing::{debug, error, info, warn};

use crate::{
    connection::{AmqpError, AmqpQueue, CLOSE_TIMEOUT, CONNECT_TIMEOUT},
    message::{
        header_u32, long_string, message_properties, parse_message, JobMessage, PARK_REASON_HEADER,
        RETRIES_HEADER,
    },
};

/// Upper bound of the consumer's reconnect backoff.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// First reconnect delay of the consumer.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(200);

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

/// An open consuming connection: the consuming channel (QoS applied) and a confirm-mode channel
/// for retry/park republishing.
struct ConsumerSession {
    conn: Connection,
    channel: Channel,
    publisher: Channel,
    tags: Vec<String>,
}

/// Resolves when shutdown is requested (or the sender is gone, which can never request it).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn shutdown_now(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow() || rx.has_changed().is_err()
}

impl AmqpQueue {
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
