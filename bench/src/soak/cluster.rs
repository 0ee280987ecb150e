//! The soak's cluster: 2 `partway-api` + 3 `partway-worker` processes that the chaos loop
//! kills, stops and restarts. Each API keeps its port across restarts so clients can
//! keep one address per API.
use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::Duration,
};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use crate::{command, create_key, env, Result};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Api,
    Worker,
}

pub struct Proc {
    pub kind: Kind,
    pub name: String,
    vars: Vec<(String, String)>,
    log: PathBuf,
    pub child: Option<Child>,
    /// SIGSTOPped by the chaos loop (must get SIGCONT before the end).
    pub stopped: bool,
    lives: u32,
    /// Peak RSS seen over all of this slot's lives (kB), and the latest RSS.
    pub peak_kib: u64,
    pub last_kib: u64,
    /// Where this process serves Prometheus text (`/metrics`).
    pub metrics_url: String,
    /// Job attempts that ended in `retry`, and all job attempts, over this slot's lives
    /// (see `metrics`).
    pub retries: super::metrics::LifeCounter,
    pub runs: super::metrics::LifeCounter,
}

impl Proc {
    /// How many times this slot's process was started.
    pub fn lives(&self) -> u32 {
        self.lives
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts (or restarts) the process; the log is appended so a restart keeps history.
    pub fn start(&mut self) -> Result<()> {
        let bin = match self.kind {
            Kind::Api => "partway-api",
            Kind::Worker => "partway-worker",
        };
        // One log per life: a restart must not truncate the log of the life it replaces.
        self.lives += 1;
        self.retries.new_life();
        self.runs.new_life();
        let log = self.log.with_extension(format!("{}.log", self.lives));
        let mut cmd = command(bin, &self.vars, &log)?;
        cmd.stdout(Stdio::null());
        self.child = Some(cmd.spawn()?);
        self.stopped = false;
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&mut self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on a PID we spawned and have not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    /// Whether the process exited on its own (reaped; the caller restarts it).
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status.to_string())
    }

    /// Reads VmRSS/VmHWM and folds them into the peak.
    pub fn sample_rss(&mut self) {
        let Some(pid) = self.pid() else { return };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        if let Some(rss) = field("VmRSS:") {
            self.last_kib = rss;
        }
        if let Some(hwm) = field("VmHWM:") {
            self.peak_kib = self.peak_kib.max(hwm);
        }
    }
}

pub struct Cluster {
    pub procs: Vec<Proc>,
    /// `http://127.0.0.1:port` of each API, fixed across restarts.
    pub bases: Vec<String>,
    pub key: String,
    pub bucket: String,
    pub db_url: String,
    pub s3: aws_sdk_s3::Client,
    /// The processes' logs, kept after the run: a failed invariant is read from them.
    pub dir: PathBuf,
    /// Between the cluster and moto: counts storage's completes.
    pub counter: std::sync::Arc<super::s3_counter::Counter>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.signal(libc::SIGCONT);
            p.kill();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn s3_client() -> Result<aws_sdk_s3::Client> {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(env("PARTWAY_TEST_S3_ENDPOINT")?)
        .force_path_style(true)
        .credentials_provider(Credentials::new("test", "test", None, None, "soak"))
        .build();
    Ok(aws_sdk_s3::Client::from_conf(config))
}

/// `extra`: settings for every process on top of the soak's own (the webhook receiver's
/// allowance, the sweep interval).
pub async fn start(apis: usize, workers: usize, extra: &[(&str, String)]) -> Result<Cluster> {
    use sea_orm::{ConnectionTrait, Database};
    let admin_url = env("PARTWAY_TEST_DATABASE_URL")?;
    let admin = Database::connect(&admin_url).await?;
    let name = format!("partway_soak_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    admin.close().await?;
    let (db_base, _) = admin_url
        .rsplit_once('/')
        .ok_or("database url has no path")?;
    let db_url = format!("{db_base}/{name}");
    let bucket = format!("pw-soak-{}", uuid::Uuid::new_v4().simple());
    let s3 = s3_client()?;
    s3.create_bucket().bucket(&bucket).send().await?;
    let moto: std::net::SocketAddr = env("PARTWAY_TEST_S3_ENDPOINT")?
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()?;
    let counter = std::sync::Arc::new(super::s3_counter::Counter::start(moto, &bucket).await?);
    let vars: Vec<(String, String)> = vec![
        ("PARTWAY_DATABASE_URL".into(), db_url.clone()),
        ("PARTWAY_AMQP_URL".into(), env("PARTWAY_TEST_AMQP_URL")?),
        (
            "PARTWAY_AMQP_PREFIX".into(),
            format!("soak-{}.", uuid::Uuid::new_v4().simple()),
        ),
        ("PARTWAY_REDIS_URL".into(), env("PARTWAY_TEST_REDIS_URL")?),
        (
            "PARTWAY_S3_ENDPOINT".into(),
            format!("http://{}", counter.addr),
        ),
        ("PARTWAY_S3_BUCKET".into(), bucket.clone()),
        ("PARTWAY_S3_ACCESS_KEY_ID".into(), "test".into()),
        ("PARTWAY_S3_SECRET_ACCESS_KEY".into(), "test".into()),
        ("PARTWAY_MASTER_KEY".into(), "11".repeat(32)),
        ("PARTWAY_LOG_FORMAT".into(), "json".into()),
        // The soak's clients are one key offering far more than a user would.
        ("PARTWAY_RATE_LIMIT".into(), "off".into()),
        ("PARTWAY_RATE_LIMIT_ANON".into(), "off".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let mut vars = vars;
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let dir = tempfile::Builder::new()
        .prefix("partway-soak-")
        .tempdir()?
        .keep();
    let mut procs = Vec::new();
    let mut bases = Vec::new();
    for i in 0..apis {
        let port = free_port()?;
        let mut v = vars.clone();
        v.push(("PARTWAY_BIND".into(), format!("127.0.0.1:{port}")));
        bases.push(format!("http://127.0.0.1:{port}"));
        procs.push(Proc {
            kind: Kind::Api,
            name: format!("api-{i}"),
            vars: v,
            log: dir.join(format!("api-{i}")),
            child: None,
            stopped: false,
            lives: 0,
            peak_kib: 0,
            last_kib: 0,
            // An API serves /metrics on its own address to loopback clients.
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            retries: Default::default(),
            runs: Default::default(),
        });
    }
    for i in 0..workers {
        // A worker serves /metrics only on PARTWAY_METRICS_BIND.
        let port = free_port()?;
        let mut v = vars.clone();
        v.push(("PARTWAY_METRICS_BIND".into(), format!("127.0.0.1:{port}")));
        procs.push(Proc {
            kind: Kind::Worker,
            name: format!("worker-{i}"),
            vars: v,
            log: dir.join(format!("worker-{i}")),
            child: None,
            stopped: false,
            lives: 0,
            peak_kib: 0,
            last_kib: 0,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            retries: Default::default(),
            runs: Default::default(),
        });
    }
    let mut cluster = Cluster {
        procs,
        bases,
        key: String::new(),
        bucket,
        db_url,
        s3,
        dir,
        counter,
    };
    // The first API migrates the schema; the rest wait for it to answer.
    cluster.procs[0].start()?;
    wait_healthy(&cluster.bases[0]).await?;
    for p in cluster.procs.iter_mut().skip(1) {
        p.start()?;
    }
    for b in &cluster.bases {
        wait_healthy(b).await?;
    }
    cluster.key = create_key(&vars, &cluster.dir, "soak")?;
    Ok(cluster)
}

pub async fn wait_healthy(base: &str) -> Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{base} not healthy in 60 s").into())
}
