//! The published Uppy clients, unchanged, in headless Chromium against partway's Companion
//! routes (DESIGN §5; `tests/browser/uppy.mjs`): `@uppy/core` + `@uppy/aws-s3` 6.3.1
//! (`companionEndpoint` = `/uppy/{browserToken}`) and 5.1.0 (`endpoint` = `/uppy` +
//! `x-api-key` header), against the all-in-one service and its embedded S3 endpoint. A
//! small file through the POST policy, an 11 MiB multipart file, a 0-byte file, and a
//! wrong token surfacing as Uppy's error; each stored object's SHA-256 matches.
//! Chromium, playwright-core and the pinned Uppy packages come from `scripts/services
//! start browser`.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::common::{required_service, sha256, Api, TestApp, MIB};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn mint(api: &Api) -> String {
    let (status, body) = api.post("/api/v1/browser-tokens", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_string()
}

/// The one upload `token` made, completed, has this SHA-256.
async fn assert_stored(api: &Api, token: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let doc = loop {
        let (status, list) = api.get_with_key("/api/v1/uploads", token).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let uploads = list["uploads"].as_array().unwrap();
        assert_eq!(uploads.len(), 1, "{list}");
        if uploads[0]["status"] == json!("completed") {
            break uploads[0].clone();
        }
        assert!(Instant::now() < deadline, "not completed: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let token_of_upload = doc["resumeToken"].as_str().unwrap();
    let (_, doc) = api
        .get(&format!("/api/v1/upload/multipart/{token_of_upload}"))
        .await;
    let bytes = api.download(doc["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), want, "{doc}");
}

#[tokio::test]
async fn uppy_6_and_5_upload_unchanged_through_the_companion_routes() {
    let (Some(chromium), Some(playwright), Some(uppy6), Some(uppy5)) = (
        required_service("PARTWAY_TEST_CHROMIUM"),
        required_service("PARTWAY_TEST_PLAYWRIGHT_DIR"),
        required_service("PARTWAY_TEST_UPPY6_DIR"),
        required_service("PARTWAY_TEST_UPPY5_DIR"),
    ) else {
        return;
    };
    let app = TestApp::spawn_with(vec![("PARTWAY_CORS_ORIGINS".into(), "*".into())]).await;
    let mut scenarios = Vec::new();
    for (name, version, size, multipart) in [
        ("v6-small-post-policy", 6, 1000, false),
        ("v6-11MiB-multipart", 6, 11 * MIB + 3, true),
        ("v6-0-bytes", 6, 0, false),
        ("v5-small-post-policy", 5, 1000, false),
        ("v5-11MiB-multipart", 5, 11 * MIB + 3, true),
    ] {
        scenarios.push(json!({"name": name, "version": version, "size": size,
            "multipart": multipart, "token": mint(&app).await}));
    }
    for version in [6, 5] {
        scenarios.push(
            json!({"name": format!("v{version}-wrong-token"), "version": version,
            "size": 10, "multipart": false, "expectError": true,
            "token": "pwb_0000000000000000000000000000000000000000000"}),
        );
    }
    let work = tempfile::tempdir().unwrap();
    let config = json!({"base": app.base, "chromium": chromium, "playwright": playwright,
        "uppy6": uppy6, "uppy5": uppy5, "scenarios": scenarios});
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
    eprintln!("{result:#}");
    assert_eq!(result["ok"], json!(true), "{result:#}");
    for (scenario, outcome) in scenarios.iter().zip(result["results"].as_array().unwrap()) {
        if scenario["expectError"] == json!(true) {
            continue;
        }
        assert_stored(
            &app,
            scenario["token"].as_str().unwrap(),
            outcome["sha256"].as_str().unwrap(),
        )
        .await;
    }
}
