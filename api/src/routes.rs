//! The HTTP routes of DESIGN §3. Handlers authenticate, call one use case, and shape
//! its answer; `?wait=N` waits for the queued job before answering 200, else 202.
use std::{sync::Arc, time::Duration};

use futures::{stream::BoxStream, StreamExt};
use partway_core::{
    auth::Caller,
    domain::{ErrorCode, IdempotencyKey, PageLimit, PartState, UploadStatus, Wait},
    usecases::{effective_status, parts::progress_of, size_known, token_of, StreamLease},
    App,
};
use poem::web::Data;
use poem_openapi::{
    auth::{ApiKey, Bearer},
    param::{Header, Path, Query},
    payload::{EventStream, Json},
    ApiResponse, OpenApi, SecurityScheme, Tags,
};

use crate::{
    body::ContractJson,
    direct_json::{DirectJson, JsonText},
    documents::{complete_result, init_result, resume_result, status_doc},
    error::ApiError,
    models::*,
    params::ResumeTokenParam,
};

#[derive(Tags)]
enum Tag {
    /// Multipart uploads
    Uploads,
    /// Liveness and readiness
    Operations,
    /// Browser tokens: short-lived credentials for web pages (API keys only)
    BrowserTokens,
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

/// `?access_token=<browser token or key>`: for EventSource, which cannot send headers.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "access_token", key_in = "query")]
pub struct AccessTokenQuery(ApiKey);

/// The event stream's credential: a header, or the `access_token` query parameter.
#[derive(SecurityScheme)]
pub enum EventsAuth {
    ApiKey(ApiKeyAuth),
    Bearer(BearerAuth),
    Query(AccessTokenQuery),
}

impl EventsAuth {
    fn key(&self) -> &str {
        match self {
            EventsAuth::ApiKey(k) => &k.0.key,
            EventsAuth::Bearer(b) => &b.0.token,
            EventsAuth::Query(q) => &q.0.key,
        }
    }
}

#[derive(ApiResponse)]
pub enum BrowserTokenCreatedResponse {
    /// The token, shown this once.
    #[oai(status = 201)]
    Created(Json<BrowserTokenCreated>),
}

// One response per request: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(ApiResponse)]
pub enum InitResponse {
    /// The upload is ready: every part URL is in `partUrls`.
    #[oai(status = 200)]
    Ready(DirectJson<InitResult>),
    /// Accepted; poll the status document (or use `?wait=N`).
    #[oai(status = 202)]
    Accepted(Json<StatusDoc>),
}

// One response per request: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(ApiResponse)]
pub enum ResumeResponse {
    #[oai(status = 200)]
    Ready(DirectJson<ResumeResult>),
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

/// How often an idle event stream sends a comment.
const EVENT_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// What an open event stream carries from one status document to the next; dropping
/// it (client gone, stream ended) gives the owner's slot back.
struct StreamState {
    app: Arc<App>,
    lease: StreamLease,
    events: tokio::sync::broadcast::Receiver<partway_core::ports::UploadEvent>,
    id: uuid::Uuid,
    /// The last document sent, minus what changes on every read.
    last: Option<String>,
    /// A final status was sent.
    done: bool,
}
pub(crate) type AppData<'a> = Data<&'a Arc<App>>;

/// The `Idempotency-Key` header as sent: poem-openapi reads a value that is not
/// visible ASCII as no header at all, which would silently drop the key.
fn idempotency_header(req: &poem::Request, parsed: Option<String>) -> ApiResult<Option<String>> {
    match req.headers().get("idempotency-key") {
        Some(raw) if raw.to_str().is_err() => Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "Idempotency-Key must be printable ASCII",
        )),
        _ => Ok(parsed),
    }
}

pub(crate) async fn caller(app: &App, auth: &Auth) -> ApiResult<Caller> {
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
        /// Seconds to wait for the job, 0 ..= 60 (default 0).
        #[oai(validator(minimum(value = "0"), maximum(value = "60")))]
        wait: Query<Option<u32>>,
        /// 1 to 255 printable ASCII characters, not starting with a space; spaces and
        /// tabs at the end are not part of the key (HTTP drops them).
        #[oai(
            name = "Idempotency-Key",
            validator(
                min_length = 1,
                max_length = 255,
                custom = "partway_protocol::pattern::Matches(&partway_protocol::pattern::IDEMPOTENCY_KEY)"
            )
        )]
        idempotency_key: Header<Option<String>>,
        req: &poem::Request,
    ) -> ApiResult<InitResponse> {
        let wait = Wait::parse(wait.0)?;
        let key = IdempotencyKey::parse(idempotency_header(req, idempotency_key.0)?)?;
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
                return Ok(InitResponse::Ready(DirectJson(
                    init_result(&app, upload).await?,
                )));
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
        /// Seconds to wait for the job, 0 ..= 60 (default 0).
        #[oai(validator(minimum(value = "0"), maximum(value = "60")))]
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
                return Ok(ResumeResponse::Ready(DirectJson(
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
    /// storage rejects the parts, a waited answer is 400 `INVALID_PARTS` (409
    /// `INCOMPLETE_PARTS` when it does not hold them all) and the upload is active
    /// again with `lastError`.
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
        /// Seconds to wait for the job, 0 ..= 60 (default 0).
        #[oai(validator(minimum(value = "0"), maximum(value = "60")))]
        wait: Query<Option<u32>>,
        /// 1 to 255 printable ASCII characters, not starting with a space; spaces and
        /// tabs at the end are not part of the key (HTTP drops them).
        #[oai(
            name = "Idempotency-Key",
            validator(
                min_length = 1,
                max_length = 255,
                custom = "partway_protocol::pattern::Matches(&partway_protocol::pattern::IDEMPOTENCY_KEY)"
            )
        )]
        idempotency_key: Header<Option<String>>,
        req: &poem::Request,
    ) -> ApiResult<CompleteResponse> {
        let wait = Wait::parse(wait.0)?;
        // A complete is idempotent by state already; the key is checked for form only.
        IdempotencyKey::parse(idempotency_header(req, idempotency_key.0)?)?;
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
        /// Seconds to wait for the job, 0 ..= 60 (default 0).
        #[oai(validator(minimum(value = "0"), maximum(value = "60")))]
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
        #[oai(name = "resumeToken")] resume_token: Path<ResumeTokenParam>,
    ) -> ApiResult<JsonText<StatusDoc>> {
        let caller = caller(&app, &auth).await?;
        // Cache first: polling many times a second costs no database read, and the
        // cached text is the answer.
        if let Some(cached) = app.cached_status(&caller, &resume_token.0 .0).await {
            return Ok(JsonText::trusted(cached));
        }
        let upload = app.get(&caller, &resume_token.0 .0).await?;
        let answer = JsonText::of(&status_doc(&app, &upload).await?);
        app.remember_status(&upload, answer.as_str().to_string())
            .await;
        Ok(answer)
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
        #[oai(name = "resumeToken")] resume_token: Path<ResumeTokenParam>,
        /// pending (default), uploaded or all
        state: Query<Option<PartStateParam>>,
        /// Only parts numbered above this.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        after: Query<Option<u32>>,
        /// 1 ..= 1000 (default 1000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<PartsPage>> {
        let state = PartState::parse(state.0.map(PartStateParam::as_str))?;
        let limit = PageLimit::parse(limit.0, PageLimit::MAX)?;
        let caller = caller(&app, &auth).await?;
        let (parts, next_after) = app
            .list_parts(
                &caller,
                &resume_token.0 .0,
                state,
                after.0.unwrap_or(0),
                limit,
            )
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
        #[oai(name = "resumeToken")] resume_token: Path<ResumeTokenParam>,
        /// 1 ..= 10000, and at most the upload's totalParts.
        #[oai(
            name = "partNumber",
            validator(minimum(value = "1"), maximum(value = "10000"))
        )]
        part_number: Path<u32>,
        body: ContractJson<PartReport>,
    ) -> ApiResult<Json<ProgressResult>> {
        let caller = caller(&app, &auth).await?;
        let upload = app
            .report_part(
                &caller,
                &resume_token.0 .0,
                part_number.0,
                &body.0.etag,
                body.0.size,
            )
            .await?;
        Ok(Json(ProgressResult {
            success: true,
            progress: progress_doc(progress_of(&upload), size_known(&upload)),
        }))
    }

    /// Server-Sent Events: the status document each time it changes, ending after a
    /// final status (completed, aborted, expired, failed).
    ///
    /// A stream also ends when its credential is revoked or expires (checked every
    /// `PARTWAY_EVENT_STREAM_RECHECK`) and after `PARTWAY_EVENT_STREAM_MAX_AGE`;
    /// clients reconnect. An owner holds at most `PARTWAY_MAX_EVENT_STREAMS` open
    /// streams per API process (over it: 403 `QUOTA_EXCEEDED`).
    #[oai(
        path = "/api/v1/upload/multipart/:resumeToken/events",
        method = "get",
        operation_id = "events",
        tag = "Tag::Uploads"
    )]
    async fn events(
        &self,
        app: AppData<'_>,
        auth: EventsAuth,
        #[oai(name = "resumeToken")] resume_token: Path<ResumeTokenParam>,
    ) -> ApiResult<EventStream<BoxStream<'static, StatusDoc>>> {
        let caller = app.authenticate(Some(auth.key())).await?;
        let upload = app.get(&caller, &resume_token.0 .0).await?;
        let lease = app.open_stream(&caller, auth.key())?;
        let app: Arc<App> = Arc::clone(&app);
        let events = app.subscribe(upload.id).await;
        let state = StreamState {
            app,
            lease,
            events,
            id: upload.id,
            last: None,
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut s| async move {
            if s.done {
                return None;
            }
            loop {
                if let Err(end) = s.app.stream_may_continue(&mut s.lease).await {
                    tracing::debug!(upload = %s.id, ?end, "event stream ends");
                    return None;
                }
                let current = s.app.reload(s.id).await.ok()?;
                let doc = status_doc(&s.app, &current).await.ok()?;
                // downloadUrl differs on every read; compare the rest.
                let fingerprint = format!(
                    "{}|{}|{}|{}|{:?}",
                    doc.status,
                    doc.updated_at,
                    doc.urls_ready,
                    doc.progress.uploaded_bytes,
                    doc.last_error.as_ref().map(|e| &e.code)
                );
                if s.last.as_deref() != Some(fingerprint.as_str()) {
                    s.last = Some(fingerprint);
                    s.done = effective_status(&current, chrono::Utc::now()).is_final();
                    return Some((doc, s));
                }
                tokio::select! {
                    _ = s.events.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        // The keep-alive comment is also how a client that went away is noticed (hyper
        // reads nothing while it streams; the second write after a close fails), and
        // with it the owner's stream slot is given back.
        Ok(EventStream::new(stream.boxed()).keep_alive(EVENT_KEEP_ALIVE))
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
        /// Only uploads in this status.
        status: Query<Option<UploadStatusParam>>,
        /// `key:value`: only uploads whose metadata has this entry (the key as in
        /// metadata: A-Z, a-z, 0-9, `_`, `-`, at most 128 bytes; the value printable ASCII;
        /// both together at most 2048 bytes).
        #[oai(validator(
            max_length = 2049,
            custom = "partway_protocol::pattern::Matches(&partway_protocol::pattern::METADATA_FILTER)"
        ))]
        metadata: Query<Option<String>>,
        /// 1 ..= 1000 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
        /// `nextCursor` of the previous page.
        #[oai(validator(
            custom = "partway_protocol::pattern::Matches(&partway_protocol::pattern::CURSOR)"
        ))]
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<UploadList>> {
        let limit = PageLimit::parse(limit.0, 50)?;
        let caller = caller(&app, &auth).await?;
        let (rows, next_cursor) = app
            .list_uploads(
                &caller,
                status.0.map(UploadStatusParam::as_str),
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

    /// Mint a browser token (API keys only).
    ///
    /// A short-lived credential for a web page: it may start uploads within its limits
    /// and sees only the uploads it started. `token` is shown once and stored hashed.
    /// A browser token calling this answers 403 `FORBIDDEN`.
    #[oai(
        path = "/api/v1/browser-tokens",
        method = "post",
        operation_id = "createBrowserToken",
        tag = "Tag::BrowserTokens"
    )]
    async fn create_browser_token(
        &self,
        app: AppData<'_>,
        auth: Auth,
        body: ContractJson<BrowserTokenRequest>,
    ) -> ApiResult<BrowserTokenCreatedResponse> {
        let caller = caller(&app, &auth).await?;
        let (row, secret) = app
            .create_browser_token(&caller, &token_limits(body.0))
            .await?;
        Ok(BrowserTokenCreatedResponse::Created(Json(
            browser_token_created(&row, secret),
        )))
    }

    /// The owner's live browser tokens (never their secret), newest first.
    #[oai(
        path = "/api/v1/browser-tokens",
        method = "get",
        operation_id = "listBrowserTokens",
        tag = "Tag::BrowserTokens"
    )]
    async fn list_browser_tokens(
        &self,
        app: AppData<'_>,
        auth: Auth,
    ) -> ApiResult<Json<BrowserTokenList>> {
        let caller = caller(&app, &auth).await?;
        let tokens = app.list_browser_tokens(&caller).await?;
        Ok(Json(BrowserTokenList {
            success: true,
            tokens: tokens.iter().map(browser_token_doc).collect(),
        }))
    }

    /// Revoke a browser token: refused everywhere within 30 seconds (at once by the
    /// API process that revoked it); open event streams end at their next check.
    #[oai(
        path = "/api/v1/browser-tokens/:id",
        method = "delete",
        operation_id = "revokeBrowserToken",
        tag = "Tag::BrowserTokens"
    )]
    async fn revoke_browser_token(
        &self,
        app: AppData<'_>,
        auth: Auth,
        /// The token's `id` (a UUID, lowercase).
        #[oai(
            name = "id",
            validator(
                custom = "partway_protocol::pattern::Matches(&partway_protocol::pattern::UUID)"
            )
        )]
        id: Path<String>,
    ) -> ApiResult<Json<BrowserTokenRevoked>> {
        let caller = caller(&app, &auth).await?;
        let parsed = uuid::Uuid::parse_str(&id.0).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidParameter,
                "id must be a browser token's id",
            )
        })?;
        app.revoke_browser_token(&caller, parsed).await?;
        Ok(Json(BrowserTokenRevoked {
            success: true,
            id: parsed.to_string(),
            revoked: true,
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
