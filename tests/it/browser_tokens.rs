//! Browser tokens over HTTP (DESIGN §5): minted, listed and revoked with an API key;
//! scoped to the uploads they create (another token's upload is 404, their list shows
//! only their own); limits on size, type and count; forced metadata; 403 FORBIDDEN for
//! what a token may not do; expired and revoked tokens refused with 401 naming why;
//! `?access_token=` on the event stream; `maxUploads` held across two API processes.
use std::time::{Duration, Instant};

use crate::common::{assert_error, cluster::Cluster, test_bytes, Api, TestApp, MIB};
use reqwest::StatusCode;
use serde_json::{json, Value};

const INIT: &str = "/api/v1/upload/multipart/init";

/// Mints a token with `limits` through the API key; returns (id, token).
async fn mint(api: &Api, limits: Value) -> (String, String) {
    let (status, body) = api.post("/api/v1/browser-tokens", limits).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("pwb_"), "{token}");
    (body["id"].as_str().expect("id").to_string(), token)
}

async fn init_with(api: &Api, token: &str, body: Value) -> (StatusCode, Value) {
    api.post_with_key(&format!("{INIT}?wait=30"), token, body)
        .await
}

fn file(name: &str, size: usize, content_type: &str) -> Value {
    json!({"filename": name, "fileSize": size, "contentType": content_type})
}

async fn list_tokens(api: &Api, key: &str) -> (StatusCode, Value) {
    api.get_with_key("/api/v1/uploads", key).await
}

#[tokio::test]
async fn a_token_sees_only_the_uploads_it_made_and_its_owner_sees_all() {
    let app = TestApp::spawn().await;
    tokens_see_only_their_own_uploads(&app).await;
    app.app.shutdown().await;
}

/// The same with `partway-api` + 2 workers on PostgreSQL, RabbitMQ, Redis and moto.
#[tokio::test]
async fn a_token_sees_only_its_own_uploads_against_api_and_two_workers() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    tokens_see_only_their_own_uploads(&cluster.api).await;
}

/// Two tokens of one owner: each reads and lists only the uploads it made (another
/// token's is 404); the owner's API key sees and manages both.
async fn tokens_see_only_their_own_uploads(api: &Api) {
    let (_, a) = mint(api, json!({"label": "page A"})).await;
    let (_, b) = mint(api, json!({})).await;

    let (status, made_a) = init_with(api, &a, file("a.bin", MIB, "application/octet-stream")).await;
    assert_eq!(status, StatusCode::OK, "{made_a}");
    let token_a = made_a["resumeToken"].as_str().unwrap();
    let (status, made_b) = init_with(api, &b, file("b.bin", MIB, "application/octet-stream")).await;
    assert_eq!(status, StatusCode::OK, "{made_b}");

    // B cannot read, pause, resume or abort A's upload: 404, as for another owner.
    let (status, body) = api
        .get_with_key(&format!("/api/v1/upload/multipart/{token_a}"), &b)
        .await;
    assert_error(status, &body, 404, "UPLOAD_NOT_FOUND");
    for op in ["pause", "abort", "resume"] {
        let (status, body) = api
            .post_with_key(
                &format!("/api/v1/upload/multipart/{op}"),
                &b,
                json!({"resumeToken": token_a}),
            )
            .await;
        assert_error(status, &body, 404, "UPLOAD_NOT_FOUND");
    }
    // A reads its own (twice: the second answer comes from the status cache).
    for _ in 0..2 {
        let (status, body) = api
            .get_with_key(&format!("/api/v1/upload/multipart/{token_a}"), &a)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = api
        .get_with_key(&format!("/api/v1/upload/multipart/{token_a}"), &b)
        .await;
    assert_error(status, &body, 404, "UPLOAD_NOT_FOUND");

    let (_, listed_a) = list_tokens(api, &a).await;
    let names: Vec<&str> = listed_a["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.bin"]);
    let (_, listed_b) = list_tokens(api, &b).await;
    assert_eq!(listed_b["uploads"].as_array().unwrap().len(), 1);
    // The owner's API key sees both, and manages A's upload like any other.
    let (_, listed) = api.get("/api/v1/uploads").await;
    assert_eq!(listed["uploads"].as_array().unwrap().len(), 2);
    let (status, body) = api
        .get(&format!("/api/v1/upload/multipart/{token_a}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Bearer works like x-api-key.
    let response = api
        .http
        .get(api.url("/api/v1/uploads"))
        .header("authorization", format!("Bearer {a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The token list shows both tokens, never the secret.
    let (status, tokens) = api.get("/api/v1/browser-tokens").await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let text = tokens.to_string();
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 2, "{text}");
    assert!(!text.contains(&a) && !text.contains(&b), "{text}");
    assert!(text.contains("page A"), "{text}");
}

#[tokio::test]
async fn a_token_cannot_mint_tokens_or_bring_storage_keys() {
    let app = TestApp::spawn().await;
    let (id, token) = mint(&app, json!({})).await;
    // 403 before the body is read: even a broken body gets it.
    for body in [
        reqwest::Body::from("{not json"),
        reqwest::Body::from("{\"expiresIn\": 120}"),
    ] {
        let response = app
            .http
            .post(app.url("/api/v1/browser-tokens"))
            .header("x-api-key", &token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, body) = crate::common::read(response).await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    let (status, body) = app.get_with_key("/api/v1/browser-tokens", &token).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let response = app
        .http
        .delete(app.url(&format!("/api/v1/browser-tokens/{id}")))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::common::read(response).await;
    assert_error(status, &body, 403, "FORBIDDEN");

    let mut byo = file("x.bin", MIB, "application/octet-stream");
    byo["s3Endpoint"] = json!("http://127.0.0.1:1");
    byo["s3Bucket"] = json!("b");
    let (status, body) = init_with(&app, &token, byo).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    app.app.shutdown().await;
}

#[tokio::test]
async fn limits_size_type_count_and_forced_metadata_hold() {
    let app = TestApp::spawn().await;
    let (id, token) = mint(
        &app,
        json!({
            "expiresIn": 600,
            "maxFileSize": 2 * MIB,
            "allowedContentTypes": ["image/*", "application/pdf"],
            "maxUploads": 2,
            "metadata": {"tenant": "acme"},
        }),
    )
    .await;
    let (status, body) = init_with(&app, &token, file("big.png", 2 * MIB + 1, "image/png")).await;
    assert_error(status, &body, 400, "INVALID_FILE_SIZE");
    let (status, body) = init_with(&app, &token, file("x.html", MIB, "text/html")).await;
    assert_error(status, &body, 400, "INVALID_CONTENT_TYPE");

    let mut first = file("one.png", MIB, "image/png");
    first["metadata"] = json!({"tenant": "evil", "note": "kept"});
    let (status, made) = init_with(&app, &token, first).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let (_, doc) = app
        .get_with_key(
            &format!(
                "/api/v1/upload/multipart/{}",
                made["resumeToken"].as_str().unwrap()
            ),
            &token,
        )
        .await;
    assert_eq!(doc["metadata"], json!({"tenant": "acme", "note": "kept"}));

    // An idempotent repeat is the same upload and takes no second slot.
    for _ in 0..2 {
        let response = app
            .http
            .post(app.url(&format!("{INIT}?wait=30")))
            .header("x-api-key", &token)
            .header("idempotency-key", "same-file")
            .json(&file("two.pdf", MIB, "application/pdf"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let (status, body) = init_with(&app, &token, file("three.png", MIB, "image/png")).await;
    assert_error(status, &body, 403, "QUOTA_EXCEEDED");

    let (_, tokens) = app.get("/api/v1/browser-tokens").await;
    let shown = &tokens["tokens"][0];
    assert_eq!(shown["id"], json!(id));
    assert_eq!(shown["uploadsCreated"], json!(2));
    assert_eq!(shown["maxUploads"], json!(2));
    assert_eq!(
        shown["allowedContentTypes"],
        json!(["image/*", "application/pdf"])
    );

    // Out-of-range limits are refused when minting.
    for bad in [
        json!({"expiresIn": 59}),
        json!({"expiresIn": 86_401}),
        json!({"maxUploads": 0}),
        json!({"allowedContentTypes": ["image"]}),
        json!({"metadata": {"bad key": "v"}}),
    ] {
        let (status, body) = app.post("/api/v1/browser-tokens", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    app.app.shutdown().await;
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_refused_saying_why() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = TestApp::spawn().await;
    let (id, revoked) = mint(&app, json!({})).await;
    let (status, _) = list_tokens(&app, &revoked).await;
    assert_eq!(status, StatusCode::OK);
    let response = app
        .http
        .delete(app.url(&format!("/api/v1/browser-tokens/{id}")))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // At once in the process that revoked it, although the token was just cached.
    let (status, body) = list_tokens(&app, &revoked).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    let (_, tokens) = app.get("/api/v1/browser-tokens").await;
    assert_eq!(tokens["tokens"], json!([]), "a revoked token is not listed");
    // Revoking an unknown id is 404.
    let response = app
        .http
        .delete(app.url(&format!("/api/v1/browser-tokens/{}", uuid::Uuid::new_v4())))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    let (status, body) = crate::common::read(response).await;
    assert_error(status, &body, 404, "NOT_FOUND");

    // Expiry: the shortest lifetime is a minute, so the row is moved into the past.
    let (id, expired) = mint(&app, json!({"expiresIn": 60})).await;
    let moved = partway_entity::browser_token::Entity::update_many()
        .col_expr(
            partway_entity::browser_token::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(
                sea_orm::prelude::ChronoUtc::now() - std::time::Duration::from_secs(1),
            ),
        )
        .filter(partway_entity::browser_token::Column::Id.eq(uuid::Uuid::parse_str(&id).unwrap()))
        .exec(app.app.db())
        .await
        .expect("move expiry");
    assert_eq!(moved.rows_affected, 1);
    let (status, body) = list_tokens(&app, &expired).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    // A random token is simply not valid, and its text is never echoed.
    let (status, body) = list_tokens(&app, "pwb_nope").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    assert!(!body.to_string().contains("pwb_nope"));
    app.app.shutdown().await;
}

#[tokio::test]
async fn the_event_stream_takes_the_token_as_access_token() {
    let app = TestApp::spawn().await;
    let (_, token) = mint(&app, json!({})).await;
    let (_, other) = mint(&app, json!({})).await;
    let (status, made) =
        init_with(&app, &token, file("e.bin", MIB, "application/octet-stream")).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let resume = made["resumeToken"].as_str().unwrap().to_string();
    let events = |key: &str| {
        app.url(&format!(
            "/api/v1/upload/multipart/{resume}/events?access_token={key}"
        ))
    };
    let response = app.http.get(events(&other)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let mut stream = app.http.get(events(&token)).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let etag = app
        .put_part(
            made["partUrls"][0]["url"].as_str().unwrap(),
            test_bytes(MIB, 3),
        )
        .await;
    let (status, done) = app
        .post_with_key(
            "/api/v1/upload/multipart/complete?wait=30",
            &token,
            json!({"resumeToken": resume, "parts": [{"partNumber": 1, "etag": etag}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text.contains("\"status\":\"completed\"") {
        match tokio::time::timeout_at(deadline.into(), stream.chunk())
            .await
            .expect("event in time")
            .unwrap()
        {
            Some(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            None => break,
        }
    }
    assert!(text.contains("\"status\":\"completed\""), "{text}");
    app.app.shutdown().await;
}

/// Two API processes on one PostgreSQL: 20 concurrent inits with a token allowed 5,
/// half to each replica, create exactly 5.
#[tokio::test]
async fn max_uploads_holds_across_two_api_processes() {
    let Some(mut cluster) = Cluster::start(1).await else {
        return;
    };
    let second = cluster.add_api();
    let first = &cluster.api;
    let (_, token) = mint(first, json!({"maxUploads": 5})).await;
    let answers = futures::future::join_all((0..20).map(|i| {
        let api = if i % 2 == 0 { first } else { &second };
        let token = token.clone();
        async move {
            api.post_with_key(
                INIT,
                &token,
                file(&format!("f{i}.bin"), MIB, "application/octet-stream"),
            )
            .await
        }
    }))
    .await;
    let mut created = 0;
    for (status, body) in answers {
        if status == StatusCode::ACCEPTED {
            created += 1;
        } else {
            assert_error(status, &body, 403, "QUOTA_EXCEEDED");
        }
    }
    assert_eq!(created, 5);
    let (_, listed) = second.get_with_key("/api/v1/uploads", &token).await;
    assert_eq!(listed["uploads"].as_array().unwrap().len(), 5);
}

/// `partway tokens create` beside the running service: the token alone on the last line,
/// limited as asked; out-of-range lifetimes refused.
#[tokio::test]
async fn tokens_cli_mints_a_working_limited_token() {
    let app = TestApp::spawn().await;
    let bin = env!("CARGO_BIN_EXE_partway");
    let output = std::process::Command::new(bin)
        .args(["tokens", "create", "--owner", "web", "--expires-in", "30m"])
        .args([
            "--max-file-size",
            "2MiB",
            "--allowed-content-types",
            "image/*,text/plain",
        ])
        .env("PARTWAY_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("pwb_"), "{stdout}");
    assert!(!stderr.contains(&token), "shown once, on stdout");
    let (status, body) = init_with(&app, &token, file("a.png", MIB, "image/png")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = init_with(&app, &token, file("b.png", 3 * MIB, "image/png")).await;
    assert_error(status, &body, 400, "INVALID_FILE_SIZE");
    let (status, body) = init_with(&app, &token, file("c.pdf", MIB, "application/pdf")).await;
    assert_error(status, &body, 400, "INVALID_CONTENT_TYPE");
    // The token belongs to `web`, not to the development key's owner.
    let (_, listed) = app.get("/api/v1/uploads").await;
    assert_eq!(listed["uploads"], json!([]));

    let refused = std::process::Command::new(bin)
        .args(["tokens", "create", "--owner", "web", "--expires-in", "2d"])
        .env("PARTWAY_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("expiresIn"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    app.app.shutdown().await;
}
