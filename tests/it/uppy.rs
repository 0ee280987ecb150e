//! Uppy's Companion routes over HTTP (DESIGN §5), against the all-in-one service and
//! its embedded S3 endpoint: a size-unknown multipart upload signed part by part,
//! listed, completed with quoted and bare ETags, downloaded and compared; the status
//! document's null sizes until complete; header auth (5.x) beside the path token
//! (6.x); `maxFileSize` at complete (refused, aborted on storage); the POST policy's
//! limits proven by the embedded endpoint and the upload completed when partway sees
//! the object; Companion's error shape, preflights without credentials.
use std::time::{Duration, Instant};

use crate::common::{sha256, test_bytes, Api, TestApp, MIB};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn mint(api: &Api, limits: Value) -> String {
    let (status, body) = api.post("/api/v1/browser-tokens", limits).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().expect("token").to_string()
}

async fn call(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = api.http.request(method, api.url(path));
    if let Some(body) = body {
        req = req.json(&body);
    }
    crate::common::read(req.send().await.expect("request")).await
}

/// Companion's error shape: non-2xx, `{message}`, plus partway's code.
fn assert_uppy_error(status: StatusCode, body: &Value, want: u16, code: &str) {
    assert_eq!(status.as_u16(), want, "{body}");
    assert_eq!(body["error"], json!(code), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn status_doc(api: &Api, token: &str) -> Value {
    let (status, doc) = api.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    doc
}

async fn put(api: &Api, url: &str, bytes: Vec<u8>) -> String {
    api.put_part(url, bytes).await
}

#[tokio::test]
async fn a_size_unknown_multipart_upload_through_the_companion_routes() {
    let app = TestApp::spawn_with(vec![("PARTWAY_CORS_ORIGINS".into(), "*".into())]).await;
    let token = mint(&app, json!({"maxFileSize": 64 * MIB})).await;
    let base = format!("/uppy/{token}/s3");
    let (status, created) = call(
        &app,
        reqwest::Method::POST,
        &format!("{base}/multipart"),
        Some(json!({"filename": "photo é.bin", "type": "application/octet-stream",
                    "metadata": {"name": "photo é.bin", "type": "x", "caption": "Grüße", "relativePath": null}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let upload_id = created["uploadId"].as_str().unwrap().to_string();
    let key = created["key"].as_str().unwrap().to_string();
    assert!(upload_id.starts_with("mpu_"), "{created}");
    assert!(created["bucket"].is_string(), "{created}");
    let q = format!("key={}", urlencode(&key));

    // Unknown size: null until complete, listed like any other upload.
    let doc = status_doc(&app, &upload_id).await;
    for field in ["fileSize", "partSize", "totalParts"] {
        assert!(doc[field].is_null(), "{field}: {doc}");
    }
    for field in ["total", "totalBytes", "percentage", "bytesPercentage"] {
        assert!(doc["progress"][field].is_null(), "{field}: {doc}");
    }
    assert_eq!(doc["metadata"], json!({"caption": "Gr%C3%BC%C3%9Fe"}));
    let (_, listed) = app.get("/api/v1/uploads").await;
    assert!(listed["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["resumeToken"] == json!(upload_id)));

    let file = test_bytes(11 * MIB + 7, 13);
    let chunks: Vec<&[u8]> = file.chunks(5 * MIB).collect();
    let mut etags = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let n = i + 1;
        let (status, signed) = call(
            &app,
            reqwest::Method::GET,
            &format!("{base}/multipart/{upload_id}/{n}?{q}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{signed}");
        assert!(signed["expires"].as_u64().unwrap() > 60, "{signed}");
        etags.push(put(&app, signed["url"].as_str().unwrap(), chunk.to_vec()).await);
    }
    // Batch signing (Companion still serves it).
    let (status, batch) = call(
        &app,
        reqwest::Method::GET,
        &format!("{base}/multipart/{upload_id}/batch?{q}&partNumbers=1,2"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert!(batch["presignedUrls"]["2"].is_string(), "{batch}");

    let (status, parts) = call(
        &app,
        reqwest::Method::GET,
        &format!("{base}/multipart/{upload_id}?{q}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{parts}");
    let parts = parts.as_array().unwrap().clone();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0]["PartNumber"], json!(1));
    assert_eq!(parts[2]["Size"], json!(MIB + 7));
    let doc = status_doc(&app, &upload_id).await;
    assert_eq!(doc["progress"]["uploaded"], json!(3), "{doc}");
    let (status, pending) = app
        .get(&format!(
            "/api/v1/upload/multipart/{upload_id}/parts?state=pending"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{pending}");
    assert_eq!(pending["parts"], json!([]));
    let (_, uploaded) = app
        .get(&format!(
            "/api/v1/upload/multipart/{upload_id}/parts?state=uploaded"
        ))
        .await;
    assert_eq!(uploaded["parts"].as_array().unwrap().len(), 3, "{uploaded}");

    // partway's own routes on it: resume lists storage's parts and presigns nothing;
    // a part report is refused (no plan until complete).
    let (status, resumed) = app
        .post(
            "/api/v1/upload/multipart/resume?wait=30",
            json!({"resumeToken": upload_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(
        resumed["uploadedParts"].as_array().unwrap().len(),
        3,
        "{resumed}"
    );
    assert_eq!(resumed["remainingParts"], json!([]), "{resumed}");
    let response = app
        .http
        .put(app.url(&format!("/api/v1/upload/multipart/{upload_id}/parts/1")))
        .header("x-api-key", &app.key)
        .json(&json!({"etag": "abc", "size": 5}))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::common::read(response).await;
    assert_eq!(status.as_u16(), 409, "{body}");
    assert_eq!(body["error"], json!("UPLOAD_NOT_READY"), "{body}");

    // A key that does not match is 404; a wrong token 401; both in Companion's shape.
    let (status, body) = call(
        &app,
        reqwest::Method::GET,
        &format!("{base}/multipart/{upload_id}/1?key=other"),
        None,
    )
    .await;
    assert_uppy_error(status, &body, 404, "UPLOAD_NOT_FOUND");
    let (status, body) = call(
        &app,
        reqwest::Method::GET,
        &format!("/uppy/pwb_wrong/s3/multipart/{upload_id}/1?{q}"),
        None,
    )
    .await;
    assert_uppy_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = call(&app, reqwest::Method::GET, &format!("{base}/sts"), None).await;
    assert_uppy_error(status, &body, 400, "INVALID_PARAMETER");
    let (status, body) = call(
        &app,
        reqwest::Method::GET,
        &format!("{base}/multipart/{upload_id}/10001?{q}"),
        None,
    )
    .await;
    assert_uppy_error(status, &body, 400, "INVALID_PARAMETER");

    // 5.x quotes ETags, 6.x does not; both complete.
    let named: Vec<Value> = etags
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = if i % 2 == 0 {
                e.clone()
            } else {
                e.trim_matches('"').to_string()
            };
            json!({"PartNumber": i + 1, "ETag": e})
        })
        .collect();
    let (status, done) = call(
        &app,
        reqwest::Method::POST,
        &format!("{base}/multipart/{upload_id}/complete?{q}"),
        Some(json!({ "parts": named })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(
        done["location"]
            .as_str()
            .unwrap()
            .ends_with(&key.replace(' ', "%20"))
            || done["location"].as_str().unwrap().contains("photo"),
        "{done}"
    );
    assert_eq!(done["key"], json!(key));
    let doc = status_doc(&app, &upload_id).await;
    assert_eq!(doc["status"], json!("completed"));
    assert_eq!(doc["fileSize"], json!(file.len()));
    assert_eq!(doc["totalParts"], json!(3));
    assert_eq!(doc["progress"]["bytesPercentage"], json!(100.0));
    let downloaded = app.download(doc["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(sha256(&downloaded), sha256(&file));

    // Preflights need no credential; DELETE is allowed.
    let preflight = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            app.url(&format!("{base}/multipart/{upload_id}")),
        )
        .header("origin", "http://page.test")
        .header("access-control-request-method", "DELETE")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight
        .headers()
        .get("access-control-allow-methods")
        .map(|v| v.to_str().unwrap().to_uppercase())
        .unwrap_or_default();
    assert!(allowed.contains("DELETE"), "{allowed}");
}

#[tokio::test]
async fn header_auth_cancel_and_max_file_size_at_complete() {
    let app = TestApp::spawn().await;
    // 5.x: `/uppy` with x-api-key; cancel aborts on storage.
    let (status, created) = app
        .post(
            "/uppy/s3/multipart",
            json!({"filename": "c.bin", "type": "text/plain", "metadata": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let upload_id = created["uploadId"].as_str().unwrap();
    let q = format!("key={}", urlencode(created["key"].as_str().unwrap()));
    let response = app
        .http
        .delete(app.url(&format!("/uppy/s3/multipart/{upload_id}?{q}")))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    let (status, body) = crate::common::read(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    assert_eq!(
        status_doc(&app, upload_id).await["status"],
        json!("aborted")
    );
    let (status, body) = app
        .get(&format!("/uppy/s3/multipart/{upload_id}/1?{q}"))
        .await;
    assert_uppy_error(status, &body, 409, "UPLOAD_ABORTED");
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/uppy/s3/multipart",
        Some(json!({})),
    )
    .await;
    assert_uppy_error(status, &body, 401, "UNAUTHORIZED");

    // A token with maxFileSize 6 MiB: parts adding up to 7 MiB are refused at complete
    // and the storage upload is aborted.
    let token = mint(&app, json!({"maxFileSize": 6 * MIB})).await;
    let base = format!("/uppy/{token}/s3");
    let (_, created) = call(
        &app,
        reqwest::Method::POST,
        &format!("{base}/multipart"),
        Some(json!({"filename": "big.bin", "type": "application/octet-stream", "metadata": {}})),
    )
    .await;
    let upload_id = created["uploadId"].as_str().unwrap().to_string();
    let q = format!("key={}", urlencode(created["key"].as_str().unwrap()));
    let mut named = Vec::new();
    for (n, size) in [(1, 5 * MIB), (2, 2 * MIB)] {
        let (_, signed) = call(
            &app,
            reqwest::Method::GET,
            &format!("{base}/multipart/{upload_id}/{n}?{q}"),
            None,
        )
        .await;
        let etag = put(&app, signed["url"].as_str().unwrap(), test_bytes(size, n)).await;
        named.push(json!({"PartNumber": n, "ETag": etag}));
    }
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        &format!("{base}/multipart/{upload_id}/complete?{q}"),
        Some(json!({ "parts": named })),
    )
    .await;
    assert_uppy_error(status, &body, 400, "INVALID_FILE_SIZE");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let doc = status_doc(&app, &upload_id).await;
        if doc["status"] == json!("aborted") {
            assert_eq!(
                doc["lastError"]["code"],
                json!("INVALID_FILE_SIZE"),
                "{doc}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not aborted: {doc}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts a form to the POST policy's `url`: its fields, then `file`.
async fn form_post(
    api: &Api,
    params: &Value,
    content_type: &str,
    bytes: &[u8],
) -> reqwest::Response {
    let boundary = "----partwayformboundary7d93";
    let mut body = Vec::new();
    for (name, value) in params["fields"].as_object().unwrap() {
        let value = if name == "Content-Type" {
            content_type
        } else {
            value.as_str().unwrap()
        };
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    api.http
        .post(params["url"].as_str().unwrap())
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("form POST")
}

#[tokio::test]
async fn the_post_policy_limits_hold_on_the_embedded_endpoint_and_the_upload_completes() {
    let app = TestApp::spawn().await;
    let token = mint(&app, json!({"maxFileSize": 1000})).await;
    let base = format!("/uppy/{token}/s3");
    let params_of = |name: &str| {
        format!("{base}/params?filename={name}&type=text%2Fplain&metadata%5Bcaption%5D=hi")
    };
    let (status, params) = call(&app, reqwest::Method::GET, &params_of("a.txt"), None).await;
    assert_eq!(status, StatusCode::OK, "{params}");
    assert_eq!(params["method"], json!("POST"));
    assert!(params["url"].as_str().unwrap().ends_with('/'), "{params}");
    assert!(params["expires"].as_u64().unwrap() > 0);
    let key = params["fields"]["key"].as_str().unwrap().to_string();

    // Too large (the token's maxFileSize), another type: refused by storage.
    let refused = form_post(&app, &params, "text/plain", &[7u8; 1001]).await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    let refused = form_post(&app, &params, "image/png", b"hello").await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    // A tampered policy: refused.
    let mut tampered = params.clone();
    tampered["fields"]["key"] = json!(format!("{key}.evil"));
    let refused = form_post(&app, &tampered, "text/plain", b"hello").await;
    assert!(refused.status().is_client_error(), "{}", refused.status());

    let file = test_bytes(999, 5);
    let ok = form_post(&app, &params, "text/plain", &file).await;
    assert!(ok.status().is_success(), "{}", ok.status());
    assert!(ok.headers().get("etag").is_some());
    assert!(ok
        .headers()
        .get("location")
        .is_some_and(|l| l.to_str().unwrap().ends_with(&key)));

    // Completed when partway sees the object (DESIGN §5: within 10 s).
    let (_, list) = app.get("/api/v1/uploads?limit=5").await;
    let upload = list["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["fileKey"] == json!(key))
        .cloned()
        .expect("listed");
    let token_of_upload = upload["resumeToken"].as_str().unwrap().to_string();
    assert_eq!(upload["metadata"], json!({"caption": "hi"}));
    let deadline = Instant::now() + Duration::from_secs(10);
    let doc = loop {
        let doc = status_doc(&app, &token_of_upload).await;
        if doc["status"] == json!("completed") {
            break doc;
        }
        assert!(Instant::now() < deadline, "not completed in 10 s: {doc}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(doc["fileSize"], json!(999));
    let downloaded = app.download(doc["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(sha256(&downloaded), sha256(&file));
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
