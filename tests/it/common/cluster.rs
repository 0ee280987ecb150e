//! A distributed cluster for tests: `partway-api` + `partway-worker` processes against
//! the services `scripts/test` starts, each with its own database, queue names and bucket.
use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::*;

pub struct Cluster {
    pub api: Api,
    pub api_process: Child,
    /// More `partway-api` replicas ([`Cluster::add_api`]).
    pub more_apis: Vec<Child>,
    pub workers: Vec<Child>,
    pub env: Vec<(String, String)>,
    logs: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for entry in std::fs::read_dir(self.logs.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("---- {} (last 40 lines)", entry.path().display());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        let _ = self.api_process.kill();
        for child in self.more_apis.iter_mut().chain(&mut self.workers) {
            let _ = child.kill();
        }
        let _ = self.api_process.wait();
        for child in self.more_apis.iter_mut().chain(&mut self.workers) {
            let _ = child.wait();
        }
    }
}

/// A binary of this build: from `PARTWAY_TEST_BIN_DIR` when `scripts/test` set it (links
/// to the binaries it built, which a build in another work tree sharing the target dir
/// cannot replace), else beside the `partway` binary cargo built for these tests.
pub fn binary(name: &str) -> PathBuf {
    let path = match std::env::var_os("PARTWAY_TEST_BIN_DIR") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => PathBuf::from(env!("CARGO_BIN_EXE_partway")).with_file_name(name),
    };
    assert!(
        path.exists(),
        "{} is missing: run the suite with `scripts/test` (it builds every binary)",
        path.display()
    );
    path
}

/// The services, a fresh database, a bucket and queue names of its own; None when
/// the services are not provided (and not required).
pub async fn cluster_env() -> Option<Vec<(String, String)>> {
    let redis = required_service("PARTWAY_TEST_REDIS_URL")?;
    let amqp = required_service("PARTWAY_TEST_AMQP_URL")?;
    let s3 = required_service("PARTWAY_TEST_S3_ENDPOINT")?;
    let database = fresh_postgres_database().await?;
    let bucket = fresh_moto_bucket(&s3).await;
    Some(vec![
        ("PARTWAY_DATABASE_URL".into(), database),
        ("PARTWAY_AMQP_URL".into(), amqp),
        (
            "PARTWAY_AMQP_PREFIX".into(),
            format!("test-{}.", uuid::Uuid::new_v4().simple()),
        ),
        ("PARTWAY_REDIS_URL".into(), redis),
        // DESIGN §7: only the loopback test servers may be reached.
        ("PARTWAY_OUTBOUND".into(), "allowlist".into()),
        ("PARTWAY_ALLOWED_ENDPOINTS".into(), endpoint_host_port(&s3)),
        ("PARTWAY_S3_ENDPOINT".into(), s3),
        ("PARTWAY_S3_BUCKET".into(), bucket),
        ("PARTWAY_S3_ACCESS_KEY_ID".into(), "test".into()),
        ("PARTWAY_S3_SECRET_ACCESS_KEY".into(), "test".into()),
        ("PARTWAY_MASTER_KEY".into(), "11".repeat(32)),
        ("PARTWAY_BIND".into(), "127.0.0.1:0".into()),
        ("PARTWAY_LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "info".into()),
    ])
}

impl Cluster {
    pub async fn start(workers: usize) -> Option<Cluster> {
        Self::start_with(workers, vec![]).await
    }

    /// With some variables replaced (a private broker, a short upload TTL, …).
    pub async fn start_with(workers: usize, overrides: Vec<(String, String)>) -> Option<Cluster> {
        let mut env = cluster_env().await?;
        for (key, value) in overrides {
            env.retain(|(k, _)| *k != key);
            env.push((key, value));
        }
        let logs = tempfile::tempdir().unwrap();
        let (api_process, base) = spawn_api(&env, &logs.path().join("api.log"));
        let keys = Command::new(binary("partway"))
            .args(["keys", "create", "--owner", "cluster"])
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            keys.status.success(),
            "{}",
            String::from_utf8_lossy(&keys.stderr)
        );
        let key = String::from_utf8(keys.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string();
        let mut cluster = Cluster {
            api: Api::new(base, key),
            api_process,
            more_apis: Vec::new(),
            workers: Vec::new(),
            env,
            logs,
        };
        for _ in 0..workers {
            cluster.add_worker();
        }
        Some(cluster)
    }

    /// Another `partway-api` replica on the same database, queue and Redis; a client of
    /// it with the cluster's key.
    pub fn add_api(&mut self) -> Api {
        let n = self.more_apis.len() + 1;
        let (child, base) = spawn_api(&self.env, &self.logs.path().join(format!("api-{n}.log")));
        self.more_apis.push(child);
        Api::new(base, self.api.key.clone())
    }

    pub fn add_worker(&mut self) {
        self.add_worker_with(&[]);
    }

    /// A worker with some variables of its own (e.g. its metrics address).
    pub fn add_worker_with(&mut self, overrides: &[(&str, String)]) {
        let n = self.workers.len();
        let worker = Command::new(binary("partway-worker"))
            .envs(self.env.iter().cloned())
            .envs(overrides.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.logs.path().join(format!("worker-{n}.log"))).unwrap(),
            )
            .spawn()
            .expect("start partway-worker");
        self.workers.push(worker);
    }

    pub fn worker_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("worker-{n}.log")))
            .unwrap_or_default()
    }

    /// Every log line every process of the cluster wrote so far.
    pub fn all_logs(&self) -> String {
        std::fs::read_dir(self.logs.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn jobs_done_by(&self, n: usize) -> usize {
        self.worker_log(n)
            .lines()
            .filter(|l| l.contains("job done"))
            .count()
    }
}

/// Starts `partway-api` and waits for its "listening on" line: the process and its base URL.
fn spawn_api(env: &[(String, String)], log: &std::path::Path) -> (Child, String) {
    let mut api_process = Command::new(binary("partway-api"))
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start partway-api");
    let stdout = api_process.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("partway-api listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "partway-api did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    (api_process, base)
}

/// `host:port` of a test server's URL, for `PARTWAY_ALLOWED_ENDPOINTS`.
fn endpoint_host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}
