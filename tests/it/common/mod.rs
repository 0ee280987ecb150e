//! Starts the all-in-one service on port 0 with a temp data dir and talks to it over
//! HTTP, like a client.
pub mod cluster;
pub mod gate;
pub mod private;
pub mod receiver;
use std::{path::PathBuf, time::Duration};

use partway::Application;
use partway_core::config::Config;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const MIB: usize = 1024 * 1024;

/// A client of the HTTP API, as a user would hold one.
pub struct Api {
    pub base: String,
    pub key: String,
    pub http: Client,
}

pub struct TestApp {
    pub app: Application,
    pub api: Api,
    pub data_dir: PathBuf,
    pub extra_env: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

pub fn config_for(data_dir: &std::path::Path, extra: &[(String, String)]) -> Config {
    let mut env = vec![
        ("PARTWAY_BIND".to_string(), "127.0.0.1:0".to_string()),
        (
            "PARTWAY_EMBEDDED_S3_BIND".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        (
            "PARTWAY_DATA_DIR".to_string(),
            data_dir.display().to_string(),
        ),
        // DESIGN §7: tests run in allowlist mode so nothing leaves the machine. The
        // embedded endpoint (the loopback S3 these tests use, also as a client's own
        // bucket) is trusted as the operator's storage; its port is picked at start.
        ("PARTWAY_OUTBOUND".to_string(), "allowlist".to_string()),
    ];
    env.extend(extra.iter().cloned());
    Config::load_from(env).expect("test config")
}

/// A required external service from the test command's environment. In CI
/// (PARTWAY_REQUIRE_SERVICES=1) a missing one fails the test; locally it skips.
pub fn required_service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("PARTWAY_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("{var} is not set but PARTWAY_REQUIRE_SERVICES=1: start it with scripts/test")
        }
        _ => {
            eprintln!("skipping: {var} is not set (run through scripts/test)");
            None
        }
    }
}

/// A new, empty bucket on the test S3 server (moto) at `endpoint`; returns its name.
pub async fn fresh_moto_bucket(endpoint: &str) -> String {
    let bucket = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create test bucket");
    bucket
}

/// A fresh PostgreSQL database on the test server.
pub async fn fresh_postgres_database() -> Option<String> {
    use sea_orm::{ConnectionTrait, Database};
    let url = required_service("PARTWAY_TEST_DATABASE_URL")?;
    let admin = Database::connect(&url)
        .await
        .expect("connect to test PostgreSQL");
    let name = format!("partway_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let (base, _) = url.rsplit_once('/').expect("database url has a path");
    Some(format!("{base}/{name}"))
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(vec![]).await
    }

    pub async fn spawn_with(extra_env: Vec<(String, String)>) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().to_path_buf();
        let mut app = Self::start(data_dir, extra_env).await;
        app._dir = Some(dir);
        app
    }

    async fn start(data_dir: PathBuf, extra_env: Vec<(String, String)>) -> TestApp {
        let app = Application::build(config_for(&data_dir, &extra_env))
            .await
            .expect("application starts");
        TestApp {
            api: Api::new(app.base_url(), app.dev_api_key().to_string()),
            app,
            data_dir,
            extra_env,
            _dir: None,
        }
    }

    /// Stops the service and starts a new one on the same data dir.
    pub async fn restart(self) -> TestApp {
        let dir = self._dir;
        let data_dir = self.data_dir.clone();
        let extra = self.extra_env.clone();
        self.app.shutdown().await;
        let mut app = Self::start(data_dir, extra).await;
        app._dir = dir;
        app
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    /// Polls the status document until the upload is active with every URL ready.
    pub async fn wait_until_ready(&self, token: &str, deadline: std::time::Instant) -> Value {
        loop {
            let (status, doc) = self.get(&format!("/api/v1/upload/multipart/{token}")).await;
            if status == StatusCode::OK
                && doc["status"] == json!("active")
                && doc["urlsReady"] == doc["totalParts"]
            {
                return doc;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not ready: {status} {doc}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn new(base: String, key: String) -> Api {
        Api {
            base,
            key,
            http: Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header("x-api-key", &self.key)
            .json(&body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn post_with_key(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .header("x-api-key", &self.key)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn get_with_key(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .header("x-api-key", key)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn init(&self, filename: &str, size: usize) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/upload/multipart/init?wait=60",
                json!({"filename": filename, "fileSize": size, "contentType": "application/octet-stream"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "init: {body}");
        body
    }

    /// Plain PUT of bytes to a presigned URL, as curl -T would; returns the ETag.
    pub async fn put_part(&self, url: &str, bytes: Vec<u8>) -> String {
        let response = self
            .http
            .put(url)
            .body(bytes)
            .send()
            .await
            .expect("part PUT");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "part PUT: {}",
            response.text().await.unwrap_or_default()
        );
        response
            .headers()
            .get("etag")
            .expect("ETag header")
            .to_str()
            .unwrap()
            .to_string()
    }

    pub async fn report(&self, token: &str, part: &Value, etag: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .put(self.url(&format!(
                "/api/v1/upload/multipart/{token}/parts/{}",
                part["partNumber"]
            )))
            .header("x-api-key", &self.key)
            .json(&json!({"etag": etag, "size": part["size"]}))
            .send()
            .await
            .expect("report");
        read(response).await
    }

    pub async fn download(&self, url: &str) -> Vec<u8> {
        let response = self.http.get(url).send().await.expect("download");
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap().to_vec()
    }
}

pub async fn read(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn slice(file: &[u8], part: &Value) -> Vec<u8> {
    let start = part["start"].as_u64().unwrap() as usize;
    let end = part["end"].as_u64().unwrap() as usize;
    file[start..=end].to_vec()
}

pub fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["error"], json!(want_code), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// 5 MiB + 5 MiB + 2 MiB + 1 byte: three parts, the last one smaller.
pub const FILE_SIZE: usize = 12 * MIB + 1;

pub fn part_numbers(parts: &Value) -> Vec<u64> {
    parts
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["partNumber"].as_u64().unwrap())
        .collect()
}

/// Init, two plain PUTs, resume (lists exactly those two, presigns only the third),
/// complete, download and compare; complete again; abort after complete is a conflict.
pub async fn three_part_flow(app: &Api) {
    let file = test_bytes(FILE_SIZE, 7);
    let init = app.init("report.pdf", FILE_SIZE).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    assert!(token.starts_with("mpu_"));
    assert_eq!(init["totalParts"], json!(3));
    assert_eq!(init["partSize"], json!(5 * MIB));
    let parts = init["partUrls"].as_array().unwrap().clone();
    let sizes: Vec<u64> = parts.iter().map(|p| p["size"].as_u64().unwrap()).collect();
    assert_eq!(
        sizes,
        vec![5 * MIB as u64, 5 * MIB as u64, 2 * MIB as u64 + 1]
    );
    assert_eq!(parts[2]["end"], json!(FILE_SIZE - 1));

    // Two parts uploaded with plain PUTs, one reported.
    let etag1 = app
        .put_part(parts[0]["url"].as_str().unwrap(), slice(&file, &parts[0]))
        .await;
    let etag2 = app
        .put_part(parts[1]["url"].as_str().unwrap(), slice(&file, &parts[1]))
        .await;
    let (status, progress) = app.report(&token, &parts[0], &etag1).await;
    assert_eq!(status, StatusCode::OK, "{progress}");
    assert_eq!(progress["progress"]["uploaded"], json!(1));
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(doc["progress"]["uploadedBytes"], json!(5 * MIB));
    assert_eq!(doc["status"], json!("active"));

    // Resume lists exactly those two (from storage) and presigns only the third.
    let (status, resumed) = app
        .post(
            "/api/v1/upload/multipart/resume?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(part_numbers(&resumed["uploadedParts"]), vec![1, 2]);
    assert_eq!(
        resumed["uploadedParts"][1]["etag"],
        json!(etag2.trim_matches('"'))
    );
    assert_eq!(part_numbers(&resumed["remainingParts"]), vec![3]);
    assert_eq!(resumed["progress"]["uploaded"], json!(2));
    let third = resumed["remainingParts"][0].clone();
    let etag3 = app
        .put_part(third["url"].as_str().unwrap(), slice(&file, &third))
        .await;

    let complete_body = json!({"resumeToken": token, "parts": [
        {"partNumber": 1, "etag": etag1}, {"partNumber": 2, "etag": etag2}, {"partNumber": 3, "etag": etag3}]});
    let (status, completed) = app
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            complete_body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    assert_eq!(completed["status"], json!("completed"));
    assert_eq!(completed["fileSize"], json!(FILE_SIZE));
    assert!(
        completed["etag"].as_str().unwrap().ends_with("-3"),
        "{completed}"
    );
    let downloaded = app
        .download(completed["downloadUrl"].as_str().unwrap())
        .await;
    assert_eq!(sha256(&downloaded), sha256(&file));

    // Completing again answers the same 200; abort after complete is a conflict.
    let (status, again) = app
        .post("/api/v1/upload/multipart/complete", complete_body)
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["etag"], completed["etag"]);
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/abort",
            json!({"resumeToken": token}),
        )
        .await;
    assert_error(status, &body, 409, "UPLOAD_ALREADY_COMPLETED");
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(doc["status"], json!("completed"));
    assert_eq!(doc["progress"]["percentage"], json!(100.0));
    assert!(doc["downloadUrl"].as_str().is_some());
}
