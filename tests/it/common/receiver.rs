//! A webhook receiver for tests: a minimal HTTP/1.1 server on 127.0.0.1 (port 0) that
//! records every request (headers, body, when) and answers as the test says: a status,
//! or no answer at all until told (a request held open).
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::watch,
};

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub at: Instant,
    /// The status this request was answered with (None: held open, then dropped).
    pub answered: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_string()
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// This status until the instant, then 200.
    StatusUntil(u16, Instant),
    /// Hold the request open without answering (until the mode changes).
    Hang,
}

pub struct Receiver {
    pub url: String,
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    mode: watch::Sender<Answer>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (mode, mode_rx) = watch::channel(answer);
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let mode = mode_rx.clone();
                tokio::spawn(serve(socket, log, mode));
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            received,
            mode,
            task,
        }
    }

    pub fn set(&self, answer: Answer) {
        self.mode.send_replace(answer);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Polls until `done` holds for what was received, or panics at the deadline.
    pub async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: {what} not within {within:?}; got {:#?}",
                got.iter()
                    .map(|r| (
                        r.event_type(),
                        r.header("webhook-id").to_string(),
                        r.answered
                    ))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    log: Arc<Mutex<Vec<Received>>>,
    mut mode: watch::Receiver<Answer>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut headers = BTreeMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[header_end..header_end + length]).to_string();
    let index = {
        let mut log = log.lock().unwrap();
        log.push(Received {
            headers,
            body,
            at: Instant::now(),
            answered: None,
        });
        log.len() - 1
    };
    let answer = *mode.borrow_and_update();
    let status = match answer {
        Answer::Status(s) => s,
        Answer::StatusUntil(s, until) if Instant::now() < until => s,
        Answer::StatusUntil(..) => 200,
        Answer::Hang => {
            // Held open until the mode changes (the test kills the sender meanwhile),
            // then dropped without an answer.
            let _ = mode.changed().await;
            return;
        }
    };
    log.lock().unwrap()[index].answered = Some(status);
    let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Checks every request with the Standard Webhooks reference verifier (PyPI
/// `standardwebhooks`, `tests/webhooks/verify.py`), not partway's code. None when the
/// verifier is not installed (and not required).
pub fn verify_signatures(secret: &str, requests: &[Received]) -> Option<()> {
    let python = super::required_service("PARTWAY_TEST_WEBHOOK_VERIFIER")?;
    let verdicts = run_verifier(&python, secret, requests);
    assert_eq!(verdicts.len(), requests.len(), "verifier: {verdicts:?}");
    assert!(verdicts.iter().all(|l| l == "ok"), "verifier: {verdicts:?}");
    // A wrong secret must fail, or the check above proves nothing.
    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(
        run_verifier(&python, wrong, &requests[..1])
            .iter()
            .all(|l| l.starts_with("bad")),
        "the verifier accepted a wrong secret"
    );
    Some(())
}

fn run_verifier(python: &str, secret: &str, requests: &[Received]) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/verify.py");
    let mut input = String::new();
    for r in requests {
        let headers: BTreeMap<&str, &str> =
            ["webhook-id", "webhook-timestamp", "webhook-signature"]
                .into_iter()
                .map(|h| (h, r.header(h)))
                .collect();
        input.push_str(
            &serde_json::json!({"secret": secret, "headers": headers, "body": r.body}).to_string(),
        );
        input.push('\n');
    }
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the verifier");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes())
        .expect("write to the verifier");
    let out = child.wait_with_output().expect("verifier output");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
