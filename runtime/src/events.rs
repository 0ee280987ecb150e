//! The event relay (DESIGN §6): with RabbitMQ configured, every event row is published,
//! persistent and confirmed, to the topic exchange `{prefix}partway.events` (routing key
//! = type, `message-id` = event id) and stamped. It runs beside the job relay, woken by
//! the same commits; the rows are taken `FOR UPDATE SKIP LOCKED`, so relays on many
//! replicas share them, and an event published but not stamped (a crash between the
//! confirm and the commit) is published again: at least once.
use partway_core::{events::event_id_text, store::Store};
use partway_queue_amqp::AmqpQueue;
use tracing::debug;

const EVENT_BATCH: u64 = 200;

/// Publishes every unpublished event, a batch at a time, until none is left or the
/// broker refuses.
pub async fn relay_events(store: &Store, amqp: &AmqpQueue) {
    loop {
        match relay_events_once(store, amqp).await {
            Ok(n) if n as u64 == EVENT_BATCH => continue,
            Ok(_) => return,
            Err(e) => {
                debug!(error = %e, "event relay could not publish; will retry");
                return;
            }
        }
    }
}

async fn relay_events_once(store: &Store, amqp: &AmqpQueue) -> Result<usize, String> {
    let batch = store
        .event_outbox_batch(EVENT_BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let mut published = Vec::with_capacity(batch.events().len());
    let mut failure = None;
    for event in batch.events() {
        if let Err(e) = amqp
            .publish_event(
                &event_id_text(event.id),
                &event.event_type,
                event.body.as_bytes(),
            )
            .await
        {
            failure = Some(e.to_string());
            break;
        }
        published.push(event.id);
    }
    let count = published.len();
    batch.commit(&published).await.map_err(|e| e.to_string())?;
    if let Some(m) = partway_core::metrics::metrics() {
        m.events_published.inc_by(count as u64);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(count),
    }
}
