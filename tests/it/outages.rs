//! Dependencies going away and coming back, with the distributed cluster: nothing is
//! lost, answers stay correct (or are a clean 503), and it recovers without restarts.
use std::time::{Duration, Instant};

use crate::common::{cluster::Cluster, gate::Gate, private::PrivateService, *};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn init_body(name: &str) -> Value {
    json!({"filename": name, "fileSize": 6 * MIB, "contentType": "application/octet-stream"})
}

#[tokio::test]
async fn requests_made_while_rabbitmq_is_down_all_run_when_it_returns() {
    let Some(broker) = PrivateService::start("rabbitmq") else {
        return;
    };
    let Some(cluster) =
        Cluster::start_with(1, vec![("PARTWAY_AMQP_URL".into(), broker.url())]).await
    else {
        return;
    };
    let api = &cluster.api;
    api.init("before.bin", MIB).await;

    broker.stop();
    let mut tokens = Vec::new();
    for i in 0..3 {
        let (status, doc) = api
            .post(
                "/api/v1/upload/multipart/init",
                init_body(&format!("during-{i}.bin")),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "the API keeps accepting: {doc}"
        );
        tokens.push(doc["resumeToken"].as_str().unwrap().to_string());
    }
    let (status, body) = read(api.http.get(api.url("/readyz")).send().await.unwrap()).await;
    assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");

    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    for token in &tokens {
        api.wait_until_ready(token, deadline).await;
    }
}

#[tokio::test]
async fn api_and_worker_started_before_rabbitmq_serve_and_run_jobs_once_it_is_up() {
    let Some(broker) = PrivateService::start("rabbitmq") else {
        return;
    };
    let url = broker.url();
    broker.stop();
    let Some(cluster) = Cluster::start_with(1, vec![("PARTWAY_AMQP_URL".into(), url)]).await else {
        return;
    };
    let api = &cluster.api;
    let (status, body) = read(api.http.get(api.url("/readyz")).send().await.unwrap()).await;
    assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");
    let (status, doc) = api
        .post("/api/v1/upload/multipart/init", init_body("early.bin"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    let token = doc["resumeToken"].as_str().unwrap().to_string();

    broker.restart();
    api.wait_until_ready(&token, Instant::now() + Duration::from_secs(90))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = read(api.http.get(api.url("/readyz")).send().await.unwrap()).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "ready once RabbitMQ is up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn with_redis_down_answers_come_from_postgresql_and_the_cache_refills() {
    let Some(redis) = PrivateService::start("redis") else {
        return;
    };
    let Some(cluster) =
        Cluster::start_with(1, vec![("PARTWAY_REDIS_URL".into(), redis.url())]).await
    else {
        return;
    };
    let api = &cluster.api;
    let file = test_bytes(6 * MIB, 17);
    let init = api.init("cached.bin", file.len()).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();

    redis.stop();
    let (status, doc) = api.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["status"], json!("active"));
    let (status, page) = api
        .get(&format!("/api/v1/upload/multipart/{token}/parts?state=all"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let parts = page["parts"].as_array().unwrap().clone();
    assert_eq!(parts.len(), 2);
    let mut etags = Vec::new();
    for part in &parts {
        let etag = api
            .put_part(part["url"].as_str().unwrap(), slice(&file, part))
            .await;
        let (status, progress) = api.report(&token, part, &etag).await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        etags.push(json!({"partNumber": part["partNumber"], "etag": etag}));
    }
    let (_, doc) = api.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(
        doc["progress"]["uploaded"],
        json!(2),
        "progress from PostgreSQL: {doc}"
    );
    // Waiting works without Redis's events (the API re-checks the database).
    let (status, done) = api
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token, "parts": etags}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        sha256(&api.download(done["downloadUrl"].as_str().unwrap()).await),
        sha256(&file)
    );

    redis.restart();
    let second = api.init("refill.bin", MIB).await;
    let second_token = second["resumeToken"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    loop {
        api.get(&format!("/api/v1/upload/multipart/{second_token}/parts"))
            .await;
        let keys = std::process::Command::new("redis-cli")
            .args(["-p", &port, "--scan", "--pattern", "partway:*"])
            .output()
            .expect("redis-cli");
        if String::from_utf8_lossy(&keys.stdout).contains("urls") {
            break;
        }
        assert!(Instant::now() < deadline, "the cache never refilled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn with_postgresql_down_the_api_answers_503_and_recovers_without_restart() {
    let Some(postgres) = PrivateService::start("postgres") else {
        return;
    };
    let url = postgres.url();
    let (base, _) = url.rsplit_once('/').unwrap();
    let Some(cluster) = Cluster::start_with(
        1,
        vec![("PARTWAY_DATABASE_URL".into(), format!("{base}/partway"))],
    )
    .await
    else {
        return;
    };
    let api = &cluster.api;
    let init = api.init("db.bin", MIB).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();

    postgres.stop();
    let (status, body) = api.get("/api/v1/uploads").await;
    assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");
    let text = body.to_string();
    for internal in [
        "postgres",
        "sqlx",
        "127.0.0.1",
        "SELECT",
        "connection refused",
    ] {
        assert!(
            !text.to_lowercase().contains(&internal.to_lowercase()),
            "{internal} leaked: {text}"
        );
    }
    let (status, body) = api
        .post("/api/v1/upload/multipart/init", init_body("no-db.bin"))
        .await;
    assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");
    // Every use case that writes: the soak once saw a complete answer 500 here.
    for route in ["complete", "abort", "pause", "resume"] {
        let (status, body) = api
            .post(
                &format!("/api/v1/upload/multipart/{route}"),
                json!({"resumeToken": token}),
            )
            .await;
        assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");
    }
    let (status, body) = read(api.http.get(api.url("/readyz")).send().await.unwrap()).await;
    assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");

    postgres.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, doc) = api.get(&format!("/api/v1/upload/multipart/{token}")).await;
        if status == StatusCode::OK {
            assert_eq!(doc["status"], json!("active"));
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {status} {doc}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.init("after.bin", MIB).await;
}

/// PostgreSQL goes while an init waits for its job, and while the job is inside its
/// storage call. The init, already committed, answers 202 with the upload (not a 5xx a
/// client would retry into a second upload); the worker cannot record the job's outcome
/// then, and records it once PostgreSQL is back instead of leaving the job `running` (and
/// the upload `initiating`) until its lease lapses (issue 15).
#[tokio::test]
async fn a_job_outcome_blocked_by_a_postgresql_outage_is_recorded_when_it_returns() {
    let Some(postgres) = PrivateService::start("postgres") else {
        return;
    };
    let Some(s3) = required_service("PARTWAY_TEST_S3_ENDPOINT") else {
        return;
    };
    let gate = Gate::start(&s3).await;
    let url = postgres.url();
    let (base, _) = url.rsplit_once('/').unwrap();
    let Some(cluster) = Cluster::start_with(
        1,
        vec![
            ("PARTWAY_DATABASE_URL".into(), format!("{base}/partway")),
            ("PARTWAY_S3_ENDPOINT".into(), gate.endpoint()),
            ("PARTWAY_ALLOWED_ENDPOINTS".into(), gate.host_port()),
        ],
    )
    .await
    else {
        return;
    };
    let api = &cluster.api;
    // Storage answers are held, so the init job is inside its storage call when the
    // database goes.
    gate.close();
    let waiting = {
        let api = Api::new(api.base.clone(), api.key.clone());
        tokio::spawn(async move {
            api.post(
                "/api/v1/upload/multipart/init?wait=60",
                init_body("held.bin"),
            )
            .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while gate.held() == 0 {
        assert!(
            Instant::now() < deadline,
            "the init job never called storage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    postgres.stop();
    let (status, doc) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    assert_eq!(doc["status"], json!("initiating"), "{doc}");
    let token = doc["resumeToken"].as_str().unwrap().to_string();
    gate.open();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The outcome's write failed: this build tries again, an older one gave the job up
    // to its lease.
    let recording_failed = |log: &str| {
        log.contains("could not record the job's outcome")
            || log.contains("job could not be processed")
    };
    while !recording_failed(&cluster.worker_log(0)) {
        assert!(
            Instant::now() < deadline,
            "the worker never met the outage: {}",
            cluster.worker_log(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    postgres.restart();
    // Well inside the lease (30 s): the outcome is recorded and the job runs again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, doc) = api.get(&format!("/api/v1/upload/multipart/{token}")).await;
        if status == StatusCode::OK && doc["status"] == json!("active") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still not active 20 s after PostgreSQL returned: {status} {doc}\n{}",
            cluster.worker_log(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, list) = api.get("/api/v1/uploads").await;
    assert_eq!(list["uploads"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn an_expired_upload_is_swept_once_with_two_workers() {
    let overrides = vec![
        ("PARTWAY_UPLOAD_TTL".into(), "2s".into()),
        ("PARTWAY_SWEEP_INTERVAL".into(), "1s".into()),
    ];
    let Some(cluster) = Cluster::start_with(2, overrides).await else {
        return;
    };
    let api = &cluster.api;
    let init = api.init("sweep.bin", 6 * MIB).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let url = init["partUrls"][0]["url"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let database = cluster
        .env
        .iter()
        .find(|(k, _)| k == "PARTWAY_DATABASE_URL")
        .unwrap()
        .1
        .clone();
    let db = sea_orm::Database::connect(&database).await.unwrap();
    loop {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        let expire_jobs = partway_entity::job::Entity::find()
            .filter(partway_entity::job::Column::Kind.eq("expire"))
            .filter(partway_entity::job::Column::State.eq("done"))
            .count(&db)
            .await
            .unwrap();
        if expire_jobs == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never swept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more sweeps by both workers change nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let expire_jobs = partway_entity::job::Entity::find()
        .filter(partway_entity::job::Column::Kind.eq("expire"))
        .count(&db)
        .await
        .unwrap();
    assert_eq!(expire_jobs, 1, "swept once");
    let (_, doc) = api.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(doc["status"], json!("expired"));
    // moto answers a part PUT to an aborted upload with an error, never 200.
    let response = api.http.put(&url).body(vec![1u8; 8]).send().await.unwrap();
    assert_ne!(response.status(), StatusCode::OK);
}
