//! The use cases, one module each, written once against the ports and the store. The
//! HTTP layer parses input into typed values, calls one of these and shapes the answer;
//! the job handlers they queue live in `crate::jobs`.
//!
//! | module | use case |
//! |---|---|
//! | [`auth`] | who is calling (API key → owner), and whose rate limit a request counts against |
//! | [`init`] | start an upload (row + init job) |
//! | [`resume`] | reconcile with storage again (resume job) |
//! | [`complete`] | complete (complete job); a repeat joins or answers the result |
//! | [`abort`] | abort (abort job), or expire what ran out of time |
//! | [`pause`] | pause (synchronous) |
//! | [`report_part`] | a client reports a part it PUT |
//! | [`parts`] | part URLs, from the cache or presigned on the spot |
//! | [`list`] | an owner's uploads, a page at a time |
//! | [`status`] | one upload's row, cached status documents, completed URLs |
//! | [`settle`] | `?wait=N`: wait for the queued job, then the upload as it is |
//! | [`sweep`] | mark expired uploads and queue their storage aborts |
//! | [`metrics`] | the gauges read from the database |
//! | [`uppy`] | the Uppy (Companion-compatible) routes: size-unknown uploads, part URLs on demand, form-POST policies and their checks |
//! | [`events`] | an open event stream's lease: owner slots, credential re-check, lifetime |
//! | [`webhooks`] | webhook endpoints: create, list, delete, their deliveries, a test ping |
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use partway_entity::upload;
use uuid::Uuid;

use crate::{
    auth::KeyCache,
    crypto::MasterKey,
    domain::{Provider, ResumeToken, UploadStatus},
    ports::{JobQueue, ProgressCache, UploadEvent},
    storage::StorageRegistry,
    store::Store,
};

pub mod abort;
pub mod auth;
pub mod complete;
mod error;
pub mod events;
pub mod init;
pub mod list;
pub mod metrics;
pub mod parts;
pub mod pause;
pub mod report_part;
pub mod resume;
pub mod settle;
pub mod status;
mod storage_of;
pub mod sweep;
pub mod uppy;
pub mod webhooks;

pub use error::AppError;
pub use events::{StreamEnd, StreamLease, StreamLimits};
pub use init::InitInput;
pub use parts::PartView;
pub use settle::Settled;
pub use storage_of::{credential_binding, rotate_master_key, Rotation};

/// Service-wide settings the use cases need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub upload_ttl: Duration,
    pub url_ttl: Duration,
    /// How long a completed upload's download URL lives (`PARTWAY_DOWNLOAD_URL_TTL`).
    pub download_url_ttl: Duration,
    pub key_prefix: String,
    pub default_provider: Provider,
    /// Every owner's quota unless `partway owners set-quota` overrides it.
    pub quota: crate::domain::Quota,
    /// Open event streams: per owner, lifetime, credential re-check.
    pub streams: StreamLimits,
}

/// Everything the use cases and job handlers run against. Built once per process by
/// the runtime (or by `testing` with in-memory doubles).
/// Its parts are private to the crate: the HTTP layer and the runtime see methods.
pub struct App {
    pub(crate) store: Store,
    pub(crate) storage: Arc<StorageRegistry>,
    pub(crate) cache: Arc<dyn ProgressCache>,
    pub(crate) queue: Arc<dyn JobQueue>,
    master_key: MasterKey,
    pub(crate) keys: KeyCache,
    streams: Arc<events::OpenStreams>,
    /// When `/metrics` last read the database gauges.
    gauges_refreshed: std::sync::Mutex<Option<std::time::Instant>>,
    pub(crate) settings: Settings,
    rate_limiter: crate::rate_limit::RequestLimiter,
    /// How webhook deliveries are retried and timed out.
    pub(crate) event_settings: crate::events::EventSettings,
    /// How long a job's claim lasts and how often its worker extends it.
    pub(crate) lease_timing: crate::jobs::LeaseTiming,
    /// Where webhook requests go out.
    pub(crate) webhook_sender: Arc<dyn crate::events::sender::WebhookSender>,
    /// Size-unknown uploads whose parts Uppy is signing (`uppy::SIGNABLE_TTL`).
    pub(crate) signable: moka::sync::Cache<Uuid, Arc<upload::Model>>,
}

/// What an API call did: the upload as it is now, and the job it queued or joined.
#[derive(Debug)]
pub struct Accepted {
    pub upload: upload::Model,
    pub job_id: Option<Uuid>,
}

impl App {
    pub fn new(
        store: Store,
        storage: Arc<StorageRegistry>,
        cache: Arc<dyn ProgressCache>,
        queue: Arc<dyn JobQueue>,
        master_key: MasterKey,
        settings: Settings,
    ) -> App {
        App {
            store,
            cache,
            queue,
            master_key,
            keys: KeyCache::default(),
            streams: Arc::default(),
            gauges_refreshed: Default::default(),
            event_settings: crate::events::EventSettings::default(),
            lease_timing: crate::jobs::LeaseTiming::default(),
            webhook_sender: Arc::new(crate::events::sender::HttpSender::new(
                storage.outbound().clone(),
            )),
            storage,
            settings,
            rate_limiter: crate::rate_limit::RequestLimiter::off(),
            signable: uppy::signable_cache(),
        }
    }

    /// With webhook delivery settings other than the defaults.
    pub fn with_event_settings(mut self, settings: crate::events::EventSettings) -> App {
        self.event_settings = settings;
        self
    }

    /// With another way out for webhook requests (use-case tests record them).
    pub fn with_webhook_sender(
        mut self,
        sender: Arc<dyn crate::events::sender::WebhookSender>,
    ) -> App {
        self.webhook_sender = sender;
        self
    }

    /// With request rate limits (DESIGN §7); without, nothing is limited.
    pub fn with_rate_limiter(mut self, limiter: crate::rate_limit::RequestLimiter) -> App {
        self.rate_limiter = limiter;
        self
    }

    /// The request rate limits the HTTP layer applies.
    pub fn rate_limiter(&self) -> &crate::rate_limit::RequestLimiter {
        &self.rate_limiter
    }

    /// Where a browser sends part bytes: the origins of the server's storage.
    pub fn storage_origins(&self) -> Vec<String> {
        self.storage.browser_origins()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the database and the queue answer (readiness): `(database, queue)`.
    pub async fn readiness(&self) -> (bool, bool) {
        (self.store.ping().await, self.queue.is_ready().await)
    }

    /// Receives the upload's change notifications from now on.
    pub async fn subscribe(
        &self,
        upload_id: Uuid,
    ) -> tokio::sync::broadcast::Receiver<UploadEvent> {
        self.cache.subscribe(upload_id).await
    }

    /// Tells pollers and event streams that the upload changed.
    pub(crate) async fn publish(&self, upload_id: Uuid) {
        self.cache.publish(UploadEvent { upload_id }).await;
    }

    /// The upload row as it is now.
    pub async fn reload(&self, id: Uuid) -> Result<upload::Model, AppError> {
        self.store.upload(id).await?.ok_or_else(AppError::not_found)
    }

    /// The caller's upload named by `token`; anything else is not found (no oracle).
    async fn owned_upload(
        &self,
        caller: &crate::auth::Caller,
        token: &str,
    ) -> Result<upload::Model, AppError> {
        let id = token_uuid(token)?;
        self.store
            .owned_upload(caller.owner_id, caller.browser_token_id(), id)
            .await?
            .ok_or_else(AppError::not_found)
    }
}

fn token_uuid(token: &str) -> Result<Uuid, AppError> {
    if token.trim().is_empty() {
        return Err(AppError::client(
            crate::domain::ErrorCode::MissingResumeToken,
            "resumeToken is required",
        ));
    }
    ResumeToken::parse(token)
        .map(|t| t.uuid())
        .ok_or_else(AppError::not_found)
}

/// An active or paused upload whose time ran out counts as expired even before the
/// sweeper marks it.
pub fn effective_status(upload: &upload::Model, now: DateTime<Utc>) -> UploadStatus {
    if upload.status.accepts_parts() && upload.expires_at <= now {
        UploadStatus::Expired
    } else {
        upload.status
    }
}

/// Whether the upload's size is known: declared at init, or (an upload made through the
/// Uppy routes) fixed at complete. Until then its size fields are shown as null.
pub fn size_known(upload: &upload::Model) -> bool {
    upload.sizing.is_none() || upload.completed_at.is_some()
}

/// The upload's resume token.
pub fn token_of(upload: &upload::Model) -> ResumeToken {
    ResumeToken::of_row(upload.id)
}

impl App {
    /// Moves the upload from one of `from` to `to` and queues a `kind` job, atomically;
    /// None when the upload was not in any of `from` (someone else moved it).
    async fn transition_with_job(
        &self,
        upload_id: Uuid,
        from: &[UploadStatus],
        to: UploadStatus,
        kind: crate::jobs::JobKind,
        payload: serde_json::Value,
    ) -> Result<Option<Uuid>, AppError> {
        let job = crate::store::jobs::new_job(upload_id, kind, payload);
        let job_id = *job.id.as_ref();
        if !self
            .store
            .transition_with_job(upload_id, from, to, job)
            .await?
        {
            return Ok(None);
        }
        self.queue.wake().await;
        self.publish(upload_id).await;
        Ok(Some(job_id))
    }

    /// The answer for an upload whose operation is already settled (`done`) or under
    /// way (`running`, joined by waiting on its latest `kind` job); any other status is
    /// a conflict.
    async fn join(
        &self,
        upload: upload::Model,
        done: &[UploadStatus],
        running: UploadStatus,
        kind: crate::jobs::JobKind,
    ) -> Result<Accepted, AppError> {
        let status = effective_status(&upload, Utc::now());
        if done.contains(&status) {
            return Ok(Accepted {
                upload,
                job_id: None,
            });
        }
        if status == running {
            let job_id = self.store.latest_job(upload.id, kind).await?;
            return Ok(Accepted { upload, job_id });
        }
        Err(AppError::conflict(status))
    }

    /// A transition-with-job whose success answers with the reloaded upload and its
    /// job; when another request moved the upload first, `lost` decides the answer.
    async fn accept_transition(
        &self,
        upload_id: Uuid,
        to: UploadStatus,
        kind: crate::jobs::JobKind,
        payload: serde_json::Value,
    ) -> Result<Result<Accepted, upload::Model>, AppError> {
        match self
            .transition_with_job(upload_id, &to.sources(), to, kind, payload)
            .await?
        {
            Some(job_id) => Ok(Ok(Accepted {
                upload: self.reload(upload_id).await?,
                job_id: Some(job_id),
            })),
            None => Ok(Err(self.reload(upload_id).await?)),
        }
    }
}
