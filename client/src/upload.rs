//! `partway upload`: init (or resume from the state file), stream the parts to storage with
//! at most N in flight, report each, complete.
use std::{
    collections::HashMap,
    io::{IsTerminal, SeekFrom},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, UNIX_EPOCH},
};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use partway_protocol::{
    dto::{
        CompleteResult, InitRequest, InitResult, PartDoc, PartReport, ResumeResult, StatusDoc,
        UploadList,
    },
    ErrorCode, UploadStatus,
};
use reqwest::{header, Method};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{backoff, chain, state, util, Answer, ApiError, Client};

/// Tries per part PUT on network errors and 5xx.
const PART_TRIES: u32 = 6;
/// Fresh-URL rounds per part on 403 (expired URL) before giving up.
const PART_REFRESHES: u32 = 6;
/// The metadata entry that carries a file's fingerprint (canonical path + size + mtime).
const FINGERPRINT_KEY: &str = "fingerprint";
/// Read size when streaming a part from the file.
const CHUNK: usize = 256 * 1024;
/// How long to poll for a queued job that outlived `?wait=60`.
const SETTLE_DEADLINE: Duration = Duration::from_secs(600);

pub struct UploadOptions {
    pub file: PathBuf,
    /// Parts in flight at once.
    pub parallel: usize,
    /// Requested part size; the server's choice when `None`.
    pub part_size: Option<u64>,
    /// Show the progress bar (it is hidden anyway when stdout is not a terminal).
    pub progress: bool,
    /// Test hook: sleep before each part.
    pub part_delay: Option<Duration>,
}

/// What a finished upload reports (`--json`).
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    pub resume_token: String,
    pub status: String,
    pub file_key: String,
    pub url: String,
    pub download_url: Option<String>,
    pub file_size: u64,
    pub total_parts: u64,
    /// Whether this run picked up an earlier, interrupted upload.
    pub resumed: bool,
    /// Parts PUT by this run.
    pub parts_uploaded: u64,
    /// Bytes PUT by this run.
    pub bytes_uploaded: u64,
    /// Times part URLs had expired and were fetched again.
    pub url_refreshes: u32,
    pub elapsed: Duration,
    /// The parts phase alone (PUTs to storage and their reports), without init and complete.
    pub transfer: Duration,
}

impl UploadOutcome {
    pub fn to_json(&self) -> Value {
        let secs = self.elapsed.as_secs_f64();
        json!({
            "resumeToken": self.resume_token,
            "status": self.status,
            "fileKey": self.file_key,
            "url": self.url,
            "downloadUrl": self.download_url,
            "fileSize": self.file_size,
            "totalParts": self.total_parts,
            "resumed": self.resumed,
            "partsUploaded": self.parts_uploaded,
            "bytesUploaded": self.bytes_uploaded,
            "urlRefreshes": self.url_refreshes,
            "elapsedSeconds": (secs * 1000.0).round() / 1000.0,
            "transferSeconds": (self.transfer.as_secs_f64() * 1000.0).round() / 1000.0,
            "bytesPerSecond": if secs > 0.0 { (self.bytes_uploaded as f64 / secs).round() } else { 0.0 },
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Part {
    number: u64,
    start: u64,
    size: u64,
}

/// Parts still to upload, with their URLs.
struct Plan {
    token: String,
    total_parts: u64,
    parts: Vec<Part>,
    urls: HashMap<u64, String>,
    uploaded_bytes: u64,
}

fn parts_of(docs: Vec<PartDoc>) -> (Vec<Part>, HashMap<u64, String>) {
    let mut parts = Vec::new();
    let mut urls = HashMap::new();
    for p in docs {
        let number = u64::from(p.part_number);
        parts.push(Part {
            number,
            start: p.start,
            size: p.size,
        });
        urls.insert(number, Arc::unwrap_or_clone(p.url));
    }
    parts.sort_by_key(|p| p.number);
    (parts, urls)
}

// One per call: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Resumed {
    Plan(Plan),
    /// The upload had already been completed (the previous run died after complete).
    Completed(StatusDoc),
    /// Gone (expired, aborted, failed, unknown): start over.
    Gone(String),
}

fn say(pb: Option<&ProgressBar>, text: &str) {
    match pb {
        Some(pb) => pb.suspend(|| eprintln!("partway: {text}")),
        None => eprintln!("partway: {text}"),
    }
}

impl Client {
    /// Uploads a file; Ctrl-C stops it cleanly and leaves the state for the next run.
    pub async fn upload(&self, options: &UploadOptions) -> Result<UploadOutcome, String> {
        tokio::select! {
            result = self.upload_inner(options) => result,
            _ = tokio::signal::ctrl_c() => Err(format!(
                "interrupted; run the same command again to resume the upload of {}",
                options.file.display()
            )),
        }
    }

    async fn upload_inner(&self, options: &UploadOptions) -> Result<UploadOutcome, String> {
        let started = Instant::now();
        let path = &options.file;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{}: not a regular file", path.display()));
        }
        // Opening it now turns an unreadable file into an error before anything is created.
        std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let canonical =
            std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let size = meta.len();
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()))
            .unwrap_or_default();
        let state_key = format!("{}|{size}|{mtime}", canonical.display());
        let fingerprint = util::fingerprint(&state_key);
        let filename = canonical
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: the file name is not valid UTF-8", path.display()))?
            .to_string();

        let mut resumed = false;
        let mut plan = None;
        // The state file knows the upload of this file, or the key of an init whose run
        // died before the answer; without it (another state dir, a wiped home), the
        // server finds it by the fingerprint sent as metadata at init.
        let entry = state::get(&state_key).filter(|e| e.server == self.base);
        let unanswered_init = entry.as_ref().and_then(|e| e.init_key.clone());
        let (earlier, in_state) = match entry.and_then(|e| e.resume_token) {
            Some(token) => (Some(token), true),
            None if unanswered_init.is_some() => (None, true),
            None => (self.find_unfinished(&fingerprint, size).await?, false),
        };
        if let Some(token) = earlier {
            match self.resume_plan(&token).await? {
                Resumed::Plan(p) => {
                    say(
                        None,
                        &format!(
                            "resuming {token}: {} of {} parts already stored",
                            p.total_parts - p.parts.len() as u64,
                            p.total_parts
                        ),
                    );
                    resumed = true;
                    plan = Some(p);
                    if !in_state {
                        self.remember(&state_key, &token)?;
                    }
                }
                Resumed::Completed(doc) => {
                    let _ = state::remove(&state_key);
                    return Ok(outcome(Completed::Status(doc), true, 0, 0, 0, started));
                }
                Resumed::Gone(why) => {
                    say(
                        None,
                        &format!("the earlier upload {token} is {why}; starting over"),
                    );
                    let _ = state::remove(&state_key);
                }
            }
        }
        let init = |key: String, reused: bool| {
            self.init(
                &filename,
                size,
                &canonical,
                options.part_size,
                &fingerprint,
                &state_key,
                key,
                reused,
            )
        };
        if let (None, Some(key)) = (&plan, unanswered_init) {
            // The same key again: the server answers with the upload that init made, if it
            // got there, and what storage holds of it is resumed.
            match init(key, true).await? {
                Resumed::Plan(p) => {
                    say(
                        None,
                        &format!(
                            "resuming {}: {} of {} parts already stored",
                            p.token,
                            p.total_parts - p.parts.len() as u64,
                            p.total_parts
                        ),
                    );
                    resumed = true;
                    plan = Some(p);
                }
                Resumed::Completed(doc) => {
                    let _ = state::remove(&state_key);
                    return Ok(outcome(Completed::Status(doc), true, 0, 0, 0, started));
                }
                Resumed::Gone(why) => {
                    say(None, &format!("the earlier upload is {why}; starting over"));
                }
            }
        }
        let plan = match plan {
            Some(plan) => plan,
            None => match init(uuid::Uuid::new_v4().to_string(), false).await? {
                Resumed::Plan(plan) => plan,
                Resumed::Completed(doc) => {
                    return Err(format!("upload {} is already completed", doc.resume_token))
                }
                Resumed::Gone(why) => return Err(format!("the new upload is {why}")),
            },
        };

        let pb = progress_bar(
            options.progress,
            size,
            plan.uploaded_bytes,
            plan.total_parts,
            plan.parts.len() as u64,
        );
        let transfer = Transfer {
            client: self,
            file: canonical.clone(),
            token: plan.token.clone(),
            book: tokio::sync::Mutex::new(UrlBook {
                generation: 0,
                urls: plan.urls,
                stored: HashMap::new(),
            }),
            pb: pb.clone(),
            delay: options.part_delay,
            refreshes: AtomicU32::new(0),
            bytes: AtomicU64::new(0),
            parts_done: AtomicU64::new(plan.total_parts - plan.parts.len() as u64),
            total_parts: plan.total_parts,
        };
        let parts_to_send = plan.parts.len() as u64;
        let transfer_started = Instant::now();
        futures::stream::iter(plan.parts.iter().map(|part| transfer.send_part(*part)))
            .buffer_unordered(options.parallel.max(1))
            .try_collect::<Vec<()>>()
            .await
            .inspect_err(|_| pb.abandon())?;
        let transfer_elapsed = transfer_started.elapsed();
        pb.set_message("completing…");

        let completed = self.complete(&plan.token).await?;
        pb.finish_and_clear();
        let _ = state::remove(&state_key);
        let mut result = outcome(
            completed,
            resumed,
            parts_to_send,
            transfer.bytes.load(Ordering::Relaxed),
            transfer.refreshes.load(Ordering::Relaxed),
            started,
        );
        result.transfer = transfer_elapsed;
        Ok(result)
    }

    /// Init under `key`, written to the state file before the request leaves. `reused`: an
    /// earlier run sent it and died before the answer, so the upload may hold parts.
    #[allow(clippy::too_many_arguments)]
    async fn init(
        &self,
        filename: &str,
        size: u64,
        path: &Path,
        part_size: Option<u64>,
        fingerprint: &str,
        state_key: &str,
        key: String,
        reused: bool,
    ) -> Result<Resumed, String> {
        let body = InitRequest {
            filename: filename.to_string(),
            file_size: size,
            content_type: util::content_type_for(path).to_string(),
            part_size,
            metadata: Some([(FINGERPRINT_KEY.to_string(), fingerprint.to_string())].into()),
            ..Default::default()
        };
        state::put(
            state_key,
            state::Entry {
                server: self.base.clone(),
                resume_token: None,
                init_key: Some(key.clone()),
            },
        )?;
        let answer = self
            .post_with_key::<InitResult>("/upload/multipart/init?wait=60", &body, &key)
            .await
            .map_err(|e| format!("starting the upload failed: {e}"))?;
        let token = match &answer {
            Answer::Done(init) => init.resume_token.clone(),
            Answer::Accepted(doc) => doc.resume_token.clone(),
        };
        // Written right away: from here on an interrupted run resumes this upload.
        self.remember(state_key, &token)?;
        match answer {
            Answer::Done(init) if !reused => {
                let (parts, urls) = parts_of(init.part_urls);
                Ok(Resumed::Plan(Plan {
                    total_parts: init.total_parts.into(),
                    token,
                    parts,
                    urls,
                    uploaded_bytes: 0,
                }))
            }
            // 202 (the init job outlived the wait), or an earlier run's upload: let it
            // settle, then resume for what is missing.
            _ => self.resume_plan(&token).await,
        }
    }

    /// Records in the state file that this file's upload is `token` on this server.
    fn remember(&self, state_key: &str, token: &str) -> Result<(), String> {
        state::put(
            state_key,
            state::Entry {
                server: self.base.clone(),
                resume_token: Some(token.to_string()),
                init_key: None,
            },
        )
    }

    /// The newest unfinished upload of this owner whose metadata carries `fingerprint`
    /// and whose size matches.
    async fn find_unfinished(
        &self,
        fingerprint: &str,
        size: u64,
    ) -> Result<Option<String>, String> {
        let path = format!(
            "/uploads?limit=20&metadata={}",
            util::path_segment(&format!("{FINGERPRINT_KEY}:{fingerprint}"))
        );
        let list: UploadList = self
            .get(&path)
            .await
            .map_err(|e| format!("looking for an unfinished upload of this file failed: {e}"))?;
        Ok(list
            .uploads
            .into_iter()
            .find(|u| {
                u.file_size == Some(size)
                    && matches!(
                        u.upload_status(),
                        Some(
                            UploadStatus::Initiating | UploadStatus::Active | UploadStatus::Paused
                        )
                    )
            })
            .map(|u| u.resume_token))
    }

    /// Resume: what storage holds and fresh URLs for the rest.
    async fn resume_plan(&self, token: &str) -> Result<Resumed, String> {
        for _ in 0..5 {
            match self.upload_action::<ResumeResult>("resume", token).await {
                Ok(Answer::Done(resumed)) => {
                    let (parts, urls) = parts_of(resumed.remaining_parts);
                    return Ok(Resumed::Plan(Plan {
                        token: token.to_string(),
                        total_parts: resumed.total_parts.into(),
                        uploaded_bytes: resumed.progress.uploaded_bytes,
                        parts,
                        urls,
                    }));
                }
                // 202: the resume job outlived the wait; poll, then ask again.
                Ok(Answer::Accepted(_)) => {}
                Err(e) if e.is(ErrorCode::UploadAlreadyCompleted) => {
                    return Ok(Resumed::Completed(self.status(token).await?.doc));
                }
                Err(e) if e.is(ErrorCode::UploadNotReady) => {}
                Err(e)
                    if e.status() == 404 || e.status() == 410 || e.is(ErrorCode::UploadAborted) =>
                {
                    return Ok(Resumed::Gone(match e {
                        ApiError::Http { code, .. } => code.to_lowercase().replace('_', " "),
                        other => other.to_string(),
                    }));
                }
                Err(e) => return Err(format!("resuming upload {token} failed: {e}")),
            }
            let doc = self.settle(token).await?;
            match doc.upload_status() {
                Some(UploadStatus::Completed) => return Ok(Resumed::Completed(doc)),
                Some(UploadStatus::Active | UploadStatus::Paused) => {}
                _ => return Ok(Resumed::Gone(doc.status)),
            }
        }
        Err(format!(
            "resuming upload {token} failed: the server kept it busy"
        ))
    }

    /// Polls the status document until the upload is neither initiating nor completing.
    async fn settle(&self, token: &str) -> Result<StatusDoc, String> {
        let deadline = Instant::now() + SETTLE_DEADLINE;
        loop {
            let doc = self.status(token).await?.doc;
            if !matches!(
                doc.upload_status(),
                Some(UploadStatus::Initiating | UploadStatus::Completing)
            ) {
                return Ok(doc);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "upload {token} is still {} after {SETTLE_DEADLINE:?}",
                    doc.status
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Complete with the parts storage lists; polls when the job outlives the wait.
    async fn complete(&self, token: &str) -> Result<Completed, String> {
        let answer = self
            .upload_action::<CompleteResult>("complete", token)
            .await
            .map_err(|e| format!("completing upload {token} failed: {e}"))?;
        if let Answer::Done(result) = answer {
            return Ok(Completed::Answer(result));
        }
        let doc = self.settle(token).await?;
        if doc.upload_status() == Some(UploadStatus::Completed) {
            return Ok(Completed::Status(doc));
        }
        let why = doc.last_error.as_ref().map_or("", |e| e.message.as_str());
        Err(format!(
            "completing upload {token} failed: it is {} {why}",
            doc.status
        ))
    }
}

/// A completed upload: complete's answer, or the status document once a complete that
/// outlived the wait (or an earlier run) finished it.
// One value per upload: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Completed {
    Answer(CompleteResult),
    Status(StatusDoc),
}

fn outcome(
    completed: Completed,
    resumed: bool,
    parts: u64,
    bytes: u64,
    refreshes: u32,
    started: Instant,
) -> UploadOutcome {
    let (resume_token, status, file_key, url, download_url, file_size, total_parts) =
        match completed {
            Completed::Answer(r) => (
                r.resume_token,
                r.status,
                r.file_key,
                r.url,
                Some(r.download_url),
                r.file_size,
                r.total_parts,
            ),
            Completed::Status(d) => (
                d.resume_token,
                d.status,
                d.file_key,
                d.url.unwrap_or_default(),
                d.download_url,
                d.file_size.unwrap_or_default(),
                d.total_parts.unwrap_or_default(),
            ),
        };
    UploadOutcome {
        resume_token,
        status,
        file_key,
        url,
        download_url,
        file_size,
        total_parts: total_parts.into(),
        resumed,
        parts_uploaded: parts,
        bytes_uploaded: bytes,
        url_refreshes: refreshes,
        elapsed: started.elapsed(),
        transfer: Duration::ZERO,
    }
}

fn progress_bar(
    show: bool,
    size: u64,
    done_bytes: u64,
    total_parts: u64,
    remaining: u64,
) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::hidden());
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_position(done_bytes.min(size));
    // The rate and ETA count from here: bytes stored by an earlier run are not this run's.
    // Done before the bar is shown, so no frame shows them as this run's rate.
    pb.reset_eta();
    pb.set_message(format!("{}/{total_parts} parts", total_parts - remaining));
    if show && std::io::stdout().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::stderr());
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

struct UrlBook {
    /// Bumped on every resume, so concurrent 403s refresh once.
    generation: u64,
    urls: HashMap<u64, String>,
    /// Parts storage already holds (from the last resume): number → etag.
    stored: HashMap<u64, String>,
}

struct Transfer<'a> {
    client: &'a Client,
    file: PathBuf,
    token: String,
    book: tokio::sync::Mutex<UrlBook>,
    pb: ProgressBar,
    delay: Option<Duration>,
    refreshes: AtomicU32,
    bytes: AtomicU64,
    parts_done: AtomicU64,
    total_parts: u64,
}

enum PutError {
    /// 403: the presigned URL expired (or was otherwise refused): fetch fresh ones.
    Expired,
    Retry(String),
    Fatal(String),
}

impl Transfer<'_> {
    async fn send_part(&self, part: Part) -> Result<(), String> {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let n = part.number;
        let mut tries = 0;
        let mut refreshes = 0;
        let etag = loop {
            let (generation, url, stored) = {
                let book = self.book.lock().await;
                (
                    book.generation,
                    book.urls.get(&n).cloned(),
                    book.stored.get(&n).cloned(),
                )
            };
            let Some(url) = url else {
                match stored {
                    // A resume found it already in storage (a PUT that answered too late).
                    Some(etag) => break etag,
                    None => return Err(format!("part {n}: the server gave no URL for it")),
                }
            };
            match self.put(&url, part).await {
                Ok(etag) => break etag,
                Err(PutError::Expired) => {
                    refreshes += 1;
                    if refreshes > PART_REFRESHES {
                        return Err(format!("part {n}: storage keeps refusing fresh URLs (403)"));
                    }
                    self.refresh(generation).await?;
                }
                Err(PutError::Retry(why)) => {
                    tries += 1;
                    if tries >= PART_TRIES {
                        return Err(format!("part {n}: {why} (gave up after {tries} tries)"));
                    }
                    tokio::time::sleep(backoff(tries, 500)).await;
                }
                Err(PutError::Fatal(why)) => return Err(format!("part {n}: {why}")),
            }
        };
        let body = PartReport {
            etag,
            size: part.size,
        };
        let token = util::path_segment(&self.token);
        self.client
            .api(
                Method::PUT,
                &format!("/upload/multipart/{token}/parts/{n}"),
                Some(&body),
            )
            .await
            .map_err(|e| format!("reporting part {n} failed: {e}"))?;
        let done = self.parts_done.fetch_add(1, Ordering::Relaxed) + 1;
        self.pb
            .set_message(format!("{done}/{} parts", self.total_parts));
        Ok(())
    }

    /// Fresh URLs for the remaining parts, unless another part already fetched them.
    async fn refresh(&self, seen_generation: u64) -> Result<(), String> {
        let mut book = self.book.lock().await;
        if book.generation != seen_generation {
            return Ok(());
        }
        let answer = self
            .client
            .upload_action::<ResumeResult>("resume", &self.token)
            .await
            .map_err(|e| format!("fetching fresh part URLs failed: {e}"))?;
        let Answer::Done(resumed) = answer else {
            // 202: the job outlived the wait; the next 403 asks again.
            book.generation += 1;
            return Ok(());
        };
        let (_, urls) = parts_of(resumed.remaining_parts);
        let fresh = urls.len();
        book.urls = urls;
        book.stored = resumed
            .uploaded_parts
            .into_iter()
            .map(|p| (p.part_number.into(), p.etag))
            .collect();
        book.generation += 1;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        say(
            Some(&self.pb),
            &format!("part URLs expired; fetched fresh ones for {fresh} remaining parts"),
        );
        Ok(())
    }

    /// One PUT of the part, streamed from the file in CHUNK reads; returns the ETag.
    async fn put(&self, url: &str, part: Part) -> Result<String, PutError> {
        let io =
            |e: std::io::Error| PutError::Fatal(format!("reading {}: {e}", self.file.display()));
        let mut file = tokio::fs::File::open(&self.file).await.map_err(io)?;
        file.seek(SeekFrom::Start(part.start)).await.map_err(io)?;
        let sent = Arc::new(AtomicU64::new(0));
        let reader = file.take(part.size);
        let stream = futures::stream::unfold(
            Some((reader, self.pb.clone(), sent.clone())),
            |state| async move {
                let (mut reader, pb, sent) = state?;
                let mut buf = vec![0u8; CHUNK];
                match reader.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        pb.inc(n as u64);
                        sent.fetch_add(n as u64, Ordering::Relaxed);
                        Some((Ok(Bytes::from(buf)), Some((reader, pb, sent))))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            },
        );
        let result = self
            .client
            .http
            .put(url)
            .header(header::CONTENT_LENGTH, part.size)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        let undo = || self.pb.dec(sent.load(Ordering::Relaxed));
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                undo();
                return Err(PutError::Retry(chain(&e)));
            }
        };
        let status = response.status();
        if status.is_success() {
            let etag = response
                .headers()
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return match etag {
                Some(etag) => {
                    self.bytes.fetch_add(part.size, Ordering::Relaxed);
                    Ok(etag)
                }
                None => {
                    undo();
                    Err(PutError::Fatal(
                        "storage answered without an ETag header (for a real bucket, check its CORS ExposeHeaders)".into(),
                    ))
                }
            };
        }
        undo();
        let text = response.text().await.unwrap_or_default();
        let detail = storage_error(&text);
        if status == reqwest::StatusCode::FORBIDDEN {
            Err(PutError::Expired)
        } else if status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Err(PutError::Retry(format!(
                "storage answered {status}{detail}"
            )))
        } else {
            Err(PutError::Fatal(format!(
                "storage answered {status}{detail}"
            )))
        }
    }
}

/// `: Code: Message` from an S3 XML error body, if any.
fn storage_error(body: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!(": {code}: {message}"),
        (Some(code), None) => format!(": {code}"),
        _ => String::new(),
    }
}
