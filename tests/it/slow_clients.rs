//! Slow or hostile clients (DESIGN §7): a client that trickles its request is
//! disconnected after the configured deadline, while a normal client is served at the
//! same time. Loopback only: raw `TcpStream`s against the service on port 0.
use std::time::{Duration, Instant};

use crate::common::{three_part_flow, TestApp};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Short deadlines so the tests take seconds.
fn slow_env() -> Vec<(String, String)> {
    vec![
        ("PARTWAY_HEADER_READ_TIMEOUT".into(), "1s".into()),
        ("PARTWAY_BODY_READ_TIMEOUT".into(), "1s".into()),
    ]
}

/// How the server ended a trickled request.
#[derive(Debug)]
struct Ended {
    after: Duration,
    /// What the server sent before closing (may be empty).
    answer: String,
}

/// Writes `head` at once, then `trickle` one byte every 200 ms, reading all the while;
/// returns when the server closes the connection (read gives EOF or an error, or a
/// write fails). Panics if that has not happened within `give_up`.
async fn trickle(addr: &str, head: &[u8], trickle: &[u8], give_up: Duration) -> Ended {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head).await.expect("write head");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let mut rest = trickle.iter();
    loop {
        assert!(
            started.elapsed() < give_up,
            "still connected after {give_up:?}; got {:?}",
            String::from_utf8_lossy(&answer)
        );
        if let Some(byte) = rest.next() {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    Ended {
        after: started.elapsed(),
        answer: String::from_utf8_lossy(&answer).into_owned(),
    }
}

/// Serves /healthz and a whole upload flow (over kept-alive connections).
async fn serve_normally(app: &TestApp) {
    let health = app
        .api
        .http
        .get(app.api.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success(), "{}", health.status());
    three_part_flow(&app.api).await;
}

fn assert_cut_off(ended: &Ended) {
    assert!(
        ended.after < Duration::from_secs(5),
        "cut off only after {:?}",
        ended.after
    );
    assert!(
        ended.answer.is_empty() || ended.answer.starts_with("HTTP/1.1 408"),
        "{}",
        ended.answer
    );
}

#[tokio::test]
async fn trickled_headers_are_cut_off_while_others_are_served() {
    let app = TestApp::spawn_with(slow_env()).await;
    let addr = app.api.base.trim_start_matches("http://").to_string();
    // ~50 bytes at 5 a second would take ~10 s; the deadline is 1 s.
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    let slow = trickle(&addr, b"", request.as_bytes(), Duration::from_secs(10));
    let (ended, ()) = tokio::join!(slow, serve_normally(&app));
    assert_cut_off(&ended);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_deadline() {
    let app = TestApp::spawn_with(slow_env()).await;
    let addr = app.api.base.trim_start_matches("http://").to_string();
    let ended = trickle(&addr, b"", b"", Duration::from_secs(10)).await;
    assert_cut_off(&ended);
}

#[tokio::test]
async fn a_trickled_json_body_is_cut_off_while_others_are_served() {
    let app = TestApp::spawn_with(slow_env()).await;
    let addr = app.api.base.trim_start_matches("http://").to_string();
    let body = br#"{"filename": "slow.bin", "fileSize": 1048576, "contentType": "application/octet-stream"}"#;
    let head = format!(
        "POST /api/v1/upload/multipart/init HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        app.api.key,
        body.len()
    );
    // ~90 bytes at 5 a second would take ~18 s; the deadline is 1 s.
    let slow = trickle(&addr, head.as_bytes(), body, Duration::from_secs(10));
    let (ended, ()) = tokio::join!(slow, serve_normally(&app));
    assert_cut_off(&ended);
}

#[tokio::test]
async fn a_quick_json_body_is_not_cut_off() {
    // The deadline bounds the body's read only: a whole upload flow under it works.
    let app = TestApp::spawn_with(slow_env()).await;
    three_part_flow(&app.api).await;
}

/// Sends a `GET /healthz` on `stream` and waits up to `wait` for the answer's status
/// line; None when nothing came.
async fn health_answer(stream: &mut TcpStream, addr: &str, wait: Duration) -> Option<String> {
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Err(_) => None,
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(other) => panic!("connection closed without an answer: {other:?}"),
    }
}

#[tokio::test]
async fn a_connection_over_the_cap_waits_until_another_closes() {
    let app = TestApp::spawn_with(vec![
        ("PARTWAY_MAX_CONNECTIONS".into(), "2".into()),
        ("PARTWAY_HEADER_READ_TIMEOUT".into(), "60s".into()),
    ])
    .await;
    let addr = app.api.base.trim_start_matches("http://").to_string();
    // Two idle connections take both slots (accepted in order, before the third).
    let first = TcpStream::connect(&addr).await.expect("connect");
    let _second = TcpStream::connect(&addr).await.expect("connect");
    let mut third = TcpStream::connect(&addr).await.expect("connect (backlog)");
    assert_eq!(
        health_answer(&mut third, &addr, Duration::from_secs(1)).await,
        None,
        "served beyond the cap"
    );
    drop(first);
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("the waiting connection is served once a slot frees")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Opens `GET …/events` for `token` with `key`.
async fn open_events(api: &crate::common::Api, token: &str, key: &str) -> reqwest::Response {
    api.http
        .get(api.url(&format!("/api/v1/upload/multipart/{token}/events")))
        .header("x-api-key", key)
        .send()
        .await
        .expect("events request")
}

/// Reads the stream until the server ends it; panics if it is still open at `within`.
async fn read_to_end(mut stream: reqwest::Response, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    let mut text = String::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Err(_) => panic!("stream still open after {within:?}: {text}"),
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Ok(None)) | Ok(Err(_)) => return text,
        }
    }
}

#[tokio::test]
async fn an_owner_holds_at_most_max_event_streams_and_a_closed_one_frees_its_slot() {
    let app = TestApp::spawn_with(vec![("PARTWAY_MAX_EVENT_STREAMS".into(), "2".into())]).await;
    let init = app.api.init("streams.bin", 1024).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let first = open_events(&app.api, &token, &app.api.key).await;
    let second = open_events(&app.api, &token, &app.api.key).await;
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    let (status, body) =
        crate::common::read(open_events(&app.api, &token, &app.api.key).await).await;
    crate::common::assert_error(status, &body, 403, "QUOTA_EXCEEDED");
    // Another owner has its own slots.
    let (_, other_key) = partway_core::auth::create_key(
        &partway_core::store::Store::new(app.app.db().clone()),
        "other",
    )
    .await
    .unwrap();
    let other_init = {
        let other = crate::common::Api::new(app.api.base.clone(), other_key.clone());
        other.init("other.bin", 1024).await
    };
    let other_token = other_init["resumeToken"].as_str().unwrap();
    assert_eq!(
        open_events(&app.api, other_token, &other_key)
            .await
            .status(),
        200
    );
    // A client that goes away gives its slot back.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let again = open_events(&app.api, &token, &app.api.key).await;
        if again.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);
}

#[tokio::test]
async fn an_event_stream_ends_at_its_max_age() {
    let app = TestApp::spawn_with(vec![("PARTWAY_EVENT_STREAM_MAX_AGE".into(), "2s".into())]).await;
    let init = app.api.init("aged.bin", 1024).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let started = Instant::now();
    let stream = open_events(&app.api, &token, &app.api.key).await;
    let text = read_to_end(stream, Duration::from_secs(20)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ended early: {text}"
    );
    assert!(text.contains("\"status\":\"active\""), "{text}");
    let (_, doc) = app
        .api
        .get(&format!("/api/v1/upload/multipart/{token}"))
        .await;
    assert_eq!(doc["status"], "active", "the upload itself goes on");
}

#[tokio::test]
async fn revoking_the_key_ends_its_open_event_stream() {
    let app = TestApp::spawn_with(vec![("PARTWAY_EVENT_STREAM_RECHECK".into(), "1s".into())]).await;
    let store = partway_core::store::Store::new(app.app.db().clone());
    let (key_row, key) = partway_core::auth::create_key(&store, "revoked")
        .await
        .unwrap();
    let api = crate::common::Api::new(app.api.base.clone(), key.clone());
    let init = api.init("revoked.bin", 1024).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let mut stream = open_events(&api, &token, &key).await;
    assert_eq!(stream.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("first event")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("data: {"));
    partway_core::auth::revoke_key(&store, key_row.id)
        .await
        .unwrap();
    read_to_end(stream, Duration::from_secs(15)).await;
    let (status, body) = api.get(&format!("/api/v1/upload/multipart/{token}")).await;
    crate::common::assert_error(status, &body, 401, "UNAUTHORIZED");
}
