//! Webhook endpoints (DESIGN §6): `POST/GET/DELETE /api/v1/webhooks`, an endpoint's
//! recent attempts, and a test ping. API keys only (a browser token is refused before
//! this, and again here). The URL passes the outbound guard (DESIGN §7) when it is
//! created and again at every connection; the secret is shown once and stored sealed.
use std::time::Instant;

use chrono::Utc;
use partway_entity::{webhook, webhook_attempt};
use sea_orm::ActiveValue::Set;
use tracing::{info, instrument};
use uuid::Uuid;

use super::{App, AppError};
use crate::{
    auth::Caller,
    crypto::MasterKey,
    domain::ErrorCode,
    events::{
        event_body, event_id_text, signature_headers, EventType, WebhookSecret, TEST_EVENT_TYPE,
    },
    outbound::OutboundPolicy,
    store::Store,
};

/// The longest URL an endpoint may have.
pub const MAX_URL_LEN: usize = 2048;
/// The longest description.
pub const MAX_DESCRIPTION_LEN: usize = 256;
/// The most event types a request may list (the spec's `maxItems`).
pub const MAX_EVENTS_LISTED: usize = 16;
/// Attempts an endpoint's deliveries list shows at most.
pub const MAX_ATTEMPTS_LISTED: u64 = 100;

/// A new endpoint, as the owner asked for it.
#[derive(Debug, Clone)]
pub struct WebhookInput {
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
}

/// What a test ping got.
#[derive(Debug, Clone)]
pub struct PingResult {
    pub delivered: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

fn api_key_only(caller: &Caller) -> Result<(), AppError> {
    if caller.browser.is_some() {
        return Err(AppError::client(
            ErrorCode::Forbidden,
            "browser tokens cannot manage webhooks; use an API key",
        ));
    }
    Ok(())
}

fn not_found() -> AppError {
    AppError::client(
        ErrorCode::NotFound,
        "this owner has no webhook with that id",
    )
}

/// Checks an endpoint (form and outbound guard) and stores it with a new secret; the
/// secret's shown form is returned this once.
pub async fn create(
    store: &Store,
    master_key: &MasterKey,
    outbound: &OutboundPolicy,
    owner_id: Uuid,
    input: WebhookInput,
) -> Result<(webhook::Model, String), AppError> {
    let url = input.url.trim().to_string();
    if url.is_empty() || url.len() > MAX_URL_LEN {
        return Err(AppError::client(
            ErrorCode::InvalidEndpoint,
            format!("url must be an http or https URL of at most {MAX_URL_LEN} characters"),
        ));
    }
    if input.events.len() > MAX_EVENTS_LISTED {
        return Err(AppError::client(
            ErrorCode::InvalidParameter,
            format!("events may list at most {MAX_EVENTS_LISTED} types"),
        ));
    }
    outbound.check(&url).await?;
    let mut events: Vec<&str> = input.events.iter().map(|e| e.as_str()).collect();
    events.sort_unstable();
    events.dedup();
    if events.is_empty() {
        return Err(AppError::client(
            ErrorCode::InvalidParameter,
            "events must name at least one event type",
        ));
    }
    if input
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN)
    {
        return Err(AppError::client(
            ErrorCode::InvalidParameter,
            format!("description may have at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    let id = Uuid::new_v4();
    let secret = WebhookSecret::generate();
    let row = webhook::ActiveModel {
        id: Set(id),
        owner_id: Set(owner_id),
        url: Set(url),
        events: Set(serde_json::json!(events)),
        description: Set(input.description),
        secret_sealed: Set(master_key.seal_webhook_secret(secret.bytes(), owner_id, id)),
        created_at: Set(Utc::now()),
        disabled_at: Set(None),
        disabled_reason: Set(None),
    };
    let row = store.insert_webhook(row).await?;
    info!(webhook = %row.id, owner = %owner_id, "webhook endpoint created");
    Ok((row, secret.shown()))
}

/// `partway webhooks create`: for the owner named `owner_name` (created when new).
pub async fn create_for_owner(
    store: &Store,
    master_key: &MasterKey,
    outbound: &OutboundPolicy,
    owner_name: &str,
    input: WebhookInput,
) -> Result<(webhook::Model, String), AppError> {
    crate::domain::validate_owner_name(owner_name)?;
    let owner = store.ensure_owner(owner_name).await?;
    create(store, master_key, outbound, owner.id, input).await
}

/// The event types an endpoint subscribed to.
pub fn events_of(row: &webhook::Model) -> Vec<String> {
    row.events
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl App {
    #[instrument(skip_all, fields(owner = %caller.owner_id))]
    pub async fn create_webhook(
        &self,
        caller: &Caller,
        input: WebhookInput,
    ) -> Result<(webhook::Model, String), AppError> {
        api_key_only(caller)?;
        create(
            &self.store,
            &self.master_key,
            self.storage.outbound(),
            caller.owner_id,
            input,
        )
        .await
    }

    /// The owner's endpoints (never their secret), oldest first.
    pub async fn list_webhooks(&self, caller: &Caller) -> Result<Vec<webhook::Model>, AppError> {
        api_key_only(caller)?;
        Ok(self.store.webhooks_of(caller.owner_id).await?)
    }

    /// Deletes one of the owner's endpoints: 404 `NOT_FOUND` for any other id. Queued
    /// deliveries to it are dropped.
    #[instrument(skip_all, fields(owner = %caller.owner_id, webhook = %id))]
    pub async fn delete_webhook(&self, caller: &Caller, id: Uuid) -> Result<(), AppError> {
        api_key_only(caller)?;
        if self.store.delete_webhook(caller.owner_id, id).await? {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// An endpoint's recent attempts, newest first.
    pub async fn webhook_attempts(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<Vec<webhook_attempt::Model>, AppError> {
        api_key_only(caller)?;
        self.store
            .owned_webhook(caller.owner_id, id)
            .await?
            .ok_or_else(not_found)?;
        Ok(self.store.attempts_of(id, MAX_ATTEMPTS_LISTED).await?)
    }

    /// Sends a signed `webhook.test` event to the endpoint now and says what it got
    /// (recorded among its attempts). Never retried.
    #[instrument(skip_all, fields(owner = %caller.owner_id, webhook = %id))]
    pub async fn test_webhook(&self, caller: &Caller, id: Uuid) -> Result<PingResult, AppError> {
        api_key_only(caller)?;
        let endpoint = self
            .store
            .owned_webhook(caller.owner_id, id)
            .await?
            .ok_or_else(not_found)?;
        let secret = self
            .webhook_secret(&endpoint)
            .map_err(|_| AppError::Internal("a webhook secret does not open".into()))?;
        let event_id = Uuid::new_v4();
        let now = Utc::now();
        let body = event_body(
            event_id,
            TEST_EVENT_TYPE,
            now,
            serde_json::json!({ "webhookId": endpoint.id }),
        );
        let headers = signature_headers(&secret, &event_id_text(event_id), now.timestamp(), &body);
        let started = Instant::now();
        let outcome = self
            .webhook_sender
            .send(&endpoint.url, &headers, &body, self.event_settings.timeout)
            .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let (status_code, error) = match outcome {
            Ok(code) => (Some(code), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.store
            .record_test_attempt(webhook_attempt::ActiveModel {
                id: Set(Uuid::new_v4()),
                delivery_id: Set(Uuid::nil()),
                webhook_id: Set(endpoint.id),
                event_id: Set(event_id),
                event_type: Set(TEST_EVENT_TYPE.to_string()),
                attempt: Set(1),
                status_code: Set(status_code.map(i32::from)),
                error: Set(error.clone()),
                duration_ms: Set(duration_ms as i64),
                next_retry_at: Set(None),
                attempted_at: Set(now),
            })
            .await?;
        Ok(PingResult {
            delivered: status_code.is_some_and(|c| (200..300).contains(&c)),
            status_code,
            error,
            duration_ms,
        })
    }

    /// An endpoint's signing secret, opened with the master key.
    pub(crate) fn webhook_secret(
        &self,
        row: &webhook::Model,
    ) -> Result<WebhookSecret, crate::crypto::CryptoError> {
        let bytes =
            self.master_key
                .open_webhook_secret(&row.secret_sealed, row.owner_id, row.id)?;
        WebhookSecret::from_bytes(bytes).ok_or(crate::crypto::CryptoError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{
        domain::{UploadStatus, MIB},
        events::{
            sender::{RecordingSender, SendError},
            EventSettings,
        },
        outbound::{AllowList, OutboundMode, StaticResolver},
        testing::TestApp,
    };

    /// A test app whose webhook requests go to `sender`; `hooks.test` resolves to a
    /// public address (nothing is sent anywhere: the sender records).
    async fn app_with(sender: Arc<RecordingSender>, schedule: Vec<Duration>) -> TestApp {
        let outbound = OutboundPolicy::new(
            AllowList::default(),
            OutboundMode::Guarded,
            Arc::new(
                StaticResolver::new().with("hooks.test", vec![vec!["8.8.8.8".parse().unwrap()]]),
            ),
        );
        let mut t = TestApp::with(outbound, None).await;
        let app = Arc::get_mut(&mut t.app).expect("not shared yet");
        app.webhook_sender = sender;
        app.event_settings = EventSettings {
            retry_schedule: schedule,
            ..EventSettings::default()
        };
        t
    }

    fn input(url: &str, events: &[EventType]) -> WebhookInput {
        WebhookInput {
            url: url.into(),
            events: events.to_vec(),
            description: None,
        }
    }

    fn header<'a>(r: &'a crate::events::sender::Recorded, name: &str) -> &'a str {
        &r.headers.iter().find(|(n, _)| *n == name).expect(name).1
    }

    #[tokio::test]
    async fn created_and_completed_are_delivered_signed_in_order() {
        let sender = Arc::new(RecordingSender::default());
        let t = app_with(sender.clone(), vec![Duration::ZERO]).await;
        let (row, secret) = t
            .app
            .create_webhook(&t.caller, input("http://hooks.test/in", &EventType::ALL))
            .await
            .unwrap();
        assert!(secret.starts_with("whsec_"));
        assert!(
            !format!("{row:?}").contains(&secret[6..]),
            "the row holds it sealed"
        );
        let (token, upload) = t.active_upload(12 * MIB, 5 * MIB).await;
        let parts = t.put_parts(&upload, 1..=3);
        t.app
            .complete(&t.caller, &token, Some(parts))
            .await
            .unwrap();
        t.run_jobs().await;
        assert_eq!(
            t.app.reload(upload.id).await.unwrap().status,
            UploadStatus::Completed
        );
        let sent = sender.requests();
        let types: Vec<String> = sent
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(types, ["upload.created", "upload.completed"]);
        let events = t.app.store.events_of(upload.id).await.unwrap();
        assert_eq!(events.len(), 2);
        let opened = t.app.webhook_secret(&row).unwrap();
        assert_eq!(opened.shown(), secret);
        for (r, e) in sent.iter().zip(&events) {
            assert_eq!(r.url, "http://hooks.test/in");
            assert_eq!(header(r, "webhook-id"), event_id_text(e.id));
            assert_eq!(r.body, e.body);
            let ts: i64 = header(r, "webhook-timestamp").parse().unwrap();
            let [_, _, sig] = signature_headers(&opened, &event_id_text(e.id), ts, &r.body);
            assert_eq!(header(r, "webhook-signature"), sig.1);
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["data"]["resumeToken"], token.as_str());
            assert!(body["data"].get("s3SecretKey").is_none());
        }
        let attempts = t.app.webhook_attempts(&t.caller, row.id).await.unwrap();
        assert_eq!(attempts.len(), 2);
        assert!(attempts.iter().all(|a| a.status_code == Some(200)));
    }

    #[tokio::test]
    async fn failures_are_retried_with_the_same_id_and_410_disables() {
        let sender = Arc::new(RecordingSender::answering(vec![
            Ok(500),
            Err(SendError::Timeout),
            Ok(204),
            Ok(410),
        ]));
        let t = app_with(sender.clone(), vec![Duration::ZERO, Duration::ZERO]).await;
        let (row, _) = t
            .app
            .create_webhook(
                &t.caller,
                input(
                    "http://hooks.test/in",
                    &[EventType::Created, EventType::Aborted],
                ),
            )
            .await
            .unwrap();
        let (token, _) = t.active_upload(12 * MIB, 5 * MIB).await;
        let sent = sender.requests();
        assert_eq!(sent.len(), 3, "two failures, then delivered");
        assert!(sent
            .iter()
            .all(|r| header(r, "webhook-id") == header(&sent[0], "webhook-id")));
        t.app.abort(&t.caller, &token).await.unwrap();
        t.run_jobs().await;
        assert_eq!(sender.requests().len(), 4);
        let listed = t.app.list_webhooks(&t.caller).await.unwrap();
        assert!(listed[0].disabled_at.is_some(), "410 disables the endpoint");
        let attempts = t.app.webhook_attempts(&t.caller, row.id).await.unwrap();
        assert_eq!(attempts.len(), 4);
    }

    #[tokio::test]
    async fn a_master_key_rotation_reseals_webhook_secrets() {
        let sender = Arc::new(RecordingSender::default());
        let t = app_with(sender, vec![]).await;
        let (row, secret) = t
            .app
            .create_webhook(
                &t.caller,
                input("http://hooks.test/", &[EventType::Completed]),
            )
            .await
            .unwrap();
        let new = MasterKey::generate();
        let done = crate::usecases::rotate_master_key(&t.app.store, &t.app.master_key, &new)
            .await
            .unwrap();
        assert_eq!(done.resealed, 1);
        let row = t.app.store.webhook(row.id).await.unwrap().unwrap();
        let opened = new
            .open_webhook_secret(&row.secret_sealed, row.owner_id, row.id)
            .unwrap();
        assert_eq!(WebhookSecret::from_bytes(opened).unwrap().shown(), secret);
    }

    #[tokio::test]
    async fn private_addresses_and_bad_input_are_refused_and_browser_tokens_cannot_manage() {
        let sender = Arc::new(RecordingSender::default());
        let t = app_with(sender.clone(), vec![]).await;
        for url in [
            "http://10.0.0.5/hook",
            "http://169.254.169.254/",
            "http://127.0.0.1:9/",
            "ftp://hooks.test/",
            "http://user@hooks.test/",
        ] {
            let err = t
                .app
                .create_webhook(&t.caller, input(url, &[EventType::Completed]))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    AppError::Client {
                        code: ErrorCode::InvalidEndpoint,
                        ..
                    }
                ),
                "{url}: {err:?}"
            );
        }
        let err = t
            .app
            .create_webhook(&t.caller, input("http://hooks.test/", &[]))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AppError::Client {
                code: ErrorCode::InvalidParameter,
                ..
            }
        ));
        let (row, _) = t
            .app
            .create_webhook(
                &t.caller,
                input("http://hooks.test/", &[EventType::Completed]),
            )
            .await
            .unwrap();
        let ping = t.app.test_webhook(&t.caller, row.id).await.unwrap();
        assert!(ping.delivered);
        t.app.delete_webhook(&t.caller, row.id).await.unwrap();
        let err = t.app.delete_webhook(&t.caller, row.id).await.unwrap_err();
        assert!(matches!(
            err,
            AppError::Client {
                code: ErrorCode::NotFound,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn history_past_the_retention_is_pruned_and_what_is_owed_is_kept() {
        use partway_entity::job;
        use sea_orm::{EntityTrait, PaginatorTrait};
        // Upload A's two events are delivered; upload B's `created` is refused and
        // waits an hour for its retry.
        let sender = Arc::new(RecordingSender::answering(vec![Ok(200), Ok(200), Ok(503)]));
        let t = app_with(sender.clone(), vec![Duration::from_secs(3600)]).await;
        let (row, _) = t
            .app
            .create_webhook(&t.caller, input("http://hooks.test/in", &EventType::ALL))
            .await
            .unwrap();
        let (token, a) = t.active_upload(12 * MIB, 5 * MIB).await;
        let parts = t.put_parts(&a, 1..=3);
        t.app
            .complete(&t.caller, &token, Some(parts))
            .await
            .unwrap();
        t.run_jobs().await;
        let (_, b) = t.active_upload(12 * MIB, 5 * MIB).await;
        assert_eq!(sender.requests().len(), 3);
        let db = t.app.store.connection();
        let jobs_before = job::Entity::find().count(db).await.unwrap();

        // Fresh history is kept.
        let now = t
            .app
            .prune_history(Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(now.total(), 0, "{now:?}");

        // Everything is older than a cut-off a day ahead: all of A's history goes; B's
        // owed delivery, its attempt, its event and its pending job stay.
        let pruned = t
            .app
            .store
            .prune_history(chrono::Utc::now() + chrono::Duration::days(1))
            .await
            .unwrap();
        assert_eq!(
            (pruned.deliveries, pruned.attempts, pruned.events),
            (2, 2, 2),
            "{pruned:?}"
        );
        assert_eq!(
            pruned.jobs,
            jobs_before - 1,
            "all but B's pending delivery job"
        );
        assert_eq!(job::Entity::find().count(db).await.unwrap(), 1);
        assert!(t.app.store.events_of(a.id).await.unwrap().is_empty());
        assert_eq!(t.app.store.events_of(b.id).await.unwrap().len(), 1);
        let kept = t.app.webhook_attempts(&t.caller, row.id).await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].status_code, Some(503));
        // The uploads themselves are never pruned.
        assert_eq!(
            t.app.reload(a.id).await.unwrap().status,
            UploadStatus::Completed
        );
        assert_eq!(t.app.store.undelivered_count().await.unwrap(), 1);
    }
}
