//! partway's benchmark suite: every row against its baseline, in one run, as one table.
//! Run it through `scripts/bench`, which builds the binaries, starts the services and
//! installs the Node baseline. Never part of `cargo test`.
use std::{
    io::{BufRead, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{channel, Receiver},
    time::{Duration, Instant, SystemTime},
};

use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation},
    presigning::PresigningConfig,
};
use futures::{StreamExt as _, TryStreamExt as _};
use hmac::{Hmac, Mac};
use partway_core::presign::BatchPresigner;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

mod delay_proxy;
mod events;
mod scale_out;
mod soak;
mod uppy;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const PARTS: u32 = 10_000;
const RUNS: usize = 5;
const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const ENDPOINT: &str = "http://127.0.0.1:9000";
const BUCKET: &str = "bucket";
const OBJECT_KEY: &str = "uploads/some file ü.bin";
const UPLOAD_ID: &str = "2~abc+def/ghi=";
const EXPIRES: Duration = Duration::from_secs(604_800);
const MIB: f64 = 1024.0 * 1024.0;

struct Row {
    name: String,
    partway: String,
    baseline: String,
    ratio: String,
    target: String,
    met: String,
}

fn row(
    name: &str,
    partway: String,
    baseline: String,
    ratio: String,
    target: &str,
    met: Option<bool>,
) -> Row {
    Row {
        name: name.into(),
        partway,
        baseline,
        ratio,
        target: target.into(),
        met: match met {
            Some(true) => "yes".into(),
            Some(false) => "NO".into(),
            None => "—".into(),
        },
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fmt_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run scripts/bench)").into())
}

fn progress(msg: &str) {
    eprintln!("[bench] {msg}");
}

#[tokio::main]
async fn main() {
    // `partway-bench soak …`: the chaos soak (scripts/soak), not a bench row.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("soak") {
        match soak::run(&args[1..]).await {
            Ok(true) => return,
            Ok(false) => std::process::exit(1),
            Err(e) => {
                println!("verdict: ERROR — {e}");
                std::process::exit(2);
            }
        }
    }
    let rows: Vec<u32> = std::env::var("PARTWAY_BENCH_ROWS")
        .unwrap_or_else(|_| "1,2,3,4,5,6,7,8".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut table = Vec::new();
    let mut state = State::default();
    for n in rows {
        let result = match n {
            1 => row_presign(&mut state).await,
            2 => row_init(&mut state).await,
            3 => row_status(&mut state).await,
            4 => row_upload(&mut state).await,
            5 => scale_out::row_scale_out(&mut state).await,
            6 => row_memory(&mut state).await,
            7 => events::row_events(&mut state).await,
            8 => uppy::row_uppy(&mut state).await,
            _ => Ok(vec![]),
        };
        match result {
            Ok(rows) => table.extend(rows),
            Err(e) => {
                progress(&format!("row {n} failed: {e}"));
                table.push(row(
                    &format!("{n}. failed: {e}"),
                    "—".into(),
                    "—".into(),
                    "—".into(),
                    "—",
                    None,
                ));
            }
        }
    }
    state.shutdown();
    print_table(&table);
}

fn print_table(rows: &[Row]) {
    let header = ["row", "partway", "baseline", "ratio", "target", "met?"];
    let cells: Vec<[&str; 6]> = rows
        .iter()
        .map(|r| {
            [
                &*r.name,
                &*r.partway,
                &*r.baseline,
                &*r.ratio,
                &*r.target,
                &*r.met,
            ]
        })
        .collect();
    let line = |c: [&str; 6]| format!("| {} |", c.join(" | "));
    println!("{}", line(header));
    println!("|{}", "---|".repeat(6));
    for c in cells {
        println!("{}", line(c));
    }
}

/// Processes and figures shared between rows.
#[derive(Default)]
struct State {
    reference_loop_ms: Option<f64>,
    aio: Option<AllInOne>,
    cluster: Option<Cluster>,
    fallback_api: Option<Child>,
    limited_api: Option<Child>,
    idle_hwm: Option<(u64, u64)>,
    dirs: Vec<tempfile::TempDir>,
}

impl State {
    fn shutdown(&mut self) {
        self.cluster = None;
        let mut children: Vec<&mut Child> = Vec::new();
        if let Some(a) = &mut self.aio {
            children.push(&mut a.child);
        }
        if let Some(f) = &mut self.fallback_api {
            children.push(f);
        }
        if let Some(l) = &mut self.limited_api {
            children.push(l);
        }
        for child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ------------------------------------------------------------------------------------
// Row 1: presign 10,000 UploadPart URLs

async fn row_presign(state: &mut State) -> Result<Vec<Row>> {
    let parts: Vec<u32> = (1..=PARTS).collect();
    let presigner = BatchPresigner::new(
        ACCESS_KEY,
        SECRET_KEY,
        None,
        "us-east-1",
        Some(ENDPOINT),
        BUCKET,
        true,
    );
    progress("row 1: partway BatchPresigner");
    let mut partway = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let urls = presigner.presign_upload_parts(
            OBJECT_KEY,
            UPLOAD_ID,
            &parts,
            EXPIRES,
            SystemTime::now(),
        );
        partway.push(ms(start.elapsed()));
        assert_eq!(urls.len(), parts.len());
    }
    let partway = median(partway);

    progress("row 1: minimal SigV4 signer (CPU floor)");
    let mut floor = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let urls = floor_presign(&parts);
        floor.push(ms(start.elapsed()));
        assert_eq!(urls.len(), parts.len());
    }
    let floor = median(floor);

    progress("row 1: aws-sdk-s3 .presigned() loop");
    let mut sdk = Vec::new();
    for _ in 0..RUNS {
        sdk.push(sdk_presign(&parts).await?);
    }
    let sdk = median(sdk);

    progress("row 1: Node @aws-sdk getSignedUrl loop (5 runs of 10,000; ~1 min)");
    let node_dir = PathBuf::from(env("PARTWAY_BENCH_NODE_DIR")?);
    let out = Command::new("node")
        .arg(node_dir.join("presign-node.mjs"))
        .args([PARTS.to_string(), RUNS.to_string()])
        .current_dir(&node_dir)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err("node baseline failed".into());
    }
    let node: Vec<f64> = String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if node.len() != RUNS {
        return Err("node baseline printed no timings".into());
    }
    let node = median(node);
    state.reference_loop_ms = Some(node);

    Ok(vec![
        row(
            "1a. Presign 10,000 URLs vs reference Node loop",
            fmt_ms(partway),
            fmt_ms(node),
            format!("{:.0}× faster", node / partway),
            "≥ 100×",
            Some(node / partway >= 100.0),
        ),
        row(
            "1b. Presign 10,000 URLs vs minimal SigV4 (floor)",
            fmt_ms(partway),
            fmt_ms(floor),
            format!("{:.2}× the floor", partway / floor),
            "≤ 3× floor",
            Some(partway / floor <= 3.0),
        ),
        row(
            "1c. (info) aws-sdk-s3 `.presigned()` loop",
            fmt_ms(partway),
            fmt_ms(sdk),
            format!("{:.0}× faster", sdk / partway),
            "—",
            None,
        ),
    ])
}

/// The CPU floor: the signing key derived once, then per URL one SHA-256 of the
/// canonical request and one HMAC-SHA256 of the string to sign.
fn floor_presign(parts: &[u32]) -> Vec<String> {
    type HmacSha256 = Hmac<Sha256>;
    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(key).expect("any key size");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    let now = chrono::Utc::now();
    let date = now.format("%Y%m%d").to_string();
    let date_time = now.format("%Y%m%dT%H%M%SZ").to_string();
    let scope = format!("{date}/us-east-1/s3/aws4_request");
    let k = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
    let k = hmac(&k, b"us-east-1");
    let k = hmac(&k, b"s3");
    let k = hmac(&k, b"aws4_request");
    let mac = HmacSha256::new_from_slice(&k).expect("any key size");
    let path = "/bucket/uploads/some%20file%20%C3%BC.bin";
    let upload_id = "2~abc%2Bdef%2Fghi%3D";
    let credential = format!("{ACCESS_KEY}%2F{}", scope.replace('/', "%2F"));
    let expires = EXPIRES.as_secs();
    parts
        .iter()
        .map(|n| {
            let query = format!(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}&X-Amz-Date={date_time}\
                 &X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&partNumber={n}&uploadId={upload_id}&x-id=UploadPart"
            );
            let creq = format!("PUT\n{path}\n{query}\nhost:127.0.0.1:9000\n\nhost\nUNSIGNED-PAYLOAD");
            let sts = format!(
                "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
                hex::encode(Sha256::digest(creq.as_bytes()))
            );
            let mut m = mac.clone();
            m.update(sts.as_bytes());
            let signature = hex::encode(m.finalize().into_bytes());
            format!("{ENDPOINT}{path}?{query}&X-Amz-Signature={signature}")
        })
        .collect()
}

async fn sdk_presign(parts: &[u32]) -> Result<f64> {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "bench",
        ))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .endpoint_url(ENDPOINT)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let start = Instant::now();
    let mut urls = Vec::with_capacity(parts.len());
    for &n in parts {
        let presigned = client
            .upload_part()
            .bucket(BUCKET)
            .key(OBJECT_KEY)
            .upload_id(UPLOAD_ID)
            .part_number(n as i32)
            .presigned(PresigningConfig::expires_in(EXPIRES)?)
            .await?;
        urls.push(presigned.uri().to_string());
    }
    Ok(ms(start.elapsed()))
}

// ------------------------------------------------------------------------------------
// Processes

fn bin(name: &str) -> Result<PathBuf> {
    let path = PathBuf::from(env("PARTWAY_BENCH_BIN_DIR")?).join(name);
    if !path.exists() {
        return Err(format!("{} is missing", path.display()).into());
    }
    Ok(path)
}

/// An API key for `owner`, made by `partway keys create` on the cluster's database.
fn create_key(vars: &[(String, String)], dir: &Path, owner: &str) -> Result<String> {
    let keys = command("partway", vars, &dir.join("keys.log"))?
        .args(["keys", "create", "--owner", owner])
        .output()?;
    if !keys.status.success() {
        return Err("partway keys create failed".into());
    }
    Ok(String::from_utf8(keys.stdout)?
        .lines()
        .last()
        .ok_or("no key printed")?
        .trim()
        .to_string())
}

/// A command with no inherited `PARTWAY_*` settings but the given ones.
fn command(name: &str, vars: &[(String, String)], log: &Path) -> Result<Command> {
    let mut cmd = Command::new(bin(name)?);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARTWAY_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(vars.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?);
    Ok(cmd)
}

fn spawn_lines(mut cmd: Command) -> Result<(Child, Receiver<String>)> {
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
}

fn wait_line(rx: &Receiver<String>, prefix: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .map_err(|_| format!("no `{prefix}` line in time"))?;
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            return Ok(rest.trim().to_string());
        }
    }
}

fn vm_hwm_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM".into())
}

struct AllInOne {
    child: Child,
    /// `http://…` without `/api/v1`.
    base: String,
    key: String,
}

fn tempdir(state: &mut State) -> Result<PathBuf> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    state.dirs.push(dir);
    Ok(path)
}

fn all_in_one(state: &mut State) -> Result<(String, String)> {
    if let Some(a) = &state.aio {
        return Ok((a.base.clone(), a.key.clone()));
    }
    let dir = tempdir(state)?;
    let aio = spawn_all_in_one(&dir)?;
    let answer = (aio.base.clone(), aio.key.clone());
    state.aio = Some(aio);
    Ok(answer)
}

/// The all-in-one service (`partway`) on loopback with its data in `dir`.
fn spawn_all_in_one(dir: &std::path::Path) -> Result<AllInOne> {
    let vars = vec![
        ("PARTWAY_BIND".to_string(), "127.0.0.1:0".to_string()),
        ("PARTWAY_EMBEDDED_S3_BIND".into(), "127.0.0.1:0".into()),
        (
            "PARTWAY_DATA_DIR".into(),
            dir.join("data").display().to_string(),
        ),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let cmd = command("partway", &vars, &dir.join("partway.log"))?;
    let (child, rx) = spawn_lines(cmd)?;
    let api = wait_line(&rx, "API:")?;
    let key = wait_line(&rx, "Dev key:")?;
    let base = api.trim_end_matches("/api/v1").to_string();
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Ok(AllInOne { child, base, key })
}

/// `partway-api` and worker processes on a fresh PostgreSQL database, RabbitMQ prefix and
/// moto bucket; killed when dropped.
struct Cluster {
    api: Child,
    workers: Vec<Child>,
    /// Each worker's `/metrics` URL.
    worker_metrics: Vec<String>,
    base: String,
    key: String,
    vars: Vec<(String, String)>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.api).chain(self.workers.iter_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a cluster whose storage calls go to `s3_endpoint` (moto, or a proxy in front of
/// it) with `workers` worker processes and the `extra` settings.
async fn start_cluster(
    state: &mut State,
    workers: usize,
    s3_endpoint: &str,
    extra: &[(&str, &str)],
) -> Result<Cluster> {
    use sea_orm::{ConnectionTrait, Database};
    let db_url = env("PARTWAY_TEST_DATABASE_URL")?;
    let admin = Database::connect(&db_url).await?;
    let name = format!("partway_bench_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let (db_base, _) = db_url.rsplit_once('/').ok_or("database url has no path")?;
    let bucket = format!("pw-bench-{}", uuid::Uuid::new_v4().simple());
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(env("PARTWAY_TEST_S3_ENDPOINT")?)
        .force_path_style(true)
        .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
        .build();
    aws_sdk_s3::Client::from_conf(config)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await?;
    let mut vars: Vec<(String, String)> = vec![
        ("PARTWAY_DATABASE_URL".into(), format!("{db_base}/{name}")),
        ("PARTWAY_AMQP_URL".into(), env("PARTWAY_TEST_AMQP_URL")?),
        (
            "PARTWAY_AMQP_PREFIX".into(),
            format!("bench-{}.", uuid::Uuid::new_v4().simple()),
        ),
        ("PARTWAY_REDIS_URL".into(), env("PARTWAY_TEST_REDIS_URL")?),
        ("PARTWAY_S3_ENDPOINT".into(), s3_endpoint.into()),
        ("PARTWAY_S3_BUCKET".into(), bucket),
        ("PARTWAY_S3_ACCESS_KEY_ID".into(), "test".into()),
        ("PARTWAY_S3_SECRET_ACCESS_KEY".into(), "test".into()),
        ("PARTWAY_MASTER_KEY".into(), "11".repeat(32)),
        ("PARTWAY_BIND".into(), "127.0.0.1:0".into()),
        ("PARTWAY_LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let dir = tempdir(state)?;
    let (api, rx) = spawn_lines(command("partway-api", &vars, &dir.join("api.log"))?)?;
    let mut cluster = Cluster {
        api,
        workers: Vec::new(),
        worker_metrics: Vec::new(),
        base: String::new(),
        key: String::new(),
        vars,
        dir,
    };
    cluster.base = wait_line(&rx, "partway-api listening on")?;
    std::thread::spawn(move || while rx.recv().is_ok() {});
    cluster.key = create_key(&cluster.vars, &cluster.dir, "bench")?;
    for i in 0..workers {
        let log = cluster.dir.join(format!("worker-{i}.log"));
        // Each worker serves /metrics, so a row can see which worker ran how many jobs.
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut vars = cluster.vars.clone();
        vars.push(("PARTWAY_METRICS_BIND".into(), metrics.to_string()));
        let worker = command("partway-worker", &vars, &log)?
            .stdout(Stdio::null())
            .spawn()?;
        cluster.workers.push(worker);
        cluster
            .worker_metrics
            .push(format!("http://{metrics}/metrics"));
    }
    Ok(cluster)
}

/// The cluster rows 2, 3 and 6 share: one worker, storage calls straight to moto.
async fn cluster(state: &mut State) -> Result<(String, String)> {
    if let Some(c) = &state.cluster {
        return Ok((c.base.clone(), c.key.clone()));
    }
    // Rate limits off: row 3 offers far more than the default per-key limit, and 3b
    // measures the limiter on a replica of its own.
    let c = start_cluster(
        state,
        1,
        &env("PARTWAY_TEST_S3_ENDPOINT")?,
        &[
            ("PARTWAY_RATE_LIMIT", "off"),
            ("PARTWAY_RATE_LIMIT_ANON", "off"),
        ],
    )
    .await?;
    // Idle figures for row 6: after start-up has settled, before any work.
    tokio::time::sleep(Duration::from_secs(2)).await;
    state.idle_hwm = Some((vm_hwm_kib(c.api.id())?, vm_hwm_kib(c.workers[0].id())?));
    let out = (c.base.clone(), c.key.clone());
    state.cluster = Some(c);
    Ok(out)
}

// ------------------------------------------------------------------------------------
// Row 2: init → all 10,000 URLs ready

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

async fn init(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    wait: u32,
    size: u64,
    part_size: Option<u64>,
) -> Result<Value> {
    let mut body = json!({"filename": "bench.bin", "fileSize": size, "contentType": "application/octet-stream"});
    if let Some(p) = part_size {
        body["partSize"] = json!(p);
    }
    let resp = http
        .post(format!("{base}/api/v1/upload/multipart/init?wait={wait}"))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let doc: Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("init: {status} {doc}").into());
    }
    Ok(doc)
}

async fn status_doc(http: &reqwest::Client, base: &str, key: &str, token: &str) -> Result<Value> {
    Ok(http
        .get(format!("{base}/api/v1/upload/multipart/{token}"))
        .header("x-api-key", key)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

const BIG: u64 = PARTS as u64 * 5 * 1024 * 1024;
const PART: u64 = 5 * 1024 * 1024;

/// Polls the status document every 5 ms until at least `want` URLs are ready (at most
/// a minute); returns how many are.
async fn urls_ready(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    token: &str,
    want: u64,
) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let ready = status_doc(http, base, key, token).await?["urlsReady"]
            .as_u64()
            .unwrap_or(0);
        if ready >= want {
            return Ok(ready);
        }
        if Instant::now() > deadline {
            return Err(format!("only {ready} of {want} URLs ready after a minute").into());
        }
    }
}

/// (all ready, first page) medians in ms.
async fn init_times(base: &str, key: &str) -> Result<(f64, f64)> {
    let http = http();
    // Warm up connections and caches.
    init(&http, base, key, 60, BIG, Some(PART)).await?;
    let mut all = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let doc = init(&http, base, key, 60, BIG, Some(PART)).await?;
        if doc["partUrls"].as_array().map_or(0, Vec::len) < PARTS as usize {
            let token = doc["resumeToken"].as_str().ok_or("no token")?;
            urls_ready(&http, base, key, token, PARTS as u64).await?;
        }
        all.push(ms(start.elapsed()));
    }
    let mut first = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let doc = init(&http, base, key, 0, BIG, Some(PART)).await?;
        let token = doc["resumeToken"].as_str().ok_or("no token")?.to_string();
        if doc["urlsReady"].as_u64().unwrap_or(0) < 1000 {
            urls_ready(&http, base, key, &token, 1000).await?;
        }
        first.push(ms(start.elapsed()));
    }
    Ok((median(all), median(first)))
}

async fn row_init(state: &mut State) -> Result<Vec<Row>> {
    let reference = state.reference_loop_ms;
    let baseline = reference.map_or("—".into(), fmt_ms);
    let ratio = |v: f64| reference.map_or("—".into(), |r| format!("{:.0}× faster", r / v));
    let mut rows = Vec::new();
    progress("row 2: embedded (all-in-one)");
    let (base, key) = all_in_one(state)?;
    let (all, first) = init_times(&base, &key).await?;
    rows.push(row(
        "2a. Init → 10,000 URLs ready, embedded",
        fmt_ms(all),
        baseline.clone(),
        ratio(all),
        "< 250 ms",
        Some(all < 250.0),
    ));
    rows.push(row(
        "2b. Init → first 1,000 URLs, embedded",
        fmt_ms(first),
        baseline.clone(),
        ratio(first),
        "< 50 ms",
        Some(first < 50.0),
    ));
    progress("row 2: distributed (partway-api + 1 worker)");
    let (base, key) = cluster(state).await?;
    let (all, first) = init_times(&base, &key).await?;
    rows.push(row(
        "2c. Init → 10,000 URLs ready, distributed",
        fmt_ms(all),
        baseline.clone(),
        ratio(all),
        "< 250 ms",
        Some(all < 250.0),
    ));
    rows.push(row(
        "2d. Init → first 1,000 URLs, distributed",
        fmt_ms(first),
        baseline,
        ratio(first),
        "< 50 ms",
        Some(first < 50.0),
    ));
    Ok(rows)
}

// ------------------------------------------------------------------------------------
// Row 3: status polling with wrk

struct Wrk {
    rps: f64,
    p50: f64,
    p99: f64,
}

fn parse_latency(v: &str) -> Option<f64> {
    let v = v.trim();
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

/// Three wrk runs; each figure is the median of its three (loopback latency tails on
/// 2 shared cores vary from run to run).
fn wrk_median(url: &str, key: &str, dir: &Path) -> Result<Wrk> {
    let runs = (0..3)
        .map(|_| wrk(url, key, dir))
        .collect::<Result<Vec<_>>>()?;
    Ok(Wrk::median_of(&runs))
}

impl Wrk {
    /// Each figure the median of its runs.
    fn median_of(runs: &[Wrk]) -> Wrk {
        Wrk {
            rps: median(runs.iter().map(|r| r.rps).collect()),
            p50: median(runs.iter().map(|r| r.p50).collect()),
            p99: median(runs.iter().map(|r| r.p99).collect()),
        }
    }
}

/// Row 3b's per-credential limit: a million requests per second (and as many at once),
/// about 30× what wrk reaches here, so the limiter runs on every request and refuses none.
const LIMIT_FAR_ABOVE_LOAD: &str = "1000000/s";

fn wrk(url: &str, key: &str, dir: &Path) -> Result<Wrk> {
    let script = dir.join("status.lua");
    let mut f = std::fs::File::create(&script)?;
    writeln!(f, "wrk.headers[\"x-api-key\"] = \"{key}\"")?;
    let out = Command::new("wrk")
        .args(["-t2", "-c32", "-d8s", "--latency", "-s"])
        .arg(&script)
        .arg(url)
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    if !out.status.success() || text.contains("Non-2xx") {
        return Err(format!("wrk failed or saw errors: {text}").into());
    }
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => rps = v.parse().ok(),
            (Some("50%"), Some(v)) => p50 = parse_latency(v),
            (Some("99%"), Some(v)) => p99 = parse_latency(v),
            _ => {}
        }
    }
    match (rps, p50, p99) {
        (Some(rps), Some(p50), Some(p99)) => Ok(Wrk { rps, p50, p99 }),
        _ => Err(format!("cannot parse wrk output: {text}").into()),
    }
}

async fn row_status(state: &mut State) -> Result<Vec<Row>> {
    let (base, key) = cluster(state).await?;
    let http = http();
    let doc = init(&http, &base, &key, 60, 64 * 1024 * 1024, None).await?;
    let token = doc["resumeToken"].as_str().ok_or("no token")?.to_string();
    status_doc(&http, &base, &key, &token).await?;
    let dir = state.cluster.as_ref().expect("started").dir.clone();
    let status_path = format!("/api/v1/upload/multipart/{token}");

    // 3b: a second partway-api on the same database and Redis with the rate limiter on,
    // its limit far above what wrk offers, so every request passes through the Redis
    // limiter (one script call) and none is refused. The runs alternate with the
    // limiter-less API's so that drift on the shared machine hits both sides alike.
    let mut vars = state.cluster.as_ref().expect("started").vars.clone();
    vars.retain(|(k, _)| k != "PARTWAY_RATE_LIMIT");
    vars.push(("PARTWAY_RATE_LIMIT".into(), LIMIT_FAR_ABOVE_LOAD.into()));
    let (child, rx) = spawn_lines(command("partway-api", &vars, &dir.join("api-limited.log"))?)?;
    state.limited_api = Some(child);
    let limited_base = wait_line(&rx, "partway-api listening on")?;
    std::thread::spawn(move || while rx.recv().is_ok() {});
    status_doc(&http, &limited_base, &key, &token).await?;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for run in 1..=3 {
        progress(&format!(
            "row 3: wrk against partway-api with Redis ({run}/3)"
        ));
        without.push(wrk(&format!("{base}{status_path}"), &key, &dir)?);
        progress(&format!(
            "row 3b: wrk against partway-api with Redis and the rate limiter ({run}/3)"
        ));
        with.push(wrk(&format!("{limited_base}{status_path}"), &key, &dir)?);
    }
    if let Some(mut c) = state.limited_api.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let cached = Wrk::median_of(&without);
    let limited = Wrk::median_of(&with);

    progress("row 3: wrk against partway-api with the PostgreSQL fallback");
    let mut vars = state.cluster.as_ref().expect("started").vars.clone();
    vars.retain(|(k, _)| k != "PARTWAY_REDIS_URL");
    vars.push(("PARTWAY_REDIS_URL".into(), "redis://127.0.0.1:1".into()));
    let (child, rx) = spawn_lines(command(
        "partway-api",
        &vars,
        &dir.join("api-fallback.log"),
    )?)?;
    state.fallback_api = Some(child);
    let fallback_base = wait_line(&rx, "partway-api listening on")?;
    std::thread::spawn(move || while rx.recv().is_ok() {});
    status_doc(&http, &fallback_base, &key, &token).await?;
    let fallback = wrk_median(
        &format!("{fallback_base}/api/v1/upload/multipart/{token}"),
        &key,
        &dir,
    )?;
    if let Some(mut c) = state.fallback_api.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let met = cached.rps >= 20_000.0 && cached.p99 < 5.0;
    let kept = limited.rps / cached.rps;
    // What one request costs more, from the throughput of the whole (2-core) machine.
    let cost_us = (1.0 / limited.rps - 1.0 / cached.rps) * 1e6;
    let limiter_row = row(
        &format!(
            "3b. Status polling with the Redis rate limiter ({LIMIT_FAR_ABOVE_LOAD}, far above the load) vs without (same wrk, runs alternated, median of 3)"
        ),
        format!(
            "{:.0} req/s, p50 {}, p99 {}",
            limited.rps,
            fmt_ms(limited.p50),
            fmt_ms(limited.p99)
        ),
        format!(
            "{:.0} req/s, p50 {}, p99 {}",
            cached.rps,
            fmt_ms(cached.p50),
            fmt_ms(cached.p99)
        ),
        format!(
            "{:.0}% of req/s ({cost_us:+.1} µs per request, p50 {:+.0} µs)",
            kept * 100.0,
            (limited.p50 - cached.p50) * 1000.0
        ),
        "≥ 90% of req/s",
        Some(kept >= 0.9),
    );
    Ok(vec![
        row(
            "3. Status polling (wrk -t2 -c32 -d8s, median of 3), Redis vs PostgreSQL fallback",
            format!(
                "{:.0} req/s, p50 {}, p99 {}",
                cached.rps,
                fmt_ms(cached.p50),
                fmt_ms(cached.p99)
            ),
            format!(
                "{:.0} req/s, p50 {}, p99 {}",
                fallback.rps,
                fmt_ms(fallback.p50),
                fmt_ms(fallback.p99)
            ),
            format!("{:.2}× req/s", cached.rps / fallback.rps),
            "≥ 20,000 req/s, p99 < 5 ms",
            Some(met),
        ),
        limiter_row,
    ])
}

// ------------------------------------------------------------------------------------
// Row 4: 1 GiB upload, CLI vs plain parallel PUT loop

const GIB: u64 = 1024 * 1024 * 1024;

fn big_file() -> Result<PathBuf> {
    let dir = PathBuf::from(env("PARTWAY_BENCH_CACHE")?);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("1gib.bin");
    if std::fs::metadata(&path).map(|m| m.len()).ok() == Some(GIB) {
        return Ok(path);
    }
    progress("row 4: writing the 1 GiB test file");
    let tmp = dir.join("1gib.bin.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf)?;
    }
    f.flush()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

async fn plain_loop(base: &str, key: &str, file: &Path) -> Result<f64> {
    use std::os::unix::fs::FileExt as _;
    let http = http();
    let doc = init(&http, base, key, 60, GIB, None).await?;
    let token = doc["resumeToken"].as_str().ok_or("no token")?.to_string();
    let parts = doc["partUrls"].as_array().ok_or("no partUrls")?.clone();
    let file = std::sync::Arc::new(std::fs::File::open(file)?);
    let start = Instant::now();
    futures::stream::iter(parts)
        .map(|part| {
            let (http, file) = (http.clone(), file.clone());
            async move {
                let offset = part["start"].as_u64().ok_or("no start")?;
                let size = part["size"].as_u64().ok_or("no size")? as usize;
                let url = part["url"].as_str().ok_or("no url")?.to_string();
                let body = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                    let mut buf = vec![0u8; size];
                    file.read_exact_at(&mut buf, offset)?;
                    Ok(buf)
                })
                .await??;
                let resp = http.put(url).body(body).send().await?.error_for_status()?;
                resp.headers().get("etag").ok_or("no ETag")?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    let secs = start.elapsed().as_secs_f64();
    http.post(format!("{base}/api/v1/upload/multipart/abort?wait=30"))
        .header("x-api-key", key)
        .json(&json!({"resumeToken": token}))
        .send()
        .await?;
    Ok(GIB as f64 / MIB / secs)
}

async fn row_upload(state: &mut State) -> Result<Vec<Row>> {
    let file = big_file()?;
    let (base, key) = all_in_one(state)?;
    progress("row 4: plain parallel PUT loop (8 in flight)");
    let plain = plain_loop(&base, &key, &file).await?;
    progress("row 4: partway upload --parallel 8");
    let state_dir = tempdir(state)?;
    let start = Instant::now();
    let out = Command::new(bin("partway")?)
        .arg("upload")
        .arg(&file)
        .args([
            "--server",
            &base,
            "--key",
            &key,
            "--parallel",
            "8",
            "--json",
        ])
        .env("PARTWAY_STATE_DIR", &state_dir)
        .stderr(Stdio::null())
        .output()?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "partway upload failed: {}",
            String::from_utf8_lossy(&out.stdout)
        )
        .into());
    }
    // Like for like: the CLI's parts phase (PUTs + reports) against the loop's PUTs. The
    // whole run (process start, init, complete) is shown beside it.
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let report: serde_json::Value = serde_json::from_str(&last)?;
    let transfer = report["transferSeconds"]
        .as_f64()
        .filter(|s| *s > 0.0)
        .ok_or("no transferSeconds")?;
    let cli = GIB as f64 / MIB / transfer;
    let whole = GIB as f64 / MIB / secs;
    Ok(vec![row(
        "4. 1 GiB upload, CLI parts phase vs plain PUT loop (8 parallel, embedded S3)",
        format!("{cli:.0} MiB/s (whole run incl. init+complete: {whole:.0} MiB/s)"),
        format!("{plain:.0} MiB/s"),
        format!("{:.0}%", cli / plain * 100.0),
        "≥ 90%",
        Some(cli / plain >= 0.9),
    )])
}

// ------------------------------------------------------------------------------------
// Row 6: memory

async fn row_memory(state: &mut State) -> Result<Vec<Row>> {
    cluster(state).await?;
    let (idle_api, idle_worker) = state.idle_hwm.ok_or("no idle figures")?;
    let c = state.cluster.as_ref().expect("started");
    let (api, worker) = (vm_hwm_kib(c.api.id())?, vm_hwm_kib(c.workers[0].id())?);
    let mib = |k: u64| k as f64 / 1024.0;
    let fig = |idle: u64, after: u64| {
        format!(
            "idle {:.1} MiB, after rows 2–3 {:.1} MiB",
            mib(idle),
            mib(after)
        )
    };
    let big_inits = peak_rss_over_big_inits(state).await?;
    Ok(vec![
        row(
            "6a. Peak RSS partway-api (VmHWM)",
            fig(idle_api, api),
            "—".into(),
            "—".into(),
            "< 60 MiB idle",
            Some(mib(idle_api) < 60.0),
        ),
        row(
            "6b. Peak RSS partway-worker (VmHWM)",
            fig(idle_worker, worker),
            "—".into(),
            "—".into(),
            "< 60 MiB idle",
            Some(mib(idle_worker) < 60.0),
        ),
        big_inits,
    ])
}

/// Inits in row 6c, and their parts.
const BIG_INITS: usize = 120;

/// Row 6c (issue 11): a fresh all-in-one service answers 120 inits of 10,000 parts
/// each, with 254-byte (non-ASCII) filenames that make every URL long, all URLs in
/// each answer; its peak RSS must stay bounded (the URL-page cache is bounded in bytes
/// by `PARTWAY_CACHE_MAX_BYTES`, 64 MiB by default).
async fn peak_rss_over_big_inits(state: &mut State) -> Result<Row> {
    progress("row 6c: 120 inits of 10,000 parts with 254-byte names, all-in-one");
    let dir = tempdir(state)?;
    let mut aio = spawn_all_in_one(&dir)?;
    let pid = aio.child.id();
    let idle = vm_hwm_kib(pid)?;
    let http = http();
    let filename = "é".repeat(127);
    let mut answered_bytes = 0usize;
    for _ in 0..BIG_INITS {
        let body = json!({
            "filename": filename,
            "fileSize": BIG,
            "partSize": PART,
            "contentType": "application/octet-stream",
        });
        let resp = http
            .post(format!("{}/api/v1/upload/multipart/init?wait=60", aio.base))
            .header("x-api-key", &aio.key)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() || !text.contains(&format!("\"partNumber\":{PARTS}")) {
            return Err(format!("init: {status}, {} bytes", text.len()).into());
        }
        answered_bytes += text.len();
    }
    let peak = vm_hwm_kib(pid)?;
    let _ = aio.child.kill();
    let _ = aio.child.wait();
    let mib = |k: u64| k as f64 / 1024.0;
    Ok(row(
        "6c. Peak RSS all-in-one over 120 inits × 10,000 URLs, 254-byte names",
        format!(
            "{:.1} MiB (idle {:.1} MiB; {:.0} MiB answered)",
            mib(peak),
            mib(idle),
            answered_bytes as f64 / MIB
        ),
        "—".into(),
        "—".into(),
        "< 160 MiB",
        Some(mib(peak) < 160.0),
    ))
}
