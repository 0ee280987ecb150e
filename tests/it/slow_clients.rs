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
