//! Row 8 (issue 13): partway's Companion-compatible routes against Uppy Companion 6.2.2
//! (npm `@uppy/companion`, started here as its standalone server), same machine, same
//! storage (moto), one run.
//!
//! - Row 8, the part-signing route Uppy calls once per part (`GET …/s3/multipart/{uploadId}/1
//!   ?key=`, wrk -t2 -c32 -d8s, runs alternated, median of 3): requests/s, p50/p99, and
//!   the server's CPU seconds per 10,000 signatures (utime + stime of the server process
//!   from `/proc`, over the runs). partway: `partway-api` of the cluster rows (PostgreSQL,
//!   Redis, RabbitMQ), the 6.x form `/uppy/{browserToken}/s3/…`.
//!   Target: ≥ 30× Companion's requests/s at a lower p99.
//! - Row 8b, a 512 MiB file uploaded by Uppy 6.x (`@uppy/aws-s3` 6.3.1, `tests/browser/uppy.mjs`)
//!   in headless Chromium through Companion vs through partway (api + 1 worker): the
//!   upload's wall time and the servers' CPU seconds (Companion's process; partway's api
//!   and worker). moto sends no CORS headers, so Chromium runs without CORS checks for
//!   both. Target: no slower, at most one fifth of Companion's CPU.
use super::*;

/// Clock ticks per second of `/proc/*/stat` times (Linux's USER_HZ, 100 everywhere).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) a process used so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name (in parentheses) the fields start at field 3 (state):
    // utime is field 14, stime field 15.
    let rest = stat.rsplit_once(')').ok_or("unreadable /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick =
        |i: usize| -> Result<f64> { Ok(fields.get(i).ok_or("short /proc stat")?.parse::<f64>()?) };
    Ok((tick(11)? + tick(12)?) / USER_HZ)
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

/// Companion's standalone server on a free loopback port; killed when dropped.
struct Companion {
    child: Child,
    base: String,
}

impl Drop for Companion {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn new_bucket() -> Result<String> {
    let bucket = format!("pw-companion-{}", uuid::Uuid::new_v4().simple());
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
    Ok(bucket)
}

async fn start_companion(state: &mut State) -> Result<Companion> {
    let dir = tempdir(state)?;
    let script = PathBuf::from(env("PARTWAY_BENCH_CACHE")?)
        .join("companion/node_modules/@uppy/companion/bin/companion");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let bucket = new_bucket().await?;
    let data = dir.join("companion-data");
    std::fs::create_dir_all(&data)?;
    let log = std::fs::File::create(dir.join("companion.log"))?;
    let child = Command::new("node")
        .arg(&script)
        .envs([
            ("NODE_ENV", "production".to_string()),
            ("COMPANION_PORT", port.to_string()),
            ("COMPANION_DOMAIN", format!("127.0.0.1:{port}")),
            ("COMPANION_PROTOCOL", "http".into()),
            ("COMPANION_DATADIR", data.display().to_string()),
            ("COMPANION_SECRET", "partway-bench-secret".into()),
            ("COMPANION_CLIENT_ORIGINS", "true".into()),
            ("COMPANION_UPLOAD_URLS", "http://127.0.0.1:.*".into()),
            ("COMPANION_AWS_KEY", "test".into()),
            ("COMPANION_AWS_SECRET", "test".into()),
            ("COMPANION_AWS_BUCKET", bucket),
            ("COMPANION_AWS_REGION", "us-east-1".into()),
            ("COMPANION_AWS_ENDPOINT", env("PARTWAY_TEST_S3_ENDPOINT")?),
            ("COMPANION_AWS_FORCE_PATH_STYLE", "true".into()),
            // Otherwise its part URLs carry an empty-body CRC32 that real S3 rejects.
            ("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED".into()),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let companion = Companion {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let http = http();
    loop {
        if http.get(&companion.base).send().await.is_ok() {
            return Ok(companion);
        }
        if Instant::now() > deadline {
            return Err("Companion did not start (see companion.log)".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts an upload through `{base}/s3/multipart`; its part-1 signing path.
async fn sign_path(http: &reqwest::Client, base: &str) -> Result<String> {
    let created: Value = http
        .post(format!("{base}/s3/multipart"))
        .json(&json!({"filename": "bench.bin", "type": "application/octet-stream", "metadata": {}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let upload_id = created["uploadId"].as_str().ok_or("no uploadId")?;
    let key = created["key"].as_str().ok_or("no key")?;
    let path = format!(
        "{base}/s3/multipart/{}/1?key={}",
        urlencode(upload_id),
        urlencode(key)
    );
    http.get(&path).send().await?.error_for_status()?;
    Ok(path)
}

async fn browser_token(http: &reqwest::Client, base: &str, key: &str) -> Result<String> {
    let minted: Value = http
        .post(format!("{base}/api/v1/browser-tokens"))
        .header("x-api-key", key)
        .json(&json!({"expiresIn": 86_400}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(minted["token"].as_str().ok_or("no token")?.to_string())
}

/// wrk against `url` while the process `pid` is measured: the run and its CPU seconds.
fn measured_wrk(url: &str, pid: u32, dir: &Path) -> Result<(Wrk, f64)> {
    let before = cpu_seconds(pid)?;
    let run = wrk(url, "none", dir)?;
    Ok((run, cpu_seconds(pid)? - before))
}

pub(super) async fn row_uppy(state: &mut State) -> Result<Vec<Row>> {
    let (base, key) = cluster(state).await?;
    let http = http();
    let token = browser_token(&http, &base, &key).await?;
    let companion = start_companion(state).await?;
    let dir = tempdir(state)?;
    let api_pid = state.cluster.as_ref().ok_or("no cluster")?.api.id();
    let partway_url = sign_path(&http, &format!("{base}/uppy/{token}")).await?;
    let companion_url = sign_path(&http, &companion.base).await?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut our_cpu, mut their_cpu) = (0.0, 0.0);
    for run in 1..=3 {
        progress(&format!(
            "row 8: wrk on the part-signing route, partway ({run}/3)"
        ));
        let (r, cpu) = measured_wrk(&partway_url, api_pid, &dir)?;
        our_cpu += cpu / (r.rps * 8.0);
        ours.push(r);
        progress(&format!(
            "row 8: wrk on the part-signing route, Companion ({run}/3)"
        ));
        let (r, cpu) = measured_wrk(&companion_url, companion.child.id(), &dir)?;
        their_cpu += cpu / (r.rps * 8.0);
        theirs.push(r);
    }
    let (ours, theirs) = (Wrk::median_of(&ours), Wrk::median_of(&theirs));
    // CPU seconds per 10,000 signatures, the mean over the three runs.
    let (our_cpu, their_cpu) = (our_cpu / 3.0 * 10_000.0, their_cpu / 3.0 * 10_000.0);
    let sign = row(
        "8. Uppy's part-signing route (wrk -t2 -c32 -d8s, median of 3, moto): partway-api vs Companion 6.2.2",
        format!(
            "{:.0} req/s, p50 {}, p99 {}, {:.2} CPU s / 10k",
            ours.rps,
            fmt_ms(ours.p50),
            fmt_ms(ours.p99),
            our_cpu
        ),
        format!(
            "{:.0} req/s, p50 {}, p99 {}, {:.2} CPU s / 10k",
            theirs.rps,
            fmt_ms(theirs.p50),
            fmt_ms(theirs.p99),
            their_cpu
        ),
        format!(
            "{:.1}× req/s, {:.1}× less CPU",
            ours.rps / theirs.rps,
            their_cpu / our_cpu
        ),
        "≥ 30× req/s, lower p99",
        Some(ours.rps >= 30.0 * theirs.rps && ours.p99 < theirs.p99),
    );
    let upload = match upload_row(state, &base, &key, &companion).await {
        Ok(row) => row,
        Err(e) => row(
            &format!("8b. failed: {e}"),
            "—".into(),
            "—".into(),
            "—".into(),
            "—",
            None,
        ),
    };
    Ok(vec![sign, upload])
}

/// One Uppy 6.x upload of `size` bytes in Chromium at `endpoint`: its wall time.
async fn uppy_upload(endpoint: &str, size: u64, dir: &Path) -> Result<Duration> {
    let config = json!({
        "base": endpoint,
        "chromium": env("PARTWAY_TEST_CHROMIUM")?,
        "playwright": env("PARTWAY_TEST_PLAYWRIGHT_DIR")?,
        "uppy6": env("PARTWAY_TEST_UPPY6_DIR")?,
        "uppy5": env("PARTWAY_TEST_UPPY5_DIR")?,
        "insecure": true,
        "deadlineMs": 600_000,
        "scenarios": [{"name": "512 MiB", "version": 6, "size": size, "multipart": true,
                       "companionEndpoint": endpoint, "token": ""}],
    });
    let path = dir.join(format!("uppy-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, config.to_string())?;
    let out = Command::new("node")
        .arg("tests/browser/uppy.mjs")
        .arg(&path)
        .output()?;
    let stdout = String::from_utf8(out.stdout)?;
    let result: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).map_err(|_| {
            format!(
                "no result from uppy.mjs: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let first = &result["results"][0];
    if result["ok"] != json!(true) {
        return Err(format!("the upload failed: {first}").into());
    }
    let ms = first["uploadMs"].as_u64().ok_or("no uploadMs")?;
    Ok(Duration::from_millis(ms))
}

async fn upload_row(
    state: &mut State,
    base: &str,
    key: &str,
    companion: &Companion,
) -> Result<Row> {
    const SIZE: u64 = 512 * 1024 * 1024;
    let http = http();
    let token = browser_token(&http, base, key).await?;
    let dir = tempdir(state)?;
    let cluster = state.cluster.as_ref().ok_or("no cluster")?;
    let partway_pids: Vec<u32> = std::iter::once(cluster.api.id())
        .chain(cluster.workers.iter().map(Child::id))
        .collect();
    let cpu_of =
        |pids: &[u32]| -> Result<f64> { pids.iter().map(|p| cpu_seconds(*p)).sum::<Result<f64>>() };
    progress("row 8b: 512 MiB through Uppy 6.x and partway");
    let before = cpu_of(&partway_pids)?;
    let ours = uppy_upload(&format!("{base}/uppy/{token}"), SIZE, &dir).await?;
    let our_cpu = cpu_of(&partway_pids)? - before;
    progress("row 8b: 512 MiB through Uppy 6.x and Companion");
    let companion_pid = [companion.child.id()];
    let before = cpu_of(&companion_pid)?;
    let theirs = uppy_upload(&companion.base, SIZE, &dir).await?;
    let their_cpu = cpu_of(&companion_pid)? - before;
    Ok(row(
        "8b. 512 MiB by Uppy 6.x in Chromium (moto): through partway (api + 1 worker) vs Companion 6.2.2 — wall time, server CPU",
        format!("{}, {our_cpu:.2} CPU s", fmt_ms(ms(ours))),
        format!("{}, {their_cpu:.2} CPU s", fmt_ms(ms(theirs))),
        format!(
            "{:.2}× time, {:.1}× less CPU",
            ms(ours) / ms(theirs),
            their_cpu / our_cpu.max(0.001)
        ),
        "no slower, ≤ 1/5 of the CPU",
        Some(ours <= theirs.mul_f64(1.05) && our_cpu * 5.0 <= their_cpu),
    ))
}
