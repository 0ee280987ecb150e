//! The use cases (init, resume, complete, abort, pause, part reports, status, lists,
//! expiry) and the job handlers behind them, written once against the ports. The
//! HTTP layer validates nothing itself: it calls these and maps `AppError`.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use chrono::{DateTime, Utc};
use partway_entity::{idempotency_key, job, upload, upload_part};
use sea_orm::{
    sea_query::{Expr, OnConflict},
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use tracing::{info, instrument, warn};
use uuid::Uuid;

use crate::{
    auth::{Caller, KeyCache},
    crypto::MasterKey,
    domain::{
        object_key, validate_filename, validate_metadata, ErrorCode, PartPlan, Progress, Provider,
        ResumeToken, UploadStatus, ValidationError,
    },
    jobs::{self, CompletePayload, JobKind},
    ports::{
        JobQueue, JobRun, PresignedUrl, ProgressCache, SharedStorage, StorageError, StoredPart,
        UploadEvent,
    },
    storage::{StorageCredentials, StorageRegistry, StorageTarget},
};

/// Errors of the use cases. Client errors carry a contract code and a message fit to
/// show; the other two are logged in full and shown generically.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    Client { code: ErrorCode, message: String },
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError::Client {
            code,
            message: message.into(),
        }
    }

    fn not_found() -> Self {
        Self::client(
            ErrorCode::UploadNotFound,
            "no upload with this resume token",
        )
    }
}

impl From<ValidationError> for AppError {
    fn from(e: ValidationError) -> Self {
        AppError::client(e.code, e.message)
    }
}

/// Whether a database error means "the database is unreachable" (503, retry) rather
/// than a bug: no connection, a dropped one, a pool that timed out.
pub fn database_unreachable(e: &DbErr) -> bool {
    use sea_orm::{sqlx::Error as Sqlx, RuntimeErr};
    match e {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            matches!(
                inner.as_ref(),
                Sqlx::Io(_)
                    | Sqlx::PoolTimedOut
                    | Sqlx::PoolClosed
                    | Sqlx::WorkerCrashed
                    | Sqlx::Tls(_)
            )
        }
        _ => false,
    }
}

impl From<DbErr> for AppError {
    fn from(e: DbErr) -> Self {
        if database_unreachable(&e) {
            AppError::Unavailable(format!("database: {e}"))
        } else {
            AppError::Internal(format!("database: {e}"))
        }
    }
}

pub struct Settings {
    pub upload_ttl: Duration,
    pub url_ttl: Duration,
    pub key_prefix: String,
    pub default_provider: Provider,
}

pub struct Services {
    pub db: DatabaseConnection,
    pub storage: Arc<StorageRegistry>,
    pub cache: Arc<dyn ProgressCache>,
    pub queue: Arc<dyn JobQueue>,
    pub master_key: Option<MasterKey>,
    pub keys: KeyCache,
    pub settings: Settings,
}

/// Bring-your-own storage credentials as a client sent them.
#[derive(Debug, Default, Clone)]
pub struct ByoCredentials {
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
    pub s3_endpoint: Option<String>,
    pub r2_access_key: Option<String>,
    pub r2_secret_key: Option<String>,
    pub r2_account_id: Option<String>,
    pub r2_bucket: Option<String>,
}

#[derive(Debug, Clone)]
pub struct InitInput {
    pub filename: String,
    pub file_size: u64,
    pub content_type: String,
    pub provider: Option<String>,
    pub part_size: Option<u64>,
    pub metadata: BTreeMap<String, String>,
    pub credentials: ByoCredentials,
}

/// A part with its presigned URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartView {
    pub part_number: u32,
    pub url: String,
    pub size: u64,
    pub start: u64,
    pub end: u64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartState {
    Pending,
    Uploaded,
    All,
}

/// What an API call did: the upload as it is now, and the job it queued (if any).
pub struct Accepted {
    pub upload: upload::Model,
    pub job_id: Option<Uuid>,
}

pub const URL_PAGE_SIZE: u32 = 1000;
/// A cached URL this close to expiry is presigned again.
const URL_REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(10);
const IDEMPOTENCY_WINDOW: chrono::Duration = chrono::Duration::hours(24);

pub fn status_of(upload: &upload::Model) -> UploadStatus {
    upload.status
}

pub fn plan_of(upload: &upload::Model) -> Result<PartPlan, AppError> {
    PartPlan::from_stored(
        upload.file_size as u64,
        upload.part_size as u64,
        upload.total_parts as u32,
    )
    .map_err(|e| AppError::Internal(format!("stored plan of {} is inconsistent: {e}", upload.id)))
}

pub fn progress_of(upload: &upload::Model) -> Progress {
    Progress::compute(
        upload.uploaded_parts.max(0) as u32,
        upload.total_parts.max(0) as u32,
        upload.uploaded_bytes.max(0) as u64,
        upload.file_size.max(0) as u64,
    )
}

pub fn metadata_of(upload: &upload::Model) -> BTreeMap<String, String> {
    serde_json::from_value(upload.metadata.clone()).unwrap_or_default()
}

/// An active or paused upload whose time ran out counts as expired even before the
/// sweeper marks it.
pub fn effective_status(upload: &upload::Model, now: DateTime<Utc>) -> UploadStatus {
    let status = status_of(upload);
    if matches!(status, UploadStatus::Active | UploadStatus::Paused) && upload.expires_at <= now {
        UploadStatus::Expired
    } else {
        status
    }
}

fn token_uuid(token: &str) -> Result<Uuid, AppError> {
    if token.trim().is_empty() {
        return Err(AppError::client(
            ErrorCode::MissingResumeToken,
            "resumeToken is required",
        ));
    }
    ResumeToken::parse(token)
        .map(|t| t.uuid())
        .ok_or_else(AppError::not_found)
}

fn conflict_for(status: UploadStatus) -> AppError {
    match status {
        UploadStatus::Completed => AppError::client(
            ErrorCode::UploadAlreadyCompleted,
            "this upload is already completed",
        ),
        UploadStatus::Aborted | UploadStatus::Aborting => {
            AppError::client(ErrorCode::UploadAborted, "this upload was aborted")
        }
        UploadStatus::Expired => AppError::client(
            ErrorCode::UploadExpired,
            "this upload expired; start a new one",
        ),
        UploadStatus::Initiating => AppError::client(
            ErrorCode::UploadNotReady,
            "the upload is still being created on storage; retry shortly",
        ),
        UploadStatus::Completing => {
            AppError::client(ErrorCode::UploadNotReady, "the upload is being completed")
        }
        UploadStatus::Failed => AppError::client(
            ErrorCode::UploadNotReady,
            "the upload failed (see lastError); abort it and start again",
        ),
        UploadStatus::Active | UploadStatus::Paused => AppError::Internal("no conflict".into()),
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn set_status(status: UploadStatus) -> Expr {
    Expr::value(status.as_str())
}

impl Services {
    // ----- API side -------------------------------------------------------------

    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Caller, AppError> {
        let key = presented
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                AppError::client(
                    ErrorCode::Unauthorized,
                    "an API key is required (x-api-key header or Authorization: Bearer)",
                )
            })?;
        self.keys
            .resolve(&self.db, key)
            .await?
            .ok_or_else(|| AppError::client(ErrorCode::Unauthorized, "the API key is not valid"))
    }

    async fn owned_upload(&self, caller: &Caller, token: &str) -> Result<upload::Model, AppError> {
        let id = token_uuid(token)?;
        upload::Entity::find_by_id(id)
            .filter(upload::Column::OwnerId.eq(caller.owner_id))
            .one(&self.db)
            .await?
            .ok_or_else(AppError::not_found)
    }

    /// A status snapshot from the cache, if there is one for this caller's upload.
    /// Stored as `owner id`, newline, document, so another owner never gets it.
    pub async fn cached_status(&self, caller: &Caller, token: &str) -> Option<String> {
        let id = ResumeToken::parse(token)?.uuid();
        let raw = self.cache.snapshot(id).await?;
        let (owner, doc) = raw.split_once('\n')?;
        (owner == caller.owner_id.to_string()).then(|| doc.to_string())
    }

    /// Keeps a status document for the next polls (dropped on every change).
    pub async fn remember_status(&self, upload: &upload::Model, doc: String) {
        if status_of(upload) != UploadStatus::Completed {
            self.cache
                .put_snapshot(upload.id, format!("{}\n{doc}", upload.owner_id))
                .await;
        }
    }

    pub async fn get(&self, caller: &Caller, token: &str) -> Result<upload::Model, AppError> {
        self.owned_upload(caller, token).await
    }

    fn resolve_target(
        &self,
        provider: Provider,
        byo: &ByoCredentials,
    ) -> Result<(StorageTarget, bool), AppError> {
        match provider {
            Provider::S3 => {
                let fields = [&byo.s3_access_key, &byo.s3_secret_key, &byo.s3_bucket];
                if fields.iter().any(|f| non_empty(f).is_some())
                    || non_empty(&byo.s3_endpoint).is_some()
                {
                    let (Some(access), Some(secret), Some(bucket)) = (
                        non_empty(&byo.s3_access_key),
                        non_empty(&byo.s3_secret_key),
                        non_empty(&byo.s3_bucket),
                    ) else {
                        return Err(AppError::client(
                            ErrorCode::MissingS3Credentials,
                            "s3AccessKey, s3SecretKey and s3Bucket are required together",
                        ));
                    };
                    let endpoint = match non_empty(&byo.s3_endpoint) {
                        Some(e) if e.starts_with("http://") || e.starts_with("https://") => {
                            Some(e.trim_end_matches('/').to_string())
                        }
                        Some(_) => {
                            return Err(AppError::client(
                                ErrorCode::InvalidParameter,
                                "s3Endpoint must be an http(s) URL",
                            ))
                        }
                        None => None,
                    };
                    return Ok((
                        StorageTarget::with_credentials(
                            provider,
                            bucket.to_string(),
                            non_empty(&byo.s3_region).unwrap_or("us-east-1").to_string(),
                            endpoint,
                            StorageCredentials {
                                access_key_id: access.to_string(),
                                secret_access_key: secret.to_string(),
                            },
                        ),
                        true,
                    ));
                }
                self.storage.server_target(provider).cloned().map(|t| (t, false)).ok_or_else(|| {
                    AppError::client(
                        ErrorCode::MissingS3Credentials,
                        "this server has no S3 storage configured: send s3AccessKey, s3SecretKey and s3Bucket",
                    )
                })
            }
            Provider::R2 => {
                let fields = [
                    &byo.r2_access_key,
                    &byo.r2_secret_key,
                    &byo.r2_account_id,
                    &byo.r2_bucket,
                ];
                if fields.iter().any(|f| non_empty(f).is_some()) {
                    let (Some(access), Some(secret), Some(account), Some(bucket)) = (
                        non_empty(&byo.r2_access_key),
                        non_empty(&byo.r2_secret_key),
                        non_empty(&byo.r2_account_id),
                        non_empty(&byo.r2_bucket),
                    ) else {
                        return Err(AppError::client(
                            ErrorCode::MissingR2Credentials,
                            "r2AccessKey, r2SecretKey, r2AccountId and r2Bucket are required together",
                        ));
                    };
                    if !account.chars().all(|c| c.is_ascii_alphanumeric()) || account.len() > 64 {
                        return Err(AppError::client(
                            ErrorCode::InvalidParameter,
                            "r2AccountId must be alphanumeric",
                        ));
                    }
                    return Ok((
                        StorageTarget::r2(
                            account,
                            bucket.to_string(),
                            StorageCredentials {
                                access_key_id: access.to_string(),
                                secret_access_key: secret.to_string(),
                            },
                        ),
                        true,
                    ));
                }
                self.storage.server_target(provider).cloned().map(|t| (t, false)).ok_or_else(|| {
                    AppError::client(
                        ErrorCode::MissingR2Credentials,
                        "this server has no R2 storage configured: send r2AccessKey, r2SecretKey, r2AccountId and r2Bucket",
                    )
                })
            }
        }
    }

    /// The storage an upload uses: the credentials it was created with, always.
    pub fn storage_for(&self, upload: &upload::Model) -> Result<SharedStorage, AppError> {
        let provider = upload.provider;
        let target = match &upload.credentials_sealed {
            Some(sealed) => {
                let master = self.master_key.as_ref().ok_or_else(|| {
                    AppError::Unavailable("no master key to open stored credentials".into())
                })?;
                let plain = master.open(sealed).map_err(|_| {
                    AppError::Internal(format!(
                        "credentials of upload {} cannot be opened",
                        upload.id
                    ))
                })?;
                let credentials: StorageCredentials =
                    serde_json::from_slice(&plain).map_err(|_| {
                        AppError::Internal(format!(
                            "credentials of upload {} are malformed",
                            upload.id
                        ))
                    })?;
                // Rebuilt as at init, so the client cache finds the same client.
                StorageTarget::with_credentials(
                    provider,
                    upload.bucket.clone(),
                    upload.region.clone().unwrap_or_else(|| "us-east-1".into()),
                    upload.endpoint.clone(),
                    credentials,
                )
            }
            None => {
                let mut target =
                    self.storage
                        .server_target(provider)
                        .cloned()
                        .ok_or_else(|| {
                            AppError::Unavailable(format!(
                                "server storage for {provider} is not configured"
                            ))
                        })?;
                target.bucket = upload.bucket.clone();
                target
            }
        };
        Ok(self.storage.storage(&target))
    }

    async fn lookup_idempotent(
        &self,
        caller: &Caller,
        scope: &str,
        key: &str,
    ) -> Result<Option<upload::Model>, AppError> {
        let Some(found) = idempotency_key::Entity::find_by_id((
            caller.owner_id,
            scope.to_string(),
            key.to_string(),
        ))
        .one(&self.db)
        .await?
        else {
            return Ok(None);
        };
        if Utc::now() - found.created_at > IDEMPOTENCY_WINDOW {
            idempotency_key::Entity::delete_by_id((
                caller.owner_id,
                scope.to_string(),
                key.to_string(),
            ))
            .exec(&self.db)
            .await?;
            return Ok(None);
        }
        Ok(upload::Entity::find_by_id(found.upload_id)
            .one(&self.db)
            .await?)
    }

    #[instrument(skip_all, fields(owner = %caller.owner_name))]
    pub async fn init(
        &self,
        caller: &Caller,
        input: InitInput,
        idempotency: Option<String>,
    ) -> Result<Accepted, AppError> {
        if input.filename.trim().is_empty() || input.content_type.trim().is_empty() {
            return Err(AppError::client(
                ErrorCode::MissingRequiredFields,
                "filename, fileSize and contentType are required",
            ));
        }
        let provider = match non_empty(&input.provider) {
            Some(p) => p.parse::<Provider>()?,
            None => self.settings.default_provider,
        };
        validate_filename(&input.filename)?;
        if input.content_type.len() > 255 || input.content_type.chars().any(|c| c.is_control()) {
            return Err(AppError::client(
                ErrorCode::InvalidParameter,
                "contentType must be a media type of at most 255 characters",
            ));
        }
        validate_metadata(&input.metadata)?;
        let plan = PartPlan::new(input.file_size, input.part_size, provider.max_object_size())
            .map_err(ValidationError::from)?;
        let (target, byo) = self.resolve_target(provider, &input.credentials)?;
        let sealed = if byo {
            let master = self.master_key.as_ref().ok_or_else(|| {
                AppError::Unavailable("bring-your-own credentials need PARTWAY_MASTER_KEY".into())
            })?;
            let plain = serde_json::to_vec(&target.credentials)
                .map_err(|e| AppError::Internal(e.to_string()))?;
            Some(master.seal(&plain))
        } else {
            None
        };

        if let Some(key) = &idempotency {
            if let Some(existing) = self.lookup_idempotent(caller, "init", key).await? {
                return Ok(Accepted {
                    upload: existing,
                    job_id: None,
                });
            }
        }

        let token = ResumeToken::new_random();
        let now = Utc::now();
        let expires_at = now
            + chrono::Duration::from_std(self.settings.upload_ttl)
                .unwrap_or(chrono::Duration::days(7));
        let model = upload::ActiveModel {
            id: Set(token.uuid()),
            owner_id: Set(caller.owner_id),
            provider: Set(provider),
            bucket: Set(target.bucket.clone()),
            region: Set(Some(target.region.clone())),
            endpoint: Set(if byo { target.endpoint.clone() } else { None }),
            file_key: Set(object_key(
                &self.settings.key_prefix,
                &caller.owner_name,
                &token,
                &input.filename,
            )),
            storage_upload_id: Set(None),
            filename: Set(input.filename.clone()),
            content_type: Set(input.content_type.clone()),
            file_size: Set(plan.file_size() as i64),
            part_size: Set(plan.part_size() as i64),
            total_parts: Set(plan.total_parts() as i32),
            status: Set(UploadStatus::Initiating),
            urls_ready: Set(0),
            uploaded_parts: Set(0),
            uploaded_bytes: Set(0),
            metadata: Set(serde_json::to_value(&input.metadata).unwrap_or_default()),
            credentials_sealed: Set(sealed),
            last_error_code: Set(None),
            last_error_message: Set(None),
            etag: Set(None),
            location: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            expires_at: Set(expires_at),
            completed_at: Set(None),
        };
        let job = jobs::new_job(token.uuid(), JobKind::Init, serde_json::Value::Null);
        let job_id = *job.id.as_ref();
        let txn = self.db.begin().await?;
        let inserted = model.insert(&txn).await?;
        job.insert(&txn).await?;
        if let Some(key) = &idempotency {
            let remembered = idempotency_key::ActiveModel {
                owner_id: Set(caller.owner_id),
                scope: Set("init".into()),
                key: Set(key.clone()),
                upload_id: Set(token.uuid()),
                created_at: Set(now),
            }
            .insert(&txn)
            .await;
            if remembered.is_err() {
                // A concurrent request with the same key won the race: answer with its upload.
                txn.rollback().await?;
                if let Some(existing) = self.lookup_idempotent(caller, "init", key).await? {
                    return Ok(Accepted {
                        upload: existing,
                        job_id: None,
                    });
                }
                return Err(AppError::Unavailable(
                    "could not record the idempotency key".into(),
                ));
            }
        }
        txn.commit().await?;
        info!(upload = %token, parts = plan.total_parts(), file_size = plan.file_size(), "upload initiated");
        self.queue.submit(&[job_id]).await;
        Ok(Accepted {
            upload: inserted,
            job_id: Some(job_id),
        })
    }

    /// Moves an upload from one of `from` to `to` and queues a job, atomically.
    /// None when the upload was not in any of `from` (someone else moved it).
    async fn transition_with_job(
        &self,
        upload_id: Uuid,
        from: &[UploadStatus],
        to: UploadStatus,
        kind: JobKind,
        payload: serde_json::Value,
    ) -> Result<Option<Uuid>, AppError> {
        let job = jobs::new_job(upload_id, kind, payload);
        let job_id = *job.id.as_ref();
        let txn = self.db.begin().await?;
        let moved = upload::Entity::update_many()
            .col_expr(upload::Column::Status, set_status(to))
            .col_expr(
                upload::Column::LastErrorCode,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                upload::Column::LastErrorMessage,
                Expr::value(Option::<String>::None),
            )
            .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(upload::Column::Id.eq(upload_id))
            .filter(upload::Column::Status.is_in(from.iter().map(|s| s.as_str())))
            .exec(&txn)
            .await?;
        if moved.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(None);
        }
        job.insert(&txn).await?;
        txn.commit().await?;
        self.queue.submit(&[job_id]).await;
        self.cache.publish(UploadEvent { upload_id }).await;
        Ok(Some(job_id))
    }

    /// The upload row as it is now.
    pub async fn reload(&self, id: Uuid) -> Result<upload::Model, AppError> {
        upload::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(AppError::not_found)
    }

    /// The most recent job of a kind for an upload (to wait on work already queued).
    async fn latest_job(&self, upload_id: Uuid, kind: JobKind) -> Result<Option<Uuid>, AppError> {
        Ok(job::Entity::find()
            .filter(job::Column::UploadId.eq(upload_id))
            .filter(job::Column::Kind.eq(kind.as_str()))
            .order_by_desc(job::Column::CreatedAt)
            .one(&self.db)
            .await?
            .map(|j| j.id))
    }

    /// The answer for an upload whose operation is already settled (`done`) or under
    /// way (`running`, joined by waiting on its job); any other state is a conflict.
    async fn join(
        &self,
        upload: upload::Model,
        done: &[UploadStatus],
        running: UploadStatus,
        kind: JobKind,
    ) -> Result<Accepted, AppError> {
        let status = effective_status(&upload, Utc::now());
        if done.contains(&status) {
            return Ok(Accepted {
                upload,
                job_id: None,
            });
        }
        if status == running {
            let job_id = self.latest_job(upload.id, kind).await?;
            return Ok(Accepted { upload, job_id });
        }
        Err(conflict_for(status))
    }

    #[instrument(skip_all, fields(upload = %token))]
    pub async fn resume(&self, caller: &Caller, token: &str) -> Result<Accepted, AppError> {
        let current = self.owned_upload(caller, token).await?;
        let status = effective_status(&current, Utc::now());
        if !matches!(status, UploadStatus::Active | UploadStatus::Paused) {
            return Err(conflict_for(status));
        }
        let from = [UploadStatus::Active, UploadStatus::Paused];
        match self
            .transition_with_job(
                current.id,
                &from,
                UploadStatus::Active,
                JobKind::Resume,
                serde_json::Value::Null,
            )
            .await?
        {
            Some(job_id) => Ok(Accepted {
                upload: self.reload(current.id).await?,
                job_id: Some(job_id),
            }),
            None => Err(conflict_for(status_of(&self.reload(current.id).await?))),
        }
    }

    #[instrument(skip_all, fields(upload = %token))]
    pub async fn complete(
        &self,
        caller: &Caller,
        token: &str,
        parts: Option<Vec<(u32, String)>>,
    ) -> Result<Accepted, AppError> {
        let current = self.owned_upload(caller, token).await?;
        let status = effective_status(&current, Utc::now());
        if !matches!(status, UploadStatus::Active | UploadStatus::Paused) {
            return self
                .join(
                    current,
                    &[UploadStatus::Completed],
                    UploadStatus::Completing,
                    JobKind::Complete,
                )
                .await;
        }
        let total = current.total_parts as u32;
        if let Some(parts) = &parts {
            if parts.is_empty() {
                return Err(AppError::client(
                    ErrorCode::MissingParts,
                    "parts must list every part, or be omitted to use what storage holds",
                ));
            }
            let mut seen = BTreeSet::new();
            for (number, etag) in parts {
                if *number < 1 || *number > total {
                    return Err(AppError::client(
                        ErrorCode::InvalidParts,
                        format!("partNumber {number} is outside 1..={total}"),
                    ));
                }
                if etag.trim().trim_matches('"').is_empty() {
                    return Err(AppError::client(
                        ErrorCode::InvalidParts,
                        format!("part {number} has an empty etag"),
                    ));
                }
                if !seen.insert(*number) {
                    return Err(AppError::client(
                        ErrorCode::InvalidParts,
                        format!("part {number} is listed twice"),
                    ));
                }
            }
            if seen.len() as u32 != total {
                return Err(AppError::client(
                    ErrorCode::IncompleteParts,
                    format!("expected {total} parts, got {}", seen.len()),
                ));
            }
        }
        let mut sorted = parts;
        if let Some(list) = sorted.as_mut() {
            list.sort_by_key(|(n, _)| *n);
        }
        let payload = serde_json::to_value(CompletePayload { parts: sorted })
            .map_err(|e| AppError::Internal(e.to_string()))?;
        match self
            .transition_with_job(
                current.id,
                &UploadStatus::Completing.sources(),
                UploadStatus::Completing,
                JobKind::Complete,
                payload,
            )
            .await?
        {
            Some(job_id) => Ok(Accepted {
                upload: self.reload(current.id).await?,
                job_id: Some(job_id),
            }),
            None => {
                // A concurrent complete got there first: join it.
                let now = self.reload(current.id).await?;
                self.join(
                    now,
                    &[UploadStatus::Completed],
                    UploadStatus::Completing,
                    JobKind::Complete,
                )
                .await
            }
        }
    }

    #[instrument(skip_all, fields(upload = %token))]
    pub async fn abort(&self, caller: &Caller, token: &str) -> Result<Accepted, AppError> {
        let current = self.owned_upload(caller, token).await?;
        if effective_status(&current, Utc::now()) == UploadStatus::Expired
            && status_of(&current) != UploadStatus::Expired
        {
            // Past its time but not swept yet: expire it now (what the sweeper would do).
            if let Some(job_id) = self
                .transition_with_job(
                    current.id,
                    &UploadStatus::Expired.sources(),
                    UploadStatus::Expired,
                    JobKind::Expire,
                    serde_json::Value::Null,
                )
                .await?
            {
                return Ok(Accepted {
                    upload: self.reload(current.id).await?,
                    job_id: Some(job_id),
                });
            }
        }
        let current = self.reload(current.id).await?;
        let settled = [UploadStatus::Aborted, UploadStatus::Expired];
        if matches!(
            status_of(&current),
            UploadStatus::Completed
                | UploadStatus::Aborting
                | UploadStatus::Aborted
                | UploadStatus::Expired
        ) {
            return self
                .join(current, &settled, UploadStatus::Aborting, JobKind::Abort)
                .await;
        }
        match self
            .transition_with_job(
                current.id,
                &UploadStatus::Aborting.sources(),
                UploadStatus::Aborting,
                JobKind::Abort,
                serde_json::Value::Null,
            )
            .await?
        {
            Some(job_id) => Ok(Accepted {
                upload: self.reload(current.id).await?,
                job_id: Some(job_id),
            }),
            None => {
                let now = self.reload(current.id).await?;
                self.join(now, &settled, UploadStatus::Aborting, JobKind::Abort)
                    .await
            }
        }
    }

    #[instrument(skip_all, fields(upload = %token))]
    pub async fn pause(&self, caller: &Caller, token: &str) -> Result<upload::Model, AppError> {
        let current = self.owned_upload(caller, token).await?;
        let status = effective_status(&current, Utc::now());
        match status {
            UploadStatus::Paused => return Ok(current),
            UploadStatus::Active => {}
            other => return Err(conflict_for(other)),
        }
        let moved = upload::Entity::update_many()
            .col_expr(upload::Column::Status, set_status(UploadStatus::Paused))
            .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(upload::Column::Id.eq(current.id))
            .filter(upload::Column::Status.eq(UploadStatus::Active.as_str()))
            .exec(&self.db)
            .await?;
        let now = self.reload(current.id).await?;
        if moved.rows_affected != 1 && status_of(&now) != UploadStatus::Paused {
            return Err(conflict_for(status_of(&now)));
        }
        self.cache
            .publish(UploadEvent {
                upload_id: current.id,
            })
            .await;
        Ok(now)
    }

    /// A client reports a part it PUT to storage; progress is visible at once.
    #[instrument(skip_all, fields(upload = %token, part = part_number))]
    pub async fn report_part(
        &self,
        caller: &Caller,
        token: &str,
        part_number: u32,
        etag: &str,
        size: u64,
    ) -> Result<upload::Model, AppError> {
        let current = self.owned_upload(caller, token).await?;
        let status = effective_status(&current, Utc::now());
        if !matches!(status, UploadStatus::Active | UploadStatus::Paused) {
            return Err(conflict_for(status));
        }
        let plan = plan_of(&current)?;
        let Some(range) = plan.part(part_number) else {
            return Err(AppError::client(
                ErrorCode::InvalidParameter,
                format!("partNumber must be within 1..={}", plan.total_parts()),
            ));
        };
        let etag = etag.trim().trim_matches('"');
        if etag.is_empty() || etag.len() > 128 {
            return Err(AppError::client(
                ErrorCode::InvalidParts,
                "etag is required (the ETag header storage returned)",
            ));
        }
        if size != range.size {
            return Err(AppError::client(
                ErrorCode::InvalidParts,
                format!(
                    "part {part_number} must be {} bytes (bytes {}..={}), not {size}",
                    range.size, range.start, range.end
                ),
            ));
        }
        let txn = self.db.begin().await?;
        upload_part::Entity::insert(upload_part::ActiveModel {
            upload_id: Set(current.id),
            part_number: Set(part_number as i32),
            etag: Set(etag.to_string()),
            size: Set(size as i64),
            uploaded_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([
                upload_part::Column::UploadId,
                upload_part::Column::PartNumber,
            ])
            .update_columns([
                upload_part::Column::Etag,
                upload_part::Column::Size,
                upload_part::Column::UploadedAt,
            ])
            .to_owned(),
        )
        .exec(&txn)
        .await?;
        refresh_counters(&txn, current.id).await?;
        txn.commit().await?;
        self.cache
            .publish(UploadEvent {
                upload_id: current.id,
            })
            .await;
        self.reload(current.id).await
    }

    pub async fn uploaded_parts(&self, upload_id: Uuid) -> Result<Vec<StoredPart>, AppError> {
        Ok(upload_part::Entity::find()
            .filter(upload_part::Column::UploadId.eq(upload_id))
            .order_by_asc(upload_part::Column::PartNumber)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| StoredPart {
                part_number: p.part_number as u32,
                etag: p.etag,
                size: p.size as u64,
            })
            .collect())
    }

    /// Parts with URLs for `numbers`: from the cached pages the worker wrote, and
    /// presigned here for whatever the cache lacks (evicted, restarted, near expiry).
    pub async fn part_views(
        &self,
        upload: &upload::Model,
        numbers: &[u32],
    ) -> Result<Vec<PartView>, AppError> {
        let plan = plan_of(upload)?;
        let Some(storage_upload_id) = upload.storage_upload_id.clone() else {
            return Err(conflict_for(UploadStatus::Initiating));
        };
        let fresh_until = Utc::now() + URL_REFRESH_MARGIN;
        let mut urls: HashMap<u32, PresignedUrl> = HashMap::with_capacity(numbers.len());
        let mut storage: Option<SharedStorage> = None;
        for (page, wanted) in by_url_page(numbers) {
            let mut cached = self
                .cache
                .url_page(upload.id, page)
                .await
                .unwrap_or_default();
            let missing: Vec<u32> = wanted
                .iter()
                .copied()
                .filter(|&n| {
                    !matches!(cached.get(page_slot(n)), Some(Some(u)) if u.expires_at > fresh_until)
                })
                .collect();
            if !missing.is_empty() {
                let storage = match &storage {
                    Some(s) => s.clone(),
                    None => storage.insert(self.storage_for(upload)?).clone(),
                };
                let signed = storage
                    .presign_upload_parts(
                        &upload.file_key,
                        &storage_upload_id,
                        &missing,
                        self.settings.url_ttl,
                    )
                    .await
                    .map_err(storage_to_app)?;
                count_presigned(signed.len());
                fill_page(&mut cached, plan.total_parts(), page, &missing, signed);
                self.cache
                    .put_url_page(upload.id, page, cached.clone())
                    .await;
            }
            for n in wanted {
                if let Some(Some(url)) = cached.get(page_slot(n)) {
                    urls.insert(n, url.clone());
                }
            }
        }
        numbers
            .iter()
            .map(|&n| {
                let range = plan
                    .part(n)
                    .ok_or_else(|| AppError::Internal(format!("part {n} outside plan")))?;
                let url = urls
                    .remove(&n)
                    .ok_or_else(|| AppError::Internal(format!("no URL for part {n}")))?;
                Ok(PartView {
                    part_number: n,
                    url: url.url,
                    size: range.size,
                    start: range.start,
                    end: range.end,
                    expires_at: url.expires_at,
                })
            })
            .collect()
    }

    /// `GET …/parts`: part numbers after `after` in the requested state, at most `limit`.
    pub async fn list_parts(
        &self,
        caller: &Caller,
        token: &str,
        state: PartState,
        after: u32,
        limit: u32,
    ) -> Result<(upload::Model, Vec<PartView>, Option<u32>), AppError> {
        let upload = self.owned_upload(caller, token).await?;
        let status = effective_status(&upload, Utc::now());
        if !matches!(
            status,
            UploadStatus::Active | UploadStatus::Paused | UploadStatus::Completing
        ) {
            return Err(conflict_for(status));
        }
        // state=all needs no part rows.
        let uploaded: BTreeSet<u32> = match state {
            PartState::All => BTreeSet::new(),
            _ => self
                .uploaded_parts(upload.id)
                .await?
                .into_iter()
                .map(|p| p.part_number)
                .collect(),
        };
        let total = upload.total_parts as u32;
        let mut selected: Vec<u32> = ((after.saturating_add(1))..=total)
            .filter(|n| match state {
                PartState::All => true,
                PartState::Uploaded => uploaded.contains(n),
                PartState::Pending => !uploaded.contains(n),
            })
            .take(limit as usize + 1)
            .collect();
        let next_after = if selected.len() > limit as usize {
            selected.truncate(limit as usize);
            selected.last().copied()
        } else {
            None
        };
        let views = self.part_views(&upload, &selected).await?;
        Ok((upload, views, next_after))
    }

    /// The caller's uploads, newest first; `metadata` is `key:value`, an exact match on
    /// one metadata entry (how a client finds the upload of a file it fingerprinted).
    pub async fn list_uploads(
        &self,
        caller: &Caller,
        status: Option<&str>,
        metadata: Option<&str>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<(Vec<upload::Model>, Option<String>), AppError> {
        let mut query = upload::Entity::find().filter(upload::Column::OwnerId.eq(caller.owner_id));
        if let Some(filter) = metadata.filter(|m| !m.is_empty()) {
            let (key, value) = parse_metadata_filter(filter)?;
            // Keys are [A-Za-z0-9_-] (checked above), so they are safe inside a JSON path.
            query = query.filter(match self.db.get_database_backend() {
                sea_orm::DbBackend::Postgres => {
                    Expr::cust_with_values(r#""metadata" ->> $1 = $2"#, [key, value])
                }
                _ => Expr::cust_with_values(
                    r#"json_extract("metadata", ?) = ?"#,
                    [format!("$.\"{key}\""), value],
                ),
            });
        }
        if let Some(status) = status.filter(|s| !s.is_empty()) {
            let parsed: UploadStatus = status.parse().map_err(|_| {
                AppError::client(
                    ErrorCode::InvalidParameter,
                    format!("status must be one of the upload statuses, not {status:?}"),
                )
            })?;
            // Filter on the status shown: active/paused uploads past their expiry count as expired.
            let now = Utc::now();
            let live = [UploadStatus::Active.as_str(), UploadStatus::Paused.as_str()];
            query = match parsed {
                UploadStatus::Active | UploadStatus::Paused => query
                    .filter(upload::Column::Status.eq(parsed.as_str()))
                    .filter(upload::Column::ExpiresAt.gt(now)),
                UploadStatus::Expired => query.filter(
                    Condition::any()
                        .add(upload::Column::Status.eq(parsed.as_str()))
                        .add(
                            Condition::all()
                                .add(upload::Column::Status.is_in(live))
                                .add(upload::Column::ExpiresAt.lte(now)),
                        ),
                ),
                _ => query.filter(upload::Column::Status.eq(parsed.as_str())),
            };
        }
        if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
            let (created_at, id) = decode_cursor(cursor).ok_or_else(|| {
                AppError::client(
                    ErrorCode::InvalidParameter,
                    "cursor is not one this server issued",
                )
            })?;
            query = query.filter(
                Condition::any()
                    .add(upload::Column::CreatedAt.lt(created_at))
                    .add(
                        Condition::all()
                            .add(upload::Column::CreatedAt.eq(created_at))
                            .add(upload::Column::Id.lt(id)),
                    ),
            );
        }
        let mut rows = query
            .order_by_desc(upload::Column::CreatedAt)
            .order_by_desc(upload::Column::Id)
            .limit(limit as u64 + 1)
            .all(&self.db)
            .await?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| encode_cursor(r.created_at, r.id))
        } else {
            None
        };
        Ok((rows, next))
    }

    /// A completed upload's object URL and a fresh download URL (from one storage handle).
    pub async fn completed_urls(
        &self,
        upload: &upload::Model,
    ) -> Result<Option<(String, String)>, AppError> {
        if status_of(upload) != UploadStatus::Completed {
            return Ok(None);
        }
        let storage = self.storage_for(upload)?;
        let download = storage
            .presign_get(&upload.file_key, self.settings.url_ttl)
            .await
            .map_err(storage_to_app)?;
        Ok(Some((storage.object_url(&upload.file_key), download.url)))
    }

    /// Waits until the job finished (done or given up) or the timeout passes; true
    /// when it finished. Woken by the upload's events, re-checked at least every second.
    pub async fn wait_for_job(
        &self,
        upload_id: Uuid,
        job_id: Uuid,
        timeout: Duration,
    ) -> Result<bool, AppError> {
        let mut events = self.cache.subscribe(upload_id).await;
        let deadline = Instant::now() + timeout;
        loop {
            let state = job::Entity::find_by_id(job_id)
                .select_only()
                .column(job::Column::State)
                .into_tuple::<jobs::JobState>()
                .one(&self.db)
                .await?;
            if state.is_none_or(jobs::JobState::is_finished) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let tick = (deadline - now).min(Duration::from_secs(1));
            tokio::select! {
                received = events.recv() => {
                    if matches!(received, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        tokio::time::sleep(tick).await;
                    }
                }
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// Refreshes the gauges computed from the database (uploads by status, unfinished
    /// jobs by kind) and renders every metric in Prometheus text format.
    pub async fn render_metrics(&self) -> String {
        if let Some(m) = crate::metrics::metrics() {
            let by_status: Result<Vec<(UploadStatus, i64)>, DbErr> = upload::Entity::find()
                .select_only()
                .column(upload::Column::Status)
                .column_as(upload::Column::Id.count(), "n")
                .group_by(upload::Column::Status)
                .into_tuple()
                .all(&self.db)
                .await;
            if let Ok(rows) = by_status {
                for status in UploadStatus::all() {
                    let n = rows
                        .iter()
                        .find(|(s, _)| *s == status)
                        .map_or(0, |(_, n)| *n);
                    m.uploads.with_label_values(&[status.as_str()]).set(n);
                }
            }
            let depth: Result<Vec<(JobKind, i64)>, DbErr> = job::Entity::find()
                .select_only()
                .column(job::Column::Kind)
                .column_as(job::Column::Id.count(), "n")
                .filter(
                    job::Column::State.is_in([jobs::JobState::Pending, jobs::JobState::Running]),
                )
                .group_by(job::Column::Kind)
                .into_tuple()
                .all(&self.db)
                .await;
            if let Ok(rows) = depth {
                for kind in JobKind::all() {
                    let n = rows.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n);
                    m.queue_depth.with_label_values(&[kind.as_str()]).set(n);
                }
            }
        }
        crate::metrics::render()
    }

    // ----- worker side ----------------------------------------------------------

    /// Claims and runs one job, recording its outcome in the database, and says how it
    /// ended so a queue can ack, delay or park its message.
    /// `redelivered`: the queue gave this job to another worker before, which died.
    pub async fn process_job(&self, job_id: Uuid, redelivered: bool) -> Result<JobRun, AppError> {
        let Some(job) = jobs::claim(&self.db, job_id, redelivered).await? else {
            return Ok(JobRun::Settled);
        };
        let span = tracing::info_span!("job", job = %job.id, kind = %job.kind, upload = %format!("mpu_{}", job.upload_id), attempt = job.attempts);
        tracing::Instrument::instrument(self.run_claimed(job), span).await
    }

    async fn run_claimed(&self, job: job::Model) -> Result<JobRun, AppError> {
        let started = Instant::now();
        info!("job started");
        let outcome = self.run_job(&job).await;
        if let Some(m) = crate::metrics::metrics() {
            let label = match &outcome {
                Ok(()) => "done",
                Err(JobError::Retry(_)) if job.attempts < jobs::MAX_ATTEMPTS => "retry",
                Err(_) => "failed",
            };
            m.job_runs
                .with_label_values(&[job.kind.as_str(), label])
                .inc();
            m.job_duration
                .with_label_values(&[job.kind.as_str()])
                .observe(started.elapsed().as_secs_f64());
        }
        let run = match outcome {
            Ok(()) => {
                jobs::finish(&self.db, job.id, jobs::JobState::Done, None).await?;
                info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "job done"
                );
                JobRun::Settled
            }
            Err(JobError::Retry(reason)) if job.attempts < jobs::MAX_ATTEMPTS => {
                warn!(%reason, "job failed, will retry");
                jobs::retry_later(&self.db, &job, reason).await?;
                JobRun::RetryAfter(jobs::backoff(job.attempts))
            }
            Err(JobError::Retry(reason)) | Err(JobError::Fatal(reason)) => {
                warn!(%reason, "job given up");
                self.record_job_failure(&job, &reason).await?;
                jobs::finish(
                    &self.db,
                    job.id,
                    jobs::JobState::Failed,
                    Some(reason.clone()),
                )
                .await?;
                JobRun::GaveUp(reason)
            }
        };
        self.cache
            .publish(UploadEvent {
                upload_id: job.upload_id,
            })
            .await;
        Ok(run)
    }

    async fn record_job_failure(&self, job: &job::Model, reason: &str) -> Result<(), AppError> {
        let message = format!("{reason} (gave up after {} attempts)", job.attempts);
        let code = ErrorCode::ServiceUnavailable.as_str();
        let failing_from = match job.kind {
            JobKind::Init => Some(UploadStatus::Initiating),
            JobKind::Complete => Some(UploadStatus::Completing),
            _ => None,
        };
        match failing_from {
            Some(from) => fail_upload(&self.db, job.upload_id, from, code, &message).await?,
            None => set_last_error(&self.db, job.upload_id, code, &message).await?,
        }
        Ok(())
    }

    async fn run_job(&self, job: &job::Model) -> Result<(), JobError> {
        let Some(upload) = upload::Entity::find_by_id(job.upload_id)
            .one(&self.db)
            .await?
        else {
            return Ok(());
        };
        match job.kind {
            JobKind::Init => self.job_init(upload).await,
            JobKind::Resume => self.job_resume(upload).await,
            JobKind::Complete => {
                let payload: CompletePayload =
                    serde_json::from_value(job.payload.clone()).unwrap_or_default();
                self.job_complete(upload, payload).await
            }
            JobKind::Abort => self.job_abort(upload, UploadStatus::Aborting).await,
            JobKind::Expire => self.job_abort(upload, UploadStatus::Expired).await,
        }
    }

    async fn job_init(&self, mut upload: upload::Model) -> Result<(), JobError> {
        let storage = self.storage_for(&upload)?;
        if status_of(&upload) == UploadStatus::Initiating && upload.storage_upload_id.is_none() {
            let metadata = metadata_of(&upload);
            let created = storage
                .create_multipart(&upload.file_key, &upload.content_type, &metadata)
                .await
                .map_err(|e| match e {
                    StorageError::Rejected(reason) => {
                        JobError::Fatal(format!("storage refused to create the upload: {reason}"))
                    }
                    other => JobError::Retry(other.to_string()),
                })?;
            let stored = upload::Entity::update_many()
                .col_expr(
                    upload::Column::StorageUploadId,
                    Expr::value(Some(created.clone())),
                )
                .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(upload::Column::Id.eq(upload.id))
                .filter(upload::Column::StorageUploadId.is_null())
                .filter(upload::Column::Status.eq(UploadStatus::Initiating.as_str()))
                .exec(&self.db)
                .await?;
            upload = upload::Entity::find_by_id(upload.id)
                .one(&self.db)
                .await?
                .ok_or_else(|| JobError::Fatal("upload vanished".into()))?;
            if stored.rows_affected != 1
                && upload.storage_upload_id.as_deref() != Some(created.as_str())
            {
                // Aborted meanwhile (or another try won): don't leave ours behind.
                let _ = storage.abort(&upload.file_key, &created).await;
            }
        }
        if upload.storage_upload_id.is_some() {
            let moved = upload::Entity::update_many()
                .col_expr(upload::Column::Status, set_status(UploadStatus::Active))
                .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(upload::Column::Id.eq(upload.id))
                .filter(upload::Column::Status.eq(UploadStatus::Initiating.as_str()))
                .exec(&self.db)
                .await?;
            if moved.rows_affected == 1 {
                upload.status = UploadStatus::Active;
                self.cache
                    .publish(UploadEvent {
                        upload_id: upload.id,
                    })
                    .await;
            }
        }
        if !matches!(
            status_of(&upload),
            UploadStatus::Active | UploadStatus::Paused
        ) {
            return Ok(());
        }
        let all: Vec<u32> = (1..=upload.total_parts as u32).collect();
        self.presign_into_cache(&upload, &storage, &all, 0).await
    }

    /// Presigns `numbers` page by page, storing each page in the cache as soon as it
    /// exists and counting it in `urls_ready`, so clients can start long before the
    /// last page.
    async fn presign_into_cache(
        &self,
        upload: &upload::Model,
        storage: &SharedStorage,
        numbers: &[u32],
        already_ready: u32,
    ) -> Result<(), JobError> {
        let storage_upload_id = upload
            .storage_upload_id
            .clone()
            .ok_or_else(|| JobError::Fatal("no storage upload id".into()))?;
        let total = upload.total_parts as u32;
        let mut ready = already_ready;
        for (page, wanted) in by_url_page(numbers) {
            let signed = storage
                .presign_upload_parts(
                    &upload.file_key,
                    &storage_upload_id,
                    &wanted,
                    self.settings.url_ttl,
                )
                .await
                .map_err(|e| JobError::Retry(e.to_string()))?;
            count_presigned(signed.len());
            let mut slots = self
                .cache
                .url_page(upload.id, page)
                .await
                .unwrap_or_default();
            fill_page(&mut slots, total, page, &wanted, signed);
            self.cache.put_url_page(upload.id, page, slots).await;
            ready = (ready + wanted.len() as u32).min(total);
            upload::Entity::update_many()
                .col_expr(upload::Column::UrlsReady, Expr::value(ready as i32))
                .filter(upload::Column::Id.eq(upload.id))
                .exec(&self.db)
                .await?;
            self.cache
                .publish(UploadEvent {
                    upload_id: upload.id,
                })
                .await;
        }
        Ok(())
    }

    async fn job_resume(&self, upload: upload::Model) -> Result<(), JobError> {
        if !matches!(
            status_of(&upload),
            UploadStatus::Active | UploadStatus::Paused
        ) {
            return Ok(());
        }
        let Some(storage_upload_id) = upload.storage_upload_id.clone() else {
            return Err(JobError::Fatal("no storage upload id".into()));
        };
        let storage = self.storage_for(&upload)?;
        let listed = match storage
            .list_parts(&upload.file_key, &storage_upload_id)
            .await
        {
            Ok(listed) => listed,
            Err(StorageError::NoSuchUpload) => {
                set_last_error(
                    &self.db,
                    upload.id,
                    ErrorCode::UploadExpired.as_str(),
                    "storage no longer has this multipart upload",
                )
                .await?;
                return Ok(());
            }
            Err(e) => return Err(JobError::Retry(e.to_string())),
        };
        let total = upload.total_parts as u32;
        let listed: Vec<StoredPart> = listed
            .into_iter()
            .filter(|p| p.part_number >= 1 && p.part_number <= total)
            .collect();
        let txn = self.db.begin().await?;
        replace_parts(&txn, upload.id, &listed).await?;
        refresh_counters(&txn, upload.id).await?;
        upload::Entity::update_many()
            .col_expr(upload::Column::UrlsReady, Expr::value(listed.len() as i32))
            .filter(upload::Column::Id.eq(upload.id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.cache
            .publish(UploadEvent {
                upload_id: upload.id,
            })
            .await;
        let remaining = missing_parts(total, &listed);
        self.presign_into_cache(&upload, &storage, &remaining, listed.len() as u32)
            .await
    }

    async fn job_complete(
        &self,
        upload: upload::Model,
        payload: CompletePayload,
    ) -> Result<(), JobError> {
        if status_of(&upload) != UploadStatus::Completing {
            return Ok(());
        }
        let Some(storage_upload_id) = upload.storage_upload_id.clone() else {
            return Err(JobError::Fatal("no storage upload id".into()));
        };
        let storage = self.storage_for(&upload)?;
        let total = upload.total_parts as u32;
        let mut listed: Option<Vec<StoredPart>> = None;
        let parts: Vec<(u32, String)> = match payload.parts {
            Some(parts) => parts,
            None => match storage
                .list_parts(&upload.file_key, &storage_upload_id)
                .await
            {
                Ok(found) => {
                    let missing = missing_parts(total, &found);
                    if !missing.is_empty() {
                        let shown: Vec<String> =
                            missing.iter().take(20).map(u32::to_string).collect();
                        let message = format!(
                            "storage holds {} of {total} parts; missing: {}{}",
                            total as usize - missing.len(),
                            shown.join(", "),
                            if missing.len() > 20 { ", …" } else { "" }
                        );
                        return self
                            .back_to_active(&upload, ErrorCode::IncompleteParts, &message)
                            .await;
                    }
                    let parts = found
                        .iter()
                        .filter(|p| p.part_number <= total)
                        .map(|p| (p.part_number, p.etag.clone()))
                        .collect();
                    listed = Some(found);
                    parts
                }
                Err(StorageError::NoSuchUpload) => {
                    return self.complete_or_fail_missing(&upload, &storage).await
                }
                Err(e) => return Err(JobError::Retry(e.to_string())),
            },
        };
        match storage
            .complete(&upload.file_key, &storage_upload_id, &parts)
            .await
        {
            Ok(object) => {
                let location = object
                    .location
                    .unwrap_or_else(|| storage.object_url(&upload.file_key));
                self.mark_completed(&upload, &object.etag, &location, listed.as_deref())
                    .await
            }
            Err(StorageError::InvalidParts(reason)) => {
                self.back_to_active(&upload, ErrorCode::InvalidParts, &reason)
                    .await
            }
            Err(StorageError::NoSuchUpload) => {
                self.complete_or_fail_missing(&upload, &storage).await
            }
            Err(StorageError::Rejected(reason)) => {
                self.back_to_active(
                    &upload,
                    ErrorCode::ServiceUnavailable,
                    &format!("storage refused to complete: {reason}"),
                )
                .await
            }
            Err(e) => Err(JobError::Retry(e.to_string())),
        }
    }

    /// Storage no longer knows the upload: either an earlier try completed it (the
    /// object is there, so we only missed recording it) or it is gone for good.
    async fn complete_or_fail_missing(
        &self,
        upload: &upload::Model,
        storage: &SharedStorage,
    ) -> Result<(), JobError> {
        match storage.head_object(&upload.file_key).await {
            Ok(Some((size, etag))) if size == upload.file_size as u64 => {
                self.mark_completed(upload, &etag, &storage.object_url(&upload.file_key), None)
                    .await
            }
            Ok(_) => {
                fail_upload(
                    &self.db,
                    upload.id,
                    UploadStatus::Completing,
                    ErrorCode::UploadExpired.as_str(),
                    "storage no longer has this multipart upload",
                )
                .await?;
                Ok(())
            }
            Err(e) => Err(JobError::Retry(e.to_string())),
        }
    }

    async fn mark_completed(
        &self,
        upload: &upload::Model,
        etag: &str,
        location: &str,
        listed: Option<&[StoredPart]>,
    ) -> Result<(), JobError> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        if let Some(listed) = listed {
            replace_parts(&txn, upload.id, listed).await?;
        }
        upload::Entity::update_many()
            .col_expr(upload::Column::Status, set_status(UploadStatus::Completed))
            .col_expr(upload::Column::Etag, Expr::value(Some(etag.to_string())))
            .col_expr(
                upload::Column::Location,
                Expr::value(Some(location.to_string())),
            )
            .col_expr(upload::Column::CompletedAt, Expr::value(Some(now)))
            .col_expr(upload::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                upload::Column::UploadedParts,
                Expr::value(upload.total_parts),
            )
            .col_expr(upload::Column::UploadedBytes, Expr::value(upload.file_size))
            .col_expr(
                upload::Column::LastErrorCode,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                upload::Column::LastErrorMessage,
                Expr::value(Option::<String>::None),
            )
            .filter(upload::Column::Id.eq(upload.id))
            .filter(upload::Column::Status.eq(UploadStatus::Completing.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.cache.forget(upload.id).await;
        info!(file_size = upload.file_size, "upload completed");
        Ok(())
    }

    async fn back_to_active(
        &self,
        upload: &upload::Model,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), JobError> {
        upload::Entity::update_many()
            .col_expr(upload::Column::Status, set_status(UploadStatus::Active))
            .col_expr(
                upload::Column::LastErrorCode,
                Expr::value(Some(code.as_str().to_string())),
            )
            .col_expr(
                upload::Column::LastErrorMessage,
                Expr::value(Some(message.to_string())),
            )
            .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(upload::Column::Id.eq(upload.id))
            .filter(upload::Column::Status.eq(UploadStatus::Completing.as_str()))
            .exec(&self.db)
            .await?;
        info!(code = code.as_str(), %message, "storage rejected the completion; upload is active again");
        Ok(())
    }

    /// Aborts on storage, then records the final state (`aborted`, or `expired`
    /// which the sweeper already set).
    async fn job_abort(
        &self,
        upload: upload::Model,
        expected: UploadStatus,
    ) -> Result<(), JobError> {
        if status_of(&upload) != expected {
            return Ok(());
        }
        if let Some(storage_upload_id) = &upload.storage_upload_id {
            let storage = self.storage_for(&upload)?;
            storage
                .abort(&upload.file_key, storage_upload_id)
                .await
                .map_err(|e| JobError::Retry(e.to_string()))?;
        }
        if expected == UploadStatus::Aborting {
            upload::Entity::update_many()
                .col_expr(upload::Column::Status, set_status(UploadStatus::Aborted))
                .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(upload::Column::Id.eq(upload.id))
                .filter(upload::Column::Status.eq(UploadStatus::Aborting.as_str()))
                .exec(&self.db)
                .await?;
        }
        self.cache.forget(upload.id).await;
        Ok(())
    }

    /// Marks expired active/paused uploads and queues the storage abort for each, in
    /// one transaction per upload; safe with many sweepers (conditional update).
    #[instrument(skip_all)]
    pub async fn sweep_expired(&self) -> Result<u32, AppError> {
        let now = Utc::now();
        let due = upload::Entity::find()
            .select_only()
            .column(upload::Column::Id)
            .filter(upload::Column::ExpiresAt.lte(now))
            .filter(
                upload::Column::Status
                    .is_in([UploadStatus::Active.as_str(), UploadStatus::Paused.as_str()]),
            )
            .limit(500)
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await?;
        let mut swept = 0;
        let from = UploadStatus::Expired.sources();
        for id in due {
            if self
                .transition_with_job(
                    id,
                    &from,
                    UploadStatus::Expired,
                    JobKind::Expire,
                    serde_json::Value::Null,
                )
                .await?
                .is_some()
            {
                swept += 1;
            }
        }
        if swept > 0 {
            info!(swept, "expired uploads swept");
        }
        Ok(swept)
    }
}

fn count_presigned(n: usize) {
    if let Some(m) = crate::metrics::metrics() {
        m.presigned_urls.inc_by(n as u64);
    }
}

/// Part numbers `1..=total` that `have` lacks.
pub fn missing_parts(total: u32, have: &[StoredPart]) -> Vec<u32> {
    let have: BTreeSet<u32> = have.iter().map(|p| p.part_number).collect();
    (1..=total).filter(|n| !have.contains(n)).collect()
}

/// Part numbers grouped by the URL page (of [`URL_PAGE_SIZE`]) that holds them.
fn by_url_page(numbers: &[u32]) -> BTreeMap<u32, Vec<u32>> {
    let mut pages: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &n in numbers {
        pages.entry((n - 1) / URL_PAGE_SIZE).or_default().push(n);
    }
    pages
}

/// Part `n`'s slot in its URL page.
fn page_slot(n: u32) -> usize {
    ((n - 1) % URL_PAGE_SIZE) as usize
}

/// Puts freshly signed URLs for `numbers` (all on `page`) into the page's slots.
fn fill_page(
    slots: &mut Vec<Option<PresignedUrl>>,
    total_parts: u32,
    page: u32,
    numbers: &[u32],
    signed: Vec<PresignedUrl>,
) {
    let page_len = (total_parts - page * URL_PAGE_SIZE).min(URL_PAGE_SIZE) as usize;
    slots.resize(page_len, None);
    for (&n, url) in numbers.iter().zip(signed) {
        slots[page_slot(n)] = Some(url);
    }
}

fn storage_to_app(e: StorageError) -> AppError {
    match e {
        StorageError::Unavailable(reason) => AppError::Unavailable(format!("storage: {reason}")),
        other => AppError::Internal(format!("storage: {other}")),
    }
}

/// Moves the upload from `from` to `failed` (if it is still there) and records why.
async fn fail_upload(
    db: &impl ConnectionTrait,
    id: Uuid,
    from: UploadStatus,
    code: &str,
    message: &str,
) -> Result<(), DbErr> {
    upload::Entity::update_many()
        .col_expr(upload::Column::Status, set_status(UploadStatus::Failed))
        .filter(upload::Column::Id.eq(id))
        .filter(upload::Column::Status.eq(from.as_str()))
        .exec(db)
        .await?;
    set_last_error(db, id, code, message).await
}

async fn set_last_error(
    db: &impl ConnectionTrait,
    id: Uuid,
    code: &str,
    message: &str,
) -> Result<(), DbErr> {
    upload::Entity::update_many()
        .col_expr(
            upload::Column::LastErrorCode,
            Expr::value(Some(code.to_string())),
        )
        .col_expr(
            upload::Column::LastErrorMessage,
            Expr::value(Some(message.to_string())),
        )
        .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(upload::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Storage's list is the truth: the part rows become exactly what it holds.
async fn replace_parts(
    db: &impl ConnectionTrait,
    upload_id: Uuid,
    parts: &[StoredPart],
) -> Result<(), DbErr> {
    upload_part::Entity::delete_many()
        .filter(upload_part::Column::UploadId.eq(upload_id))
        .exec(db)
        .await?;
    let now = Utc::now();
    for chunk in parts.chunks(1000) {
        let rows = chunk.iter().map(|p| upload_part::ActiveModel {
            upload_id: Set(upload_id),
            part_number: Set(p.part_number as i32),
            etag: Set(p.etag.clone()),
            size: Set(p.size as i64),
            uploaded_at: Set(now),
        });
        upload_part::Entity::insert_many(rows).exec(db).await?;
    }
    Ok(())
}

/// Recounts the upload's stored parts and bytes; summed in the database, since an upload
/// of 10,000 parts reports 10,000 times.
async fn refresh_counters(db: &impl ConnectionTrait, upload_id: Uuid) -> Result<(), DbErr> {
    let (parts, bytes): (i64, i64) = upload_part::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "parts")
        // PostgreSQL sums BIGINT into NUMERIC: cast back.
        .column_as(
            Expr::cust(r#"CAST(COALESCE(SUM("size"), 0) AS BIGINT)"#),
            "bytes",
        )
        .filter(upload_part::Column::UploadId.eq(upload_id))
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or((0, 0));
    upload::Entity::update_many()
        .col_expr(upload::Column::UploadedParts, Expr::value(parts as i32))
        .col_expr(upload::Column::UploadedBytes, Expr::value(bytes))
        .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(upload::Column::Id.eq(upload_id))
        .exec(db)
        .await?;
    Ok(())
}

fn encode_cursor(created_at: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{id}", created_at.to_rfc3339()))
}

/// `key:value` → (key, value), with the key held to the metadata key rules.
fn parse_metadata_filter(filter: &str) -> Result<(String, String), AppError> {
    let (key, value) = filter.split_once(':').ok_or_else(|| {
        AppError::client(
            ErrorCode::InvalidParameter,
            "metadata must be key:value, e.g. metadata=fingerprint:3f2a9c",
        )
    })?;
    let entry = BTreeMap::from([(key.to_string(), value.to_string())]);
    validate_metadata(&entry)
        .map_err(|e| AppError::client(ErrorCode::InvalidParameter, e.message.clone()))?;
    Ok((key.to_string(), value.to_string()))
}

fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, id) = text.split_once('|')?;
    Some((
        DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
        id.parse().ok()?,
    ))
}

/// How a job attempt ended, when it did not succeed.
#[derive(Debug)]
enum JobError {
    /// Try again later (storage or database unavailable).
    Retry(String),
    /// Trying again cannot help.
    Fatal(String),
}

impl From<DbErr> for JobError {
    fn from(e: DbErr) -> Self {
        JobError::Retry(format!("database: {e}"))
    }
}

impl From<AppError> for JobError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Unavailable(reason) => JobError::Retry(reason),
            other => JobError::Fatal(other.to_string()),
        }
    }
}
