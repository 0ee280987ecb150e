//! partway's upload page in headless Chromium (DESIGN §5), driven by playwright-core
//! (`tests/browser/upload_page.mjs`) against the all-in-one service: three files at once
//! (one of 64 MiB) whose stored objects have the files' SHA-256, a reload at ~40% after
//! which only the missing parts are PUT, pause and resume, cancel (the upload is aborted and
//! storage holds no multipart upload), and the messages for an expired and a revoked token;
//! then the same against `partway-api` + 2 workers with moto. Chromium and playwright-core come from `scripts/services start browser` (scripts/test
//! starts it); in CI a missing browser fails these tests.
use std::path::{Path, PathBuf};

use crate::common::{required_service, sha256, test_bytes, Api, TestApp, MIB};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Browser {
    chromium: String,
    playwright: String,
}

fn browser() -> Option<Browser> {
    Some(Browser {
        chromium: required_service("PARTWAY_TEST_CHROMIUM")?,
        playwright: required_service("PARTWAY_TEST_PLAYWRIGHT_DIR")?,
    })
}

/// Runs one scenario of the page script; its JSON result (the test fails when the page did).
async fn run_page(browser: &Browser, base: &str, work: &Path, scenario: Value) -> Value {
    let config = json!({
        "base": base,
        "chromium": browser.chromium,
        "playwright": browser.playwright,
        "scenario": scenario,
    });
    let path = work.join(format!("page-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, config.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/upload_page.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&path)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node (install Node.js: scripts/services start browser)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let result: Value = serde_json::from_str(last).unwrap_or_else(|_| {
        panic!(
            "no result from the page script\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(
        output.status.success() && result["ok"] == json!(true),
        "{scenario}: {result}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    result
}

async fn mint(api: &Api, limits: Value) -> (String, String) {
    let (status, body) = api.post("/api/v1/browser-tokens", limits).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

fn write_file(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, String) {
    let bytes = test_bytes(len, seed);
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, sha256(&bytes))
}

/// The stored object of a completed upload, read back through its download URL, has
/// this SHA-256.
async fn assert_stored(api: &Api, resume_token: &str, want_sha256: &str) {
    let (status, doc) = api
        .get(&format!("/api/v1/upload/multipart/{resume_token}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["status"], json!("completed"), "{doc}");
    let bytes = api.download(doc["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), want_sha256, "{}", doc["filename"]);
}

/// Multipart uploads the embedded endpoint still holds (in progress, under `.multipart/`).
fn open_multipart_uploads(data_dir: &Path) -> usize {
    fn walk(dir: &Path, found: &mut usize) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == ".multipart") {
                    *found += std::fs::read_dir(&path).into_iter().flatten().count();
                } else {
                    walk(&path, found);
                }
            }
        }
    }
    let mut found = 0;
    walk(data_dir, &mut found);
    found
}

/// Storage as the page sees it: 8 MB/s, so a 32 MiB file takes about four seconds and
/// can be interrupted.
const THROTTLE: u64 = 8_000_000;

#[tokio::test]
async fn the_upload_page_in_chromium_against_the_all_in_one_service() {
    let Some(browser) = browser() else {
        return;
    };
    let app = TestApp::spawn().await;
    let storage = app.app.embedded_s3_endpoint().expect("embedded S3");
    let work = tempfile::tempdir().unwrap();
    let base = app.base.clone();

    // Three files at once, one of 64 MiB, on a phone-sized window: a screenshot mid-upload.
    let files = [
        write_file(work.path(), "video.bin", 64 * MIB, 1),
        write_file(work.path(), "photo.jpg", MIB + 17, 2),
        write_file(work.path(), "report.pdf", 12 * MIB + 5, 3),
    ];
    let (_, token) = mint(&app, json!({})).await;
    let screenshot = std::env::var("PARTWAY_PAGE_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| work.path().join("upload-page.png"));
    let result = run_page(
        &browser,
        &base,
        work.path(),
        json!({
            "kind": "upload",
            "token": token,
            "files": files.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>(),
            "screenshot": screenshot.display().to_string(),
            "viewport": {"width": 360, "height": 740},
            "throttle": 40_000_000u64,
        }),
    )
    .await;
    assert_eq!(result["overflow"], json!(0), "the layout fits 360 px");
    assert!(
        std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0) > 1000,
        "screenshot"
    );
    for ((_, sha), shown) in files.iter().zip(result["files"].as_array().unwrap()) {
        assert_stored(&app, shown["resumeToken"].as_str().unwrap(), sha).await;
    }

    // A reload at ~40%: the same upload resumes and storage receives only the rest.
    let (path, sha) = write_file(work.path(), "reloaded.bin", 32 * MIB, 4);
    let (_, token) = mint(&app, json!({})).await;
    let r = run_page(
        &browser,
        &base,
        work.path(),
        json!({"kind": "reload", "token": token, "file": path.display().to_string(),
               "throttle": THROTTLE, "storage": storage, "at": 0.4}),
    )
    .await;
    let total = r["total"].as_u64().unwrap();
    let remaining = r["remaining"].as_u64().unwrap();
    assert_eq!(r["resumed"], json!(true), "{r}");
    assert_eq!(
        r["resumeToken"], r["before"]["token"],
        "the same upload: {r}"
    );
    assert!(
        r["before"]["uploaded"].as_u64().unwrap() * 10 >= total * 4,
        "reloaded at 40%: {r}"
    );
    assert!(remaining < total && remaining > 0, "{r}");
    assert_eq!(
        r["puts"].as_u64(),
        Some(remaining),
        "only the missing parts: {r}"
    );
    assert_stored(&app, r["resumeToken"].as_str().unwrap(), &sha).await;

    pause_cancel_and_refused_tokens(
        &browser,
        &app,
        app.app.db(),
        &storage,
        work.path(),
        async |_key: &str| open_multipart_uploads(&app.data_dir),
    )
    .await;

    // A file over the token's maxFileSize, and one of a type it does not allow.
    let (small, _) = write_file(work.path(), "small.txt", 1000, 7);
    let (_, limited) = mint(
        &app,
        json!({"maxFileSize": 500, "allowedContentTypes": ["image/*"]}),
    )
    .await;
    let r = run_page(
        &browser,
        &base,
        work.path(),
        json!({"kind": "rowError", "token": limited, "file": small.display().to_string()}),
    )
    .await;
    assert!(r["message"].as_str().unwrap().contains("too large"), "{r}");
    let (_, images_only) = mint(&app, json!({"allowedContentTypes": ["image/*"]})).await;
    let r = run_page(
        &browser,
        &base,
        work.path(),
        json!({"kind": "rowError", "token": images_only, "file": small.display().to_string()}),
    )
    .await;
    assert!(
        r["message"].as_str().unwrap().contains("not accepted"),
        "{r}"
    );
    app.app.shutdown().await;
}

/// Pause and resume, cancel (the upload is aborted and `open_uploads(key)` finds no
/// multipart upload left on storage), and the messages for an expired and a revoked
/// token: the same in both modes.
async fn pause_cancel_and_refused_tokens(
    browser: &Browser,
    api: &Api,
    db: &sea_orm::DatabaseConnection,
    storage: &str,
    work: &Path,
    open_uploads: impl AsyncFn(&str) -> usize,
) {
    let (path, sha) = write_file(work, "paused.bin", 32 * MIB, 5);
    let (_, token) = mint(api, json!({})).await;
    let r = run_page(
        browser,
        &api.base,
        work,
        json!({"kind": "pauseResume", "token": token, "file": path.display().to_string(),
               "throttle": THROTTLE, "storage": storage}),
    )
    .await;
    assert_eq!(r["pausedStatus"], json!("paused"), "{r}");
    assert_eq!(r["putsWhilePaused"], json!(0), "{r}");
    assert_stored(api, r["resumeToken"].as_str().unwrap(), &sha).await;

    // Cancel (by keyboard): aborted, and storage holds no multipart upload.
    let (path, _) = write_file(work, "cancelled.bin", 32 * MIB, 6);
    let (_, token) = mint(api, json!({})).await;
    let r = run_page(
        browser,
        &api.base,
        work,
        json!({"kind": "cancel", "token": token, "file": path.display().to_string(),
               "throttle": THROTTLE, "storage": storage}),
    )
    .await;
    let resume_token = r["resumeToken"].as_str().unwrap();
    let (_, doc) = api
        .get(&format!("/api/v1/upload/multipart/{resume_token}"))
        .await;
    assert_eq!(doc["status"], json!("aborted"), "{doc}");
    assert_eq!(open_uploads(doc["fileKey"].as_str().unwrap()).await, 0);

    // An expired and a revoked token: the page says which.
    let (small, _) = write_file(work, "small.txt", 1000, 7);
    let (id, expired) = mint(api, json!({"expiresIn": 60})).await;
    {
        use partway_entity::browser_token;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        browser_token::Entity::update_many()
            .col_expr(
                browser_token::Column::ExpiresAt,
                sea_orm::sea_query::Expr::value(
                    sea_orm::prelude::ChronoUtc::now() - std::time::Duration::from_secs(1),
                ),
            )
            .filter(browser_token::Column::Id.eq(uuid::Uuid::parse_str(&id).unwrap()))
            .exec(db)
            .await
            .unwrap();
    }
    let r = run_page(
        browser,
        &api.base,
        work,
        json!({"kind": "refused", "token": expired, "file": small.display().to_string()}),
    )
    .await;
    assert!(r["banner"].as_str().unwrap().contains("expired"), "{r}");
    let (id, revoked) = mint(api, json!({})).await;
    let response = api
        .http
        .delete(api.url(&format!("/api/v1/browser-tokens/{id}")))
        .header("x-api-key", &api.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let r = run_page(
        browser,
        &api.base,
        work,
        json!({"kind": "refused", "token": revoked, "file": small.display().to_string()}),
    )
    .await;
    assert!(r["banner"].as_str().unwrap().contains("revoked"), "{r}");
}

/// Part URLs that expire (2 s) before the page gets to them: storage refuses them (403),
/// the page fetches fresh ones through resume, and the file arrives whole.
#[tokio::test]
async fn the_page_replaces_expired_part_urls_through_resume() {
    let Some(browser) = browser() else {
        return;
    };
    let app = TestApp::spawn_with(vec![("PARTWAY_URL_TTL".into(), "2s".into())]).await;
    let work = tempfile::tempdir().unwrap();
    let (path, sha) = write_file(work.path(), "late.bin", 40 * MIB, 21);
    let (_, token) = mint(&app, json!({})).await;
    let r = run_page(
        &browser,
        &app.base,
        work.path(),
        json!({"kind": "upload", "token": token, "files": [path.display().to_string()],
               "throttle": THROTTLE}),
    )
    .await;
    assert!(
        r["refusedPuts"].as_u64().unwrap() >= 1,
        "some URL expired: {r}"
    );
    assert_stored(&app, r["files"][0]["resumeToken"].as_str().unwrap(), &sha).await;
    app.app.shutdown().await;
}

#[tokio::test]
async fn the_page_is_served_with_its_policy_and_without_the_token() {
    let app = TestApp::spawn().await;
    let storage = app.app.embedded_s3_endpoint().expect("embedded S3");
    let response = app.http.get(app.url("/upload")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains(&format!("connect-src 'self' {storage};")),
        "{csp}"
    );
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let html = response.text().await.unwrap();
    assert!(html.contains("/upload/app.js"));
    for asset in ["/upload/app.js", "/upload/app.css"] {
        let response = app.http.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
    }
    // The docs keep their own policy.
    let docs = app.http.get(app.url("/docs")).send().await.unwrap();
    let docs_csp = docs.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        docs_csp.contains("script-src 'unsafe-inline'"),
        "{docs_csp}"
    );
    app.app.shutdown().await;
}

fn moto_client(endpoint: &str) -> aws_sdk_s3::Client {
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
}

/// The bucket's CORS rule the README gives for real S3/R2: any origin may PUT and GET,
/// and read the ETag.
async fn set_bucket_cors(endpoint: &str, bucket: &str) {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
    let rule = CorsRule::builder()
        .allowed_origins("*")
        .allowed_methods("PUT")
        .allowed_methods("GET")
        .allowed_headers("*")
        .expose_headers("ETag")
        .max_age_seconds(600)
        .build()
        .unwrap();
    moto_client(endpoint)
        .put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put bucket CORS");
}

/// The same page against `partway-api` + 2 workers on PostgreSQL, RabbitMQ, Redis and
/// moto: first without bucket CORS (the page says so), then with it: three files (one of
/// 64 MiB) stored with their SHA-256, a reload at ~40% that sends only the rest, pause and
/// resume, cancel (moto lists no multipart upload under the key afterwards), and the
/// expired and revoked tokens' messages.
#[tokio::test]
async fn the_upload_page_in_chromium_against_api_and_two_workers() {
    let Some(browser) = browser() else {
        return;
    };
    let Some(cluster) = crate::common::cluster::Cluster::start(2).await else {
        return;
    };
    let env = |name: &str| {
        cluster
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let (storage, bucket) = (env("PARTWAY_S3_ENDPOINT"), env("PARTWAY_S3_BUCKET"));
    let api = &cluster.api;
    let work = tempfile::tempdir().unwrap();

    let (small, _) = write_file(work.path(), "no-cors.txt", 1000, 8);
    let (_, token) = mint(api, json!({})).await;
    let r = run_page(
        &browser,
        &api.base,
        work.path(),
        json!({"kind": "rowError", "token": token, "file": small.display().to_string()}),
    )
    .await;
    assert!(r["message"].as_str().unwrap().contains("CORS"), "{r}");

    set_bucket_cors(&storage, &bucket).await;
    let files = [
        write_file(work.path(), "video.bin", 64 * MIB, 11),
        write_file(work.path(), "photo.jpg", MIB + 17, 12),
        write_file(work.path(), "report.pdf", 12 * MIB + 5, 13),
    ];
    let (_, token) = mint(api, json!({})).await;
    let result = run_page(
        &browser,
        &api.base,
        work.path(),
        json!({
            "kind": "upload",
            "token": token,
            "files": files.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>(),
        }),
    )
    .await;
    for ((_, sha), shown) in files.iter().zip(result["files"].as_array().unwrap()) {
        assert_stored(api, shown["resumeToken"].as_str().unwrap(), sha).await;
    }

    let (path, sha) = write_file(work.path(), "reloaded.bin", 32 * MIB, 14);
    let (_, token) = mint(api, json!({})).await;
    let r = run_page(
        &browser,
        &api.base,
        work.path(),
        json!({"kind": "reload", "token": token, "file": path.display().to_string(),
               "throttle": THROTTLE, "storage": storage, "at": 0.4}),
    )
    .await;
    let total = r["total"].as_u64().unwrap();
    let remaining = r["remaining"].as_u64().unwrap();
    assert_eq!(r["resumed"], json!(true), "{r}");
    assert!(remaining < total && remaining > 0, "{r}");
    assert_eq!(r["puts"].as_u64(), Some(remaining), "{r}");
    assert_stored(api, r["resumeToken"].as_str().unwrap(), &sha).await;

    let db = sea_orm::Database::connect(env("PARTWAY_DATABASE_URL"))
        .await
        .expect("the cluster's PostgreSQL");
    let s3 = moto_client(&storage);
    pause_cancel_and_refused_tokens(
        &browser,
        api,
        &db,
        &storage,
        work.path(),
        async |key: &str| {
            let listed = s3
                .list_multipart_uploads()
                .bucket(&bucket)
                .prefix(key)
                .send()
                .await
                .expect("list multipart uploads");
            listed.uploads().len()
        },
    )
    .await;
}
