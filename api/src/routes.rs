//! The HTTP routes of DESIGN §3. Handlers authenticate, call one use case, and shape
//! its answer; `?wait=N` waits for the queued job before answering 200, else 202.
use std::{sync::Arc, time::Duration};

use futures::{stream::BoxStream, StreamExt};

use partway_core::{
    domain::{ErrorCode, UploadStatus},
    service::{self, Accepted, AppError, PartState, Services},
};
use partway_entity::upload;
use poem_openapi::{
    auth::{ApiKey, Bearer},
    param::{Header, Path, Query},
    payload::{EventStream, Json},
    types::{ParseFromJSON, ToJSON},
    ApiResponse, OpenApi, SecurityScheme, Tags,
};

use crate::{body::ContractJson, error::ApiError, models::*};

#[derive(Tags)]
enum Tag {
    /// Multipart uploads
    Uploads,
    /// Liveness and readiness
    Operations,
}

/// `x-api-key: <key>`
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "x-api-key", key_in = "header")]
pub struct ApiKeyAuth(ApiKey);

/// `Authorization: Bearer <key>`
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct BearerAuth(Bearer);

#[derive(SecurityScheme)]
pub enum Auth {
    ApiKey(ApiKeyAuth),
    Bearer(BearerAuth),
}

impl Auth {
    fn key(&self) -> &str {
        match self {
            Auth::ApiKey(k) => &k.0.key,
            Auth::Bearer(b) => &b.0.token,
        }
    }
}

// One response per request: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(ApiResponse)]
pub enum InitResponse {
    /// The upload is ready: every part URL is in `partUrls`.
    #[oai(status = 200)]
    Ready(Json<InitResult>),
    /// Accepted; poll the status document (or use `?wait=N`).
    #[oai(status = 202)]
    Accepted(Json<StatusDoc>),
}

// One response per request: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(ApiResponse)]
pub enum ResumeResponse {
    #[oai(status = 200)]
    Ready(Json<ResumeResult>),
    #[oai(status = 202)]
    Accepted(Json<StatusDoc>),
}

// One response per request: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(ApiResponse)]
pub enum CompleteResponse {
    #[oai(status = 200)]
    Completed(Json<CompleteResult>),
    #[oai(status = 202)]
    Accepted(Json<StatusDoc>),
}

// One response per request: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(ApiResponse)]
pub enum AbortResponse {
    #[oai(status = 200)]
    Aborted(Json<AbortResult>),
    #[oai(status = 202)]
    Accepted(Json<StatusDoc>),
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    #[oai(status = 200)]
    Ready(Json<HealthDoc>),
}

pub struct UploadApi {
    pub services: Arc<Services>,
}

type ApiResult<T> = Result<T, ApiError>;

const MAX_WAIT_SECONDS: u32 = 60;
const MAX_PAGE: u32 = 1000;

fn wait_duration(wait: Option<u32>) -> ApiResult<Duration> {
    match wait.unwrap_or(0) {
        w if w <= MAX_WAIT_SECONDS => Ok(Duration::from_secs(w as u64)),
        _ => Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "wait must be between 0 and 60 seconds",
        )),
    }
}

fn idempotency(key: Option<String>) -> ApiResult<Option<String>> {
    match key {
        Some(k) if k.is_empty() || k.len() > 255 || k.chars().any(|c| c.is_control()) => {
            Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "Idempotency-Key must be 1 to 255 printable characters",
            ))
        }
        other => Ok(other),
    }
}

fn token_of(upload: &upload::Model) -> String {
    format!("mpu_{}", upload.id)
}

/// The error a finished job left on its upload, as the contract's envelope.
fn last_error_of(upload: &upload::Model) -> Option<ApiError> {
    let code = ErrorCode::from_code(upload.last_error_code.as_deref()?)?;
    Some(ApiError::new(
        code,
        upload.last_error_message.clone().unwrap_or_default(),
    ))
}

/// The status document of an upload; `downloadUrl` is presigned afresh.
pub async fn status_doc(services: &Services, upload: &upload::Model) -> ApiResult<StatusDoc> {
    let status = service::effective_status(upload, chrono::Utc::now());
    let (url, download_url) = match services.completed_urls(upload).await? {
        Some((url, download_url)) => (Some(url), Some(download_url)),
        None => (None, None),
    };
    Ok(StatusDoc {
        success: true,
        resume_token: token_of(upload),
        status: status.as_str().to_string(),
        filename: upload.filename.clone(),
        content_type: upload.content_type.clone(),
        file_size: upload.file_size as u64,
        part_size: upload.part_size as u64,
        total_parts: upload.total_parts as u32,
        file_key: upload.file_key.clone(),
        provider: upload.provider.to_string(),
        metadata: service::metadata_of(upload),
        progress: progress_doc(service::progress_of(upload)),
        urls_ready: upload.urls_ready.max(0) as u32,
        created_at: rfc3339(upload.created_at),
        updated_at: rfc3339(upload.updated_at),
        expires_at: rfc3339(upload.expires_at),
        completed_at: upload.completed_at.map(rfc3339),
        url,
        download_url,
        last_error: upload.last_error_code.as_ref().map(|code| LastErrorDoc {
            code: code.clone(),
            message: upload.last_error_message.clone().unwrap_or_default(),
        }),
    })
}

impl UploadApi {
    async fn caller(&self, auth: &Auth) -> ApiResult<partway_core::auth::Caller> {
        Ok(self.services.authenticate(Some(auth.key())).await?)
    }

    /// Waits for the accepted job when asked to; true when it finished.
    async fn wait(&self, accepted: &Accepted, wait: Duration) -> ApiResult<bool> {
        match accepted.job_id {
            None => Ok(true),
            Some(_) if wait.is_zero() => Ok(false),
            Some(job) => Ok(self
                .services
                .wait_for_job(accepted.upload.id, job, wait)
                .await?),
        }
    }

    pub async fn status_doc(&self, upload: &upload::Model) -> ApiResult<StatusDoc> {
        status_doc(&self.services, upload).await
    }

    async fn complete_result(&self, upload: &upload::Model) -> ApiResult<CompleteResult> {
        let (url, download_url) = self
            .services
            .completed_urls(upload)
            .await?
            .unwrap_or_default();
        Ok(CompleteResult {
            success: true,
            resume_token: token_of(upload),
            status: UploadStatus::Completed.as_str().into(),
            url,
            download_url,
            file_key: upload.file_key.clone(),
            filename: upload.filename.clone(),
            file_size: upload.file_size as u64,
            etag: upload.etag.clone().unwrap_or_default(),
            location: upload.location.clone().unwrap_or_default(),
            provider: upload.provider.to_string(),
            bucket: upload.bucket.clone(),
            total_parts: upload.total_parts as u32,
        })
    }
}

#[OpenApi]
impl UploadApi {
    /// Start a multipart upload.
    ///
    /// Creates the storage multipart upload and presigns every part URL in a job. With
    /// `?wait=N` the answer is 200 with all part URLs once ready; otherwise 202 with
    /// the status document. `Idempotency-Key` makes retries safe.
    #[oai(
        path = "/api/v1/upload/multipart/init",
        method = "post",
        operation_id = "init",
        tag = "Tag::Uploads"
    )]
    async fn init(
        &self,
        auth: Auth,
        body: ContractJson<InitRequest>,
        wait: Query<Option<u32>>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
    ) -> ApiResult<InitResponse> {
        let wait = wait_duration(wait.0)?;
        let key = idempotency(idempotency_key.0)?;
        let caller = self.caller(&auth).await?;
        let accepted = self.services.init(&caller, init_input(body.0), key).await?;
        let finished = self.wait(&accepted, wait).await?;
        let upload = self.services.reload(accepted.upload.id).await?;
        let status = service::status_of(&upload);
        if finished && !wait.is_zero() {
            if status == UploadStatus::Failed {
                if let Some(err) = last_error_of(&upload) {
                    return Err(err);
                }
            }
            if matches!(status, UploadStatus::Active | UploadStatus::Paused) {
                let numbers: Vec<u32> = (1..=upload.total_parts as u32).collect();
                let parts = self.services.part_views(&upload, &numbers).await?;
                return Ok(InitResponse::Ready(Json(InitResult {
                    success: true,
                    resume_token: token_of(&upload),
                    upload_id: upload.storage_upload_id.clone().unwrap_or_default(),
                    file_key: upload.file_key.clone(),
                    part_urls: parts.into_iter().map(part_doc).collect(),
                    total_parts: upload.total_parts as u32,
                    part_size: upload.part_size as u64,
                    file_size: upload.file_size as u64,
                    expires_in: self.services.settings.url_ttl.as_secs(),
                    expires_at: rfc3339(upload.expires_at),
                    status: status.as_str().into(),
                })));
            }
        }
        Ok(InitResponse::Accepted(Json(
            self.status_doc(&upload).await?,
        )))
    }

    /// Resume an upload.
    ///
    /// Reconciles with storage (every ListParts page) and presigns the parts still
    /// missing. A paused upload becomes active again.
    #[oai(
        path = "/api/v1/upload/multipart/resume",
        method = "post",
        operation_id = "resume",
        tag = "Tag::Uploads"
    )]
    async fn resume(
        &self,
        auth: Auth,
        body: ContractJson<TokenRequest>,
        wait: Query<Option<u32>>,
    ) -> ApiResult<ResumeResponse> {
        let wait = wait_duration(wait.0)?;
        let caller = self.caller(&auth).await?;
        let accepted = self.services.resume(&caller, &body.0.resume_token).await?;
        let finished = self.wait(&accepted, wait).await?;
        let upload = self.services.reload(accepted.upload.id).await?;
        if finished && !wait.is_zero() {
            if let Some(err) = last_error_of(&upload) {
                return Err(err);
            }
            let status = service::status_of(&upload);
            if matches!(status, UploadStatus::Active | UploadStatus::Paused) {
                let uploaded = self.services.uploaded_parts(upload.id).await?;
                let remaining = service::missing_parts(upload.total_parts as u32, &uploaded);
                let parts = self.services.part_views(&upload, &remaining).await?;
                return Ok(ResumeResponse::Ready(Json(ResumeResult {
                    success: true,
                    resume_token: token_of(&upload),
                    upload_id: upload.storage_upload_id.clone().unwrap_or_default(),
                    file_key: upload.file_key.clone(),
                    filename: upload.filename.clone(),
                    total_parts: upload.total_parts as u32,
                    part_size: upload.part_size as u64,
                    uploaded_parts: uploaded
                        .into_iter()
                        .map(|p| UploadedPartDoc {
                            part_number: p.part_number,
                            etag: p.etag,
                            size: p.size,
                        })
                        .collect(),
                    remaining_parts: parts.into_iter().map(part_doc).collect(),
                    progress: progress_doc(service::progress_of(&upload)),
                })));
            }
            return Err(ApiError::from(AppError::client(
                ErrorCode::UploadNotReady,
                format!("the upload is {status}"),
            )));
        }
        Ok(ResumeResponse::Accepted(Json(
            self.status_doc(&upload).await?,
        )))
    }

    /// Complete an upload.
    ///
    /// Without `parts`, completes with what storage lists. Completing a completed
    /// upload answers the same 200 again; concurrent completes complete once. When
    /// storage rejects the parts, a waited answer is 400 `INVALID_PARTS` and the
    /// upload is active again with `lastError`.
    #[oai(
        path = "/api/v1/upload/multipart/complete",
        method = "post",
        operation_id = "complete",
        tag = "Tag::Uploads"
    )]
    async fn complete(
        &self,
        auth: Auth,
        body: ContractJson<CompleteRequest>,
        wait: Query<Option<u32>>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
    ) -> ApiResult<CompleteResponse> {
        let wait = wait_duration(wait.0)?;
        // A complete is idempotent by state already; the key is checked for form only.
        idempotency(idempotency_key.0)?;
        let caller = self.caller(&auth).await?;
        let parts = body
            .0
            .parts
            .map(|ps| ps.into_iter().map(|p| (p.part_number, p.etag)).collect());
        let accepted = self
            .services
            .complete(&caller, &body.0.resume_token, parts)
            .await?;
        let finished = self.wait(&accepted, wait).await?;
        let upload = self.services.reload(accepted.upload.id).await?;
        match service::status_of(&upload) {
            UploadStatus::Completed => {
                return Ok(CompleteResponse::Completed(Json(
                    self.complete_result(&upload).await?,
                )))
            }
            UploadStatus::Active | UploadStatus::Paused | UploadStatus::Failed
                if finished && !wait.is_zero() =>
            {
                if let Some(err) = last_error_of(&upload) {
                    return Err(err);
                }
            }
            _ => {}
        }
        Ok(CompleteResponse::Accepted(Json(
            self.status_doc(&upload).await?,
        )))
    }

    /// Abort an upload; storage's multipart upload is aborted. Aborting an aborted or
    /// expired upload answers 200 again; a completed one is 409.
    #[oai(
        path = "/api/v1/upload/multipart/abort",
        method = "post",
        operation_id = "abort",
        tag = "Tag::Uploads"
    )]
    async fn abort(
        &self,
        auth: Auth,
        body: ContractJson<TokenRequest>,
        wait: Query<Option<u32>>,
    ) -> ApiResult<AbortResponse> {
        let wait = wait_duration(wait.0)?;
        let caller = self.caller(&auth).await?;
        let accepted = self.services.abort(&caller, &body.0.resume_token).await?;
        self.wait(&accepted, wait).await?;
        let upload = self.services.reload(accepted.upload.id).await?;
        let status = service::status_of(&upload);
        if matches!(status, UploadStatus::Aborted | UploadStatus::Expired) {
            return Ok(AbortResponse::Aborted(Json(AbortResult {
                success: true,
                resume_token: token_of(&upload),
                status: status.as_str().into(),
            })));
        }
        Ok(AbortResponse::Accepted(Json(
            self.status_doc(&upload).await?,
        )))
    }

    /// Pause an upload (synchronous). Resume makes it active again.
    #[oai(
        path = "/api/v1/upload/multipart/pause",
        method = "post",
        operation_id = "pause",
        tag = "Tag::Uploads"
    )]
    async fn pause(
        &self,
        auth: Auth,
        body: ContractJson<TokenRequest>,
    ) -> ApiResult<Json<StatusDoc>> {
        let caller = self.caller(&auth).await?;
        let upload = self.services.pause(&caller, &body.0.resume_token).await?;
        Ok(Json(self.status_doc(&upload).await?))
    }

    /// The status document of an upload.
    #[oai(
        path = "/api/v1/upload/multipart/:resumeToken",
        method = "get",
        operation_id = "status",
        tag = "Tag::Uploads"
    )]
    async fn status(
        &self,
        auth: Auth,
        #[oai(name = "resumeToken")] resume_token: Path<String>,
    ) -> ApiResult<Json<StatusDoc>> {
        let caller = self.caller(&auth).await?;
        // Cache first: polling many times a second costs no database read.
        if let Some(cached) = self.services.cached_status(&caller, &resume_token.0).await {
            if let Ok(doc) = StatusDoc::parse_from_json_string(&cached) {
                return Ok(Json(doc));
            }
        }
        let upload = self.services.get(&caller, &resume_token.0).await?;
        let doc = self.status_doc(&upload).await?;
        self.services
            .remember_status(&upload, doc.to_json_string())
            .await;
        Ok(Json(doc))
    }

    /// Parts with presigned URLs, a page at a time.
    #[oai(
        path = "/api/v1/upload/multipart/:resumeToken/parts",
        method = "get",
        operation_id = "listParts",
        tag = "Tag::Uploads"
    )]
    async fn parts(
        &self,
        auth: Auth,
        #[oai(name = "resumeToken")] resume_token: Path<String>,
        /// pending (default), uploaded or all
        state: Query<Option<String>>,
        /// Only parts numbered above this.
        after: Query<Option<u32>>,
        /// 1 ..= 1000 (default 1000).
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<PartsPage>> {
        let state = match state.0.as_deref().unwrap_or("pending") {
            "pending" => PartState::Pending,
            "uploaded" => PartState::Uploaded,
            "all" => PartState::All,
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("state must be pending, uploaded or all, not {other:?}"),
                ))
            }
        };
        let limit = limit.0.unwrap_or(MAX_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "limit must be between 1 and 1000",
            ));
        }
        let caller = self.caller(&auth).await?;
        let (_, parts, next_after) = self
            .services
            .list_parts(&caller, &resume_token.0, state, after.0.unwrap_or(0), limit)
            .await?;
        Ok(Json(PartsPage {
            success: true,
            parts: parts.into_iter().map(part_doc).collect(),
            next_after,
        }))
    }

    /// Report a part the client PUT to storage; progress is visible at once.
    #[oai(
        path = "/api/v1/upload/multipart/:resumeToken/parts/:partNumber",
        method = "put",
        operation_id = "reportPart",
        tag = "Tag::Uploads"
    )]
    async fn report_part(
        &self,
        auth: Auth,
        #[oai(name = "resumeToken")] resume_token: Path<String>,
        #[oai(name = "partNumber")] part_number: Path<u32>,
        body: ContractJson<PartReport>,
    ) -> ApiResult<Json<ProgressResult>> {
        let caller = self.caller(&auth).await?;
        let upload = self
            .services
            .report_part(
                &caller,
                &resume_token.0,
                part_number.0,
                &body.0.etag,
                body.0.size,
            )
            .await?;
        Ok(Json(ProgressResult {
            success: true,
            progress: progress_doc(service::progress_of(&upload)),
        }))
    }

    /// Server-Sent Events: the status document each time it changes, ending after a
    /// final status (completed, aborted, expired, failed).
    #[oai(
        path = "/api/v1/upload/multipart/:resumeToken/events",
        method = "get",
        operation_id = "events",
        tag = "Tag::Uploads"
    )]
    async fn events(
        &self,
        auth: Auth,
        #[oai(name = "resumeToken")] resume_token: Path<String>,
    ) -> ApiResult<EventStream<BoxStream<'static, StatusDoc>>> {
        let caller = self.caller(&auth).await?;
        let upload = self.services.get(&caller, &resume_token.0).await?;
        let services = self.services.clone();
        let events = services.cache.subscribe(upload.id).await;
        let state = (services, events, upload.id, None::<String>, false);
        let stream = futures::stream::unfold(
            state,
            |(services, mut events, id, mut last, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let current = services.reload(id).await.ok()?;
                    let doc = status_doc(&services, &current).await.ok()?;
                    // downloadUrl differs on every read; compare the rest.
                    let fingerprint = format!(
                        "{}|{}|{}|{}|{:?}",
                        doc.status,
                        doc.updated_at,
                        doc.urls_ready,
                        doc.progress.uploaded_bytes,
                        doc.last_error.as_ref().map(|e| &e.code)
                    );
                    if last.as_deref() != Some(fingerprint.as_str()) {
                        last = Some(fingerprint);
                        let terminal = matches!(
                            doc.status.as_str(),
                            "completed" | "aborted" | "expired" | "failed"
                        );
                        return Some((doc, (services, events, id, last, terminal)));
                    }
                    tokio::select! {
                        _ = events.recv() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
        );
        Ok(EventStream::new(stream.boxed()).keep_alive(Duration::from_secs(15)))
    }

    /// The caller's uploads, newest first.
    ///
    /// `metadata=key:value` keeps those whose metadata has that entry (the CLI finds a
    /// file's unfinished upload this way).
    #[oai(
        path = "/api/v1/uploads",
        method = "get",
        operation_id = "listUploads",
        tag = "Tag::Uploads"
    )]
    async fn uploads(
        &self,
        auth: Auth,
        status: Query<Option<String>>,
        /// `key:value`: only uploads whose metadata has this entry.
        metadata: Query<Option<String>>,
        /// 1 ..= 1000 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<UploadList>> {
        let limit = limit.0.unwrap_or(50);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "limit must be between 1 and 1000",
            ));
        }
        let caller = self.caller(&auth).await?;
        let (rows, next_cursor) = self
            .services
            .list_uploads(
                &caller,
                status.0.as_deref(),
                metadata.0.as_deref(),
                limit,
                cursor.0.as_deref(),
            )
            .await?;
        let mut uploads = Vec::with_capacity(rows.len());
        for row in &rows {
            uploads.push(self.status_doc(row).await?);
        }
        Ok(Json(UploadList {
            success: true,
            uploads,
            next_cursor,
        }))
    }

    /// Liveness: the process answers.
    #[oai(
        path = "/healthz",
        method = "get",
        operation_id = "healthz",
        tag = "Tag::Operations"
    )]
    async fn healthz(&self) -> Json<HealthDoc> {
        Json(HealthDoc {
            status: "ok".into(),
        })
    }

    /// Readiness: 503 when the database or the queue is unreachable.
    #[oai(
        path = "/readyz",
        method = "get",
        operation_id = "readyz",
        tag = "Tag::Operations"
    )]
    async fn readyz(&self) -> ApiResult<ReadyResponse> {
        let db_ok = self.services.db.ping().await.is_ok();
        let queue_ok = self.services.queue.is_ready().await;
        if db_ok && queue_ok {
            Ok(ReadyResponse::Ready(Json(HealthDoc {
                status: "ready".into(),
            })))
        } else {
            Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                if db_ok {
                    "the queue is unreachable"
                } else {
                    "the database is unreachable"
                },
            ))
        }
    }
}
