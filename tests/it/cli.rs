//! The `partway upload|status|abort|ls` client against the all-in-one service, run as the
//! real binary.
use std::{
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use crate::common::{gate::Gate, sha256, test_bytes, TestApp, MIB};
use serde_json::Value;
use tokio::process::Command;

const BIG: usize = 64 * MIB;

/// The client binary, pointed at `app` with its own state dir.
fn partway(app: &TestApp, state_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_partway"));
    cmd.env("PARTWAY_SERVER", &app.base)
        .env("PARTWAY_API_KEY", &app.key)
        .env("PARTWAY_STATE_DIR", state_dir)
        .env_remove("PARTWAY_CLIENT_PART_DELAY_MS")
        .env_remove("RUST_BACKTRACE")
        .kill_on_drop(true);
    cmd
}

/// A deterministic file of `len` bytes in `dir`; returns its path and sha256.
fn write_file(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, String) {
    let bytes = test_bytes(len, seed);
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, sha256(&bytes))
}

fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().expect("some output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

/// Downloads the object through the status document's `downloadUrl`.
async fn downloaded_sha(app: &TestApp, token: &str) -> String {
    let (status, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["status"], "completed", "{doc}");
    sha256(&app.download(doc["downloadUrl"].as_str().unwrap()).await)
}

async fn uploads(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get("/api/v1/uploads").await;
    assert_eq!(status, 200, "{body}");
    body["uploads"].as_array().unwrap().clone()
}

fn state_entries(state_dir: &Path) -> serde_json::Map<String, Value> {
    match std::fs::read(state_dir.join("uploads.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(_) => Default::default(),
    }
}

/// The answer to an init is lost on the way (the server made the upload): the client's
/// retry carries the same `Idempotency-Key`, so there is one upload, not an orphan beside
/// the one it finishes. The chaos soak saw the second upload.
#[tokio::test]
async fn an_init_whose_answer_was_lost_is_retried_into_the_same_upload() {
    let app = TestApp::spawn().await;
    let gate = Gate::start(&app.base).await;
    gate.lose_next_answer_to("/upload/multipart/init");
    let dir = tempfile::tempdir().unwrap();
    let (file, want) = write_file(dir.path(), "lost.bin", 6 * MIB, 5);
    let output = partway(&app, dir.path())
        .env("PARTWAY_SERVER", gate.endpoint())
        .args(["upload", file.to_str().unwrap(), "--json"])
        .output()
        .await
        .unwrap();
    let result = last_json(&output);
    assert_eq!(gate.lost(), 1, "the init's answer was lost");
    let all = uploads(&app).await;
    assert_eq!(all.len(), 1, "one upload: {all:?}");
    let token = result["resumeToken"].as_str().unwrap();
    assert_eq!(all[0]["resumeToken"], token);
    assert_eq!(downloaded_sha(&app, token).await, want);
}

/// A run is killed while its init is on the way; the init reaches the server only after
/// the next run has finished the file. The next run sends the same `Idempotency-Key`
/// (kept in the state file before the init left), so both inits are one upload: none is
/// left behind. The chaos soak saw the second upload.
#[tokio::test]
async fn a_run_killed_during_its_init_leaves_no_second_upload() {
    let app = TestApp::spawn().await;
    let gate = Gate::start(&app.base).await;
    gate.hold_next("/upload/multipart/init");
    let dir = tempfile::tempdir().unwrap();
    let (file, want) = write_file(dir.path(), "killed.bin", 6 * MIB, 9);
    let mut first = partway(&app, dir.path())
        .env("PARTWAY_SERVER", gate.endpoint())
        .args(["upload", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gate.held() == 0 {
        assert!(Instant::now() < deadline, "the init never left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().await.unwrap();
    let entries = state_entries(dir.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = entries.values().next().unwrap();
    assert!(
        entry["initKey"].is_string() && entry.get("resumeToken").is_none(),
        "{entry}"
    );

    let second = partway(&app, dir.path())
        .env("PARTWAY_SERVER", gate.endpoint())
        .args(["upload", file.to_str().unwrap(), "--json"])
        .output()
        .await
        .unwrap();
    let result = last_json(&second);
    let token = result["resumeToken"].as_str().unwrap();
    assert_eq!(downloaded_sha(&app, token).await, want);

    // Now the first run's init arrives.
    gate.open();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gate.answered_after_hold() == 0 {
        assert!(
            Instant::now() < deadline,
            "the held init was never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = uploads(&app).await;
    assert_eq!(all.len(), 1, "one upload: {all:?}");
    assert_eq!(all[0]["resumeToken"], token);
    assert!(state_entries(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_64mib_and_download_matches() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, want) = write_file(dir.path(), "big.bin", BIG, 11);

    let started = Instant::now();
    let output = partway(&app, dir.path())
        .args(["upload", file.to_str().unwrap()])
        .args(["--part-size", "5MiB", "--parallel", "4", "--json"])
        .output()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let result = last_json(&output);
    eprintln!(
        "64 MiB upload: {:.2}s wall, {:.1} MiB/s ({result})",
        elapsed.as_secs_f64(),
        64.0 / elapsed.as_secs_f64()
    );
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["totalParts"], 13, "{result}");
    assert_eq!(result["resumed"], false, "{result}");
    assert!(result["fileKey"].as_str().unwrap().ends_with("/big.bin"));
    assert!(result["url"].as_str().unwrap().starts_with("http"));
    let token = result["resumeToken"].as_str().unwrap();
    assert_eq!(downloaded_sha(&app, token).await, want);
    assert!(state_entries(dir.path()).is_empty(), "state is removed");

    // status, ls and abort against the same server.
    let output = partway(&app, dir.path())
        .args(["status", token])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("completed") && text.contains("13/13 parts"),
        "{text}"
    );
    let output = partway(&app, dir.path()).arg("ls").output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(token) && text.contains("big.bin") && text.contains("100.0%"));

    let (_, init) = app
        .post(
            "/api/v1/upload/multipart/init?wait=30",
            serde_json::json!({"filename": "x.bin", "fileSize": 10, "contentType": "application/octet-stream"}),
        )
        .await;
    let other = init["resumeToken"].as_str().unwrap();
    let output = partway(&app, dir.path())
        .args(["abort", other])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{other}")).await;
    assert_eq!(doc["status"], "aborted", "{doc}");
}

/// Starts a slowed-down upload and SIGKILLs it once the server has `parts` of its parts;
/// returns the upload's token.
async fn kill_after(app: &TestApp, state_dir: &Path, args: &[&str], parts: u64) -> String {
    let mut child = partway(app, state_dir)
        .args(args)
        .env("PARTWAY_CLIENT_PART_DELAY_MS", "300")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let token = loop {
        assert!(
            Instant::now() < deadline,
            "the upload never reached {parts} parts"
        );
        assert!(child.try_wait().unwrap().is_none(), "client ended early");
        if let Some(upload) = uploads(app).await.first() {
            let token = upload["resumeToken"].as_str().unwrap().to_string();
            let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
            if doc["progress"]["uploaded"].as_u64().unwrap_or(0) >= parts {
                break token;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().await.unwrap(); // SIGKILL
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(doc["status"], "active", "{doc}");
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_upload_resumes_from_the_state_file_or_the_server() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, want) = write_file(dir.path(), "resume.bin", 320 * MIB, 12);
    let args = [
        "upload",
        file.to_str().unwrap(),
        "--part-size",
        "16MiB",
        "--parallel",
        "2",
        "--json",
    ];

    // Killed once: the state file names the upload, and the next run continues it.
    let token = kill_after(&app, dir.path(), &args, 3).await;
    let state = state_entries(dir.path());
    assert_eq!(state.len(), 1, "{state:?}");
    assert_eq!(
        state.values().next().unwrap()["resumeToken"],
        token.as_str()
    );
    let again = kill_after(&app, dir.path(), &args, 6).await;
    assert_eq!(again, token, "the second run resumed the same upload");
    assert_eq!(uploads(&app).await.len(), 1, "still exactly one upload");

    // Without the state file, the server finds the upload by the file's fingerprint.
    let fresh_state = tempfile::tempdir().unwrap();
    let output = partway(&app, fresh_state.path())
        .args(args)
        .output()
        .await
        .unwrap();
    let result = last_json(&output);
    assert_eq!(result["resumeToken"], token.as_str(), "{result}");
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["resumed"], true, "{result}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("resuming {token}: ")),
        "the user is told: {stderr}"
    );
    let sent = result["partsUploaded"].as_u64().unwrap();
    eprintln!("resumed after two SIGKILLs: {sent} of 20 parts sent by the last run");
    assert!(sent <= 14, "only the remaining parts are sent: {result}");
    assert_eq!(uploads(&app).await.len(), 1, "still exactly one upload");
    assert_eq!(downloaded_sha(&app, &token).await, want);
    assert!(state_entries(fresh_state.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_part_urls_are_fetched_again() {
    let app = TestApp::spawn_with(vec![("PARTWAY_URL_TTL".into(), "2s".into())]).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, want) = write_file(dir.path(), "slow.bin", 16 * MIB, 13);
    let output = partway(&app, dir.path())
        .args(["upload", file.to_str().unwrap()])
        .args(["--part-size", "5MiB", "--parallel", "1", "--json"])
        .env("PARTWAY_CLIENT_PART_DELAY_MS", "2500")
        .output()
        .await
        .unwrap();
    let result = last_json(&output);
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["totalParts"], 4, "{result}");
    assert!(
        result["urlRefreshes"].as_u64().unwrap() >= 1,
        "URLs were fetched again: {result}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("part URLs expired"), "{stderr}");
    eprintln!("expired URLs: {} refreshes", result["urlRefreshes"]);
    let token = result["resumeToken"].as_str().unwrap();
    assert_eq!(downloaded_sha(&app, token).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_and_keeps_the_state() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, want) = write_file(dir.path(), "int.bin", 16 * MIB, 15);
    let args = [
        "upload",
        file.to_str().unwrap(),
        "--part-size",
        "5MiB",
        "--parallel",
        "1",
        "--json",
    ];
    let child = partway(&app, dir.path())
        .args(args)
        .env("PARTWAY_CLIENT_PART_DELAY_MS", "300")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the upload never reached 1 part");
        if let Some(upload) = uploads(&app).await.first() {
            if upload["progress"]["uploaded"].as_u64().unwrap_or(0) >= 1 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().await.unwrap();
    assert_one_line_error(&output, "interrupted");
    assert_eq!(
        state_entries(dir.path()).len(),
        1,
        "state kept for the next run"
    );

    let result = last_json(&partway(&app, dir.path()).args(args).output().await.unwrap());
    assert_eq!(result["resumed"], true, "{result}");
    assert_eq!(uploads(&app).await.len(), 1);
    let token = result["resumeToken"].as_str().unwrap();
    assert_eq!(downloaded_sha(&app, token).await, want);
}

/// Exit code ≠ 0 and exactly one `partway: …` line on stderr.
fn assert_one_line_error(output: &Output, needle: &str) {
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("partway: "), "{stderr}");
    assert!(lines[0].contains(needle), "{needle:?} in {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_one_line_errors() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), "small.bin", MIB, 14);

    let missing = dir.path().join("missing.bin");
    let output = partway(&app, dir.path())
        .args(["upload", missing.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_one_line_error(&output, "missing.bin");

    let output = partway(&app, dir.path())
        .args([
            "upload",
            file.to_str().unwrap(),
            "--server",
            "http://127.0.0.1:1",
        ])
        .output()
        .await
        .unwrap();
    assert_one_line_error(&output, "cannot reach the server");

    let output = partway(&app, dir.path())
        .args(["upload", file.to_str().unwrap(), "--key", "pwk_wrong"])
        .output()
        .await
        .unwrap();
    assert_one_line_error(&output, "API key");
    let output = partway(&app, dir.path())
        .args(["ls", "--key", "pwk_wrong"])
        .output()
        .await
        .unwrap();
    assert_one_line_error(&output, "401");

    assert!(uploads(&app).await.is_empty(), "nothing was created");
    assert!(state_entries(dir.path()).is_empty());
}

/// Accepts connections on a loopback port and counts them, answering each with
/// `answer`; returns the port and the count.
async fn counting_server(answer: String) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, count)
}

#[tokio::test]
async fn the_client_follows_no_redirect_so_the_key_stays_with_the_server() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let (elsewhere, reached) = counting_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".into(),
    )
    .await;
    let (redirecting, _) = counting_server(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere}/api/v1/uploads\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ))
    .await;
    let output = partway(&app, dir.path())
        .args(["ls", "--server", &format!("http://127.0.0.1:{redirecting}")])
        .output()
        .await
        .unwrap();
    assert_one_line_error(&output, "307");
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect was followed (with the API key)"
    );
}
