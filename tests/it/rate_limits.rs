//! Request rate limits (DESIGN §7) over HTTP: 429 `RATE_LIMITED` with `Retry-After` and
//! `RateLimit-*` headers past the limit, per credential and, without a valid one, per
//! client address; probes, metrics and docs never limited; with Redis, one budget for
//! every API replica, and requests allowed (fail open, counted) while Redis is down.
//! Loopback only: a second client address is 127.0.0.2.
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::common::{cluster::Cluster, private::PrivateService, *};
use reqwest::{header::HeaderMap, Client, StatusCode};
use serde_json::Value;

const LIST: &str = "/api/v1/uploads";

fn header(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.parse().ok()
}

/// One GET: status, headers, body.
async fn get(http: &Client, url: &str, key: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    let mut request = http.get(url);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.expect("request");
    let headers = response.headers().clone();
    let (status, body) = read(response).await;
    (status, headers, body)
}

fn client_from(address: &str) -> Client {
    Client::builder()
        .local_address(address.parse::<IpAddr>().ok())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn over_the_credential_limit_answers_429_with_retry_after_and_ratelimit_headers() {
    let app = TestApp::spawn_with(vec![("PARTWAY_RATE_LIMIT".into(), "5/m".into())]).await;
    let url = app.url(LIST);
    let key = app.key.clone();
    for expected_remaining in (0..5).rev() {
        let (status, headers, body) = get(&app.http, &url, Some(&key)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(header(&headers, "ratelimit-limit"), Some(5));
        assert_eq!(
            header(&headers, "ratelimit-remaining"),
            Some(expected_remaining)
        );
        let reset = header(&headers, "ratelimit-reset").expect("RateLimit-Reset");
        assert!((1..=60).contains(&reset), "reset {reset}");
    }
    let (status, headers, body) = get(&app.http, &url, Some(&key)).await;
    assert_error(status, &body, 429, "RATE_LIMITED");
    // One request per 12 s; Retry-After is whole seconds, rounded up.
    let retry_after = header(&headers, "retry-after").expect("Retry-After");
    assert!(
        (11..=12).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(header(&headers, "ratelimit-limit"), Some(5));
    assert_eq!(header(&headers, "ratelimit-remaining"), Some(0));
    assert!(header(&headers, "ratelimit-reset").is_some_and(|r| (55..=60).contains(&r)));
    // Every limited route, POSTs included, and the Bearer form of the same key.
    let (status, body) = app
        .post("/api/v1/upload/multipart/init", serde_json::json!({}))
        .await;
    assert_error(status, &body, 429, "RATE_LIMITED");
    let response = app.http.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    // Another credential has its own budget.
    let store = partway_core::store::Store::new(app.app.db().clone());
    let (_, other) = partway_core::auth::create_key(&store, "other")
        .await
        .unwrap();
    let (status, _, body) = get(&app.http, &url, Some(&other)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Refusals are counted.
    let (_, _, metrics) = get(&app.http, &app.url("/metrics"), None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("partway_rate_limited_total{subject=\"credential\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn probes_metrics_spec_and_docs_are_never_limited() {
    let app = TestApp::spawn_with(vec![
        ("PARTWAY_RATE_LIMIT".into(), "1/h".into()),
        ("PARTWAY_RATE_LIMIT_ANON".into(), "1/h".into()),
    ])
    .await;
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.yaml", "/docs"] {
        for _ in 0..5 {
            for key in [None, Some(app.key.as_str())] {
                let (status, headers, body) = get(&app.http, &app.url(path), key).await;
                assert_eq!(status, StatusCode::OK, "{path}: {body}");
                assert!(headers.get("ratelimit-limit").is_none(), "{path}");
            }
        }
    }
    // While the API itself is limited at once.
    let (status, _, _) = get(&app.http, &app.url(LIST), Some(&app.key)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = get(&app.http, &app.url(LIST), Some(&app.key)).await;
    assert_error(status, &body, 429, "RATE_LIMITED");
}

#[tokio::test]
async fn without_a_valid_credential_requests_are_limited_per_client_address() {
    let app = TestApp::spawn_with(vec![("PARTWAY_RATE_LIMIT_ANON".into(), "3/h".into())]).await;
    let url = app.url(LIST);
    let here = client_from("127.0.0.1");
    // No key, then a wrong key: both anonymous, one budget for the address.
    for key in [None, None, Some("pw_not-a-key")] {
        let (status, headers, body) = get(&here, &url, key).await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
        assert_eq!(header(&headers, "ratelimit-limit"), Some(3));
    }
    let (status, headers, body) = get(&here, &url, Some("pw_another-wrong-key")).await;
    assert_error(status, &body, 429, "RATE_LIMITED");
    assert!(header(&headers, "retry-after").is_some_and(|s| s > 1000));
    let (status, _, body) = get(&here, &app.url("/api/v1/nothing-here"), None).await;
    assert_error(status, &body, 429, "RATE_LIMITED");

    // Another address (still loopback) has its own budget.
    let there = client_from("127.0.0.2");
    let (status, _, body) = get(&there, &url, None).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    // A valid credential is never held to the anonymous budget.
    let (status, _, body) = get(&here, &url, Some(&app.key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// `partway_rate_limiter_errors_total` of one API process.
async fn limiter_errors(api: &Api) -> u64 {
    let (_, _, text) = get(&api.http, &api.url("/metrics"), None).await;
    text.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("partway_rate_limiter_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("partway_rate_limiter_errors_total in /metrics")
}

async fn status_of(api: &Api) -> StatusCode {
    get(&api.http, &api.url(LIST), Some(&api.key)).await.0
}

#[tokio::test]
async fn two_api_processes_share_one_budget_on_redis_and_fail_open_while_it_is_down() {
    let Some(redis) = PrivateService::start("redis") else {
        return;
    };
    // 20 an hour: nothing refills during the test, so the count is exact.
    let Some(mut cluster) = Cluster::start_with(
        0,
        vec![
            ("PARTWAY_REDIS_URL".into(), redis.url()),
            ("PARTWAY_RATE_LIMIT".into(), "20/h".into()),
        ],
    )
    .await
    else {
        return;
    };
    let second = cluster.add_api();
    let first = &cluster.api;
    let replicas = [first, &second];

    let mut allowed = [0u32; 2];
    for i in 0..40 {
        let status = status_of(replicas[i % 2]).await;
        match status {
            StatusCode::OK => allowed[i % 2] += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        allowed[0] + allowed[1],
        20,
        "one budget of 20 across both replicas: {allowed:?}"
    );
    assert!(allowed[0] > 0 && allowed[1] > 0, "{allowed:?}");

    // Redis stops: both replicas allow every request, and count the limiter's errors.
    let errors_before = limiter_errors(first).await;
    redis.stop();
    for api in replicas {
        let deadline = Instant::now() + Duration::from_secs(20);
        while status_of(api).await != StatusCode::OK {
            assert!(Instant::now() < deadline, "never failed open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..25 {
            assert_eq!(status_of(api).await, StatusCode::OK, "fail open");
        }
    }
    let errors_after = limiter_errors(first).await;
    assert!(
        errors_after >= errors_before + 25,
        "errors {errors_before} → {errors_after}"
    );

    // Redis is back (empty): each replica reconnects and limiting resumes; the fresh
    // budget is one for both, so at most 20 more pass (plus any let through while a
    // replica was still reconnecting, which is failing open again).
    redis.restart();
    for api in replicas {
        let deadline = Instant::now() + Duration::from_secs(30);
        while status_of(api).await != StatusCode::TOO_MANY_REQUESTS {
            assert!(Instant::now() < deadline, "limiting did not resume");
        }
    }
    for api in replicas {
        assert_eq!(status_of(api).await, StatusCode::TOO_MANY_REQUESTS);
    }
}
