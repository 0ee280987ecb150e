//! The `partway` upload client: init an upload over the HTTP API, PUT the parts straight to
//! storage through presigned URLs (streamed from the file, at most N in flight), report
//! them, complete. A local state file makes an interrupted upload resumable.
mod state;
mod upload;
mod util;

use std::{fmt, time::Duration};

use partway_protocol::{
    dto::{AbortResult, ErrorBody, StatusDoc, TokenRequest, UploadList},
    ErrorCode,
};
use reqwest::{Method, StatusCode};
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use partway_protocol::parse_size;
pub use upload::{UploadOptions, UploadOutcome};

/// Tries for one API call (network errors and 5xx are retried with backoff).
const API_TRIES: u32 = 4;

/// A failed API call.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The server answered with an error envelope.
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached (after retries).
    Network(String),
    /// The server answered with something other than the contract's document.
    Unexpected(String),
}

impl ApiError {
    pub(crate) fn is(&self, code: ErrorCode) -> bool {
        matches!(self, ApiError::Http { code: c, .. } if c == code.as_str())
    }
    pub(crate) fn status(&self) -> u16 {
        match self {
            ApiError::Http { status, .. } => *status,
            ApiError::Network(_) | ApiError::Unexpected(_) => 0,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Http {
                status: 401,
                code,
                message,
            } => write!(
                f,
                "the server rejected the API key (401 {code}: {message}); pass --key or set PARTWAY_API_KEY"
            ),
            ApiError::Http {
                status,
                code,
                message,
            } => write!(f, "{status} {code}: {message}"),
            ApiError::Network(message) | ApiError::Unexpected(message) => f.write_str(message),
        }
    }
}

/// An error and its sources on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.replace(['\n', '\r'], " ")
}

pub(crate) fn backoff(attempt: u32, base_ms: u64) -> Duration {
    Duration::from_millis((base_ms << attempt.saturating_sub(1).min(5)).min(8_000))
}

/// A document as the server sent it: parsed, and as JSON (`--json` prints that unchanged).
pub struct Sent<T> {
    pub doc: T,
    pub json: Value,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Sent<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Value::deserialize(deserializer)?;
        let doc = T::deserialize(&json).map_err(serde::de::Error::custom)?;
        Ok(Sent { doc, json })
    }
}

/// The answer of init, resume, complete and abort: 200 with the operation's result, or
/// 202 with the status document while its job still runs.
// One per call: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer<T> {
    Done(T),
    Accepted(StatusDoc),
}

/// A client of one partway server.
pub struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    /// `server` is the base URL (`http://127.0.0.1:8080`), with or without `/api/v1`.
    pub fn new(server: &str, key: &str) -> Result<Client, String> {
        let base = server
            .trim_end_matches('/')
            .trim_end_matches("/api/v1")
            .to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "invalid server URL {server:?}: it must start with http:// or https://"
            ));
        }
        if key.is_empty() {
            return Err("no API key: pass --key or set PARTWAY_API_KEY".into());
        }
        // No redirects: a followed redirect would carry the API key to another host.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))?;
        Ok(Client {
            base,
            key: key.to_string(),
            http,
        })
    }

    /// `POST /upload/multipart/{action}?wait=60` for one upload (resume, complete, abort).
    pub(crate) async fn upload_action<T: DeserializeOwned>(
        &self,
        action: &str,
        token: &str,
    ) -> Result<Answer<T>, ApiError> {
        let body = TokenRequest {
            resume_token: token.to_string(),
        };
        self.post(&format!("/upload/multipart/{action}?wait=60"), &body)
            .await
    }

    /// A POST whose 200 answer is a `T` and whose 202 answer is the status document.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Answer<T>, ApiError> {
        self.post_with_key(path, body, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// [`Client::post`] with this `Idempotency-Key`. Init and complete remember it (DESIGN
    /// §4); it is the same on each retry of the call, so a retry after an answer that was
    /// lost (a 5xx, a dropped connection) gets the first answer instead of a second upload.
    pub(crate) async fn post_with_key<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        key: &str,
    ) -> Result<Answer<T>, ApiError> {
        let (status, text) = self
            .request(Method::POST, path, Some(body), Some(key))
            .await?;
        Ok(if status == StatusCode::ACCEPTED {
            Answer::Accepted(self.parse(&text)?)
        } else {
            Answer::Done(self.parse(&text)?)
        })
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let (_, text) = self.api(Method::GET, path, None::<&()>).await?;
        self.parse(&text)
    }

    fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T, ApiError> {
        serde_json::from_str(text)
            .map_err(|e| ApiError::Unexpected(format!("unexpected answer from {}: {e}", self.base)))
    }

    /// One API call under `/api/v1`, retried on network errors and 5xx: the status and
    /// body of a success.
    pub(crate) async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(StatusCode, String), ApiError> {
        self.request(method, path, body, None).await
    }

    /// [`Client::api`], with an `Idempotency-Key` on every try when given.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, String), ApiError> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("x-api-key", &self.key)
                .timeout(Duration::from_secs(100));
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    if attempt < API_TRIES {
                        tokio::time::sleep(backoff(attempt, 250)).await;
                        continue;
                    }
                    return Err(ApiError::Network(format!(
                        "cannot reach the server at {}: {}",
                        self.base,
                        chain(&e)
                    )));
                }
            };
            let status = response.status();
            let text = match response.text().await {
                Ok(text) => text,
                Err(_) if attempt < API_TRIES => {
                    tokio::time::sleep(backoff(attempt, 250)).await;
                    continue;
                }
                Err(e) => {
                    return Err(ApiError::Network(format!(
                        "reading the answer from {}: {}",
                        self.base,
                        chain(&e)
                    )))
                }
            };
            if status.is_server_error() && attempt < API_TRIES {
                tokio::time::sleep(backoff(attempt, 250)).await;
                continue;
            }
            if status.is_success() {
                return Ok((status, text));
            }
            let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
                Ok(envelope) => (envelope.error, envelope.message),
                Err(_) => {
                    let t: String = text.chars().take(200).collect();
                    let t = t.replace(['\n', '\r'], " ");
                    let t = if t.is_empty() { "no details".into() } else { t };
                    ("HTTP_ERROR".to_string(), t)
                }
            };
            return Err(ApiError::Http {
                status: status.as_u16(),
                code,
                message,
            });
        }
    }

    /// The status document of an upload.
    pub async fn status(&self, token: &str) -> Result<Sent<StatusDoc>, String> {
        let token = util::path_segment(token);
        self.get(&format!("/upload/multipart/{token}"))
            .await
            .map_err(|e| e.to_string())
    }

    /// Aborts an upload (waits up to 60 s for storage) and forgets its local state; the
    /// upload's status (`aborting` when storage took longer).
    pub async fn abort(&self, token: &str) -> Result<String, String> {
        let status = match self
            .upload_action::<AbortResult>("abort", token)
            .await
            .map_err(|e| e.to_string())?
        {
            Answer::Done(aborted) => aborted.status,
            Answer::Accepted(doc) => doc.status,
        };
        let _ = state::forget_token(token);
        Ok(status)
    }

    /// Every upload of this key's owner, newest first.
    pub async fn list(&self) -> Result<Sent<Vec<StatusDoc>>, String> {
        let mut uploads = Vec::new();
        let mut json = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/uploads?limit=1000&cursor={}", util::path_segment(c)),
                None => "/uploads?limit=1000".to_string(),
            };
            let page: Sent<UploadList> = self.get(&path).await.map_err(|e| e.to_string())?;
            uploads.extend(page.doc.uploads);
            if let Value::Object(mut sent) = page.json {
                if let Some(Value::Array(docs)) = sent.remove("uploads") {
                    json.extend(docs);
                }
            }
            match page.doc.next_cursor {
                Some(c) if !c.is_empty() => cursor = Some(c),
                _ => {
                    return Ok(Sent {
                        doc: uploads,
                        json: Value::Array(json),
                    })
                }
            }
        }
    }
}

/// The `ls` table.
pub fn format_table(uploads: &[StatusDoc]) -> String {
    let mut out = format!(
        "{:<40}  {:<10}  {:<28}  {:>10}  {:>7}  {}\n",
        "token", "status", "filename", "size", "done", "created"
    );
    for u in uploads {
        // A size-unknown upload (made through the Uppy routes) shows `?` until complete.
        let size = u.file_size.map_or_else(
            || "?".to_string(),
            |s| indicatif::BinaryBytes(s).to_string(),
        );
        let pct = u
            .progress
            .bytes_percentage
            .map_or_else(|| "?".to_string(), |p| format!("{p:.1}%"));
        let created = u.created_at.get(..19).unwrap_or(&u.created_at);
        let created = created.replace('T', " ");
        let mut name = u.filename.clone();
        if name.chars().count() > 28 {
            name = name.chars().take(27).collect::<String>() + "…";
        }
        out.push_str(&format!(
            "{:<40}  {:<10}  {:<28}  {:>10}  {:>7}  {}\n",
            u.resume_token, u.status, name, size, pct, created
        ));
    }
    out
}

/// The `status` summary.
pub fn format_status(doc: &StatusDoc) -> String {
    let bytes = |b: u64| indicatif::BinaryBytes(b).to_string();
    let p = &doc.progress;
    let mut out = String::new();
    out.push_str(&format!("token     {}\n", doc.resume_token));
    out.push_str(&format!("status    {}\n", doc.status));
    out.push_str(&format!(
        "file      {} ({}, {})\n",
        doc.filename,
        doc.file_size.map_or_else(|| "size unknown".into(), bytes),
        doc.content_type
    ));
    out.push_str(&format!(
        "progress  {}/{} parts, {} of {} ({}%)\n",
        p.uploaded,
        p.total.map_or_else(|| "?".into(), |t| t.to_string()),
        bytes(p.uploaded_bytes),
        p.total_bytes.map_or_else(|| "?".into(), bytes),
        // As JSON writes it (`100.0`), as this line always showed it.
        p.bytes_percentage
            .map_or_else(|| "?".into(), |v| Value::from(v).to_string())
    ));
    out.push_str(&format!("key       {}\n", doc.file_key));
    out.push_str(&format!("created   {}\n", doc.created_at));
    out.push_str(&format!("expires   {}\n", doc.expires_at));
    if let Some(url) = &doc.url {
        out.push_str(&format!("url       {url}\n"));
    }
    if let Some(error) = &doc.last_error {
        out.push_str(&format!("error     {}: {}\n", error.code, error.message));
    }
    out
}
