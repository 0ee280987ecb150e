//! Uppy compatibility (DESIGN §5): Companion's S3 routes, so `@uppy/aws-s3` works
//! against partway unchanged.
//!
//! - `/uppy/{browserToken}/s3/…` for 6.x (`companionEndpoint`; 6.x sends no headers,
//!   so the credential is in the path), `/uppy/s3/…` with `x-api-key` or
//!   `Authorization: Bearer` for 5.x (`endpoint` + `headers`).
//! - `uploadId` is the resume token, `key` the upload's `fileKey` (a `key` that does not
//!   match is 404). Errors keep Companion's shape: a non-2xx status with `{message}`,
//!   plus partway's `error` code.
//! - These routes are a compatibility surface with Companion's shapes (PascalCase
//!   fields, a bare array): they stay out of `openapi.yaml` (DESIGN §5), like `/upload`.
//! - CORS is the API's (`PARTWAY_CORS_ORIGINS`); preflights never need a credential.
use partway_core::{
    auth::Caller,
    domain::{uppy::part_number, ErrorCode, UploadStatus, Wait},
    usecases::{
        token_of,
        uppy::{UppyStart, MAX_POST_SIZE},
        Settled,
    },
    App, AppError,
};
use partway_entity::upload::{self, UploadSizing};
use poem::{
    get, handler,
    http::{header, StatusCode},
    post,
    web::{Data, Query},
    Body, Request, Response, Route,
};
use serde::Deserialize;
use std::sync::Arc;

use crate::error::ApiError;

/// How long a route waits for the job it queued (create, list, complete, abort).
const JOB_WAIT_SECONDS: u32 = 60;

/// Largest JSON body: a 10,000-part complete (about 700 KiB).
const MAX_BODY: usize = crate::MAX_BODY_BYTES;

/// Companion's error shape: `{message}` with partway's `error` code beside it.
fn error_response(err: ApiError) -> Response {
    let body = serde_json::json!({"message": err.message, "error": err.code.as_str()});
    Response::builder()
        .status(
            StatusCode::from_u16(err.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        )
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body.to_string())
}

fn json(value: serde_json::Value) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(value.to_string())
}

fn answer(result: Result<serde_json::Value, ApiError>) -> Response {
    match result {
        Ok(value) => json(value),
        Err(err) => error_response(err),
    }
}

fn app_err(e: AppError) -> ApiError {
    e.into()
}

/// The credential: the path's browser token (6.x), else `x-api-key` or
/// `Authorization: Bearer` (5.x).
async fn caller_of(app: &App, req: &Request) -> Result<Caller, ApiError> {
    let from_path = req.raw_path_param("token").map(str::to_owned);
    let presented = from_path.or_else(|| {
        let headers = req.headers();
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        v.get(..7)
                            .filter(|p| p.eq_ignore_ascii_case("bearer "))
                            .map(|_| v[7..].trim().to_owned())
                    })
            })
    });
    app.authenticate(presented.as_deref())
        .await
        .map_err(app_err)
}

fn wait() -> Result<Wait, ApiError> {
    Ok(Wait::parse(Some(JOB_WAIT_SECONDS))?)
}

/// A path parameter (the nested routes carry `token` too, so they are read by name).
fn param(req: &Request, name: &str) -> String {
    req.raw_path_param(name).unwrap_or_default().to_string()
}

/// The job's outcome as an error, or "still running" when it did not finish in time.
fn unsettled(settled: &Settled) -> ApiError {
    if settled.finished {
        if let Some(err) = settled.job_error() {
            return app_err(err);
        }
    }
    if !settled.finished {
        return ApiError::new(
            ErrorCode::ServiceUnavailable,
            "storage is slow to answer; retry shortly",
        );
    }
    ApiError::new(
        ErrorCode::UploadNotReady,
        format!("the upload is {}", settled.upload.status.as_str()),
    )
}

async fn read_json(body: Body) -> Result<serde_json::Value, ApiError> {
    let bytes = body
        .into_bytes_limit(MAX_BODY)
        .await
        .map_err(|_| ApiError::new(ErrorCode::PayloadTooLarge, "the body is too large"))?;
    if bytes.is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not valid JSON"))
}

fn text(value: &serde_json::Value, name: &str) -> String {
    match value.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

#[derive(Deserialize)]
struct KeyQuery {
    #[serde(default)]
    key: String,
}

/// `POST {base}/s3/multipart` `{filename, type, metadata}` → `{key, uploadId, bucket}`,
/// once storage created the multipart upload.
#[handler]
async fn create(app: Data<&Arc<App>>, req: &Request, body: Body) -> Response {
    answer(
        async {
            let caller = caller_of(&app, req).await?;
            let body = read_json(body).await?;
            let start = UppyStart {
                filename: text(&body, "filename"),
                content_type: text(&body, "type"),
                metadata: body
                    .get("metadata")
                    .and_then(|m| m.as_object())
                    .cloned()
                    .unwrap_or_default(),
            };
            let accepted = app
                .uppy_start(&caller, start, UploadSizing::Multipart)
                .await
                .map_err(app_err)?;
            let settled = app.settle(accepted, wait()?).await.map_err(app_err)?;
            let upload = &settled.upload;
            if upload.status != UploadStatus::Active {
                return Err(unsettled(&settled));
            }
            Ok(serde_json::json!({
                "key": upload.file_key,
                "uploadId": token_of(upload).to_string(),
                "bucket": upload.bucket,
            }))
        }
        .await,
    )
}

/// The caller's size-unknown upload that the path and `?key=` name.
async fn named_upload(
    app: &App,
    req: &Request,
    upload_id: &str,
    key: &str,
) -> Result<(Caller, upload::Model), ApiError> {
    let caller = caller_of(app, req).await?;
    let upload = app
        .uppy_upload(&caller, upload_id, key)
        .await
        .map_err(app_err)?;
    Ok((caller, upload))
}

/// `GET {base}/s3/multipart/{uploadId}/{partNumber}?key=` → `{url, expires}`.
#[handler]
async fn sign_part(app: Data<&Arc<App>>, req: &Request, Query(q): Query<KeyQuery>) -> Response {
    answer(
        async {
            let upload_id = param(req, "upload_id");
            let n = part_number(&param(req, "part"))?;
            let caller = caller_of(&app, req).await?;
            let upload = app
                .uppy_signable(&caller, &upload_id, &q.key)
                .await
                .map_err(app_err)?;
            let url = app.uppy_sign_part(&upload, n).await.map_err(app_err)?;
            Ok(serde_json::json!({
                "url": url.url.as_str(),
                "expires": app.settings().url_ttl.as_secs(),
            }))
        }
        .await,
    )
}

#[derive(Deserialize)]
struct BatchQuery {
    #[serde(default)]
    key: String,
    #[serde(default, rename = "partNumbers")]
    part_numbers: String,
}

/// `GET {base}/s3/multipart/{uploadId}/batch?key=&partNumbers=1,2` →
/// `{presignedUrls: {"1": url}}` (no current client calls it; Companion serves it).
#[handler]
async fn sign_batch(app: Data<&Arc<App>>, req: &Request, Query(q): Query<BatchQuery>) -> Response {
    answer(
        async {
            let numbers = q
                .part_numbers
                .split(',')
                .filter(|s| !s.is_empty())
                .map(part_number)
                .collect::<Result<Vec<u32>, _>>()?;
            if numbers.is_empty() || numbers.len() > 1000 {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    "partNumbers must name 1 to 1,000 parts, comma-separated",
                ));
            }
            let upload_id = param(req, "upload_id");
            let (_, upload) = named_upload(&app, req, &upload_id, &q.key).await?;
            let mut urls = serde_json::Map::new();
            for n in numbers {
                let url = app.uppy_sign_part(&upload, n).await.map_err(app_err)?;
                urls.insert(
                    n.to_string(),
                    serde_json::Value::String(url.url.to_string()),
                );
            }
            Ok(serde_json::json!({ "presignedUrls": urls }))
        }
        .await,
    )
}

/// `GET {base}/s3/multipart/{uploadId}?key=` → `[{PartNumber, ETag, Size}]`: what
/// storage holds (every ListParts page, read by the resume job).
#[handler]
async fn list_parts(app: Data<&Arc<App>>, req: &Request, Query(q): Query<KeyQuery>) -> Response {
    answer(
        async {
            let upload_id = param(req, "upload_id");
            let (caller, upload) = named_upload(&app, req, &upload_id, &q.key).await?;
            let token = token_of(&upload).to_string();
            let accepted = app.resume(&caller, &token).await.map_err(app_err)?;
            let settled = app.settle(accepted, wait()?).await.map_err(app_err)?;
            if !settled.finished {
                return Err(unsettled(&settled));
            }
            let parts = app.uploaded_parts(upload.id).await.map_err(app_err)?;
            Ok(serde_json::Value::Array(
                parts
                    .into_iter()
                    .map(|p| {
                        serde_json::json!({
                            "PartNumber": p.part_number,
                            "ETag": format!("\"{}\"", p.etag.trim_matches('"')),
                            "Size": p.size,
                        })
                    })
                    .collect(),
            ))
        }
        .await,
    )
}

/// The parts of a complete body: `{parts: [{PartNumber, ETag}]}` (numbers or numeric
/// strings; ETags quoted or not).
fn complete_parts(body: &serde_json::Value) -> Result<Vec<(u32, String)>, ApiError> {
    let invalid = |m: &str| ApiError::new(ErrorCode::InvalidParts, m.to_string());
    let parts = body
        .get("parts")
        .and_then(|p| p.as_array())
        .ok_or_else(|| ApiError::new(ErrorCode::MissingParts, "parts must be an array"))?;
    parts
        .iter()
        .map(|p| {
            let n = match p.get("PartNumber") {
                Some(serde_json::Value::Number(n)) => {
                    n.as_u64().and_then(|n| u32::try_from(n).ok())
                }
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| invalid("every part needs a PartNumber"))?;
            let etag = p
                .get("ETag")
                .and_then(|e| e.as_str())
                .ok_or_else(|| invalid("every part needs an ETag"))?;
            Ok((n, etag.to_string()))
        })
        .collect()
}

/// `POST {base}/s3/multipart/{uploadId}/complete?key=` `{parts}` → `{location, key,
/// bucket}` once storage completed the object.
#[handler]
async fn complete(
    app: Data<&Arc<App>>,
    req: &Request,
    Query(q): Query<KeyQuery>,
    body: Body,
) -> Response {
    answer(
        async {
            let body = read_json(body).await?;
            let parts = complete_parts(&body)?;
            let upload_id = param(req, "upload_id");
            let (caller, upload) = named_upload(&app, req, &upload_id, &q.key).await?;
            let token = token_of(&upload).to_string();
            app.forget_signable(upload.id);
            let accepted = app
                .complete(&caller, &token, Some(parts))
                .await
                .map_err(app_err)?;
            let settled = app.settle(accepted, wait()?).await.map_err(app_err)?;
            let done = &settled.upload;
            if done.status != UploadStatus::Completed {
                return Err(unsettled(&settled));
            }
            Ok(serde_json::json!({
                "location": done.location.clone().unwrap_or_default(),
                "key": done.file_key,
                "bucket": done.bucket,
            }))
        }
        .await,
    )
}

/// `DELETE {base}/s3/multipart/{uploadId}?key=` → `{}` once storage aborted it.
#[handler]
async fn abort(app: Data<&Arc<App>>, req: &Request, Query(q): Query<KeyQuery>) -> Response {
    answer(
        async {
            let upload_id = param(req, "upload_id");
            let (caller, upload) = named_upload(&app, req, &upload_id, &q.key).await?;
            let token = token_of(&upload).to_string();
            app.forget_signable(upload.id);
            let accepted = app.abort(&caller, &token).await.map_err(app_err)?;
            let settled = app.settle(accepted, wait()?).await.map_err(app_err)?;
            if !matches!(
                settled.upload.status,
                UploadStatus::Aborted | UploadStatus::Expired
            ) {
                return Err(unsettled(&settled));
            }
            Ok(serde_json::json!({}))
        }
        .await,
    )
}

/// `GET {base}/s3/params?filename=&type=&metadata[k]=v` → a presigned POST policy
/// `{method: "POST", url, fields, expires}` for one small object.
#[handler]
async fn params(
    app: Data<&Arc<App>>,
    req: &Request,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    answer(
        async {
            let caller = caller_of(&app, req).await?;
            let mut start = UppyStart::default();
            for (name, value) in query {
                match name.as_str() {
                    "filename" => start.filename = value,
                    "type" => start.content_type = value,
                    other => {
                        if let Some(key) = other
                            .strip_prefix("metadata[")
                            .and_then(|k| k.strip_suffix(']'))
                        {
                            start
                                .metadata
                                .insert(key.to_string(), serde_json::Value::String(value));
                        }
                    }
                }
            }
            let max = caller
                .browser
                .as_ref()
                .and_then(|b| b.max_file_size)
                .unwrap_or(MAX_POST_SIZE);
            let accepted = app
                .uppy_start(&caller, start, UploadSizing::Post)
                .await
                .map_err(app_err)?;
            let form = app
                .uppy_post_form(&accepted.upload, Some(max))
                .map_err(app_err)?;
            let fields: serde_json::Map<String, serde_json::Value> = form
                .fields
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            Ok(serde_json::json!({
                "method": "POST",
                "url": form.url,
                "fields": fields,
                "expires": form.expires_in,
            }))
        }
        .await,
    )
}

/// `GET {base}/s3/sts`: not offered (partway signs every request itself).
#[handler]
async fn sts() -> Response {
    error_response(ApiError::new(
        ErrorCode::InvalidParameter,
        "temporary storage credentials (STS) are not offered: partway signs each request",
    ))
}

/// Companion's S3 routes under `base` (`/s3` or `/:token/s3`).
fn s3_routes(route: Route, base: &str) -> Route {
    route
        .at(format!("{base}/params"), get(params))
        .at(format!("{base}/sts"), get(sts))
        .at(format!("{base}/multipart"), post(create))
        .at(
            format!("{base}/multipart/:upload_id"),
            get(list_parts).delete(abort),
        )
        .at(
            format!("{base}/multipart/:upload_id/batch"),
            get(sign_batch),
        )
        .at(
            format!("{base}/multipart/:upload_id/complete"),
            post(complete),
        )
        .at(format!("{base}/multipart/:upload_id/:part"), get(sign_part))
}

/// The routes under `/uppy`: `/s3/…` (header auth) and `/{browserToken}/s3/…`.
pub fn routes() -> Route {
    s3_routes(s3_routes(Route::new(), "/s3"), "/:token/s3")
}
