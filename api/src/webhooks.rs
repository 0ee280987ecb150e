//! The webhook routes (DESIGN §6), API keys only: `POST/GET /api/v1/webhooks`,
//! `DELETE /api/v1/webhooks/{id}`, `GET /api/v1/webhooks/{id}/deliveries` and
//! `POST /api/v1/webhooks/{id}/test`. Each authenticates, calls one use case
//! (`partway_core::usecases::webhooks`) and shapes its answer; a browser token is refused
//! with 403 before any of this (`lib.rs`).
use partway_core::{
    domain::ErrorCode,
    events::EventType,
    usecases::webhooks::{events_of, WebhookInput},
};
use partway_entity::{webhook, webhook_attempt};
use partway_protocol::webhooks::*;
use poem_openapi::{param::Path, payload::Json, ApiResponse, OpenApi, Tags};

use crate::{
    body::{ContractBody, ContractJson},
    error::ApiError,
    models::rfc3339,
    routes::{caller, AppData, Auth},
};

type ApiResult<T> = Result<T, ApiError>;

#[derive(Tags)]
enum WebhookTag {
    /// Webhooks: signed events for your application (API keys only)
    Webhooks,
}

pub struct WebhookApi;

#[derive(ApiResponse)]
pub enum WebhookCreatedResponse {
    /// The endpoint; `secret` is shown this once.
    #[oai(status = 201)]
    Created(Json<WebhookCreated>),
}

impl ContractBody for WebhookRequest {
    fn missing_code(_field: &str) -> ErrorCode {
        ErrorCode::MissingRequiredFields
    }
    fn invalid_code(field: &str) -> ErrorCode {
        match field {
            "url" => ErrorCode::InvalidEndpoint,
            _ => ErrorCode::InvalidParameter,
        }
    }
}

fn webhook_doc(row: &webhook::Model) -> WebhookDoc {
    WebhookDoc {
        id: row.id.to_string(),
        url: row.url.clone(),
        events: events_of(row),
        description: row.description.clone(),
        created_at: rfc3339(row.created_at),
        disabled: row.disabled_at.is_some(),
        disabled_at: row.disabled_at.map(rfc3339),
        disabled_reason: row.disabled_reason.clone(),
    }
}

fn attempt_doc(row: &webhook_attempt::Model) -> WebhookAttemptDoc {
    WebhookAttemptDoc {
        event_id: partway_core::events::event_id_text(row.event_id),
        event_type: row.event_type.clone(),
        attempt: row.attempt.max(0) as u32,
        status_code: row.status_code.and_then(|c| u16::try_from(c).ok()),
        error: row.error.clone(),
        duration_ms: row.duration_ms.max(0) as u64,
        attempted_at: rfc3339(row.attempted_at),
        next_retry_at: row.next_retry_at.map(rfc3339),
    }
}

fn event_type(t: WebhookEventType) -> EventType {
    match t {
        WebhookEventType::UploadCreated => EventType::Created,
        WebhookEventType::UploadCompleted => EventType::Completed,
        WebhookEventType::UploadAborted => EventType::Aborted,
        WebhookEventType::UploadExpired => EventType::Expired,
        WebhookEventType::UploadFailed => EventType::Failed,
    }
}

fn webhook_id(id: &str) -> ApiResult<uuid::Uuid> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, "id must be a webhook's id"))
}

#[OpenApi]
impl WebhookApi {
    /// Register a webhook endpoint (API keys only).
    ///
    /// partway POSTs each event of the chosen types to `url`, signed the Standard
    /// Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with
    /// `secret`, which is shown this once. Any 2xx is success; other answers and
    /// timeouts (10 s) are retried for about a day; 410 Gone disables the endpoint.
    /// An endpoint the server may not connect to is 400 `INVALID_ENDPOINT`.
    #[oai(
        path = "/api/v1/webhooks",
        method = "post",
        operation_id = "createWebhook",
        tag = "WebhookTag::Webhooks"
    )]
    async fn create_webhook(
        &self,
        app: AppData<'_>,
        auth: Auth,
        body: ContractJson<WebhookRequest>,
    ) -> ApiResult<WebhookCreatedResponse> {
        let caller = caller(&app, &auth).await?;
        let input = WebhookInput {
            url: body.0.url,
            events: body.0.events.into_iter().map(event_type).collect(),
            description: body.0.description,
        };
        let (row, secret) = app.create_webhook(&caller, input).await?;
        let doc = webhook_doc(&row);
        Ok(WebhookCreatedResponse::Created(Json(WebhookCreated {
            success: true,
            id: doc.id,
            url: doc.url,
            events: doc.events,
            description: doc.description,
            secret,
            created_at: doc.created_at,
        })))
    }

    /// The owner's webhook endpoints (never their secret), oldest first.
    #[oai(
        path = "/api/v1/webhooks",
        method = "get",
        operation_id = "listWebhooks",
        tag = "WebhookTag::Webhooks"
    )]
    async fn list_webhooks(&self, app: AppData<'_>, auth: Auth) -> ApiResult<Json<WebhookList>> {
        let caller = caller(&app, &auth).await?;
        let rows = app.list_webhooks(&caller).await?;
        Ok(Json(WebhookList {
            success: true,
            webhooks: rows.iter().map(webhook_doc).collect(),
        }))
    }

    /// Delete a webhook endpoint; events not yet delivered to it are dropped.
    #[oai(
        path = "/api/v1/webhooks/:id",
        method = "delete",
        operation_id = "deleteWebhook",
        tag = "WebhookTag::Webhooks"
    )]
    async fn delete_webhook(
        &self,
        app: AppData<'_>,
        auth: Auth,
        /// The endpoint's `id` (a UUID, lowercase).
        #[oai(
            name = "id",
            validator(
                custom = "partway_protocol::pattern::Matches(&partway_protocol::pattern::UUID)"
            )
        )]
        id: Path<String>,
    ) -> ApiResult<Json<WebhookDeleted>> {
        let caller = caller(&app, &auth).await?;
        let parsed = webhook_id(&id.0)?;
        app.delete_webhook(&caller, parsed).await?;
        Ok(Json(WebhookDeleted {
            success: true,
            id: parsed.to_string(),
            deleted: true,
        }))
    }

    /// An endpoint's recent delivery attempts (at most 100), newest first: event id and
    /// type, attempt, HTTP status or error, duration, next retry.
    #[oai(
        path = "/api/v1/webhooks/:id/deliveries",
        method = "get",
        operation_id = "listWebhookDeliveries",
        tag = "WebhookTag::Webhooks"
    )]
    async fn list_deliveries(
        &self,
        app: AppData<'_>,
        auth: Auth,
        /// The endpoint's `id` (a UUID, lowercase).
        #[oai(
            name = "id",
            validator(
                custom = "partway_protocol::pattern::Matches(&partway_protocol::pattern::UUID)"
            )
        )]
        id: Path<String>,
    ) -> ApiResult<Json<WebhookAttemptList>> {
        let caller = caller(&app, &auth).await?;
        let rows = app.webhook_attempts(&caller, webhook_id(&id.0)?).await?;
        Ok(Json(WebhookAttemptList {
            success: true,
            deliveries: rows.iter().map(attempt_doc).collect(),
        }))
    }

    /// Send a signed `webhook.test` event to the endpoint now (not retried) and answer
    /// what it got.
    #[oai(
        path = "/api/v1/webhooks/:id/test",
        method = "post",
        operation_id = "testWebhook",
        tag = "WebhookTag::Webhooks"
    )]
    async fn test_webhook(
        &self,
        app: AppData<'_>,
        auth: Auth,
        /// The endpoint's `id` (a UUID, lowercase).
        #[oai(
            name = "id",
            validator(
                custom = "partway_protocol::pattern::Matches(&partway_protocol::pattern::UUID)"
            )
        )]
        id: Path<String>,
    ) -> ApiResult<Json<WebhookPing>> {
        let caller = caller(&app, &auth).await?;
        let ping = app.test_webhook(&caller, webhook_id(&id.0)?).await?;
        Ok(Json(WebhookPing {
            success: true,
            delivered: ping.delivered,
            status_code: ping.status_code,
            error: ping.error,
            duration_ms: ping.duration_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use partway_core::usecases::webhooks::{MAX_DESCRIPTION_LEN, MAX_EVENTS_LISTED, MAX_URL_LEN};

    #[test]
    fn the_spec_states_the_use_case_limits() {
        let spec: serde_yaml::Value = serde_yaml::from_str(&crate::openapi_yaml()).unwrap();
        let props = &spec["components"]["schemas"]["WebhookRequest"]["properties"];
        assert_eq!(props["url"]["maxLength"].as_u64(), Some(MAX_URL_LEN as u64));
        assert_eq!(
            props["description"]["maxLength"].as_u64(),
            Some(MAX_DESCRIPTION_LEN as u64)
        );
        assert_eq!(
            props["events"]["maxItems"].as_u64(),
            Some(MAX_EVENTS_LISTED as u64)
        );
        assert_eq!(props["events"]["minItems"].as_u64(), Some(1));
        assert_eq!(props["description"]["nullable"].as_bool(), Some(true));
    }
}
