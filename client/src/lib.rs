//! The `partway` upload client: init an upload over the HTTP API, PUT the parts straight to
//! storage through presigned URLs (streamed from the file, at most N in flight), report
//! them, complete. A local state file makes an interrupted upload resumable.
mod state;
mod upload;
mod util;

use std::{fmt, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use upload::{UploadOptions, UploadOutcome};
pub use util::parse_size;

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
}

impl ApiError {
    pub(crate) fn code(&self) -> &str {
        match self {
            ApiError::Http { code, .. } => code,
            ApiError::Network(_) => "",
        }
    }
    pub(crate) fn status(&self) -> u16 {
        match self {
            ApiError::Http { status, .. } => *status,
            ApiError::Network(_) => 0,
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
            ApiError::Network(message) => f.write_str(message),
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
        let http = reqwest::Client::builder()
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
    pub(crate) async fn upload_action(
        &self,
        action: &str,
        token: &str,
    ) -> Result<(StatusCode, Value), ApiError> {
        let body = serde_json::json!({ "resumeToken": token });
        let path = format!("/upload/multipart/{action}?wait=60");
        self.api(Method::POST, &path, Some(&body)).await
    }

    /// One API call under `/api/v1`, retried on network errors and 5xx.
    pub(crate) async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ApiError> {
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
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok((status, value));
            }
            let code = value["error"].as_str().unwrap_or("HTTP_ERROR").to_string();
            let message = value["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| {
                    let mut t: String = text.chars().take(200).collect();
                    t = t.replace(['\n', '\r'], " ");
                    if t.is_empty() {
                        "no details".into()
                    } else {
                        t
                    }
                });
            return Err(ApiError::Http {
                status: status.as_u16(),
                code,
                message,
            });
        }
    }

    /// The status document of an upload.
    pub async fn status(&self, token: &str) -> Result<Value, String> {
        self.status_doc(token).await.map_err(|e| e.to_string())
    }

    pub(crate) async fn status_doc(&self, token: &str) -> Result<Value, ApiError> {
        let token = util::path_segment(token);
        self.api(Method::GET, &format!("/upload/multipart/{token}"), None)
            .await
            .map(|(_, v)| v)
    }

    /// Aborts an upload (waits up to 60 s for storage) and forgets its local state.
    pub async fn abort(&self, token: &str) -> Result<Value, String> {
        let (_, value) = self
            .upload_action("abort", token)
            .await
            .map_err(|e| e.to_string())?;
        let _ = state::forget_token(token);
        Ok(value)
    }

    /// Every upload of this key's owner, newest first.
    pub async fn list(&self) -> Result<Vec<Value>, String> {
        let mut uploads = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/uploads?limit=1000&cursor={}", util::path_segment(c)),
                None => "/uploads?limit=1000".to_string(),
            };
            let (_, value) = self
                .api(Method::GET, &path, None)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(page) = value["uploads"].as_array() {
                uploads.extend(page.iter().cloned());
            }
            match value["nextCursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => return Ok(uploads),
            }
        }
    }
}

/// The `ls` table.
pub fn format_table(uploads: &[Value]) -> String {
    let mut out = format!(
        "{:<40}  {:<10}  {:<28}  {:>10}  {:>7}  {}\n",
        "token", "status", "filename", "size", "done", "created"
    );
    for u in uploads {
        let size = u["fileSize"]
            .as_u64()
            .map(|s| indicatif::BinaryBytes(s).to_string())
            .unwrap_or_default();
        let pct = u["progress"]["bytesPercentage"]
            .as_f64()
            .map(|p| format!("{p:.1}%"))
            .unwrap_or_default();
        let created = u["createdAt"]
            .as_str()
            .map(|c| c.get(..19).unwrap_or(c).replace('T', " "))
            .unwrap_or_default();
        let mut name = u["filename"].as_str().unwrap_or("").to_string();
        if name.chars().count() > 28 {
            name = name.chars().take(27).collect::<String>() + "…";
        }
        out.push_str(&format!(
            "{:<40}  {:<10}  {:<28}  {:>10}  {:>7}  {}\n",
            u["resumeToken"].as_str().unwrap_or(""),
            u["status"].as_str().unwrap_or(""),
            name,
            size,
            pct,
            created
        ));
    }
    out
}

/// The `status` summary.
pub fn format_status(doc: &Value) -> String {
    let s = |k: &str| doc[k].as_str().unwrap_or("-").to_string();
    let bytes = |v: &Value| {
        v.as_u64()
            .map(|b| indicatif::BinaryBytes(b).to_string())
            .unwrap_or_else(|| "-".into())
    };
    let p = &doc["progress"];
    let mut out = String::new();
    out.push_str(&format!("token     {}\n", s("resumeToken")));
    out.push_str(&format!("status    {}\n", s("status")));
    out.push_str(&format!(
        "file      {} ({}, {})\n",
        s("filename"),
        bytes(&doc["fileSize"]),
        s("contentType")
    ));
    out.push_str(&format!(
        "progress  {}/{} parts, {} of {} ({}%)\n",
        p["uploaded"],
        p["total"],
        bytes(&p["uploadedBytes"]),
        bytes(&p["totalBytes"]),
        p["bytesPercentage"]
    ));
    out.push_str(&format!("key       {}\n", s("fileKey")));
    out.push_str(&format!("created   {}\n", s("createdAt")));
    out.push_str(&format!("expires   {}\n", s("expiresAt")));
    if let Some(url) = doc["url"].as_str() {
        out.push_str(&format!("url       {url}\n"));
    }
    if doc["lastError"].is_object() {
        out.push_str(&format!(
            "error     {}: {}\n",
            doc["lastError"]["code"].as_str().unwrap_or(""),
            doc["lastError"]["message"].as_str().unwrap_or("")
        ));
    }
    out
}
