//! Events for applications (DESIGN §6), the parts without I/O: which status change is
//! which event, the event's body, the Standard Webhooks signature, webhook secrets and
//! the retry schedule. The rows are written by the store ([`crate::store::events`]) in
//! the transaction of the status change; delivery is a job (`jobs/handlers/webhook.rs`)
//! through the [`sender`] port; the use cases behind `/api/v1/webhooks` are in
//! [`crate::usecases::webhooks`].
use std::{fmt, str::FromStr, time::Duration};

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use partway_entity::upload;
use partway_protocol::dto::StatusDoc;
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

use crate::{domain::UploadStatus, usecases::status::rfc3339};

pub mod sender;

/// What happened to an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The upload became `active` (storage has it; parts may be sent).
    Created,
    Completed,
    Aborted,
    Expired,
    Failed,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::Created,
        EventType::Completed,
        EventType::Aborted,
        EventType::Expired,
        EventType::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "upload.created",
            EventType::Completed => "upload.completed",
            EventType::Aborted => "upload.aborted",
            EventType::Expired => "upload.expired",
            EventType::Failed => "upload.failed",
        }
    }

    /// The event a status change from one of `from` to `to` causes, if any. `created`
    /// is the move out of `initiating` only (a resumed upload becoming active again is
    /// no new upload).
    pub fn of_transition(from: &[UploadStatus], to: UploadStatus) -> Option<EventType> {
        match to {
            UploadStatus::Active
                if !from.is_empty() && from.iter().all(|s| *s == UploadStatus::Initiating) =>
            {
                Some(EventType::Created)
            }
            UploadStatus::Completed => Some(EventType::Completed),
            UploadStatus::Aborted => Some(EventType::Aborted),
            UploadStatus::Expired => Some(EventType::Expired),
            UploadStatus::Failed => Some(EventType::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown event type {s:?}"))
    }
}

/// The type of the ping `POST /api/v1/webhooks/{id}/test` sends.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// An event's id as it travels (`id` in the body, `webhook-id`, AMQP `message-id`).
pub fn event_id_text(id: Uuid) -> String {
    format!("evt_{}", id.simple())
}

/// The status document of an upload as an event carries it: the same document a status
/// read answers, without `downloadUrl` (a presigned link in a message that may be read
/// a day later would have expired; `url` and a status read give a fresh one).
pub fn status_document(upload: &upload::Model, now: DateTime<Utc>) -> StatusDoc {
    StatusDoc {
        url: upload
            .location
            .clone()
            .filter(|_| upload.status == UploadStatus::Completed),
        ..crate::usecases::status::status_document(upload, now)
    }
}

/// The JSON an event is sent as: `{id, type, createdAt, data}`.
pub fn event_body(
    id: Uuid,
    event_type: &str,
    at: DateTime<Utc>,
    data: serde_json::Value,
) -> String {
    serde_json::json!({
        "id": event_id_text(id),
        "type": event_type,
        "createdAt": rfc3339(at),
        "data": data,
    })
    .to_string()
}

/// Prefix of webhook secrets (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret (the standard allows 24 to 64).
const SECRET_BYTES: usize = 32;

/// A webhook signing secret: its bytes are the HMAC key; shown as `whsec_` + base64.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        WebhookSecret(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        (24..=64)
            .contains(&bytes.len())
            .then_some(WebhookSecret(bytes))
    }

    /// `whsec_…`, as shown once to the owner.
    pub fn shown(&self) -> String {
        format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(&self.0)
        )
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The Standard Webhooks headers of one request: `webhook-id`, `webhook-timestamp`
/// (seconds) and `webhook-signature` (`v1,` + base64 of HMAC-SHA256 over
/// `id.timestamp.body` keyed with the secret's bytes).
pub fn signature_headers(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    body: &str,
) -> [(&'static str, String); 3] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.bytes()).expect("any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    [
        ("webhook-id", msg_id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", format!("v1,{signature}")),
    ]
}

/// When failed deliveries are tried again: after 5 s, 30 s, 2 min, 5 min, 15 min,
/// 30 min, 1 h, 2 h, 4 h, 8 h and 8 h, about 24 hours in all; then the delivery is
/// recorded as failed (`PARTWAY_WEBHOOK_RETRY_SCHEDULE` replaces it).
pub fn default_retry_schedule() -> Vec<Duration> {
    [5, 30, 120, 300, 900, 1800, 3600, 7200, 14400, 28800, 28800]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

/// `5s,30s,2m,…` (humantime durations, comma-separated).
pub fn parse_retry_schedule(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}")))
        .collect()
}

/// How events are delivered: the retry schedule and the request timeout.
#[derive(Debug, Clone)]
pub struct EventSettings {
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            retry_schedule: default_retry_schedule(),
            timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_follow_the_status_machine() {
        use UploadStatus::*;
        assert_eq!(
            EventType::of_transition(&[Initiating], Active),
            Some(EventType::Created)
        );
        assert_eq!(EventType::of_transition(&Active.sources(), Active), None);
        assert_eq!(EventType::of_transition(&[Paused], Active), None);
        assert_eq!(
            EventType::of_transition(&Completed.sources(), Completed),
            Some(EventType::Completed)
        );
        assert_eq!(EventType::of_transition(&[Active], Paused), None);
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
        }
    }

    #[test]
    fn the_default_schedule_lasts_about_a_day_and_starts_within_a_minute() {
        let s = default_retry_schedule();
        assert!(s[0] + s[1] <= Duration::from_secs(60));
        let total: Duration = s.iter().sum();
        assert!(total > Duration::from_secs(22 * 3600) && total < Duration::from_secs(26 * 3600));
        assert_eq!(
            parse_retry_schedule("1s, 2s,1m").unwrap(),
            vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
    }

    #[test]
    fn secrets_are_whsec_base64_and_never_debug_printed() {
        let s = WebhookSecret::generate();
        let shown = s.shown();
        let b64 = shown.strip_prefix(SECRET_PREFIX).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(bytes, s.bytes());
        assert!(!format!("{s:?}").contains(b64));
    }

    #[test]
    fn signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = WebhookSecret(
            base64::engine::general_purpose::STANDARD
                .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap(),
        );
        let [id, ts, sig] = signature_headers(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(id.1, "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(ts.1, "1614265330");
        assert_eq!(sig.1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
