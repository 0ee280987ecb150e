//! The soak's clients: raw API clients over reqwest, each keeping one upload in flight at a
//! time, some pausing, dying (resuming from the token) or aborting half-way. Every call is
//! retried on 5xx, 429 and connection errors, alternating between the APIs, because a
//! client of a cluster under faults does exactly that.
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng as _, RngCore as _, SeedableRng as _};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::Result;

pub const MIB: u64 = 1024 * 1024;
/// Parts of 5 MiB (the S3 minimum) so 1–64 MiB files have 1–13 parts.
pub const PART: u64 = 5 * MIB;
/// How long one call keeps retrying before the client gives up on it.
const CALL_BUDGET: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    InFlight,
    Completed,
    Aborted,
    /// The client gave up (its retry budget ran out, or a refusal it did not expect).
    GaveUp(String),
}

#[derive(Clone, Debug)]
pub struct Record {
    pub token: String,
    pub upload_id: String,
    pub file_key: String,
    pub size: u64,
    pub outcome: Outcome,
    /// Hex sha256 of the content, set when completed.
    pub sha256: String,
}

#[derive(Default)]
pub struct Stats {
    /// (start of the call, latency in ms) of every API call.
    pub latencies: Mutex<Vec<(Instant, f64)>>,
    /// Client-visible errors by status code ("conn" for connection errors).
    pub errors: Mutex<BTreeMap<String, u64>>,
    pub uploads: Mutex<Vec<Record>>,
    pub init_failed: AtomicUsize,
}

impl Stats {
    fn error(&self, what: String) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(what).or_default() += 1;
        }
    }
    fn set(&self, i: usize, f: impl FnOnce(&mut Record)) {
        if let Ok(mut u) = self.uploads.lock() {
            f(&mut u[i]);
        }
    }
}

/// The bytes of `[start, end)` of an upload's content: 1 MiB blocks each from its own
/// seed, so any part can be regenerated without keeping the file in memory.
pub fn content(seed: u64, start: u64, end: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((end - start) as usize);
    let mut block = start / MIB;
    while block * MIB < end {
        let mut buf = vec![0u8; MIB as usize];
        StdRng::seed_from_u64(seed ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .fill_bytes(&mut buf);
        let lo = start.max(block * MIB) - block * MIB;
        let hi = end.min((block + 1) * MIB) - block * MIB;
        out.extend_from_slice(&buf[lo as usize..hi as usize]);
        block += 1;
    }
    out
}

pub fn sha256_of(seed: u64, size: u64) -> String {
    let mut h = Sha256::new();
    let mut at = 0;
    while at < size {
        let end = (at + 8 * MIB).min(size);
        h.update(content(seed, at, end));
        at = end;
    }
    hex::encode(h.finalize())
}

/// The route of a path, for the error table: "resume", "report part", "status" …
fn route(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or_default();
    if path.contains("/parts/") {
        return "report part";
    }
    match path.rsplit('/').next() {
        Some("init") => "init",
        Some("resume") => "resume",
        Some("complete") => "complete",
        Some("abort") => "abort",
        Some("pause") => "pause",
        _ => "status",
    }
}

pub struct Api {
    http: reqwest::Client,
    bases: Vec<String>,
    key: String,
    next: AtomicUsize,
    pub stats: Arc<Stats>,
}

impl Api {
    pub fn new(bases: Vec<String>, key: String, stats: Arc<Stats>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            bases,
            key,
            next: AtomicUsize::new(0),
            stats,
        })
    }

    /// One API call, retried with backoff over both APIs until it gets an answer that is
    /// not 5xx/429 or the budget runs out. Returns (status, body).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idem: Option<&str>,
    ) -> Result<(u16, Value)> {
        let deadline = Instant::now() + CALL_BUDGET;
        let mut backoff = Duration::from_millis(100);
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len();
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.bases[i]))
                .header("x-api-key", &self.key);
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Some(k) = idem {
                req = req.header("Idempotency-Key", k);
            }
            let start = Instant::now();
            let result = req.send().await;
            let answer = match result {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let doc = r.json::<Value>().await.unwrap_or(Value::Null);
                    Some((status, doc))
                }
                Err(_) => None,
            };
            if let Ok(mut l) = self.stats.latencies.lock() {
                l.push((start, start.elapsed().as_secs_f64() * 1000.0));
            }
            match answer {
                Some((s, doc)) if s < 500 && s != 429 => {
                    if s >= 400 {
                        self.stats.error(format!("{s} {}", route(path)));
                    }
                    return Ok((s, doc));
                }
                Some((s, _)) => self.stats.error(format!("{s} {}", route(path))),
                None => self.stats.error(format!("conn {}", route(path))),
            }
            if Instant::now() > deadline {
                return Err(format!("{path}: no answer within the retry budget").into());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    pub async fn status(&self, token: &str) -> Result<(u16, Value)> {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/upload/multipart/{token}"),
            None,
            None,
        )
        .await
    }

    /// Fresh URLs for every missing part (resume waits for the upload to be active).
    async fn remaining(&self, token: &str) -> Result<BTreeMap<u64, String>> {
        let deadline = Instant::now() + CALL_BUDGET;
        loop {
            let (s, doc) = self
                .call(
                    reqwest::Method::POST,
                    "/api/v1/upload/multipart/resume?wait=10",
                    Some(&json!({"resumeToken": token})),
                    None,
                )
                .await?;
            if s == 200 {
                let mut urls = BTreeMap::new();
                for p in doc["remainingParts"].as_array().into_iter().flatten() {
                    if let (Some(n), Some(u)) = (p["partNumber"].as_u64(), p["url"].as_str()) {
                        urls.insert(n, u.to_string());
                    }
                }
                return Ok(urls);
            }
            if Instant::now() > deadline {
                return Err(format!("resume: {s} {doc}").into());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// PUT one part to its presigned URL; the ETag, retried like an API call.
    async fn put_part(&self, url: &str, bytes: Vec<u8>) -> Result<String> {
        let deadline = Instant::now() + CALL_BUDGET;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.http.put(url).body(bytes.clone()).send().await {
                Ok(r) if r.status().is_success() => {
                    return r
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                        .ok_or_else(|| "part PUT without ETag".into());
                }
                Ok(r) => self.stats.error(format!("s3 {}", r.status().as_u16())),
                Err(_) => self.stats.error("s3 conn".into()),
            }
            if Instant::now() > deadline {
                return Err("part PUT: retry budget spent".into());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Plain,
    Pause,
    Die,
    Abort,
}

/// A client: uploads one file after another until `stop`.
pub async fn run(api: Arc<Api>, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let size = rng.gen_range(MIB..=64 * MIB);
        let useed: u64 = rng.gen();
        let mode = match rng.gen_range(0..100) {
            0..=54 => Mode::Plain,
            55..=69 => Mode::Pause,
            70..=84 => Mode::Die,
            _ => Mode::Abort,
        };
        let nap = Duration::from_millis(rng.gen_range(500..5000));
        if let Err(e) = one_upload(&api, size, useed, mode, nap).await {
            eprintln!("[soak] client: {e}");
        }
    }
}

async fn one_upload(api: &Api, size: u64, seed: u64, mode: Mode, nap: Duration) -> Result<()> {
    let idem = uuid::Uuid::new_v4().to_string();
    let body = json!({"filename": "soak.bin", "fileSize": size,
        "contentType": "application/octet-stream", "partSize": PART});
    let (s, doc) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/upload/multipart/init?wait=10",
            Some(&body),
            Some(&idem),
        )
        .await?;
    if s != 200 && s != 202 {
        api.stats.init_failed.fetch_add(1, Ordering::Relaxed);
        return Err(format!("init: {s} {doc}").into());
    }
    let token = doc["resumeToken"]
        .as_str()
        .ok_or("init: no token")?
        .to_string();
    let index = {
        let mut u = api.stats.uploads.lock().map_err(|_| "poisoned")?;
        u.push(Record {
            token: token.clone(),
            upload_id: doc["uploadId"].as_str().unwrap_or_default().to_string(),
            file_key: doc["fileKey"].as_str().unwrap_or_default().to_string(),
            size,
            outcome: Outcome::InFlight,
            sha256: String::new(),
        });
        u.len() - 1
    };
    let result = drive(api, index, &token, size, seed, mode, nap).await;
    if let Err(e) = &result {
        api.stats
            .set(index, |r| r.outcome = Outcome::GaveUp(e.to_string()));
    }
    result
}

async fn drive(
    api: &Api,
    index: usize,
    token: &str,
    size: u64,
    seed: u64,
    mode: Mode,
    nap: Duration,
) -> Result<()> {
    let total = size.div_ceil(PART);
    let mut urls = api.remaining(token).await?;
    let half = total / 2 + 1;
    let mut interrupted = false;
    for n in 1..=total {
        if n == half && !interrupted {
            interrupted = true;
            match mode {
                Mode::Plain => {}
                Mode::Pause => {
                    api.call(
                        reqwest::Method::POST,
                        "/api/v1/upload/multipart/pause",
                        Some(&json!({"resumeToken": token})),
                        None,
                    )
                    .await?;
                    tokio::time::sleep(nap).await;
                    urls = api.remaining(token).await?;
                }
                Mode::Die => {
                    // The client forgets everything but its token, as a crashed browser tab.
                    tokio::time::sleep(nap).await;
                    urls = api.remaining(token).await?;
                }
                Mode::Abort => {
                    let (s, doc) = api
                        .call(
                            reqwest::Method::POST,
                            "/api/v1/upload/multipart/abort?wait=10",
                            Some(&json!({"resumeToken": token})),
                            None,
                        )
                        .await?;
                    if s != 200 && s != 202 {
                        return Err(format!("abort: {s} {doc}").into());
                    }
                    api.stats.set(index, |r| r.outcome = Outcome::Aborted);
                    return Ok(());
                }
            }
        }
        let Some(url) = urls.get(&n).cloned() else {
            continue; // already on storage (a resume listed it)
        };
        let start = (n - 1) * PART;
        let end = (n * PART).min(size);
        let etag = api.put_part(&url, content(seed, start, end)).await?;
        // Reporting is optional in the contract; its failures only show in the error table.
        let _ = api
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/upload/multipart/{token}/parts/{n}"),
                Some(&json!({"etag": etag, "size": end - start})),
                None,
            )
            .await;
    }
    let idem = uuid::Uuid::new_v4().to_string();
    let (s, doc) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/upload/multipart/complete?wait=10",
            Some(&json!({"resumeToken": token})),
            Some(&idem),
        )
        .await?;
    let mut status = doc["status"].as_str().unwrap_or_default().to_string();
    if !(s == 200 || s == 202 || s == 409) {
        return Err(format!("complete: {s} {doc}").into());
    }
    // Settle: poll until the upload leaves `completing`.
    let deadline = Instant::now() + CALL_BUDGET;
    while status != "completed" {
        if status == "failed" || Instant::now() > deadline {
            return Err(format!("complete settled as {status:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, d) = api.status(token).await?;
        status = d["status"].as_str().unwrap_or_default().to_string();
        if status == "completed" {
            let key = d["fileKey"].as_str().unwrap_or_default().to_string();
            api.stats.set(index, |r| r.file_key = key);
        }
    }
    // Regenerating up to 64 MiB is CPU work: off the runtime's threads.
    let sha = tokio::task::spawn_blocking(move || sha256_of(seed, size)).await?;
    api.stats.set(index, |r| {
        r.outcome = Outcome::Completed;
        r.sha256 = sha;
    });
    Ok(())
}
