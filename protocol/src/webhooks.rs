//! The documents of the webhook routes (DESIGN §6), camelCase JSON like the rest of the
//! contract ([`crate::dto`] says how the `Object` derive and serde agree).
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};

/// An event type an endpoint may subscribe to.
#[derive(Enum, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookEventType {
    /// The upload became active: storage has it and parts may be sent.
    #[oai(rename = "upload.created")]
    #[serde(rename = "upload.created")]
    UploadCreated,
    #[oai(rename = "upload.completed")]
    #[serde(rename = "upload.completed")]
    UploadCompleted,
    #[oai(rename = "upload.aborted")]
    #[serde(rename = "upload.aborted")]
    UploadAborted,
    #[oai(rename = "upload.expired")]
    #[serde(rename = "upload.expired")]
    UploadExpired,
    #[oai(rename = "upload.failed")]
    #[serde(rename = "upload.failed")]
    UploadFailed,
}

impl WebhookEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventType::UploadCreated => "upload.created",
            WebhookEventType::UploadCompleted => "upload.completed",
            WebhookEventType::UploadAborted => "upload.aborted",
            WebhookEventType::UploadExpired => "upload.expired",
            WebhookEventType::UploadFailed => "upload.failed",
        }
    }
}

/// Register a webhook endpoint. The URL must be http or https and reach an address the
/// server may connect to (not loopback, private, link-local …: 400 `INVALID_ENDPOINT`).
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct WebhookRequest {
    /// Where events are POSTed, at most 2048 characters.
    #[oai(validator(
        max_length = 2048,
        custom = "crate::pattern::Matches(&crate::pattern::WEBHOOK_URL)"
    ))]
    pub url: String,
    /// The event types to send (at least one).
    #[oai(validator(min_items = 1, max_items = 16))]
    pub events: Vec<WebhookEventType>,
    /// A note for lists, at most 256 characters.
    #[oai(validator(max_length = 256))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A webhook endpoint as lists show it (never its secret).
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct WebhookDoc {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: String,
    /// True once the endpoint answered 410 Gone: nothing more is sent to it.
    pub disabled: bool,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// A new endpoint: `secret` (`whsec_` + base64) is shown this once; verify requests
/// with it the Standard Webhooks way.
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreated {
    pub success: bool,
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub secret: String,
    pub created_at: String,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct WebhookList {
    pub success: bool,
    /// The owner's endpoints, oldest first.
    pub webhooks: Vec<WebhookDoc>,
}

/// `DELETE /api/v1/webhooks/{id}`.
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeleted {
    pub success: bool,
    pub id: String,
    pub deleted: bool,
}

/// One attempt at delivering an event.
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttemptDoc {
    /// The event's id (`webhook-id`; the same on every attempt).
    pub event_id: String,
    /// The event's type (`webhook.test` for a test ping).
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The endpoint's HTTP status, when it answered.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why there was no answer (timeout, connection refused …).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    pub attempted_at: String,
    /// When it will be tried again; absent when this was the last attempt.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<String>,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttemptList {
    pub success: bool,
    /// The endpoint's most recent attempts (at most 100), newest first.
    pub deliveries: Vec<WebhookAttemptDoc>,
}

/// What a test ping got.
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct WebhookPing {
    pub success: bool,
    /// True when the endpoint answered 2xx.
    pub delivered: bool,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}
