//! The published Uppy clients, unchanged, in headless Chromium against partway's Companion
//! routes (DESIGN §5; `tests/browser/uppy.mjs`): `@uppy/core` + `@uppy/aws-s3` 6.3.1
//! (`companionEndpoint` = `/uppy/{browserToken}`) and 5.1.0 (`endpoint` = `/uppy` +
//! `x-api-key` header). Against the all-in-one service (embedded S3 endpoint): small
//! files through the POST policy, 11 MiB and 200 MiB multipart files, 0-byte files, a
//! reload in the middle resumed from the kept `s3Multipart` sending only the missing
//! parts, 6.x `retryUpload()` after a refused part, cancel aborting the upload on
//! storage, 5.x signing a part again after its URL expired, and wrong, expired and
//! revoked tokens surfacing as Uppy's error; each stored object's SHA-256 matches. The
//! same flows against api + 2 workers with moto (PostgreSQL, RabbitMQ, Redis).
//! Chromium, playwright-core and the pinned Uppy packages come from `scripts/services
//! start browser`.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::common::{cluster::Cluster, required_service, sha256, Api, TestApp, MIB};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Browser {
    chromium: String,
    playwright: String,
    uppy6: String,
    uppy5: String,
}

fn browser() -> Option<Browser> {
    Some(Browser {
        chromium: required_service("PARTWAY_TEST_CHROMIUM")?,
        playwright: required_service("PARTWAY_TEST_PLAYWRIGHT_DIR")?,
        uppy6: required_service("PARTWAY_TEST_UPPY6_DIR")?,
        uppy5: required_service("PARTWAY_TEST_UPPY5_DIR")?,
    })
}

async fn mint(api: &Api, limits: Value) -> (String, String) {
    let (status, body) = api.post("/api/v1/browser-tokens", limits).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

/// Runs the scenarios in Chromium; the page's result per scenario.
async fn run(browser: &Browser, base: &str, insecure: bool, scenarios: &[Value]) -> Vec<Value> {
    let work = tempfile::tempdir().unwrap();
    let config = json!({"base": base, "chromium": browser.chromium, "deadlineMs": 60_000,
        "playwright": browser.playwright, "uppy6": browser.uppy6, "uppy5": browser.uppy5,
        "insecure": insecure, "scenarios": scenarios});
    let path = work.path().join("uppy.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/uppy.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&path)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node (scripts/services start browser)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| {
            panic!(
                "no result\nstdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let results = result["results"].as_array().cloned().unwrap_or_default();
    let summary: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{}: {} ({} ms)",
                r["name"],
                if r["passed"] == json!(true) {
                    "pass"
                } else {
                    "FAIL"
                },
                r["ms"]
            )
        })
        .collect();
    eprintln!("uppy scenarios:\n  {}", summary.join("\n  "));
    assert_eq!(result["ok"], json!(true), "{result:#}");
    results
}

/// The one upload `token` made, once it is `want`: its status document.
async fn only_upload(api: &Api, token: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, list) = api.get_with_key("/api/v1/uploads", token).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let uploads = list["uploads"].as_array().unwrap();
        assert_eq!(uploads.len(), 1, "{list}");
        if uploads[0]["status"] == json!(want) {
            let id = uploads[0]["resumeToken"].as_str().unwrap();
            return api.get(&format!("/api/v1/upload/multipart/{id}")).await.1;
        }
        assert!(Instant::now() < deadline, "not {want}: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What storage holds after each scenario: the object's SHA-256, or the aborted upload.
async fn check_storage(api: &Api, scenarios: &[Value], results: &[Value]) {
    for (s, r) in scenarios.iter().zip(results) {
        if s["expectError"] == json!(true) {
            continue;
        }
        let token = s["token"].as_str().unwrap();
        if s["kind"] == json!("cancel") {
            let doc = only_upload(api, token, "aborted").await;
            assert!(doc["fileSize"].is_null(), "{doc}");
            continue;
        }
        let doc = only_upload(api, token, "completed").await;
        assert_eq!(doc["fileSize"], s["size"], "{}: {doc}", s["name"]);
        let bytes = api.download(doc["downloadUrl"].as_str().unwrap()).await;
        assert_eq!(
            sha256(&bytes),
            r["sha256"].as_str().unwrap(),
            "{}",
            s["name"]
        );
    }
}

fn scenario(
    name: &str,
    kind: &str,
    version: u8,
    size: usize,
    multipart: bool,
    token: &str,
) -> Value {
    json!({"name": name, "kind": kind, "version": version, "size": size,
        "multipart": multipart, "token": token})
}

/// The flows every deployment must pass; tokens minted on `api`. `v5_post`: whether
/// storage answers a form POST with an `ETag` (moto does not, and 5.x then waits
/// forever: a storage limit the issue notes, not partway's).
async fn common_scenarios(api: &Api, big: usize, v5_post: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for (name, kind, version, size, multipart) in [
        ("v6 small file (POST policy)", "upload", 6, 1000, false),
        ("v6 11 MiB multipart", "upload", 6, 11 * MIB + 3, true),
        ("v6 big multipart", "upload", 6, big, true),
        ("v6 0-byte file", "upload", 6, 0, false),
        ("v5 small file (POST policy)", "upload", 5, 1000, false),
        ("v5 11 MiB multipart", "upload", 5, 11 * MIB + 3, true),
        ("v5 0-byte file", "upload", 5, 0, false),
        (
            "v6 reload + resume (only missing parts)",
            "resume",
            6,
            26 * MIB,
            true,
        ),
        (
            "v5 reload + resume (only missing parts)",
            "resume",
            5,
            26 * MIB,
            true,
        ),
        (
            "v6 retryUpload after a refused part",
            "retry",
            6,
            16 * MIB,
            true,
        ),
        ("v6 cancel aborts on storage", "cancel", 6, 26 * MIB, true),
        ("v5 cancel aborts on storage", "cancel", 5, 26 * MIB, true),
    ] {
        if version == 5 && !multipart && !v5_post {
            continue;
        }
        let (_, token) = mint(api, json!({})).await;
        out.push(scenario(name, kind, version, size, multipart, &token));
    }
    out
}

#[tokio::test]
async fn uppy_6_and_5_against_the_all_in_one_service() {
    let Some(browser) = browser() else { return };
    let app = TestApp::spawn_with(vec![("PARTWAY_CORS_ORIGINS".into(), "*".into())]).await;
    let mut scenarios = common_scenarios(&app, 200 * MIB, true).await;
    // Refused tokens: wrong, expired, revoked.
    let (expired_id, expired) = mint(&app, json!({"expiresIn": 60})).await;
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
            .filter(browser_token::Column::Id.eq(uuid::Uuid::parse_str(&expired_id).unwrap()))
            .exec(app.app.db())
            .await
            .unwrap();
    }
    let (revoked_id, revoked) = mint(&app, json!({})).await;
    let response = app
        .http
        .delete(app.url(&format!("/api/v1/browser-tokens/{revoked_id}")))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    for version in [6u8, 5] {
        for (what, token) in [
            ("wrong", "pwb_0000000000000000000000000000000000000000000"),
            ("expired", expired.as_str()),
            ("revoked", revoked.as_str()),
        ] {
            let mut s = scenario(
                &format!("v{version} {what} token is Uppy's error"),
                "upload",
                version,
                10,
                false,
                token,
            );
            s["expectError"] = json!(true);
            scenarios.push(s);
        }
    }
    let results = run(&browser, &app.base, false, &scenarios).await;
    check_storage(&app, &scenarios, &results).await;
}

#[tokio::test]
async fn uppy_5_signs_again_a_part_whose_url_expired() {
    let Some(browser) = browser() else { return };
    let app = TestApp::spawn_with(vec![
        ("PARTWAY_CORS_ORIGINS".into(), "*".into()),
        ("PARTWAY_URL_TTL".into(), "2s".into()),
    ])
    .await;
    let (_, token) = mint(&app, json!({})).await;
    let mut s = scenario(
        "v5 re-signs an expired part URL",
        "resign",
        5,
        11 * MIB,
        true,
        &token,
    );
    s["holdMs"] = json!(3500);
    let scenarios = vec![s];
    let results = run(&browser, &app.base, false, &scenarios).await;
    let parts = 3;
    assert!(
        results[0]["signs"].as_u64().unwrap() > parts,
        "{:#}",
        results[0]
    );
    check_storage(&app, &scenarios, &results).await;
}

/// api + 2 workers on PostgreSQL, RabbitMQ, Redis and moto. moto sends no CORS headers,
/// so Chromium runs without its CORS checks here (partway's own CORS is proven above);
/// 5.x's form POST is left out (moto's POST answer has no `ETag`, so 5.x never finishes).
#[tokio::test]
async fn uppy_6_and_5_against_api_and_two_workers_with_moto() {
    let Some(browser) = browser() else { return };
    let Some(cluster) =
        Cluster::start_with(2, vec![("PARTWAY_CORS_ORIGINS".into(), "*".into())]).await
    else {
        return;
    };
    let scenarios = common_scenarios(&cluster.api, 200 * MIB, false).await;
    let results = run(&browser, &cluster.api.base, true, &scenarios).await;
    check_storage(&cluster.api, &scenarios, &results).await;
}
