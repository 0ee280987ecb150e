//! End to end over HTTP against the all-in-one service: real presigned PUTs to the
//! embedded S3 endpoint, real SQLite (and PostgreSQL when the test command provides it).
use crate::common::*;
use partway_core::store::Store;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn three_part_upload_resume_complete_and_download_match() {
    let app = TestApp::spawn().await;
    three_part_flow(&app).await;
    app.app.shutdown().await;
}

#[tokio::test]
async fn three_part_upload_on_postgresql() {
    let Some(url) = fresh_postgres_database().await else {
        return;
    };
    let app = TestApp::spawn_with(vec![("PARTWAY_DATABASE_URL".into(), url)]).await;
    three_part_flow(&app).await;
    app.app.shutdown().await;
}

#[tokio::test]
async fn abort_is_idempotent_and_resume_after_abort_is_a_conflict() {
    let app = TestApp::spawn().await;
    let init = app.init("a.bin", 6 * MIB).await;
    let token = init["resumeToken"].as_str().unwrap();
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/abort?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("aborted"));
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/abort",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("aborted"));
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/resume",
            json!({"resumeToken": token}),
        )
        .await;
    assert_error(status, &body, 409, "UPLOAD_ABORTED");
    // Storage's upload is gone too: its part URLs no longer store anything.
    let response = app
        .http
        .put(init["partUrls"][0]["url"].as_str().unwrap())
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    app.app.shutdown().await;
}

#[tokio::test]
async fn another_owner_gets_404_never_403() {
    let app = TestApp::spawn().await;
    let init = app.init("mine.bin", MIB).await;
    let token = init["resumeToken"].as_str().unwrap();
    let (_, other_key) = partway_core::auth::create_key(&Store::new(app.app.db().clone()), "other")
        .await
        .unwrap();
    let (status, body) = app
        .get_with_key(&format!("/api/v1/upload/multipart/{token}"), &other_key)
        .await;
    assert_error(status, &body, 404, "UPLOAD_NOT_FOUND");
    for route in ["resume", "complete", "abort", "pause"] {
        let (status, body) = app
            .post_with_key(
                &format!("/api/v1/upload/multipart/{route}"),
                &other_key,
                json!({"resumeToken": token}),
            )
            .await;
        assert_error(status, &body, 404, "UPLOAD_NOT_FOUND");
    }
    let (status, list) = app.get_with_key("/api/v1/uploads", &other_key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["uploads"], json!([]));
    // Still intact for its owner.
    let (status, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["status"], json!("active"));
    app.app.shutdown().await;
}

#[tokio::test]
async fn restart_mid_upload_then_resume_and_complete_from_storage_list() {
    let app = TestApp::spawn().await;
    let file = test_bytes(FILE_SIZE, 11);
    let init = app.init("video.mp4", FILE_SIZE).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let first = init["partUrls"][0].clone();
    app.put_part(first["url"].as_str().unwrap(), slice(&file, &first))
        .await;

    let app = app.restart().await;
    let (status, resumed) = app
        .post(
            "/api/v1/upload/multipart/resume?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(part_numbers(&resumed["uploadedParts"]), vec![1]);
    assert_eq!(part_numbers(&resumed["remainingParts"]), vec![2, 3]);
    for part in resumed["remainingParts"].as_array().unwrap() {
        app.put_part(part["url"].as_str().unwrap(), slice(&file, part))
            .await;
    }
    // No parts: complete with what storage lists.
    let (status, completed) = app
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    let downloaded = app
        .download(completed["downloadUrl"].as_str().unwrap())
        .await;
    assert_eq!(sha256(&downloaded), sha256(&file));
    app.app.shutdown().await;
}

#[tokio::test]
async fn complete_with_missing_part_in_storage_is_incomplete_parts() {
    let app = TestApp::spawn().await;
    let file = test_bytes(FILE_SIZE, 3);
    let init = app.init("gap.bin", FILE_SIZE).await;
    let token = init["resumeToken"].as_str().unwrap();
    let first = init["partUrls"][0].clone();
    app.put_part(first["url"].as_str().unwrap(), slice(&file, &first))
        .await;
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_error(status, &body, 409, "INCOMPLETE_PARTS");
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(doc["status"], json!("active"));
    assert_eq!(doc["lastError"]["code"], json!("INCOMPLETE_PARTS"));
    app.app.shutdown().await;
}

#[tokio::test]
async fn wrong_etag_is_invalid_parts_and_upload_stays_completable() {
    let app = TestApp::spawn().await;
    let file = test_bytes(MIB + 5, 5);
    let init = app.init("small.bin", file.len()).await;
    let token = init["resumeToken"].as_str().unwrap();
    let part = init["partUrls"][0].clone();
    let etag = app
        .put_part(part["url"].as_str().unwrap(), file.clone())
        .await;

    let wrong = json!({"resumeToken": token, "parts": [{"partNumber": 1, "etag": "0123456789abcdef0123456789abcdef"}]});
    let (status, body) = app
        .post("/api/v1/upload/multipart/complete?wait=30", wrong)
        .await;
    assert_error(status, &body, 400, "INVALID_PARTS");
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(doc["status"], json!("active"));
    assert_eq!(doc["lastError"]["code"], json!("INVALID_PARTS"));
    // The part is still there.
    let (status, resumed) = app
        .post(
            "/api/v1/upload/multipart/resume?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(part_numbers(&resumed["uploadedParts"]), vec![1]);

    let right = json!({"resumeToken": token, "parts": [{"partNumber": 1, "etag": etag}]});
    let (status, completed) = app
        .post("/api/v1/upload/multipart/complete?wait=30", right)
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    assert_eq!(
        sha256(
            &app.download(completed["downloadUrl"].as_str().unwrap())
                .await
        ),
        sha256(&file)
    );
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert!(doc.get("lastError").is_none(), "{doc}");
    app.app.shutdown().await;
}

#[tokio::test]
async fn same_idempotency_key_twice_creates_one_upload() {
    let app = TestApp::spawn().await;
    let body =
        json!({"filename": "once.bin", "fileSize": MIB, "contentType": "application/octet-stream"});
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let response = app
            .http
            .post(app.url("/api/v1/upload/multipart/init?wait=30"))
            .header("x-api-key", &app.key)
            .header("Idempotency-Key", "client-retry-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, init) = read(response).await;
        assert_eq!(status, StatusCode::OK, "{init}");
        tokens.push(init["resumeToken"].as_str().unwrap().to_string());
    }
    assert_eq!(tokens[0], tokens[1]);
    let (_, list) = app.get("/api/v1/uploads").await;
    assert_eq!(list["uploads"].as_array().unwrap().len(), 1);
    app.app.shutdown().await;
}

#[tokio::test]
async fn pause_then_resume_makes_the_upload_active_again() {
    let app = TestApp::spawn().await;
    let init = app.init("p.bin", MIB).await;
    let token = init["resumeToken"].as_str().unwrap();
    let (status, doc) = app
        .post(
            "/api/v1/upload/multipart/pause",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["status"], json!("paused"));
    let (status, resumed) = app
        .post(
            "/api/v1/upload/multipart/resume?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(doc["status"], json!("active"));
    app.app.shutdown().await;
}

#[tokio::test]
async fn complete_of_a_paused_upload_completes_it() {
    let app = TestApp::spawn().await;
    let init = app.init("pc.bin", MIB).await;
    let token = init["resumeToken"].as_str().unwrap();
    let part = &init["partUrls"][0];
    let etag = app
        .put_part(part["url"].as_str().unwrap(), test_bytes(MIB, 5))
        .await;
    let (status, doc) = app
        .post(
            "/api/v1/upload/multipart/pause",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(doc["status"], json!("paused"), "{status} {doc}");
    let (status, done) = app
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token, "parts": [{"partNumber": 1, "etag": etag}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], json!("completed"), "{done}");
    app.app.shutdown().await;
}

#[tokio::test]
async fn without_wait_init_answers_202_and_polling_sees_urls_ready() {
    let app = TestApp::spawn().await;
    let (status, doc) = app
        .post(
            "/api/v1/upload/multipart/init",
            json!({"filename": "poll.bin", "fileSize": 11 * MIB, "contentType": "application/octet-stream"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    assert_eq!(doc["status"], json!("initiating"));
    let token = doc["resumeToken"].as_str().unwrap();
    let doc = app
        .wait_until_ready(
            token,
            std::time::Instant::now() + std::time::Duration::from_secs(30),
        )
        .await;
    assert_eq!(doc["urlsReady"], json!(3), "{doc}");
    let (status, page) = app
        .get(&format!(
            "/api/v1/upload/multipart/{token}/parts?state=pending&limit=2"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(part_numbers(&page["parts"]), vec![1, 2]);
    assert_eq!(page["nextAfter"], json!(2));
    app.app.shutdown().await;
}

/// Bring-your-own bucket: the credentials a client sends are used for every step (here:
/// the embedded endpoint under its own keys, as if it were the client's MinIO), stored
/// only sealed, and never answered back.
#[tokio::test]
async fn bring_your_own_credentials_are_used_for_every_step_and_never_exposed() {
    let app = TestApp::spawn().await;
    let keys: Value = serde_json::from_str(
        &std::fs::read_to_string(app.data_dir.join("embedded-s3.json")).unwrap(),
    )
    .unwrap();
    let secret = keys["secret_key"].as_str().unwrap().to_string();
    let endpoint = app.app.embedded_s3_endpoint().unwrap();
    let file = test_bytes(6 * MIB, 21);
    let (status, init) = app
        .post(
            "/api/v1/upload/multipart/init?wait=30",
            json!({"filename": "byo.bin", "fileSize": file.len(), "contentType": "application/octet-stream",
                   "provider": "S3", "s3AccessKey": keys["access_key"], "s3SecretKey": secret,
                   "s3Bucket": "partway", "s3Region": "us-east-1", "s3Endpoint": endpoint}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{init}");
    assert!(!init.to_string().contains(&secret));
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let mut etags = Vec::new();
    for part in init["partUrls"].as_array().unwrap() {
        etags.push(json!({"partNumber": part["partNumber"], "etag": app.put_part(part["url"].as_str().unwrap(), slice(&file, part)).await}));
    }
    let (status, resumed) = app
        .post(
            "/api/v1/upload/multipart/resume?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["uploadedParts"].as_array().unwrap().len(), 2);
    let (status, completed) = app
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token, "parts": etags}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    assert_eq!(
        sha256(
            &app.download(completed["downloadUrl"].as_str().unwrap())
                .await
        ),
        sha256(&file)
    );
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    let (_, list) = app.get("/api/v1/uploads").await;
    for answer in [&completed, &doc, &list, &resumed] {
        assert!(
            !answer.to_string().contains(&secret),
            "secret in a response"
        );
    }
    use sea_orm::EntityTrait;
    let row =
        partway_entity::upload::Entity::find_by_id(uuid::Uuid::parse_str(&token[4..]).unwrap())
            .one(app.app.db())
            .await
            .unwrap()
            .unwrap();
    let sealed = row.credentials_sealed.expect("credentials stored sealed");
    assert!(
        !sealed.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "stored in the clear"
    );
    assert_eq!(row.endpoint.as_deref(), Some(endpoint.as_str()));
    app.app.shutdown().await;
}

#[tokio::test]
async fn cors_answers_preflight_for_configured_origins_only() {
    let app = TestApp::spawn_with(vec![(
        "PARTWAY_CORS_ORIGINS".into(),
        "https://app.example".into(),
    )])
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(
                reqwest::Method::OPTIONS,
                app.url("/api/v1/upload/multipart/init"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key, content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    app.app.shutdown().await;
}

/// Init with metadata, then find the upload again by one metadata entry: the status
/// document carries the metadata and the list filter matches exactly that entry.
async fn metadata_finds_the_upload(app: &Api) {
    let mut tokens = Vec::new();
    for (name, metadata) in [
        ("a.bin", json!({"fingerprint": "3f2a9c", "team": "x"})),
        ("b.bin", json!({"fingerprint": "3f2a9cd"})),
        ("c.bin", json!({})),
    ] {
        let (status, doc) = app
            .post(
                "/api/v1/upload/multipart/init?wait=30",
                json!({"filename": name, "fileSize": MIB, "contentType": "application/octet-stream", "metadata": metadata}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        tokens.push(doc["resumeToken"].as_str().unwrap().to_string());
    }
    let (_, doc) = app
        .get(&format!("/api/v1/upload/multipart/{}", tokens[0]))
        .await;
    assert_eq!(
        doc["metadata"],
        json!({"fingerprint": "3f2a9c", "team": "x"})
    );
    let (_, doc) = app
        .get(&format!("/api/v1/upload/multipart/{}", tokens[2]))
        .await;
    assert_eq!(doc["metadata"], json!({}));

    let (status, list) = app.get("/api/v1/uploads?metadata=fingerprint:3f2a9c").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let found: Vec<&str> = list["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["resumeToken"].as_str().unwrap())
        .collect();
    assert_eq!(found, vec![tokens[0].as_str()], "exact match only");
    let (_, list) = app
        .get("/api/v1/uploads?status=active&metadata=fingerprint%3A3f2a9cd")
        .await;
    assert_eq!(list["uploads"][0]["resumeToken"], json!(tokens[1]));
    assert_eq!(list["uploads"].as_array().unwrap().len(), 1);
    let (_, list) = app.get("/api/v1/uploads?metadata=team:y").await;
    assert_eq!(list["uploads"], json!([]));

    let (status, body) = app.get("/api/v1/uploads?metadata=fingerprint").await;
    assert_error(status, &body, 400, "INVALID_PARAMETER");
    assert!(
        body["message"].as_str().unwrap().contains("key:value"),
        "{body}"
    );
    let (status, body) = app.get("/api/v1/uploads?metadata=bad%22key%27:1").await;
    assert_error(status, &body, 400, "INVALID_PARAMETER");
}

#[tokio::test]
async fn metadata_finds_the_upload_on_sqlite() {
    let app = TestApp::spawn().await;
    metadata_finds_the_upload(&app).await;
    app.app.shutdown().await;
}

#[tokio::test]
async fn metadata_finds_the_upload_on_postgresql() {
    let Some(url) = fresh_postgres_database().await else {
        return;
    };
    let app = TestApp::spawn_with(vec![("PARTWAY_DATABASE_URL".into(), url)]).await;
    metadata_finds_the_upload(&app).await;
    app.app.shutdown().await;
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Issue 11, item 9a: the embedded endpoint named a sidecar after the object key,
/// so filenames over ~112 bytes failed at complete after the object was in place
/// (an orphan, and the upload back in `active`). A 255-byte non-ASCII filename
/// (partway's longest) now completes and downloads intact; a complete storage
/// refuses leaves no object; and nothing but the object and its sidecar remains.
#[tokio::test]
async fn a_255_byte_non_ascii_filename_completes_and_leaves_no_stray_files() {
    let app = TestApp::spawn().await;
    let filename = format!("{}x.pdf", "é".repeat(125));
    assert_eq!(filename.len(), 255);
    let file = test_bytes(5 * MIB + 1234, 9);
    let init = app.init(&filename, file.len()).await;
    let token = init["resumeToken"].as_str().unwrap();
    let mut parts = Vec::new();
    for part in init["partUrls"].as_array().unwrap() {
        let etag = app
            .put_part(part["url"].as_str().unwrap(), slice(&file, part))
            .await;
        parts.push(json!({"partNumber": part["partNumber"], "etag": etag}));
    }
    assert_eq!(parts.len(), 2);
    let s3_root = app.data_dir.join("s3");

    // Storage refuses this complete (a wrong ETag): no object appears.
    let mut wrong = parts.clone();
    wrong[1]["etag"] = json!("0123456789abcdef0123456789abcdef");
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token, "parts": wrong}),
        )
        .await;
    assert_error(status, &body, 400, "INVALID_PARTS");
    let objects: Vec<_> = files_under(&s3_root)
        .into_iter()
        .filter(|p| !p.starts_with(".multipart"))
        .collect();
    assert!(objects.is_empty(), "{objects:?}");

    let (status, completed) = app
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token, "parts": parts}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    assert_eq!(completed["status"], json!("completed"));
    let downloaded = app
        .download(completed["downloadUrl"].as_str().unwrap())
        .await;
    assert_eq!(sha256(&downloaded), sha256(&file));

    // The object (named as partway's key says) and its one sidecar; no part,
    // temp or upload file is left.
    let left = files_under(&s3_root);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter().any(
            |p| p.file_name().and_then(|n| n.to_str()) == Some(filename.as_str())
                && std::fs::metadata(s3_root.join(p)).unwrap().len() == file.len() as u64
        ),
        "{left:?}"
    );
    assert!(left.iter().any(|p| p.starts_with(".objects")), "{left:?}");
    app.app.shutdown().await;
}
