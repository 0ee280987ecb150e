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
    /// Abandoned by the client, its expiry moved into the past, swept by a worker.
    Expired,
    /// The client gave up (its retry budget ran out, or a refusal it did not expect).
    GaveUp(String),
}

/// What the client found on storage right after its upload completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    /// Not (yet) verified: the upload did not complete for this client.
    No,
    /// The object existed with the content's sha256 (and was then deleted).
    Ok,
    /// No object under the upload's key.
    Missing,
    /// An object whose sha256 differs from the content's.
    WrongSha256(String),
}

#[derive(Clone, Debug)]
pub struct Record {
    pub token: String,
    pub upload_id: String,
    pub file_key: String,
    /// Uploaded by the `partway upload` binary rather than the raw API client.
    pub cli: bool,
    pub size: u64,
    pub outcome: Outcome,
    /// Hex sha256 of the content, set when completed.
    pub sha256: String,
    /// The object checked against `sha256` as soon as the upload completed.
    pub verified: Verified,
    /// The client deleted the object after verifying it (so the soak's storage stays
    /// small: ~5 GB of moto data per 10 minutes otherwise).
    pub deleted: bool,
}

impl Record {
    /// An upload a client just started (or found), not yet completed.
    pub fn in_flight(
        token: String,
        upload_id: String,
        file_key: String,
        size: u64,
        cli: bool,
    ) -> Record {
        Record {
            token,
            upload_id,
            file_key,
            cli,
            size,
            outcome: Outcome::InFlight,
            sha256: String::new(),
            verified: Verified::No,
            deleted: false,
        }
    }
}

#[derive(Default)]
pub struct Stats {
    /// (start of the call, latency in ms) of every API call answered at once: neither a
    /// `?wait` long-poll nor an expected refusal.
    pub latencies: Mutex<Vec<(Instant, f64)>>,
    /// Latency in ms of the `?wait` long-polls (answered when the upload settles).
    pub long_polls: Mutex<Vec<f64>>,
    /// Client-visible errors by status code ("conn" for connection errors).
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Refusals the contract gives for the state the client raced with (a complete of an
    /// upload not ready): answers, not errors.
    pub expected: Mutex<BTreeMap<String, u64>>,
    pub uploads: Mutex<Vec<Record>>,
    pub init_failed: AtomicUsize,
    /// Completes sent again after the upload completed that answered the same document.
    pub recompletes: AtomicUsize,
    /// … and those that did not (an invariant: DESIGN §4 promises the same 200).
    pub recomplete_mismatches: Mutex<Vec<String>>,
    /// `partway upload` runs SIGKILLed mid-way, and runs that failed and were run again.
    pub cli_kills: AtomicUsize,
    pub cli_reruns: AtomicUsize,
    /// Uploads a killed CLI run completed that the next run did not know of (it uploaded
    /// the file again): verified like the others.
    pub cli_extra_completed: AtomicUsize,
    /// Uploads of a CLI file other than the one the CLI finished, left unfinished: the CLI
    /// started the file again while an upload of it existed (e.g. an init retried without
    /// its Idempotency-Key). An invariant: a user's upload is never left behind.
    pub cli_orphans: Mutex<Vec<String>>,
}

impl Stats {
    fn count(map: &Mutex<BTreeMap<String, u64>>, what: String) {
        if let Ok(mut m) = map.lock() {
            *m.entry(what).or_default() += 1;
        }
    }
    fn error(&self, what: String) {
        Self::count(&self.errors, what);
    }
    /// Records an upload; its index.
    pub fn push(&self, r: Record) -> Result<usize> {
        let mut u = self.uploads.lock().map_err(|_| "poisoned")?;
        u.push(r);
        Ok(u.len() - 1)
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

/// Refusals every call takes as an answer: the upload is busy (`completing`, or not yet
/// `active`), which a client meets whenever it races a job.
const EXPECTED: &[(u16, &str)] = &[(409, "UPLOAD_NOT_READY")];

pub struct Api {
    http: reqwest::Client,
    bases: Vec<String>,
    key: String,
    next: AtomicUsize,
    pub stats: Arc<Stats>,
    /// Straight to moto (not through the counting proxy): the clients' verification.
    s3: aws_sdk_s3::Client,
    bucket: String,
    /// The cluster's database: an abandoned upload's expiry is moved into the past there.
    db_url: String,
    /// Where each `partway upload` run's stderr is kept (with the processes' logs).
    pub cli_logs: std::path::PathBuf,
}

impl Api {
    pub fn new(
        bases: Vec<String>,
        key: String,
        stats: Arc<Stats>,
        s3: aws_sdk_s3::Client,
        bucket: String,
        db_url: String,
    ) -> Result<Self> {
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
            s3,
            bucket,
            db_url,
            cli_logs: std::env::temp_dir(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `i`-th API's base URL (round robin).
    pub fn base(&self, i: usize) -> &str {
        &self.bases[i % self.bases.len()]
    }

    /// Moves an upload's expiry into the past so the workers' sweeper expires it (as the
    /// cluster tests do); retried while PostgreSQL is down.
    pub async fn expire_now(&self, file_key: &str) -> Result<()> {
        use sea_orm::{ConnectionTrait as _, Database, Statement, Value as V};
        let deadline = Instant::now() + CALL_BUDGET;
        loop {
            let attempt = async {
                let db = Database::connect(&self.db_url).await?;
                let r = db
                    .execute_raw(Statement::from_sql_and_values(
                        db.get_database_backend(),
                        "UPDATE uploads SET expires_at = now() - interval '1 second' \
                         WHERE file_key = $1",
                        [V::from(file_key.to_string())],
                    ))
                    .await;
                let _ = db.close().await;
                Ok::<_, crate::Error>(r?.rows_affected())
            };
            match attempt.await {
                Ok(1) => return Ok(()),
                Ok(n) => return Err(format!("expire {file_key}: {n} rows").into()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
    /// GETs the object and hashes it as it streams in; retried until the deadline
    /// unless storage answers that there is no such key.
    pub async fn verify(&self, key: &str, want: &str) -> Verified {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.object_sha256(key).await {
                Ok(Some(sha)) if sha == want => return Verified::Ok,
                Ok(Some(sha)) => return Verified::WrongSha256(sha),
                Ok(None) => return Verified::Missing,
                Err(e) if Instant::now() > deadline => {
                    eprintln!("[soak] verify {key}: {e}");
                    return Verified::Missing;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Ok(None): no such key.
    async fn object_sha256(&self, key: &str) -> Result<Option<String>> {
        let got = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let mut body = match got {
            Ok(o) => o.body,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut h = Sha256::new();
        while let Some(chunk) = body.try_next().await? {
            h.update(&chunk);
        }
        Ok(Some(hex::encode(h.finalize())))
    }

    /// Deletes a verified object; retried until the deadline.
    pub async fn delete_object(&self, key: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .s3
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await;
            match r {
                Ok(_) => return true,
                Err(e) if Instant::now() > deadline => {
                    eprintln!("[soak] delete {key}: {e}");
                    return false;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// One API call, retried with backoff over both APIs until it gets an answer that is
    /// not 5xx/429 or the budget runs out. Returns (status, body).
    /// `complete?wait=10` of `token`, under a fresh `Idempotency-Key`.
    pub async fn complete(&self, token: &str) -> Result<(u16, Value)> {
        let idem = uuid::Uuid::new_v4().to_string();
        self.call(
            reqwest::Method::POST,
            "/api/v1/upload/multipart/complete?wait=10",
            Some(&json!({"resumeToken": token})),
            Some(&idem),
        )
        .await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idem: Option<&str>,
    ) -> Result<(u16, Value)> {
        self.call_expecting(method, path, body, idem, &[]).await
    }

    /// `call`, where `expected` (status, error code) answers, besides `EXPECTED`, are the
    /// contract's answer to the state the client is in rather than errors: counted on
    /// their own, and kept out of the latency figures with the `?wait` long-polls.
    pub async fn call_expecting(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idem: Option<&str>,
        expected: &[(u16, &str)],
    ) -> Result<(u16, Value)> {
        let long_poll = path.contains("?wait=") || path.contains("&wait=");
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
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            let code = answer
                .as_ref()
                .and_then(|(_, d)| d["error"].as_str())
                .unwrap_or_default()
                .to_string();
            let is_expected = answer.as_ref().is_some_and(|(s, _)| {
                EXPECTED
                    .iter()
                    .chain(expected)
                    .any(|(es, ec)| es == s && *ec == code)
            });
            if long_poll {
                if let Ok(mut l) = self.stats.long_polls.lock() {
                    l.push(ms);
                }
            } else if !is_expected {
                if let Ok(mut l) = self.stats.latencies.lock() {
                    l.push((start, ms));
                }
            }
            match answer {
                Some((s, doc)) if s < 500 && s != 429 => {
                    if is_expected {
                        Stats::count(&self.stats.expected, format!("{s} {code} {}", route(path)));
                    } else if s >= 400 {
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
    /// Plain, then `complete` sent once more after the upload completed.
    Recomplete,
    /// The `partway upload` binary (cli.rs), SIGKILLed mid-way and rerun sometimes.
    Cli,
    Pause,
    Die,
    Abort,
    /// Stops half-way and never comes back: the soak moves the upload's expiry into the
    /// past and waits for the sweeper to expire it.
    Abandon,
}

/// A client: uploads one file after another until `stop`. `dir`: its CLI runs' temp
/// files and state.
pub async fn run(api: Arc<Api>, seed: u64, stop: Arc<AtomicBool>, dir: std::path::PathBuf) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let size = rng.gen_range(MIB..=64 * MIB);
        let useed: u64 = rng.gen();
        let mode = match rng.gen_range(0..100) {
            0..=29 => Mode::Plain,
            30..=44 => Mode::Recomplete,
            45..=59 => Mode::Cli,
            60..=66 => Mode::Pause,
            67..=79 => Mode::Die,
            80..=89 => Mode::Abort,
            _ => Mode::Abandon,
        };
        let nap = Duration::from_millis(rng.gen_range(500..5000));
        // Half the CLI uploads are killed once, at this fraction of their transfer.
        let kill_at = rng.gen_bool(0.5).then(|| rng.gen_range(0.1..0.9));
        let result = match mode {
            Mode::Cli => super::cli::upload(&api, &dir, size, useed, kill_at).await,
            _ => one_upload(&api, size, useed, mode, nap).await,
        };
        if let Err(e) = result {
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
    let index = api.stats.push(Record::in_flight(
        token.clone(),
        doc["uploadId"].as_str().unwrap_or_default().to_string(),
        doc["fileKey"].as_str().unwrap_or_default().to_string(),
        size,
        false,
    ))?;
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
                Mode::Plain | Mode::Recomplete | Mode::Cli => {}
                Mode::Abandon => return abandon(api, index, token).await,
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
    let (s, doc) = api.complete(token).await?;
    let mut status = doc["status"].as_str().unwrap_or_default().to_string();
    if !(s == 200 || s == 202 || s == 409) {
        return Err(format!("complete: {s} {doc}").into());
    }
    let mut file_key = doc["fileKey"].as_str().unwrap_or_default().to_string();
    let mut done = doc.clone();
    // Settle: poll until the upload leaves `completing`.
    let deadline = Instant::now() + CALL_BUDGET;
    while status != "completed" {
        if status == "failed" || Instant::now() > deadline {
            return Err(format!("complete settled as {status:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, d) = api.status(token).await?;
        status = d["status"].as_str().unwrap_or_default().to_string();
        if let Some(k) = d["fileKey"].as_str() {
            file_key = k.to_string();
        }
        done = d;
    }
    if matches!(mode, Mode::Recomplete) {
        recomplete(api, token, &done).await?;
    }
    completed(api, index, &file_key, seed, size).await
}

/// A client saw its upload (content `seed`, `size` bytes) completed: verify the object's
/// sha256 at once, record it, then delete the object.
pub async fn completed(
    api: &Api,
    index: usize,
    file_key: &str,
    seed: u64,
    size: u64,
) -> Result<()> {
    // Regenerating up to 64 MiB is CPU work: off the runtime's threads.
    let sha = tokio::task::spawn_blocking(move || sha256_of(seed, size)).await?;
    let verified = api.verify(file_key, &sha).await;
    let deleted = verified == Verified::Ok && api.delete_object(file_key).await;
    api.stats.set(index, |r| {
        if !file_key.is_empty() {
            r.file_key = file_key.to_string();
        }
        r.outcome = Outcome::Completed;
        r.sha256 = sha;
        r.verified = verified;
        r.deleted = deleted;
    });
    Ok(())
}

/// `complete` once more (a new idempotency key: a real repeat, not a replay) of a completed
/// upload: DESIGN §4 answers the same 200 again.
async fn recomplete(api: &Api, token: &str, first: &Value) -> Result<()> {
    let (s, doc) = api.complete(token).await?;
    // The fields a completed upload keeps (the URLs are presigned anew each time).
    let same = |f: &str| first[f].is_null() || first[f] == doc[f];
    if s == 200
        && doc["status"] == "completed"
        && ["fileKey", "fileSize", "etag", "resumeToken"]
            .iter()
            .all(|f| same(f))
    {
        api.stats.recompletes.fetch_add(1, Ordering::Relaxed);
    } else if let Ok(mut m) = api.stats.recomplete_mismatches.lock() {
        m.push(format!("{token}: {s} {doc} after {first}"));
    }
    Ok(())
}

/// The client walks away half-way; the soak then moves the upload's expiry into the past
/// and polls until a sweeper has expired it.
async fn abandon(api: &Api, index: usize, token: &str) -> Result<()> {
    let (_, doc) = api.status(token).await?;
    let key = doc["fileKey"].as_str().unwrap_or_default().to_string();
    api.expire_now(&key).await?;
    let deadline = Instant::now() + CALL_BUDGET;
    loop {
        let (_, d) = api.status(token).await?;
        match d["status"].as_str().unwrap_or_default() {
            "expired" => break,
            s @ ("completed" | "aborted" | "failed") => {
                return Err(format!("abandoned upload became {s}").into())
            }
            _ if Instant::now() > deadline => {
                return Err(format!("abandoned upload not expired: {d}").into())
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    api.stats.set(index, |r| r.outcome = Outcome::Expired);
    Ok(())
}
