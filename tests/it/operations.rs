//! The spec in the repo matches the code, `partway keys` works beside a running
//! service, expired uploads are swept, history is pruned, migrations run on PostgreSQL.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use crate::common::*;
use partway_core::store::Store;
use reqwest::StatusCode;
use serde_json::json;

#[test]
fn committed_openapi_yaml_matches_the_code() {
    let generated = partway::openapi_yaml();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    if std::env::var("PARTWAY_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml is out of date: regenerate with `cargo run -- openapi > openapi.yaml`"
    );
    let spec: serde_yaml::Value = serde_yaml::from_str(&generated).unwrap();
    let init = &spec["paths"]["/api/v1/upload/multipart/init"]["post"];
    let schema_name = init["requestBody"]["content"]["application/json; charset=utf-8"]["schema"]
        ["$ref"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let required = &spec["components"]["schemas"][schema_name.as_str()]["required"];
    for field in ["filename", "fileSize", "contentType"] {
        assert!(
            required
                .as_sequence()
                .unwrap()
                .iter()
                .any(|f| f.as_str() == Some(field)),
            "{field} is marked required"
        );
    }
}

#[tokio::test]
async fn keys_cli_creates_a_working_key_beside_the_running_service() {
    let app = TestApp::spawn().await;
    let bin = env!("CARGO_BIN_EXE_partway");
    let output = Command::new(bin)
        .args(["keys", "create", "--owner", "alice"])
        .env("PARTWAY_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_string();
    assert!(key.starts_with("pwk_"), "{stdout}");
    let (status, body) = app.get_with_key("/api/v1/uploads", &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let list = Command::new(bin)
        .args(["keys", "list"])
        .env("PARTWAY_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(
        listing.contains("alice") && listing.contains("dev"),
        "{listing}"
    );
    assert!(!listing.contains(&key), "the key itself is never listed");
    let id = listing
        .lines()
        .find(|l| l.contains("alice"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let revoke = Command::new(bin)
        .args(["keys", "revoke", &id])
        .env("PARTWAY_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    assert!(revoke.status.success());
    let list = Command::new(bin)
        .args(["keys", "list"])
        .env("PARTWAY_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    let revoked_line = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .find(|l| l.contains(&id))
        .unwrap()
        .to_string();
    assert!(
        !revoked_line.trim_end().ends_with('-'),
        "revoked time shown: {revoked_line}"
    );

    let bad = Command::new(bin)
        .args(["keys", "create", "--owner", "Bad Name!"])
        .env("PARTWAY_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(!String::from_utf8_lossy(&bad.stderr).is_empty());
    app.app.shutdown().await;
}

#[tokio::test]
async fn expired_uploads_are_swept_and_aborted_on_storage() {
    let app = TestApp::spawn_with(vec![
        ("PARTWAY_UPLOAD_TTL".into(), "2s".into()),
        ("PARTWAY_SWEEP_INTERVAL".into(), "1s".into()),
    ])
    .await;
    let init = app.init("short-lived.bin", 6 * MIB).await;
    let token = init["resumeToken"].as_str().unwrap();
    let url = init["partUrls"][0]["url"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
        let stored =
            partway_entity::upload::Entity::find_by_id(uuid::Uuid::parse_str(&token[4..]).unwrap());
        use sea_orm::EntityTrait;
        let row = stored.one(app.app.db()).await.unwrap().unwrap();
        if row.status.as_str() == "expired" {
            assert_eq!(doc["status"], json!("expired"));
            // The storage abort runs as a job: wait until the part URL stops working.
            let response = app.http.put(&url).body(vec![1u8; 8]).send().await.unwrap();
            if response.status() == StatusCode::NOT_FOUND {
                break;
            }
        }
        assert!(Instant::now() < deadline, "not swept: {doc}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/resume",
            json!({"resumeToken": token}),
        )
        .await;
    assert_error(status, &body, 410, "UPLOAD_EXPIRED");
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/abort",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("expired"));
    app.app.shutdown().await;
}

#[tokio::test]
async fn migrations_apply_roll_back_and_reapply_on_postgresql() {
    use partway_migration::{Migrator, MigratorTrait};
    let Some(url) = fresh_postgres_database().await else {
        return;
    };
    let db = sea_orm::Database::connect(&url).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    assert_eq!(
        Migrator::get_pending_migrations(&db).await.unwrap().len(),
        0
    );
    Migrator::down(&db, None).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    let (_, key) = partway_core::auth::create_key(&Store::new(db.clone()), "pg-owner")
        .await
        .unwrap();
    assert!(key.starts_with("pwk_"));
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let (status, body) = read(app.http.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = read(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let spec = app.http.get(app.url("/openapi.yaml")).send().await.unwrap();
    assert_eq!(spec.status(), StatusCode::OK);
    assert_eq!(spec.text().await.unwrap(), partway::openapi_yaml());
    let docs = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    app.app.shutdown().await;
}

#[tokio::test]
async fn the_docs_page_cannot_be_framed_or_load_from_elsewhere() {
    let app = TestApp::spawn().await;
    let docs = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let header = |name: &str| {
        docs.headers()
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    let csp = header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    // The page loads nothing from another origin: every script and style is inline.
    let html = docs.text().await.unwrap();
    for pattern in ["<script src=", "<link rel=\"stylesheet\" href=\"http"] {
        assert!(!html.contains(pattern), "{pattern} in the docs page");
    }
    // API answers are never sniffed either.
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn an_upload_past_its_expiry_counts_as_expired_before_the_sweep() {
    let app = TestApp::spawn_with(vec![
        ("PARTWAY_UPLOAD_TTL".into(), "1s".into()),
        ("PARTWAY_SWEEP_INTERVAL".into(), "3600s".into()),
    ])
    .await;
    let init = app.init("stale.bin", MIB).await;
    let token = init["resumeToken"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
        if doc["status"] == json!("expired") {
            break;
        }
        assert!(Instant::now() < deadline, "{doc}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, active) = app.get("/api/v1/uploads?status=active").await;
    assert_eq!(active["uploads"], json!([]));
    let (_, expired) = app.get("/api/v1/uploads?status=expired").await;
    assert_eq!(expired["uploads"][0]["resumeToken"], json!(token));
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/complete",
            json!({"resumeToken": token}),
        )
        .await;
    assert_error(status, &body, 410, "UPLOAD_EXPIRED");
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/abort?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("expired"));
    // Storage's upload was aborted by the expire job.
    let response = app
        .http
        .put(init["partUrls"][0]["url"].as_str().unwrap())
        .body(vec![1u8])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    app.app.shutdown().await;
}

#[tokio::test]
async fn metrics_answer_loopback_clients_with_cached_database_gauges() {
    let app = TestApp::spawn().await;
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("partway_uploads{status=\"active\"} 0"),
        "{text}"
    );
    // Within the refresh interval the gauges are not read again: a new upload shows
    // in the request counter at once, in the database gauge later.
    app.init("gauge.bin", 1024).await;
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("partway_uploads{status=\"active\"} 0"),
        "{text}"
    );
}

/// The sweeper deletes finished jobs older than `PARTWAY_HISTORY_RETENTION` (the pruning
/// statements, on PostgreSQL).
#[tokio::test]
async fn finished_jobs_past_the_retention_are_pruned_on_postgresql() {
    use partway_entity::job;
    use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let Some(cluster) = crate::common::cluster::Cluster::start_with(
        1,
        vec![
            ("PARTWAY_HISTORY_RETENTION".into(), "1h".into()),
            ("PARTWAY_SWEEP_INTERVAL".into(), "1s".into()),
        ],
    )
    .await
    else {
        return;
    };
    let init = cluster.api.init("old.bin", MIB).await;
    let token = init["resumeToken"].as_str().unwrap();
    let upload = uuid::Uuid::parse_str(&token[4..]).unwrap();
    let database = &cluster
        .env
        .iter()
        .find(|(k, _)| k == "PARTWAY_DATABASE_URL")
        .unwrap()
        .1;
    let db = sea_orm::Database::connect(database).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // As if the upload's finished jobs had ended two hours ago.
        job::Entity::update_many()
            .col_expr(
                job::Column::UpdatedAt,
                Expr::cust("now() - interval '2 hours'"),
            )
            .filter(job::Column::UploadId.eq(upload))
            .filter(job::Column::State.eq("done"))
            .exec(&db)
            .await
            .unwrap();
        let left = job::Entity::find()
            .filter(job::Column::UploadId.eq(upload))
            .count(&db)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} jobs never pruned: {}",
            cluster.worker_log(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The upload itself is kept.
    let (status, doc) = cluster
        .api
        .get(&format!("/api/v1/upload/multipart/{token}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(!cluster.all_logs().contains("history pruning failed"));
}
