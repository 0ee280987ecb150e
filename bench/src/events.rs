//! Row 7: webhook delivery (DESIGN §6). A receiver on loopback answers 204; a cluster with
//! 1, then 2 workers delivers one `upload.aborted` event per upload.
//!
//! - Latency: a batch of uploads aborted at once (each an abort job on moto, then a webhook
//!   job); the p50/p99 from the status change (the event's `createdAt`, written with the
//!   change) to the receiver reading the request, and events/s from the first abort to the
//!   last delivery (bounded by how fast the aborts happen).
//! - Throughput: the same, but the receiver holds every request until all the events exist
//!   (no upload left `aborting`), then answers: events delivered per second from the
//!   backlog, from the release to the last request.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::watch,
};

use crate::{env, http, init, progress, row, start_cluster, Result, Row, State};

const CLIENTS: usize = 16;

/// When each request arrived, with its body.
type Log = Arc<Mutex<Vec<(SystemTime, String)>>>;

/// A receiver; while `hold` is true it reads requests but answers none.
async fn receiver(hold: watch::Receiver<bool>) -> Result<(u16, Log)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let log: Log = Arc::default();
    let shared = log.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = shared.clone();
            let mut hold = hold.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    // One request (keep-alive: several per connection).
                    let (head_end, length) = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, length);
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body =
                        String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
                    buf.drain(..head_end + length);
                    while *hold.borrow_and_update() {
                        if hold.changed().await.is_err() {
                            return;
                        }
                    }
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((SystemTime::now(), body));
                    if socket
                        .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, log))
}

struct Run {
    /// Delivered from a held backlog, per second.
    backlog_per_sec: f64,
    events_per_sec: f64,
    /// How long the API took to accept every abort.
    aborts_secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "{:.0} events/s delivered from a backlog; status change → delivery p50 {:.0} ms, p99 {:.0} ms ({:.0} events/s from the first abort, aborts accepted in {:.1} s)",
            self.backlog_per_sec, self.p50_ms, self.p99_ms, self.events_per_sec, self.aborts_secs
        )
    }
}

pub async fn row_events(state: &mut State) -> Result<Vec<Row>> {
    let uploads: usize = std::env::var("PARTWAY_BENCH_EVENT_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let mut runs = Vec::new();
    for workers in [1, 2] {
        progress(&format!(
            "row 7: {uploads} uploads aborted, {workers} worker(s)"
        ));
        let (_open, never) = watch::channel(false);
        let (port, log) = receiver(never).await?;
        let (hold, held) = watch::channel(true);
        let (held_port, held_log) = receiver(held).await?;
        let allowed = format!("127.0.0.1:{port},127.0.0.1:{held_port}");
        let cluster = start_cluster(
            state,
            workers,
            &env("PARTWAY_TEST_S3_ENDPOINT")?,
            &[
                ("PARTWAY_ALLOWED_ENDPOINTS", allowed.as_str()),
                ("PARTWAY_RATE_LIMIT", "off"),
            ],
        )
        .await?;
        let mut run = measure(&cluster.base, &cluster.key, port, &log, uploads).await?;
        run.backlog_per_sec = backlog(
            &cluster.base,
            &cluster.key,
            held_port,
            &held_log,
            &hold,
            uploads,
        )
        .await?;
        runs.push(run);
    }
    let (one, two) = (&runs[0], &runs[1]);
    Ok(vec![row(
        &format!(
            "7. Webhook delivery: {uploads} uploads aborted at once (abort job + webhook job each) to a loopback receiver, 2 workers vs 1"
        ),
        two.describe(),
        one.describe(),
        format!("{:.2}× (backlog)", two.backlog_per_sec / one.backlog_per_sec),
        "first attempt < 5 s",
        Some(two.p99_ms < 5000.0 && one.p99_ms < 5000.0),
    )])
}

/// Registers `port`'s receiver for `upload.aborted`; the endpoint's id.
async fn register(http: &reqwest::Client, base: &str, key: &str, port: u16) -> Result<String> {
    let (status, body) = {
        let resp = http
            .post(format!("{base}/api/v1/webhooks"))
            .header("x-api-key", key)
            .json(&json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["upload.aborted"]}))
            .send()
            .await?;
        (resp.status(), resp.json::<Value>().await?)
    };
    if !status.is_success() {
        return Err(format!("webhook: {status} {body}").into());
    }
    Ok(body["id"].as_str().ok_or("no webhook id")?.to_string())
}

/// `count` active uploads; their resume tokens.
async fn uploads_to_abort(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    count: usize,
) -> Result<Vec<String>> {
    futures::stream::iter(0..count)
        .map(|_| {
            let http = http.clone();
            async move {
                let doc = init(&http, base, key, 60, 1024, None).await?;
                doc["resumeToken"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| crate::Error::from("no token"))
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<Result<String>>>()
        .await
        .into_iter()
        .collect()
}

/// Aborts every upload, `CLIENTS` at a time.
async fn abort_all(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    tokens: Vec<String>,
) -> Result<()> {
    let aborted: Vec<Result<()>> = futures::stream::iter(tokens)
        .map(|token| {
            let http = http.clone();
            async move {
                http.post(format!("{base}/api/v1/upload/multipart/abort"))
                    .header("x-api-key", key)
                    .json(&json!({"resumeToken": token}))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    aborted.into_iter().collect::<Result<Vec<()>>>().map(drop)
}

/// Polls until `log` holds `count` requests (or fails at the deadline).
async fn wait_for(log: &Log, count: usize, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        // Distinct events: a request held past partway's timeout is sent again (same id).
        let n = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(_, body)| {
                serde_json::from_str::<Value>(body).ok()?["id"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect::<std::collections::HashSet<_>>()
            .len();
        if n >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {n} of {count} events delivered within {within:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Events per second delivered from a backlog: the receiver holds every request until no
/// upload is still `aborting` (every event exists), then answers.
async fn backlog(
    base: &str,
    key: &str,
    port: u16,
    log: &Log,
    hold: &watch::Sender<bool>,
    uploads: usize,
) -> Result<f64> {
    let http = http();
    register(&http, base, key, port).await?;
    let tokens = uploads_to_abort(&http, base, key, uploads).await?;
    abort_all(&http, base, key, tokens).await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let page: Value = http
            .get(format!("{base}/api/v1/uploads?status=aborting&limit=1"))
            .header("x-api-key", key)
            .send()
            .await?
            .json()
            .await?;
        if page["uploads"].as_array().is_some_and(|u| u.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            return Err("aborts did not finish within 180 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let released = Instant::now();
    hold.send_replace(false);
    wait_for(log, uploads, Duration::from_secs(180)).await?;
    Ok(uploads as f64 / released.elapsed().as_secs_f64())
}

async fn measure(base: &str, key: &str, port: u16, log: &Log, uploads: usize) -> Result<Run> {
    let http = http();
    let id = register(&http, base, key, port).await?;
    let tokens = uploads_to_abort(&http, base, key, uploads).await?;
    let start = Instant::now();
    abort_all(&http, base, key, tokens).await?;
    let aborts_secs = start.elapsed().as_secs_f64();
    wait_for(log, uploads, Duration::from_secs(180)).await?;
    let secs = start.elapsed().as_secs_f64();
    // The backlog run that follows has its own endpoint.
    http.delete(format!("{base}/api/v1/webhooks/{id}"))
        .header("x-api-key", key)
        .send()
        .await?
        .error_for_status()?;
    let mut latencies: Vec<f64> = log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|(at, body)| {
            let event: Value = serde_json::from_str(body).ok()?;
            let created =
                chrono::DateTime::parse_from_rfc3339(event["createdAt"].as_str()?).ok()?;
            let at: chrono::DateTime<chrono::Utc> = (*at).into();
            Some((at - created.with_timezone(&chrono::Utc)).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Ok(Run {
        backlog_per_sec: 0.0,
        events_per_sec: uploads as f64 / secs,
        aborts_secs,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
    })
}
