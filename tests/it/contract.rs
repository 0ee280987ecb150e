//! Bad input answered with its code in the envelope, nothing written; part URLs that
//! were tampered with or expired are refused by the embedded endpoint; 10,000 parts.
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

const MAX_S3: u64 = 53_687_091_200_000;

#[tokio::test]
async fn every_bad_input_gets_its_code_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let ok = |overrides: Value| {
        let mut body = json!({"filename": "f.bin", "fileSize": 10 * MIB, "contentType": "application/octet-stream"});
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let big_metadata: serde_json::Map<String, Value> = (0..30)
        .map(|i| (format!("key{i}"), Value::String("v".repeat(80))))
        .collect();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "missing fileSize",
            ok(json!({"fileSize": null})),
            400,
            "MISSING_REQUIRED_FIELDS",
        ),
        (
            "missing filename",
            ok(json!({"filename": null})),
            400,
            "MISSING_REQUIRED_FIELDS",
        ),
        (
            "empty contentType",
            ok(json!({"contentType": ""})),
            400,
            "MISSING_REQUIRED_FIELDS",
        ),
        (
            "fileSize 0",
            ok(json!({"fileSize": 0})),
            400,
            "INVALID_FILE_SIZE",
        ),
        (
            "fileSize negative",
            ok(json!({"fileSize": -5})),
            400,
            "INVALID_FILE_SIZE",
        ),
        (
            "fileSize over max",
            ok(json!({"fileSize": MAX_S3 + 1})),
            400,
            "INVALID_FILE_SIZE",
        ),
        (
            "fileSize over R2 max",
            ok(json!({"fileSize": 6_000_000_000_000u64, "provider": "R2",
            "r2AccessKey": "a", "r2SecretKey": "b", "r2AccountId": "abc", "r2Bucket": "b"})),
            400,
            "INVALID_FILE_SIZE",
        ),
        (
            "partSize too small",
            ok(json!({"partSize": MIB})),
            400,
            "INVALID_PART_SIZE",
        ),
        (
            "partSize too big",
            ok(json!({"partSize": 6u64 * 1024 * MIB as u64})),
            400,
            "INVALID_PART_SIZE",
        ),
        (
            "too many parts",
            ok(json!({"fileSize": 100u64 * 1024 * MIB as u64, "partSize": 5 * MIB})),
            400,
            "INVALID_PART_SIZE",
        ),
        (
            "metadata over 2 KiB",
            ok(json!({"metadata": big_metadata})),
            400,
            "INVALID_METADATA",
        ),
        (
            "metadata not strings",
            ok(json!({"metadata": {"a": 1}})),
            400,
            "INVALID_METADATA",
        ),
        (
            "unknown provider",
            ok(json!({"provider": "GCS"})),
            400,
            "INVALID_PROVIDER",
        ),
        (
            "partial S3 credentials",
            ok(json!({"s3AccessKey": "AKIA"})),
            400,
            "MISSING_S3_CREDENTIALS",
        ),
        (
            "R2 without credentials",
            ok(json!({"provider": "R2"})),
            400,
            "MISSING_R2_CREDENTIALS",
        ),
        (
            "path traversal",
            ok(json!({"filename": "../../etc/passwd"})),
            400,
            "INVALID_FILENAME",
        ),
        (
            "dot dot",
            ok(json!({"filename": ".."})),
            400,
            "INVALID_FILENAME",
        ),
        (
            "control character",
            ok(json!({"filename": "a\u{0000}b"})),
            400,
            "INVALID_FILENAME",
        ),
        ("not an object", json!([1, 2]), 400, "INVALID_JSON"),
    ];
    for (name, body, want_status, want_code) in cases {
        let (status, answer) = app.post("/api/v1/upload/multipart/init?wait=5", body).await;
        assert_eq!(status.as_u16(), want_status, "{name}: {answer}");
        assert_eq!(answer["error"], json!(want_code), "{name}: {answer}");
        assert_eq!(answer["success"], json!(false), "{name}");
    }

    let raw = |path: &str, content_type: &str, body: &'static str| {
        app.http
            .post(app.url(path))
            .header("x-api-key", &app.key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, body) = read(
        raw(
            "/api/v1/upload/multipart/init",
            "application/json",
            "{\"filename\":",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_error(status, &body, 400, "INVALID_JSON");
    let (status, body) = read(
        raw("/api/v1/upload/multipart/init", "text/plain", "{}")
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 415, "UNSUPPORTED_MEDIA_TYPE");
    let huge = vec![b' '; 5 * MIB];
    let response = app
        .http
        .post(app.url("/api/v1/upload/multipart/complete"))
        .header("x-api-key", &app.key)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE");

    // Auth, routes, tokens, parameters.
    let (status, body) = read(
        app.http
            .get(app.url("/api/v1/uploads"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = app.get_with_key("/api/v1/uploads", "pwk_not-a-key").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let bearer = app
        .http
        .get(app.url("/api/v1/uploads"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
    let (status, body) = app.get("/api/v1/nope").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = read(
        app.http
            .delete(app.url("/api/v1/uploads"))
            .header("x-api-key", &app.key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 405, "METHOD_NOT_ALLOWED");
    let unknown = format!("mpu_{}", uuid::Uuid::new_v4());
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/resume",
            json!({"resumeToken": unknown}),
        )
        .await;
    assert_error(status, &body, 404, "UPLOAD_NOT_FOUND");
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/resume",
            json!({"resumeToken": "../../x"}),
        )
        .await;
    assert_error(status, &body, 404, "UPLOAD_NOT_FOUND");
    let (status, body) = app.get("/api/v1/upload/multipart/not-a-token").await;
    assert_error(status, &body, 404, "UPLOAD_NOT_FOUND");
    let (status, body) = app.post("/api/v1/upload/multipart/abort", json!({})).await;
    assert_error(status, &body, 400, "MISSING_RESUME_TOKEN");
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/complete",
            json!({"resumeToken": unknown, "parts": []}),
        )
        .await;
    assert_error(status, &body, 404, "UPLOAD_NOT_FOUND");
    let (status, body) = app.get("/api/v1/uploads?limit=0").await;
    assert_error(status, &body, 400, "INVALID_PARAMETER");
    let (status, body) = app.get("/api/v1/uploads?limit=abc").await;
    assert_error(status, &body, 400, "INVALID_PARAMETER");
    let (status, body) = app.get("/api/v1/uploads?status=done").await;
    assert_error(status, &body, 400, "INVALID_PARAMETER");
    let valid =
        json!({"filename": "f.bin", "fileSize": MIB, "contentType": "application/octet-stream"});
    let (status, body) = app
        .post("/api/v1/upload/multipart/init?wait=61", valid)
        .await;
    assert_error(status, &body, 400, "INVALID_PARAMETER");

    // Nothing was written by any of it.
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        partway_entity::upload::Entity::find()
            .count(app.app.db())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        partway_entity::job::Entity::find()
            .count(app.app.db())
            .await
            .unwrap(),
        0
    );

    // With a real upload: empty parts, a part number out of range, a wrong size report.
    let init = app.init("real.bin", 6 * MIB).await;
    let token = init["resumeToken"].as_str().unwrap();
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/complete",
            json!({"resumeToken": token, "parts": []}),
        )
        .await;
    assert_error(status, &body, 400, "MISSING_PARTS");
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/complete",
            json!({"resumeToken": token, "parts": [{"partNumber": 1, "etag": "x"}]}),
        )
        .await;
    assert_error(status, &body, 409, "INCOMPLETE_PARTS");
    let (status, body) = app
        .post("/api/v1/upload/multipart/complete", json!({"resumeToken": token, "parts": [{"partNumber": 9, "etag": "x"}, {"partNumber": 1, "etag": "y"}]}))
        .await;
    assert_error(status, &body, 409, "PARTS_MISMATCH");
    let (status, body) = app
        .report(token, &json!({"partNumber": 1, "size": 3}), "abc")
        .await;
    assert_error(status, &body, 409, "PARTS_MISMATCH");
    let (status, body) = app
        .report(token, &json!({"partNumber": 3, "size": MIB}), "abc")
        .await;
    assert_error(status, &body, 409, "PARTS_MISMATCH");
    let (status, body) = app
        .get(&format!(
            "/api/v1/upload/multipart/{token}/parts?state=weird"
        ))
        .await;
    assert_error(status, &body, 400, "INVALID_PARAMETER");
    let (status, body) = app
        .get(&format!(
            "/api/v1/upload/multipart/{token}/parts?limit=1001"
        ))
        .await;
    assert_error(status, &body, 400, "INVALID_PARAMETER");
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(
        doc["status"],
        json!("active"),
        "rejected calls left the upload as it was"
    );
    assert_eq!(doc["progress"]["uploaded"], json!(0));
    app.app.shutdown().await;
}

/// The embedded endpoint's generated keys, to build a URL with a past signing time.
fn embedded_keys(app: &TestApp) -> (String, String) {
    let text = std::fs::read_to_string(app.data_dir.join("embedded-s3.json")).unwrap();
    let keys: Value = serde_json::from_str(&text).unwrap();
    (
        keys["access_key"].as_str().unwrap().into(),
        keys["secret_key"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn tampered_or_expired_part_urls_are_refused_and_store_nothing() {
    let app = TestApp::spawn().await;
    let init = app.init("guarded.bin", 6 * MIB).await;
    let token = init["resumeToken"].as_str().unwrap();
    let url = init["partUrls"][0]["url"].as_str().unwrap().to_string();

    let signature_at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = url.clone().into_bytes();
    tampered[signature_at] = if tampered[signature_at] == b'a' {
        b'b'
    } else {
        b'a'
    };
    let response = app
        .http
        .put(String::from_utf8(tampered).unwrap())
        .body(vec![7u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Signed two hours ago for one minute: expired.
    let (access, secret) = embedded_keys(&app);
    let endpoint = app.app.embedded_s3_endpoint().unwrap();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .force_path_style(true)
        .credentials_provider(aws_credential_types::Credentials::new(
            access, secret, None, None, "test",
        ))
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let presigning = aws_sdk_s3::presigning::PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(7200))
        .expires_in(Duration::from_secs(60))
        .build()
        .unwrap();
    let expired = client
        .upload_part()
        .bucket("partway")
        .key(init["fileKey"].as_str().unwrap())
        .upload_id(init["uploadId"].as_str().unwrap())
        .part_number(1)
        .presigned(presigning)
        .await
        .unwrap();
    let response = app
        .http
        .put(expired.uri())
        .body(vec![7u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let (status, resumed) = app
        .post(
            "/api/v1/upload/multipart/resume?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["uploadedParts"], json!([]), "nothing was stored");
    // The genuine URL still works, with no extra headers.
    app.put_part(&url, vec![1u8; 1024]).await;
    app.app.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_parts_page_exactly_and_resume_sees_more_than_1000() {
    let app = TestApp::spawn().await;
    let file_size = 10_000 * 5 * MIB;
    let started = Instant::now();
    let init = app.init("huge.iso", file_size).await;
    eprintln!("10,000-part init with ?wait: {:?}", started.elapsed());
    let token = init["resumeToken"].as_str().unwrap().to_string();
    assert_eq!(init["totalParts"], json!(10_000));
    let urls: std::collections::HashSet<&str> = init["partUrls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), 10_000, "every part has its own URL");

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = app
            .get(&format!(
                "/api/v1/upload/multipart/{token}/parts?state=all&after={after}&limit=1000"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let parts = page["parts"].as_array().unwrap();
        assert!(parts.len() <= 1000);
        seen.extend(parts.iter().map(|p| p["partNumber"].as_u64().unwrap()));
        match page["nextAfter"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, (1..=10_000).collect::<Vec<u64>>());

    // 1,001 parts on storage (tiny bodies: storage checks sizes only at completion).
    let parts: Vec<Value> = init["partUrls"].as_array().unwrap()[..1001].to_vec();
    let http = app.http.clone();
    let statuses: Vec<StatusCode> = futures::stream::iter(parts)
        .map(|part| {
            let http = http.clone();
            async move {
                http.put(part["url"].as_str().unwrap())
                    .body(vec![1u8])
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    let (status, resumed) = app
        .post(
            "/api/v1/upload/multipart/resume?wait=60",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resumed["uploadedParts"].as_array().unwrap().len(), 1001);
    assert_eq!(resumed["uploadedParts"][1000]["partNumber"], json!(1001));
    assert_eq!(
        resumed["uploadedParts"][0]["size"],
        json!(1),
        "storage's sizes"
    );
    assert_eq!(resumed["remainingParts"].as_array().unwrap().len(), 8999);
    assert_eq!(resumed["remainingParts"][0]["partNumber"], json!(1002));
    app.app.shutdown().await;
}

/// DESIGN §7: a client's endpoint on a loopback or otherwise forbidden address is 400
/// `INVALID_ENDPOINT` in the envelope, with a message that shows no credentials, and
/// nothing is stored. Nothing is sent anywhere: the guard refuses before any connection.
#[tokio::test]
async fn client_endpoints_the_guard_refuses_are_invalid_endpoint() {
    const SECRET: &str = "their-secret-key-never-shown";
    let byo = |endpoint: Option<&str>| {
        let mut body = json!({"filename": "f.bin", "fileSize": 10 * MIB,
            "contentType": "application/octet-stream", "provider": "S3",
            "s3AccessKey": "AKIATHEIRS", "s3SecretKey": SECRET, "s3Bucket": "theirs"});
        if let Some(endpoint) = endpoint {
            body["s3Endpoint"] = json!(endpoint);
        }
        body
    };
    let r2 = json!({"filename": "f.bin", "fileSize": 10 * MIB,
        "contentType": "application/octet-stream", "provider": "R2",
        "r2AccessKey": "AKIATHEIRS", "r2SecretKey": SECRET, "r2AccountId": "abc123",
        "r2Bucket": "theirs"});
    // The harness runs in allowlist mode: loopback, and public AWS or R2 without a
    // listed endpoint, are refused.
    let strict = TestApp::spawn().await;
    // Guarded mode (the default): loopback literals, and a name resolving to loopback.
    let guarded = TestApp::spawn_with(vec![("PARTWAY_OUTBOUND".into(), "guarded".into())]).await;
    let mut cases = vec![
        (&strict, byo(Some("http://127.0.0.1:5432"))),
        (&strict, byo(Some("http://[::1]:1"))),
        (&strict, byo(Some("http://localhost:9"))),
        (&strict, byo(None)),
        (&strict, r2),
    ];
    for endpoint in [
        "http://127.0.0.1:5432",
        "http://[::1]:1",
        "http://localhost:9",
        "http://[::ffff:127.0.0.1]:9",
    ] {
        cases.push((&guarded, byo(Some(endpoint))));
    }
    for (app, body) in cases {
        let (status, answer) = app
            .post("/api/v1/upload/multipart/init?wait=5", body.clone())
            .await;
        assert_error(status, &answer, 400, "INVALID_ENDPOINT");
        let text = answer.to_string();
        assert!(
            !text.contains(SECRET) && !text.contains("AKIATHEIRS"),
            "{body}: {answer}"
        );
    }
    for app in [&strict, &guarded] {
        let (status, listed) = app.get("/api/v1/uploads").await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        assert_eq!(listed["uploads"], json!([]), "nothing stored: {listed}");
    }
    strict.app.shutdown().await;
    guarded.app.shutdown().await;
}

/// RFC 9110: a 405 says which methods the resource has (`Allow`), in the envelope.
#[tokio::test]
async fn method_not_allowed_carries_allow() {
    let app = TestApp::spawn().await;
    let token = "mpu_0b6f7a7e-3c1d-4e2f-9a8b-1c2d3e4f5a6b";
    let cases = [
        (
            reqwest::Method::GET,
            "/api/v1/upload/multipart/init".to_string(),
            "POST",
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/upload/multipart/{token}"),
            "GET, HEAD",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/upload/multipart/{token}/parts/1"),
            "PUT",
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/uploads".to_string(),
            "GET, HEAD",
        ),
        (reqwest::Method::TRACE, "/healthz".to_string(), "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let response = app
            .http
            .request(method.clone(), app.url(&path))
            .header("x-api-key", &app.key)
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(
            response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body["error"],
            json!("METHOD_NOT_ALLOWED"),
            "{method} {path}"
        );
    }
    // An unknown route stays 404, without Allow.
    let response = app
        .http
        .delete(app.url("/api/v1/nope"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get("allow").is_none());
}

/// What the spec declares is what the server refuses, with the contract's codes: a
/// malformed token is an unknown upload (no probing), bounds are INVALID_PARAMETER.
#[tokio::test]
async fn parameters_outside_the_spec_are_refused_with_the_contract_codes() {
    let app = TestApp::spawn().await;
    let init = app.init("p.bin", 6 * MIB).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("/api/v1/upload/multipart/{token}/parts?limit=0"),
            400,
            "INVALID_PARAMETER",
        ),
        (
            format!("/api/v1/upload/multipart/{token}/parts?limit=1001"),
            400,
            "INVALID_PARAMETER",
        ),
        (
            format!("/api/v1/upload/multipart/{token}/parts?state=done"),
            400,
            "INVALID_PARAMETER",
        ),
        (
            format!("/api/v1/upload/multipart/{token}/parts?state="),
            400,
            "INVALID_PARAMETER",
        ),
        (
            "/api/v1/upload/multipart/mpu_not-a-token".into(),
            404,
            "UPLOAD_NOT_FOUND",
        ),
        (
            "/api/v1/uploads?cursor=abc".into(),
            400,
            "INVALID_PARAMETER",
        ),
        ("/api/v1/uploads?status=".into(), 400, "INVALID_PARAMETER"),
        (
            "/api/v1/uploads?metadata=nocolon".into(),
            400,
            "INVALID_PARAMETER",
        ),
    ];
    for (path, want_status, want_code) in cases {
        let (status, body) = app.get(&path).await;
        assert_error(status, &body, want_status, want_code);
    }
    // Within the bounds: accepted, and the last page has no nextCursor.
    let (status, body) = app.get("/api/v1/uploads?limit=1000&status=active").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("nextCursor").is_none(), "{body}");
    let (status, _) = app
        .get(&format!(
            "/api/v1/upload/multipart/{token}/parts?state=all&limit=1"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    // A non-ASCII Idempotency-Key is refused, not ignored.
    let response = app
        .http
        .post(app.url("/api/v1/upload/multipart/init"))
        .header("x-api-key", &app.key)
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(b"k\xe9y").unwrap(),
        )
        .json(&json!({"filename": "f.bin", "fileSize": 1, "contentType": "text/plain"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
