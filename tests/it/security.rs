//! Issue 11 (DESIGN §7, at rest and in answers) over the real service: `lastError`
//! texts, download URLs, sealed credentials, data-dir modes and the development key.
use std::path::Path;

use crate::common::*;
use partway::Application;
use partway_core::domain::{last_error_message, ErrorCode};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::json;

/// Issue 11 item 3: `lastError` and a `?wait` error carry the code's fixed text; a row
/// an earlier version wrote with a raw reason shows the fixed text too.
#[tokio::test]
async fn last_error_is_a_fixed_text_per_code() {
    let app = TestApp::spawn().await;
    let file = test_bytes(FILE_SIZE, 11);
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
    let fixed = last_error_message(ErrorCode::IncompleteParts);
    assert_error(status, &body, 409, "INCOMPLETE_PARTS");
    assert_eq!(body["message"], json!(fixed));

    // A row with a raw reason (as versions before issue 11 stored them); changed
    // before the status is read, so no cached document hides it.
    let id = partway_core::domain::ResumeToken::parse(token)
        .unwrap()
        .uuid();
    let row = partway_entity::upload::Entity::find_by_id(id)
        .one(app.app.db())
        .await
        .unwrap()
        .unwrap();
    let mut legacy: partway_entity::upload::ActiveModel = row.into();
    legacy.last_error_code = Set(Some("SERVICE_UNAVAILABLE".into()));
    legacy.last_error_message = Set(Some(
        "storage refused to complete: AccessDenied: bucket at 10.9.8.7".into(),
    ));
    legacy.update(app.app.db()).await.unwrap();
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(
        doc["lastError"],
        json!({"code": "SERVICE_UNAVAILABLE", "message": last_error_message(ErrorCode::ServiceUnavailable)})
    );
    app.app.shutdown().await;
}

/// Every directory under `root` (itself included) and every file: their modes.
#[cfg(unix)]
fn modes(root: &Path) -> Vec<(String, bool, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push((
            path.display().to_string(),
            meta.is_dir(),
            meta.permissions().mode() & 0o777,
        ));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    out
}

#[cfg(unix)]
fn assert_private(root: &Path) {
    let all = modes(root);
    assert!(all.len() > 5, "{all:?}");
    for (path, is_dir, mode) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{path} is {mode:o}, not {want:o}");
    }
    for name in ["partway.db", "partway.db-wal", "master.key", "dev-api-key"] {
        assert!(
            all.iter().any(|(p, _, _)| p.ends_with(name)),
            "{name} missing: {all:?}"
        );
    }
}

/// Issue 11 item 6: after an upload through the all-in-one service, the data dir is
/// 0700 and every file in it (database, WAL, keys, stored objects, part files) 0600.
#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_its_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let app = Application::build(config_for(&data_dir, &[]))
        .await
        .unwrap();
    let api = Api::new(app.base_url(), app.dev_api_key().to_string());
    three_part_flow(&api).await;
    // One more upload left unfinished, so part files are on disk too.
    let init = api.init("open.bin", 6 * MIB).await;
    let part = init["partUrls"][0].clone();
    api.put_part(part["url"].as_str().unwrap(), test_bytes(5 * MIB, 2))
        .await;
    assert!(
        modes(&data_dir)
            .iter()
            .any(|(p, _, _)| p.ends_with("report.pdf")),
        "the object is stored"
    );
    assert_private(&data_dir);
    app.shutdown().await;
}

/// An existing data dir an earlier version left open to others is closed at start.
#[cfg(unix)]
#[tokio::test]
async fn an_open_data_dir_is_closed_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(data_dir.join("s3/partway")).unwrap();
    std::fs::write(data_dir.join("s3/partway/old.bin"), b"old").unwrap();
    for (path, mode) in [
        (data_dir.clone(), 0o755),
        (data_dir.join("s3"), 0o755),
        (data_dir.join("s3/partway"), 0o755),
        (data_dir.join("s3/partway/old.bin"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let app = Application::build(config_for(&data_dir, &[]))
        .await
        .unwrap();
    assert_private(&data_dir);
    app.shutdown().await;
}

fn dev_env(key: &str) -> Vec<(String, String)> {
    vec![("PARTWAY_DEV_API_KEY".to_string(), key.to_string())]
}

async fn uploads_status(app: &Application, key: &str) -> StatusCode {
    Api::new(app.base_url(), key.to_string())
        .get("/api/v1/uploads")
        .await
        .0
}

/// Issue 11 item 7: a changed `PARTWAY_DEV_API_KEY` revokes the earlier one, `off`
/// leaves no development key, and a revoked one cannot come back.
#[tokio::test]
async fn changing_or_switching_off_the_dev_key_revokes_the_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();
    let a = "dev-key-a-0123456789abcdef0123456789";
    let b = "dev-key-b-0123456789abcdef0123456789";

    let app = Application::build(config_for(data_dir, &[])).await.unwrap();
    let generated = app.dev_api_key().to_string();
    assert_eq!(uploads_status(&app, &generated).await, StatusCode::OK);
    app.shutdown().await;

    let app = Application::build(config_for(data_dir, &dev_env(a)))
        .await
        .unwrap();
    assert_eq!(app.dev_api_key(), a);
    assert_eq!(uploads_status(&app, a).await, StatusCode::OK);
    assert_eq!(
        uploads_status(&app, &generated).await,
        StatusCode::UNAUTHORIZED
    );
    app.shutdown().await;

    let app = Application::build(config_for(data_dir, &dev_env(b)))
        .await
        .unwrap();
    assert_eq!(uploads_status(&app, b).await, StatusCode::OK);
    assert_eq!(uploads_status(&app, a).await, StatusCode::UNAUTHORIZED);
    app.shutdown().await;

    let app = Application::build(config_for(data_dir, &dev_env("off")))
        .await
        .unwrap();
    assert_eq!(app.dev_api_key(), "");
    assert_eq!(uploads_status(&app, b).await, StatusCode::UNAUTHORIZED);
    app.shutdown().await;

    // A revoked key stays revoked: naming it again is a startup error.
    let err = match Application::build(config_for(data_dir, &dev_env(a))).await {
        Ok(_) => panic!("a revoked development key was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("revoked"), "{err}");
    assert!(!err.contains(a), "{err}");

    // Back to a generated key: the revoked one in the data dir is replaced.
    let app = Application::build(config_for(data_dir, &[])).await.unwrap();
    let fresh = app.dev_api_key().to_string();
    assert_ne!(fresh, generated);
    assert_eq!(uploads_status(&app, &fresh).await, StatusCode::OK);
    assert_eq!(
        uploads_status(&app, &generated).await,
        StatusCode::UNAUTHORIZED
    );
    app.shutdown().await;
}

/// The development key the all-in-one service prints at start, on the loopback address
/// it really listens on, is the key that works; a short `PARTWAY_DEV_API_KEY` is a
/// configuration error that never shows the key.
#[tokio::test]
async fn the_printed_dev_key_works_and_a_short_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = "dev-key-printed-0123456789abcdef0123";
    let app = Application::build(config_for(dir.path(), &dev_env(key)))
        .await
        .unwrap();
    let printed = partway::dev_key_lines(
        app.local_addr().unwrap(),
        Some(app.dev_api_key()),
        dir.path(),
    )
    .join("\n");
    assert!(printed.contains(&format!("Dev key:   {key}")), "{printed}");
    assert!(printed.contains(&app.base_url()), "{printed}");
    assert_eq!(uploads_status(&app, key).await, StatusCode::OK);
    app.shutdown().await;

    let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let mut all = env("PARTWAY_DATA_DIR", &dir.path().display().to_string());
    all.extend(env("PARTWAY_DEV_API_KEY", "too-short"));
    let err = partway_core::config::Config::load_from(all)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 32 characters"), "{err}");
    assert!(!err.contains("too-short"), "{err}");
}

/// Uploads `body` as `filename` with `contentType: text/html`, completes it and GETs
/// its download URL; returns that URL and the answer.
async fn html_download(api: &Api, filename: &str, body: &[u8]) -> (String, reqwest::Response) {
    let (status, init) = api
        .post(
            "/api/v1/upload/multipart/init?wait=60",
            json!({"filename": filename, "fileSize": body.len(), "contentType": "text/html"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{init}");
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let part = init["partUrls"][0].clone();
    let etag = api
        .put_part(part["url"].as_str().unwrap(), body.to_vec())
        .await;
    let (status, completed) = api
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token, "parts": [{"partNumber": 1, "etag": etag}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    let url = completed["downloadUrl"].as_str().unwrap().to_string();
    let answer = api.http.get(&url).send().await.expect("download");
    assert_eq!(answer.status(), StatusCode::OK);
    (url, answer)
}

/// Issue 11 item 4: a download URL carries a signed `response-content-disposition`
/// (attachment, the upload's filename: RFC 6266, UTF-8 aware), lives
/// `PARTWAY_DOWNLOAD_URL_TTL` (1 h), and storage answers it. `honours_overrides`: the
/// storage sends the override back as `Content-Disposition` (S3 and the embedded
/// endpoint do; moto 5.1 ignores `response-*` parameters).
async fn downloads_are_attachments(api: &Api, honours_overrides: bool) {
    let page = b"<html><script>alert(document.domain)</script></html>";
    let (url, answer) = html_download(api, "page.html", page).await;
    assert!(url.contains("X-Amz-Expires=3600"), "{url}");
    assert!(
        url.contains("response-content-disposition=attachment%3B%20filename%3D%22page.html%22"),
        "{url}"
    );
    if !honours_overrides {
        assert_eq!(answer.bytes().await.unwrap().as_ref(), page);
        return;
    }
    let disposition = answer
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        disposition.as_deref(),
        Some("attachment; filename=\"page.html\"")
    );
    assert_eq!(answer.bytes().await.unwrap().as_ref(), page);

    let (_, answer) = html_download(api, "résumé \"final\".html", page).await;
    let disposition = answer.headers().get("content-disposition").unwrap();
    assert_eq!(
        disposition.to_str().unwrap(),
        "attachment; filename=\"r_sum_ _final_.html\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.html"
    );
}

#[tokio::test]
async fn downloads_are_attachments_on_the_embedded_endpoint() {
    let app = TestApp::spawn().await;
    downloads_are_attachments(&app, true).await;
    app.app.shutdown().await;
}

#[tokio::test]
async fn downloads_are_attachments_on_moto() {
    let Some(s3) = required_service("PARTWAY_TEST_S3_ENDPOINT") else {
        return;
    };
    let bucket = fresh_moto_bucket(&s3).await;
    let app = TestApp::spawn_with(vec![
        ("PARTWAY_S3_ENDPOINT".into(), s3),
        ("PARTWAY_S3_BUCKET".into(), bucket),
        ("PARTWAY_S3_ACCESS_KEY_ID".into(), "test".into()),
        ("PARTWAY_S3_SECRET_ACCESS_KEY".into(), "test".into()),
        ("PARTWAY_S3_FORCE_PATH_STYLE".into(), "true".into()),
    ])
    .await;
    downloads_are_attachments(&app, false).await;
    app.app.shutdown().await;
}

/// Issue 11 item 5: `partway keys rotate-master` re-seals a stopped service's
/// bring-your-own credentials under a new key (written to `master.key`); started again,
/// the service completes the upload through them.
#[tokio::test]
async fn rotate_master_reseals_and_the_service_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::private::free_port();
    let env = vec![(
        "PARTWAY_EMBEDDED_S3_BIND".to_string(),
        format!("127.0.0.1:{port}"),
    )];
    let app = Application::build(config_for(dir.path(), &env))
        .await
        .unwrap();
    let api = Api::new(app.base_url(), app.dev_api_key().to_string());
    let keys: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("embedded-s3.json")).unwrap(),
    )
    .unwrap();
    let file = test_bytes(6 * MIB, 31);
    let (status, init) = api
        .post(
            "/api/v1/upload/multipart/init?wait=30",
            json!({"filename": "byo.bin", "fileSize": file.len(), "contentType": "application/octet-stream",
                   "provider": "S3", "s3AccessKey": keys["access_key"], "s3SecretKey": keys["secret_key"],
                   "s3Bucket": "partway", "s3Region": "us-east-1", "s3Endpoint": app.embedded_s3_endpoint().unwrap()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{init}");
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let mut etags = Vec::new();
    for part in init["partUrls"].as_array().unwrap() {
        let etag = api
            .put_part(part["url"].as_str().unwrap(), slice(&file, part))
            .await;
        etags.push(json!({"partNumber": part["partNumber"], "etag": etag}));
    }
    let old_key = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    app.shutdown().await;

    // What `partway keys rotate-master` runs (in process: the binary in the shared
    // target directory may be another checkout's).
    let new_key = "22".repeat(32);
    let config = config_for(dir.path(), &env);
    let store = partway_core::store::Store::new(partway::connect_database(&config).await.unwrap());
    let (done, replaced) = partway::rotate_master_key(&config, &store, &new_key)
        .await
        .unwrap();
    assert_eq!(
        (done.resealed, done.already, done.unreadable, replaced),
        (1, 0, 0, true)
    );
    assert_ne!(old_key.trim(), new_key);
    let stored = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    assert_eq!(stored.trim(), new_key);

    let app = Application::build(config_for(dir.path(), &env))
        .await
        .unwrap();
    let api = Api::new(app.base_url(), app.dev_api_key().to_string());
    let (status, completed) = api
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token, "parts": etags}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    assert_eq!(
        sha256(
            &api.download(completed["downloadUrl"].as_str().unwrap())
                .await
        ),
        sha256(&file)
    );
    app.shutdown().await;
}

/// Issue 11 item 9b: a part URL partway handed out must not be turned into something
/// else by headers its signature does not cover (`x-amz-copy-source` made it an
/// UploadPartCopy): the embedded endpoint answers 403 AccessDenied, as S3 does, and
/// stores nothing; the same URL without the header works.
#[tokio::test]
async fn presigned_part_urls_refuse_unsigned_amz_headers() {
    let app = TestApp::spawn().await;
    let file = test_bytes(MIB, 3);
    let init = app.init("copy.bin", file.len()).await;
    let part = init["partUrls"][0].clone();
    let url = part["url"].as_str().unwrap();

    for (name, value) in [
        ("x-amz-copy-source", "partway/some/other/object".to_owned()),
        ("x-amz-foo", "bar".to_owned()),
    ] {
        let response = app
            .http
            .put(url)
            .header(name, value)
            .body(file.clone())
            .send()
            .await
            .expect("part PUT");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}");
        let body = response.text().await.unwrap();
        assert!(body.contains("<Code>AccessDenied</Code>"), "{name}: {body}");
    }
    let token = init["resumeToken"].as_str().unwrap();
    let (status, resumed) = app
        .post(
            "/api/v1/upload/multipart/resume?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert!(
        part_numbers(&resumed["uploadedParts"]).is_empty(),
        "{resumed}"
    );

    let etag = app.put_part(url, file.clone()).await;
    let (status, completed) = app
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token, "parts": [{"partNumber": 1, "etag": etag}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    app.app.shutdown().await;
}
