//! Events for applications (DESIGN §6) against the real service: webhooks to a receiver
//! on loopback, signatures checked with the Standard Webhooks reference verifier (PyPI
//! `standardwebhooks`), retries, a worker killed mid-delivery, the AMQP event exchange,
//! the outbound guard on webhook URLs, and secrets kept out of answers, logs and messages.
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{
    assert_error,
    cluster::Cluster,
    receiver::{verify_signatures, Answer, Received, Receiver},
    required_service, test_bytes, Api, TestApp, MIB,
};

const ALL_EVENTS: [&str; 5] = [
    "upload.created",
    "upload.completed",
    "upload.aborted",
    "upload.expired",
    "upload.failed",
];

/// Registers `url` for every event type; the new endpoint's `(id, secret)`.
async fn register(api: &Api, url: &str) -> (String, String) {
    let (status, body) = api
        .post(
            "/api/v1/webhooks",
            json!({"url": url, "events": ALL_EVENTS}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (body["id"].as_str().unwrap().to_string(), secret)
}

/// A one-part upload, initiated, its bytes stored and completed; its resume token and
/// when init answered (the upload was active by then).
async fn one_upload(api: &Api) -> (String, Instant) {
    let init = api.init("hook.bin", MIB).await;
    let active_at = Instant::now();
    let token = init["resumeToken"].as_str().unwrap().to_string();
    let part = &init["partUrls"][0];
    api.put_part(part["url"].as_str().unwrap(), test_bytes(MIB, 7))
        .await;
    let (status, body) = api
        .post(
            "/api/v1/upload/multipart/complete?wait=60",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "complete: {body}");
    (token, active_at)
}

/// The endpoint's attempts once `delivered` of them got a 200: the receiver answers
/// before partway records the attempt, so the record is polled for (with a deadline).
async fn attempts_with(api: &Api, id: &str, delivered: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, deliveries) = api.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
        assert_eq!(status, StatusCode::OK, "{deliveries}");
        let ok = deliveries["deliveries"].as_array().map_or(0, |l| {
            l.iter().filter(|d| d["statusCode"] == json!(200)).count()
        });
        if ok >= delivered {
            return deliveries;
        }
        assert!(
            Instant::now() < deadline,
            "{delivered} delivered attempts not recorded: {deliveries}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The requests answered 2xx, in order.
fn accepted(got: &[Received]) -> Vec<&Received> {
    got.iter()
        .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
        .collect()
}

fn types(got: &[&Received]) -> Vec<String> {
    got.iter().map(|r| r.event_type()).collect()
}

fn allow(receiver: &Receiver) -> (String, String) {
    (
        "PARTWAY_ALLOWED_ENDPOINTS".into(),
        format!("127.0.0.1:{}", receiver.port),
    )
}

#[tokio::test]
async fn a_receiver_gets_created_then_completed_signed_and_private_addresses_are_refused() {
    let receiver = Receiver::start(Answer::Status(200)).await;
    let t = TestApp::spawn_with(vec![allow(&receiver)]).await;
    let api = &t.api;

    // The outbound guard (DESIGN §7) on webhook URLs: refused before anything is stored.
    for url in [
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.0.10:8080/",
        "http://[fd00::1]/",
        "http://127.0.0.1:9/not-the-receiver",
    ] {
        let (status, body) = api
            .post(
                "/api/v1/webhooks",
                json!({"url": url, "events": ["upload.completed"]}),
            )
            .await;
        assert_error(status, &body, 400, "INVALID_ENDPOINT");
    }
    let (status, body) = api
        .post(
            "/api/v1/webhooks",
            json!({"url": receiver.url, "events": ["upload.nope"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (id, secret) = register(api, &receiver.url).await;
    let (status, listed) = api.get("/api/v1/webhooks").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["webhooks"][0]["id"], json!(id));
    assert!(
        !listed.to_string().contains(&secret[6..]),
        "no secret in lists"
    );

    let (token, active_at) = one_upload(api).await;
    let got = receiver
        .wait_for("created and completed", Duration::from_secs(20), |got| {
            accepted(got).len() >= 2
        })
        .await;
    let ok = accepted(&got);
    assert_eq!(types(&ok), ["upload.created", "upload.completed"]);
    assert!(
        ok[0].at.duration_since(active_at) < Duration::from_secs(5),
        "the first attempt within 5 s of the status change"
    );
    for r in &ok {
        let body = r.json();
        assert_eq!(body["id"].as_str(), Some(r.header("webhook-id")));
        assert_eq!(body["data"]["resumeToken"], json!(token));
        assert!(body["createdAt"].is_string());
        assert_eq!(r.header("content-type"), "application/json");
    }
    assert_eq!(ok[0].json()["data"]["status"], json!("active"));
    assert_eq!(ok[1].json()["data"]["status"], json!("completed"));
    verify_signatures(&secret, &got);

    // The deliveries list and a test ping.
    let deliveries = attempts_with(api, &id, 2).await;
    let list = deliveries["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{deliveries}");
    assert!(list
        .iter()
        .all(|d| d["statusCode"] == json!(200) && d["attempt"] == json!(1)));
    let (status, ping) = api
        .post(&format!("/api/v1/webhooks/{id}/test"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{ping}");
    assert_eq!(ping["delivered"], json!(true), "{ping}");
    let got = receiver.received();
    assert_eq!(got.last().unwrap().event_type(), "webhook.test");
    verify_signatures(&secret, &got[got.len() - 1..]);
    assert!(!ping.to_string().contains(&secret[6..]));

    // Deleted: another delete is 404, and nothing more is sent.
    let response = api
        .http
        .delete(api.url(&format!("/api/v1/webhooks/{id}")))
        .header("x-api-key", &api.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = api
        .http
        .delete(api.url(&format!("/api/v1/webhooks/{id}")))
        .header("x-api-key", &api.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_receiver_refusing_for_30_s_then_gets_every_event_exactly_once() {
    // The default schedule (5 s, 30 s, …): the third attempt, ~35 s in, is after the outage.
    let outage = Duration::from_secs(30);
    let receiver = Receiver::start(Answer::StatusUntil(503, Instant::now() + outage)).await;
    let t = TestApp::spawn_with(vec![allow(&receiver)]).await;
    let (id, secret) = register(&t.api, &receiver.url).await;
    one_upload(&t.api).await;
    let got = receiver
        .wait_for(
            "both events after the outage",
            Duration::from_secs(90),
            |got| accepted(got).len() >= 2,
        )
        .await;
    let ok = accepted(&got);
    assert_eq!(
        types(&ok),
        ["upload.created", "upload.completed"],
        "in order"
    );
    let ids: Vec<&str> = ok.iter().map(|r| r.header("webhook-id")).collect();
    assert_ne!(ids[0], ids[1]);
    // Every refused request was one of these two events, retried with the same id.
    let refused: Vec<&Received> = got.iter().filter(|r| r.answered == Some(503)).collect();
    assert!(refused.len() >= 2, "{} refused", refused.len());
    assert!(refused
        .iter()
        .all(|r| ids.contains(&r.header("webhook-id"))));
    assert_eq!(
        refused[0].header("webhook-id"),
        ids[0],
        "created was tried first"
    );
    verify_signatures(&secret, &got);
    // Delivered means over: the list shows each event delivered once, nothing pending.
    let deliveries = attempts_with(&t.api, &id, 2).await;
    let list = deliveries["deliveries"].as_array().unwrap();
    for event in &ids {
        let ok: Vec<&Value> = list
            .iter()
            .filter(|d| d["eventId"] == json!(event) && d["statusCode"] == json!(200))
            .collect();
        assert_eq!(ok.len(), 1, "{deliveries}");
        assert!(ok[0]["nextRetryAt"].is_null());
    }
    assert_eq!(
        accepted(&receiver.received()).len(),
        2,
        "nothing after delivery"
    );
}

/// A queue bound to the cluster's event exchange for `upload.completed`.
async fn bind_completed(
    amqp_url: &str,
    prefix: &str,
) -> (lapin::Connection, lapin::Channel, String) {
    use lapin::{
        options::{QueueBindOptions, QueueDeclareOptions},
        types::FieldTable,
        Connection, ConnectionProperties,
    };
    let conn = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = conn.create_channel().await.unwrap();
    let queue = format!("{prefix}test.completed");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            format!("{prefix}partway.events").as_str().into(),
            "upload.completed".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind to the event exchange");
    (conn, channel, queue)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_loses_nothing_and_the_exchange_carries_completed() {
    let Some(s3) = required_service("PARTWAY_TEST_S3_ENDPOINT") else {
        return;
    };
    let Some(amqp_url) = required_service("PARTWAY_TEST_AMQP_URL") else {
        return;
    };
    let receiver = Receiver::start(Answer::Hang).await;
    let s3_host = s3
        .split_once("://")
        .map_or(s3.as_str(), |(_, r)| r)
        .trim_end_matches('/');
    let Some(mut cluster) = Cluster::start_with(
        1,
        vec![(
            "PARTWAY_ALLOWED_ENDPOINTS".into(),
            format!("{s3_host},127.0.0.1:{}", receiver.port),
        )],
    )
    .await
    else {
        return;
    };
    let prefix = cluster
        .env
        .iter()
        .find(|(k, _)| k == "PARTWAY_AMQP_PREFIX")
        .map(|(_, v)| v.clone())
        .unwrap();
    let (_conn, channel, queue) = bind_completed(&amqp_url, &prefix).await;
    let api = Api::new(cluster.api.base.clone(), cluster.api.key.clone());
    let (_, secret) = register(&api, &receiver.url).await;

    let init = api.init("hook.bin", MIB).await;
    let token = init["resumeToken"].as_str().unwrap().to_string();
    // The worker is inside the request for `upload.created`: kill it there.
    let held = receiver
        .wait_for(
            "the created event, held open",
            Duration::from_secs(20),
            |got| !got.is_empty(),
        )
        .await;
    cluster.workers[0].kill().expect("SIGKILL the worker");
    cluster.workers[0].wait().ok();
    let held_id = held[0].header("webhook-id").to_string();
    receiver.set(Answer::Status(200));
    cluster.add_worker();
    let got = receiver
        .wait_for(
            "created, after the worker died",
            Duration::from_secs(60),
            |got| !accepted(got).is_empty(),
        )
        .await;
    let ok = accepted(&got);
    assert_eq!(types(&ok), ["upload.created"]);
    assert_eq!(ok[0].header("webhook-id"), held_id, "the same event, again");

    let part = &init["partUrls"][0];
    api.put_part(part["url"].as_str().unwrap(), test_bytes(MIB, 9))
        .await;
    let (status, body) = api
        .post(
            "/api/v1/upload/multipart/complete?wait=60",
            json!({"resumeToken": token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "complete: {body}");
    let got = receiver
        .wait_for("completed", Duration::from_secs(30), |got| {
            accepted(got).len() >= 2
        })
        .await;
    assert_eq!(
        types(&accepted(&got)),
        ["upload.created", "upload.completed"]
    );
    verify_signatures(&secret, &got);

    // The event exchange: the completed event, persistent, message-id = event id.
    let deadline = Instant::now() + Duration::from_secs(30);
    let message = loop {
        if let Some(m) = channel
            .basic_get(
                queue.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no upload.completed on the exchange"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let body: Value = serde_json::from_slice(&message.delivery.data).unwrap();
    assert_eq!(body["type"], json!("upload.completed"));
    assert_eq!(body["data"]["resumeToken"], json!(token));
    let props = &message.delivery.properties;
    assert_eq!(
        props.message_id().as_ref().map(|m| m.as_str()),
        body["id"].as_str()
    );
    assert_eq!(*props.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        body["id"].as_str(),
        Some(accepted(&got)[1].header("webhook-id")),
        "one event id on both ways out"
    );

    // The secret is in no log, no message, no answer after creation.
    let secret_b64 = &secret["whsec_".len()..];
    assert!(!String::from_utf8_lossy(&message.delivery.data).contains(secret_b64));
    let (_, listed) = api.get("/api/v1/webhooks").await;
    assert!(!listed.to_string().contains(secret_b64));
    let logs = cluster.all_logs();
    assert!(!logs.is_empty());
    assert!(!logs.contains(secret_b64), "the secret is in a log");
}

#[test]
fn the_cli_creates_lists_and_deletes_endpoints_under_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(crate::common::cluster::binary("partway"))
            .args(args)
            .env("PARTWAY_DATA_DIR", dir.path())
            .env("PARTWAY_OUTBOUND", "allowlist")
            // Nothing is sent: creating an endpoint only checks its address.
            .env("PARTWAY_ALLOWED_ENDPOINTS", "127.0.0.1:9")
            .env_remove("PARTWAY_DATABASE_URL")
            .env_remove("PARTWAY_MASTER_KEY")
            .output()
            .expect("run partway")
    };
    let refused = run(&[
        "webhooks",
        "create",
        "--owner",
        "cli",
        "--url",
        "http://10.0.0.1/hook",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("10.0.0.1"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let created = run(&[
        "webhooks",
        "create",
        "--owner",
        "cli",
        "--url",
        "http://127.0.0.1:9/hook",
        "--events",
        "upload.completed,upload.failed",
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let stdout = String::from_utf8_lossy(&created.stdout).to_string();
    let secret = stdout.lines().last().unwrap().trim().to_string();
    assert!(secret.starts_with("whsec_"), "{stdout}");
    let listed = run(&["webhooks", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let line = listed
        .lines()
        .find(|l| l.contains("127.0.0.1:9/hook"))
        .expect(&listed);
    assert!(line.contains("upload.completed,upload.failed"), "{line}");
    assert!(!listed.contains(&secret[6..]), "no secret in the list");
    let id = line.split('\t').next().unwrap();
    let deleted = run(&["webhooks", "delete", id]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let listed = run(&["webhooks", "list"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(id));
}
