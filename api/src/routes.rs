//! The HTTP routes of DESIGN §3. Handlers authenticate, call one use case, and shape
//! its answer; `?wait=N` waits for the queued job before answering 200, else 202.
use std::{sync::Arc, time::Duration};

use futures::{stream::BoxStream, StreamExt};
use partway_core::{
    auth::Caller,
    domain::{ErrorCode, IdempotencyKey, PageLimit, PartState, UploadStatus, Wait},
    usecases::{effective_status, parts::progress_of, token_of},
    App,
};
use poem::web::Data;
use poem_openapi::{
    auth::{ApiKey, Bearer},
    param::{Header, Path, Query},
    payload::{EventStream, Json},
    types::{ParseFromJSON, ToJSON},
    ApiResponse, OpenApi, SecurityScheme, Tags,
};

use crate::{
    body::ContractJson,
    documents::{complete_result, init_result, resume_result, status_doc},
    error::ApiError,
    models::*,
};

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

/// Readiness answers 200 or 503 only: like `/healthz` it is never rate limited, so it
/// does not share the API's error list.
#[derive(ApiResponse)]
pub enum ReadyResponse {
    #[oai(status = 200)]
    Ready(Json<HealthDoc>),
    /// The database or the queue is unreachable (`SERVICE_UNAVAILABLE`).
    #[oai(status = 503)]
    NotReady(Json<partway_protocol::dto::ErrorBody>),
}

/// The routes. Stateless: each handler takes the [`App`] from the request data, so
/// the spec can be generated without one.
pub struct UploadApi;

type ApiResult<T> = Result<T, ApiError>;
type AppData<'a> = Data<&'a Arc<App>>;

async fn caller(app: &App, auth: &Auth) -> ApiResult<Caller> {
    Ok(app.authenticate(Some(auth.key())).await?)
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
        app: AppData<'_>,
        auth: Auth,
        body: ContractJson<InitRequest>,
        wait: Query<Option<u32>>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
    ) -> ApiResult<InitResponse> {
        let wait = Wait::parse(wait.0)?;
        let key = IdempotencyKey::parse(idempotency_key.0)?;
        let caller = caller(&app, &auth).await?;
        let accepted = app.init(&caller, init_input(body.0), key).await?;
        let settled = app.settle(accepted, wait).await?;
        let upload = &settled.upload;
        if settled.finished {
            if upload.status == UploadStatus::Failed {
                if let Some(err) = settled.job_error() {
                    return Err(err.into());
                }
            }
            if upload.status.accepts_parts() {
                return Ok(InitResponse::Ready(Json(init_result(&app, upload).await?)));
            }
        }
        Ok(InitResponse::Accepted(Json(
            status_doc(&app, upload).await?,
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
        app: AppData<'_>,
        auth: Auth,
        body: ContractJson<TokenRequest>,
        wait: Query<Option<u32>>,
    ) -> ApiResult<ResumeResponse> {
        let wait = Wait::parse(wait.0)?;
        let caller = caller(&app, &auth).await?;
        let accepted = app.resume(&caller, &body.0.resume_token).await?;
        let settled = app.settle(accepted, wait).await?;
        let upload = &settled.upload;
        if settled.finished {
            if let Some(err) = settled.job_error() {
                return Err(err.into());
            }
            if upload.status.accepts_parts() {
                return Ok(ResumeResponse::Ready(Json(
                    resume_result(&app, upload).await?,
                )));
            }
            return Err(ApiError::new(
                ErrorCode::UploadNotReady,
                format!("the upload is {}", upload.status),
            ));
        }
        Ok(ResumeResponse::Accepted(Json(
            status_doc(&app, upload).await?,
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
        app: AppData<'_>,
        auth: Auth,
        body: ContractJson<CompleteRequest>,
        wait: Query<Option<u32>>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
    ) -> ApiResult<CompleteResponse> {
        let wait = Wait::parse(wait.0)?;
        // A complete is idempotent by state already; the key is checked for form only.
        IdempotencyKey::parse(idempotency_key.0)?;
        let caller = caller(&app, &auth).await?;
        let parts = body
            .0
            .parts
            .map(|ps| ps.into_iter().map(|p| (p.part_number, p.etag)).collect());
        let accepted = app.complete(&caller, &body.0.resume_token, parts).await?;
        let settled = app.settle(accepted, wait).await?;
        let upload = &settled.upload;
        match upload.status {
            UploadStatus::Completed => {
                return Ok(CompleteResponse::Completed(Json(
                    complete_result(&app, upload).await?,
                )))
            }
            UploadStatus::Active | UploadStatus::Paused | UploadStatus::Failed
                if settled.finished =>
            {
                if let Some(err) = settled.job_error() {
                    return Err(err.into());
                }
            }
            _ => {}
        }
        Ok(CompleteResponse::Accepted(Json(
            status_doc(&app, upload).await?,
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
        app: AppData<'_>,
        auth: Auth,
        body: ContractJson<TokenRequest>,
        wait: Query<Option<u32>>,
    ) -> ApiResult<AbortResponse> {
        let wait = Wait::parse(wait.0)?;
        let caller = caller(&app, &auth).await?;
        let accepted = app.abort(&caller, &body.0.resume_token).await?;
        let settled = app.settle(accepted, wait).await?;
        let upload = &settled.upload;
        if matches!(upload.status, UploadStatus::Aborted | UploadStatus::Expired) {
            return Ok(AbortResponse::Aborted(Json(AbortResult {
                success: true,
                resume_token: token_of(upload).to_string(),
                status: upload.status.as_str().into(),
            })));
        }
        Ok(AbortResponse::Accepted(Json(
            status_doc(&app, upload).await?,
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
        app: AppData<'_>,
        auth: Auth,
        body: ContractJson<TokenRequest>,
    ) -> ApiResult<Json<StatusDoc>> {
        let caller = caller(&app, &auth).await?;
        let upload = app.pause(&caller, &body.0.resume_token).await?;
        Ok(Json(status_doc(&app, &upload).await?))
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
        app: AppData<'_>,
        auth: Auth,
        #[oai(name = "resumeToken")] resume_token: Path<String>,
    ) -> ApiResult<Json<StatusDoc>> {
        let caller = caller(&app, &auth).await?;
        // Cache first: polling many times a second costs no database read.
        if let Some(cached) = app.cached_status(&caller, &resume_token.0).await {
            if let Ok(doc) = StatusDoc::parse_from_json_string(&cached) {
                return Ok(Json(doc));
            }
        }
        let upload = app.get(&caller, &resume_token.0).await?;
        let doc = status_doc(&app, &upload).await?;
        app.remember_status(&upload, doc.to_json_string()).await;
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
        app: AppData<'_>,
        auth: Auth,
        #[oai(name = "resumeToken")] resume_token: Path<String>,
        /// pending (default), uploaded or all
        state: Query<Option<String>>,
        /// Only parts numbered above this.
        after: Query<Option<u32>>,
        /// 1 ..= 1000 (default 1000).
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<PartsPage>> {
        let state = PartState::parse(state.0.as_deref())?;
        let limit = PageLimit::parse(limit.0, PageLimit::MAX)?;
        let caller = caller(&app, &auth).await?;
        let (parts, next_after) = app
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
        app: AppData<'_>,
        auth: Auth,
        #[oai(name = "resumeToken")] resume_token: Path<String>,
        #[oai(name = "partNumber")] part_number: Path<u32>,
        body: ContractJson<PartReport>,
    ) -> ApiResult<Json<ProgressResult>> {
        let caller = caller(&app, &auth).await?;
        let upload = app
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
            progress: progress_doc(progress_of(&upload)),
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
        app: AppData<'_>,
        auth: Auth,
        #[oai(name = "resumeToken")] resume_token: Path<String>,
    ) -> ApiResult<EventStream<BoxStream<'static, StatusDoc>>> {
        let caller = caller(&app, &auth).await?;
        let upload = app.get(&caller, &resume_token.0).await?;
        let app: Arc<App> = Arc::clone(&app);
        let events = app.subscribe(upload.id).await;
        let state = (app, events, upload.id, None::<String>, false);
        let stream =
            futures::stream::unfold(state, |(app, mut events, id, mut last, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let current = app.reload(id).await.ok()?;
                    let doc = status_doc(&app, &current).await.ok()?;
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
                        let final_status =
                            effective_status(&current, chrono::Utc::now()).is_final();
                        return Some((doc, (app, events, id, last, final_status)));
                    }
                    tokio::select! {
                        _ = events.recv() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            });
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
        app: AppData<'_>,
        auth: Auth,
        status: Query<Option<String>>,
        /// `key:value`: only uploads whose metadata has this entry.
        metadata: Query<Option<String>>,
        /// 1 ..= 1000 (default 50).
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<UploadList>> {
        let limit = PageLimit::parse(limit.0, 50)?;
        let caller = caller(&app, &auth).await?;
        let (rows, next_cursor) = app
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
            uploads.push(status_doc(&app, row).await?);
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
    async fn readyz(&self, app: AppData<'_>) -> ReadyResponse {
        let (db_ok, queue_ok) = app.readiness().await;
        if db_ok && queue_ok {
            ReadyResponse::Ready(Json(HealthDoc {
                status: "ready".into(),
            }))
        } else {
            ReadyResponse::NotReady(Json(partway_protocol::dto::ErrorBody {
                success: false,
                error: ErrorCode::ServiceUnavailable.as_str().into(),
                message: if db_ok {
                    "the queue is unreachable"
                } else {
                    "the database is unreachable"
                }
                .into(),
            }))
        }
    }
}
