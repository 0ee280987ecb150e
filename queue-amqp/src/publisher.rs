//! The publishing side: one connection with one confirm-mode channel, reconnected lazily (one
//! bounded attempt) when it is gone, [`AmqpQueue::publish`], and the confirmed `basic.publish`
//! that the consumer's retry and park republishing reuse.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::FieldTable,
    BasicProperties, Channel, Confirmation, Connection,
};
use tracing::{debug, info};

use crate::{
    connection::{AmqpError, AmqpQueue, CONNECT_TIMEOUT},
    message::{message_properties, JobMessage},
    topology::KINDS,
};

/// Bound on one publish, from `basic.publish` to the broker's confirm.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The publishing side's connection and its confirm-mode channel.
pub(crate) struct PubSession {
    pub(crate) generation: u64,
    pub(crate) conn: Connection,
    pub(crate) channel: Channel,
}

impl PubSession {
    pub(crate) fn usable(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }
}

impl AmqpQueue {
    /// The current publishing session, reconnecting once (bounded) when it is gone.
    pub(crate) async fn publisher_session(&self) -> Result<Arc<PubSession>, AmqpError> {
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
    pub(crate) async fn invalidate_publisher(&self, generation: u64) {
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
    pub(crate) async fn publish_confirmed(
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
}
