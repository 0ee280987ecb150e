//! Row 7: webhook delivery (DESIGN §6). A receiver on loopback answers 204 to every
//! request; a cluster with 1, then 2 workers delivers one `upload.aborted` event per upload
//! for a batch of uploads aborted at once (each: an abort job on moto, then a webhook job).
//! Reported: events delivered per second over the batch (first abort request to last
//! delivery), and the p99 from the status change (the event's `createdAt`, written with
//! the change) to the receiver reading the request.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::{env, http, init, progress, row, start_cluster, Result, Row, State};

const CLIENTS: usize = 16;

/// When each request arrived, with its body.
type Log = Arc<Mutex<Vec<(SystemTime, String)>>>;

async fn receiver() -> Result<(u16, Log)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let log: Log = Arc::default();
    let shared = log.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = shared.clone();
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
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((SystemTime::now(), body));
                    buf.drain(..head_end + length);
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
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "{:.0} events/s; status change → delivery p50 {:.0} ms, p99 {:.0} ms",
            self.events_per_sec, self.p50_ms, self.p99_ms
        )
    }
}

pub async fn row_events(state: &mut State) -> Result<Vec<Row>> {
    let uploads: usize = std::env::var("PARTWAY_BENCH_EVENT_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut runs = Vec::new();
    for workers in [1, 2] {
        progress(&format!(
            "row 7: {uploads} uploads aborted, {workers} worker(s)"
        ));
        let (port, log) = receiver().await?;
        let allowed = format!("127.0.0.1:{port}");
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
        runs.push(measure(&cluster.base, &cluster.key, port, &log, uploads).await?);
    }
    let (one, two) = (&runs[0], &runs[1]);
    Ok(vec![row(
        &format!(
            "7. Webhook delivery: {uploads} uploads aborted at once (abort job + webhook job each) to a loopback receiver, 2 workers vs 1"
        ),
        two.describe(),
        one.describe(),
        format!("{:.2}×", two.events_per_sec / one.events_per_sec),
        "first attempt < 5 s",
        Some(two.p99_ms < 5000.0 && one.p99_ms < 5000.0),
    )])
}

async fn measure(base: &str, key: &str, port: u16, log: &Log, uploads: usize) -> Result<Run> {
    let http = http();
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
    let tokens: Vec<String> = futures::stream::iter(0..uploads)
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
        .collect::<Result<_>>()?;
    let start = Instant::now();
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
    aborted.into_iter().collect::<Result<Vec<()>>>()?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let n = log.lock().unwrap_or_else(|e| e.into_inner()).len();
        if n >= uploads {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {n} of {uploads} events delivered within 180 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
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
        events_per_sec: uploads as f64 / secs,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
    })
}
