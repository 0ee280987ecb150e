//! Events for applications (DESIGN §6): each event is published, persistent and
//! confirmed, to the topic exchange `{prefix}partway.events` with its type as routing
//! key and its id as `message-id`. Applications bind their own queues; an event no queue
//! is bound for is simply dropped by the broker (not `mandatory`: nobody listening is
//! not an error).
use lapin::{options::BasicPublishOptions, types::FieldTable, Confirmation};

use crate::{
    connection::{AmqpError, AmqpQueue},
    message::message_properties,
    publisher::PUBLISH_TIMEOUT,
};

impl AmqpQueue {
    /// Publishes one event and waits for the broker's confirm.
    pub async fn publish_event(
        &self,
        event_id: &str,
        event_type: &str,
        body: &[u8],
    ) -> Result<(), AmqpError> {
        let session = self.publisher_session().await?;
        let exchange = self.inner.topology.events_exchange.as_str();
        let props = message_properties(Some(event_id), FieldTable::default());
        let attempt = async {
            let confirm = session
                .channel
                .basic_publish(
                    exchange.into(),
                    event_type.into(),
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await
                .map_err(|e| self.broker_error("basic.publish", e))?;
            match confirm
                .await
                .map_err(|e| self.broker_error("publisher confirm", e))?
            {
                Confirmation::Ack(_) => Ok(()),
                Confirmation::Nack(_) => Err(AmqpError::NotConfirmed(
                    "the broker nacked the event".into(),
                )),
                Confirmation::NotRequested => Err(AmqpError::NotConfirmed(
                    "publisher confirms are not enabled on the channel".into(),
                )),
            }
        };
        let result = tokio::time::timeout(PUBLISH_TIMEOUT, attempt)
            .await
            .map_err(|_| AmqpError::Timeout {
                operation: "publish",
                after: PUBLISH_TIMEOUT,
            })
            .and_then(|r| r);
        if let Err(err) = &result {
            if err.is_connection_problem() {
                self.invalidate_publisher(session.generation).await;
            }
        }
        result
    }
}
