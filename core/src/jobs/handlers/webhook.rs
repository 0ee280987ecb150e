//! Webhook jobs (DESIGN §6): deliver one event to one endpoint, signed the Standard
//! Webhooks way. Any 2xx is delivered; 410 Gone disables the endpoint; anything else
//! (another status, a timeout, a refused connection) is tried again on the retry
//! schedule, then the delivery is recorded as failed. Per endpoint, one upload's events
//! go out in order: a delivery waits while an earlier one of the same upload is pending.
//!
//! At least once: the attempt is recorded after the request, so a worker that dies
//! mid-request leaves the job to be taken again (same `webhook-id`, a fresh signature).
use std::time::{Duration, Instant};

use chrono::Utc;
use partway_entity::job;
use serde::Deserialize;
use tracing::{info, warn};
use uuid::Uuid;

use crate::{
    events::{event_id_text, signature_headers},
    jobs::JobError,
    metrics,
    store::events::{AttemptRecord, DELIVERED, FAILED, PENDING},
    usecases::App,
};

#[derive(Deserialize)]
struct WebhookPayload {
    delivery: Uuid,
}

/// How long a delivery waits before looking again at an earlier one it follows.
const ORDER_WAIT_MIN: Duration = Duration::from_secs(1);
const ORDER_WAIT_MAX: Duration = Duration::from_secs(300);

impl App {
    pub(in crate::jobs) async fn job_webhook(&self, job: &job::Model) -> Result<(), JobError> {
        let payload: WebhookPayload = serde_json::from_value(job.payload.clone())
            .map_err(|_| JobError::Fatal("malformed webhook job".into()))?;
        let Some(delivery) = self.store.delivery(payload.delivery).await? else {
            return Ok(()); // its endpoint was deleted
        };
        if delivery.state != PENDING {
            return Ok(());
        }
        let endpoint = match self.store.webhook(delivery.webhook_id).await? {
            Some(e) if e.disabled_at.is_none() => e,
            _ => {
                self.store
                    .abandon_delivery(delivery.id, "the endpoint is disabled")
                    .await?;
                return Ok(());
            }
        };
        if let Some(earlier) = self.store.earlier_pending_delivery(&delivery).await? {
            let due = earlier
                .next_attempt_at
                .map(|at| (at - Utc::now()).to_std().unwrap_or_default())
                .unwrap_or_default()
                + ORDER_WAIT_MIN;
            return Err(JobError::Later(due.clamp(ORDER_WAIT_MIN, ORDER_WAIT_MAX)));
        }
        let Some(event) = self.store.event(delivery.event_id).await? else {
            return Ok(());
        };
        let secret = self
            .webhook_secret(&endpoint)
            .map_err(|_| JobError::Fatal("the webhook secret does not open".into()))?;
        let attempt = delivery.attempts + 1;
        let attempted_at = Utc::now();
        if attempt == 1 {
            if let Some(m) = metrics::metrics() {
                let latency = (attempted_at - event.created_at)
                    .to_std()
                    .unwrap_or_default();
                m.webhook_first_attempt_latency
                    .with_label_values(&[] as &[&str])
                    .observe(latency.as_secs_f64());
            }
        }
        let headers = signature_headers(
            &secret,
            &event_id_text(event.id),
            attempted_at.timestamp(),
            &event.body,
        );
        let started = Instant::now();
        let outcome = self
            .webhook_sender
            .send(
                &endpoint.url,
                &headers,
                &event.body,
                self.event_settings.timeout,
            )
            .await;
        let duration_ms = started.elapsed().as_millis() as i64;
        let schedule = &self.event_settings.retry_schedule;
        let retry_in = usize::try_from(attempt - 1)
            .ok()
            .and_then(|i| schedule.get(i))
            .copied();
        let (status_code, error, label) = match &outcome {
            Ok(status) if (200..300).contains(status) => (Some(*status as i32), None, "delivered"),
            Ok(410) => (
                Some(410),
                Some("410 Gone: the endpoint is disabled".to_string()),
                "gone",
            ),
            Ok(status) => (Some(*status as i32), None, "retry"),
            Err(e) => (None, Some(e.to_string()), "retry"),
        };
        let (state, label, next_retry) = match (label, retry_in) {
            ("delivered", _) => (DELIVERED, "delivered", None),
            ("gone", _) => (FAILED, "gone", None),
            (_, Some(delay)) => (PENDING, "retry", Some(delay)),
            (_, None) => (FAILED, "failed", None),
        };
        let next_retry_at =
            next_retry.map(|d| attempted_at + chrono::Duration::from_std(d).unwrap_or_default());
        self.store
            .record_attempt(
                &delivery,
                &AttemptRecord {
                    attempt,
                    status_code,
                    error: error.clone(),
                    duration_ms,
                    attempted_at,
                    next_retry_at,
                    state,
                },
            )
            .await?;
        if let Some(m) = metrics::metrics() {
            m.webhook_deliveries.with_label_values(&[label]).inc();
        }
        let event_id = event_id_text(event.id);
        match (label, next_retry) {
            ("gone", _) => {
                self.store
                    .disable_webhook(endpoint.id, "the endpoint answered 410 Gone")
                    .await?;
                warn!(webhook = %endpoint.id, event = %event_id, "webhook endpoint answered 410 Gone; disabled");
                Ok(())
            }
            (_, Some(delay)) => {
                let reason = match (status_code, &error) {
                    (Some(code), _) => format!("the endpoint answered {code}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "no answer".into(),
                };
                info!(webhook = %endpoint.id, event = %event_id, attempt, %reason, retry_in_s = delay.as_secs(), "webhook delivery failed; will retry");
                Err(JobError::RetryIn(delay, reason))
            }
            ("delivered", _) => {
                info!(webhook = %endpoint.id, event = %event_id, attempt, duration_ms, "webhook delivered");
                Ok(())
            }
            _ => {
                warn!(webhook = %endpoint.id, event = %event_id, attempt, "webhook delivery failed for good");
                Ok(())
            }
        }
    }
}
