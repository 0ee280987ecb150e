//! The distributed mode with real services: `partway-api` + two `partway-worker`
//! processes, PostgreSQL, RabbitMQ, Redis and an S3 endpoint (moto), all started
//! by `scripts/test`. Each test gets its own database, queue names and bucket.
use std::time::{Duration, Instant};

use crate::common::{cluster::Cluster, *};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn three_part_flow_through_api_and_two_workers() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    // Several uploads so both workers get jobs (prefetch spreads them).
    for _ in 0..4 {
        three_part_flow(&cluster.api).await;
    }
    let (done0, done1) = (cluster.jobs_done_by(0), cluster.jobs_done_by(1));
    assert!(
        done0 > 0 && done1 > 0,
        "both workers consumed jobs: {done0} and {done1}"
    );
    for n in 0..2 {
        assert!(
            !cluster.worker_log(n).contains("\"test\""),
            "no secret in worker logs"
        );
    }
}

#[tokio::test]
async fn ten_thousand_part_init_through_rabbitmq_is_usable_early_and_complete() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let api = &cluster.api;
    let started = Instant::now();
    let (status, doc) = api
        .post(
            "/api/v1/upload/multipart/init",
            json!({"filename": "huge.iso", "fileSize": 10_000u64 * 5 * MIB as u64, "contentType": "application/octet-stream"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    let token = doc["resumeToken"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first_page_at = None;
    loop {
        let (_, doc) = api.get(&format!("/api/v1/upload/multipart/{token}")).await;
        let ready = doc["urlsReady"].as_u64().unwrap_or(0);
        if first_page_at.is_none() && ready >= 1000 {
            first_page_at = Some(started.elapsed());
            let (status, page) = api
                .get(&format!(
                    "/api/v1/upload/multipart/{token}/parts?limit=1000"
                ))
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            assert_eq!(page["parts"].as_array().unwrap().len(), 1000);
        }
        if ready == 10_000 {
            break;
        }
        assert!(Instant::now() < deadline, "URLs never all ready: {doc}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "first page after {:?}, all 10,000 after {:?}",
        first_page_at.unwrap(),
        started.elapsed()
    );
    let mut urls = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let (_, page) = api
            .get(&format!(
                "/api/v1/upload/multipart/{token}/parts?state=all&after={after}"
            ))
            .await;
        for part in page["parts"].as_array().unwrap() {
            urls.insert(part["url"].as_str().unwrap().to_string());
        }
        match page["nextAfter"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(urls.len(), 10_000);
}

#[tokio::test]
async fn events_stream_status_documents_until_completion() {
    let Some(cluster) = Cluster::start(1).await else {
        return;
    };
    let api = &cluster.api;
    let file = test_bytes(MIB, 9);
    let init = api.init("sse.bin", MIB).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let mut stream = api
        .http
        .get(api.url(&format!("/api/v1/upload/multipart/{token}/events")))
        .header("x-api-key", &api.key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let etag = api
        .put_part(init["partUrls"][0]["url"].as_str().unwrap(), file)
        .await;
    let (status, done) = api
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token, "parts": [{"partNumber": 1, "etag": etag}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text.contains("\"status\":\"completed\"") {
        let chunk = tokio::time::timeout_at(deadline.into(), stream.chunk())
            .await
            .expect("event in time")
            .unwrap();
        match chunk {
            Some(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            None => break,
        }
    }
    assert!(text.contains("data: {"), "{text}");
    assert!(text.contains("\"status\":\"completed\""), "{text}");
}

/// GET a URL's body as text.
async fn text_of(api: &crate::common::Api, url: &str) -> (StatusCode, String) {
    let response = api.http.get(url).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_requests_jobs_and_uploads_on_their_own_addresses() {
    let api_port = crate::common::private::free_port();
    let worker_port = crate::common::private::free_port();
    let api_bind = vec![(
        "PARTWAY_METRICS_BIND".into(),
        format!("127.0.0.1:{api_port}"),
    )];
    let Some(mut cluster) = Cluster::start_with(0, api_bind).await else {
        return;
    };
    cluster.add_worker_with(&[("PARTWAY_METRICS_BIND", format!("127.0.0.1:{worker_port}"))]);
    let api = &cluster.api;
    api.init("m.bin", MIB).await;
    // With PARTWAY_METRICS_BIND, the API's own listener does not serve /metrics.
    let (status, _) = text_of(api, &api.url("/metrics")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, text) = text_of(api, &format!("http://127.0.0.1:{api_port}/metrics")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.contains("partway_http_requests_total{route=\"init\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("partway_uploads{status=\"active\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("partway_queue_depth{kind=\"init\"} 0"),
        "{text}"
    );
    let (status, ready) = read(api.http.get(api.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    // The worker's job counters, polled: its metrics listener may start a moment
    // after the job ran.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = api
            .http
            .get(format!("http://127.0.0.1:{worker_port}/metrics"))
            .send()
            .await;
        if let Ok(response) = answer {
            let worker = response.text().await.unwrap();
            if worker.contains("partway_job_runs_total{kind=\"init\",outcome=\"done\"} 1") {
                assert!(
                    worker.contains("partway_presigned_urls_total 1"),
                    "{worker}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{worker}");
        } else {
            assert!(Instant::now() < deadline, "worker metrics never answered");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_worker_killed_mid_presign_has_its_job_redelivered_and_finished() {
    let Some(mut cluster) = Cluster::start(1).await else {
        return;
    };
    let (status, doc) = cluster
        .api
        .post(
            "/api/v1/upload/multipart/init",
            json!({"filename": "killed.iso", "fileSize": 10_000u64 * 5 * MIB as u64, "contentType": "application/octet-stream"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    let token = doc["resumeToken"].as_str().unwrap().to_string();
    let status_path = format!("/api/v1/upload/multipart/{token}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, doc) = cluster.api.get(&status_path).await;
        let ready = doc["urlsReady"].as_u64().unwrap_or(0);
        if ready > 0 && ready < 10_000 {
            break;
        }
        assert!(
            ready < 10_000,
            "presigning finished before the worker could be killed"
        );
        assert!(Instant::now() < deadline, "presigning never started: {doc}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.workers[0].kill().expect("kill -9 the worker");
    cluster.workers[0].wait().unwrap();
    let (_, partial) = cluster.api.get(&status_path).await;
    assert!(partial["urlsReady"].as_u64().unwrap() < 10_000, "{partial}");
    cluster.add_worker();
    let doc = cluster
        .api
        .wait_until_ready(&token, Instant::now() + Duration::from_secs(120))
        .await;
    assert_eq!(doc["urlsReady"], json!(10_000), "{doc}");
    assert!(
        cluster.jobs_done_by(1) >= 1,
        "the new worker finished the redelivered job"
    );
    // Still one storage upload: the parts page works and a complete-able upload id is set.
    let (status, page) = cluster
        .api
        .get(&format!("/api/v1/upload/multipart/{token}/parts?limit=10"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
}

/// Forwards to `target`, holding requests that start with `POST ` and name an
/// `uploadId` (CompleteMultipartUpload) for `hold` before passing them on.
async fn start_completion_delaying_proxy(target: String, hold: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = target.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let mut first = vec![0u8; 16 * 1024];
                let Ok(n) = client.read(&mut first).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&first[..n]).to_string();
                if head.starts_with("POST ")
                    && head.lines().next().is_some_and(|l| l.contains("uploadId="))
                {
                    tokio::time::sleep(hold).await;
                }
                if server.write_all(&first[..n]).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_worker_killed_mid_complete_has_the_upload_completed_once_and_intact() {
    let Some(s3) = required_service("PARTWAY_TEST_S3_ENDPOINT") else {
        return;
    };
    let proxy = start_completion_delaying_proxy(s3, Duration::from_secs(4)).await;
    let Some(mut cluster) =
        Cluster::start_with(1, vec![("PARTWAY_S3_ENDPOINT".into(), proxy)]).await
    else {
        return;
    };
    let file = test_bytes(FILE_SIZE, 23);
    let init = cluster.api.init("complete-me.bin", FILE_SIZE).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let mut parts = Vec::new();
    for part in init["partUrls"].as_array().unwrap() {
        let etag = cluster
            .api
            .put_part(part["url"].as_str().unwrap(), slice(&file, part))
            .await;
        parts.push(json!({"partNumber": part["partNumber"], "etag": etag}));
    }
    let (status, doc) = cluster
        .api
        .post(
            "/api/v1/upload/multipart/complete",
            json!({"resumeToken": token, "parts": parts}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    // The worker is now inside CompleteMultipartUpload (held by the proxy): kill it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster
        .worker_log(0)
        .lines()
        .any(|l| l.contains("job started") && l.contains("\"kind\":\"complete\""))
    {
        assert!(Instant::now() < deadline, "the complete job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.workers[0].kill().expect("kill -9 the worker");
    cluster.workers[0].wait().unwrap();
    let (_, doc) = cluster
        .api
        .get(&format!("/api/v1/upload/multipart/{token}"))
        .await;
    assert_eq!(doc["status"], json!("completing"), "{doc}");

    cluster.add_worker();
    let (status, done) = cluster
        .api
        .post(
            "/api/v1/upload/multipart/complete?wait=60",
            json!({"resumeToken": token, "parts": parts}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], json!("completed"));
    assert_eq!(
        sha256(
            &cluster
                .api
                .download(done["downloadUrl"].as_str().unwrap())
                .await
        ),
        sha256(&file)
    );
    assert!(
        cluster.jobs_done_by(1) >= 1,
        "the new worker finished the redelivered job"
    );
}

#[tokio::test]
async fn two_concurrent_completes_through_two_workers_complete_once() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let api = &cluster.api;
    let file = test_bytes(FILE_SIZE, 31);
    let init = api.init("twice.bin", FILE_SIZE).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let mut parts = Vec::new();
    for part in init["partUrls"].as_array().unwrap() {
        let etag = api
            .put_part(part["url"].as_str().unwrap(), slice(&file, part))
            .await;
        parts.push(json!({"partNumber": part["partNumber"], "etag": etag}));
    }
    let body = json!({"resumeToken": token, "parts": parts});
    let (a, b) = tokio::join!(
        api.post("/api/v1/upload/multipart/complete?wait=30", body.clone()),
        api.post("/api/v1/upload/multipart/complete?wait=30", body.clone())
    );
    assert_eq!(a.0, StatusCode::OK, "{}", a.1);
    assert_eq!(b.0, StatusCode::OK, "{}", b.1);
    assert_eq!(a.1["etag"], b.1["etag"]);
    let completes: usize = (0..2)
        .map(|n| {
            cluster
                .worker_log(n)
                .lines()
                .filter(|l| l.contains("upload completed"))
                .count()
        })
        .sum();
    assert_eq!(completes, 1, "one storage complete");
    assert_eq!(
        sha256(&api.download(a.1["downloadUrl"].as_str().unwrap()).await),
        sha256(&file)
    );
}
