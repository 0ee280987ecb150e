//! Row 5: worker scale-out. The same batch of uploads (init, PUT one small part, complete)
//! runs against a cluster with one worker and then against one with two. Storage is moto
//! behind a proxy that adds 20–50 ms to every request, so jobs wait on I/O as they do in
//! production; each worker runs a fixed number of jobs of each kind at once
//! (`PARTWAY_WORKER_CONCURRENCY`), which is what a second worker adds to. Everything
//! (moto, PostgreSQL, RabbitMQ, Redis, the load) shares this machine's cores, so the CPU
//! use of each process and of the machine is shown beside the throughput.
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{json, Value};

use crate::{
    delay_proxy::DelayProxy, env, http, init, progress, row, start_cluster, vm_hwm_kib, Cluster,
    Result, Row, State,
};

const DELAY_MS: std::ops::RangeInclusive<u64> = 20..=50;
/// Uploads in flight from the client side: enough that the workers, not the client, are
/// what limits throughput.
const CLIENTS: usize = 48;
const WARM_UP_UPLOADS: usize = 40;
const PART_BYTES: u64 = 1024;
/// Clock ticks per second in /proc (USER_HZ, 100 on every Linux we run on).
const TICKS: f64 = 100.0;

struct Run {
    jobs_per_sec: f64,
    /// Jobs each worker ran during the measured batch.
    jobs_by_worker: Vec<u64>,
    /// Mean time from a job's start in a worker to its end (storage's delay included).
    mean_job_ms: f64,
    /// Share of one core used by each worker, then the API, during the batch.
    worker_cpu: Vec<f64>,
    api_cpu: f64,
    /// Share of all cores in use on the machine during the batch.
    machine_cpu: f64,
    cores: usize,
}

impl Run {
    fn describe(&self) -> String {
        let pct = |v: &f64| format!("{:.0}%", v * 100.0);
        format!(
            "{:.0} jobs/s; jobs per worker {}, {:.0} ms each; CPU: worker {}, api {}, machine {} of {} cores",
            self.jobs_per_sec,
            self.jobs_by_worker
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("+"),
            self.mean_job_ms,
            self.worker_cpu.iter().map(pct).collect::<Vec<_>>().join("+"),
            pct(&self.api_cpu),
            pct(&self.machine_cpu),
            self.cores
        )
    }
}

pub async fn row_scale_out(state: &mut State) -> Result<Vec<Row>> {
    let uploads: usize = std::env::var("PARTWAY_BENCH_SCALE_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let moto = reqwest::Url::parse(&env("PARTWAY_TEST_S3_ENDPOINT")?)?;
    let upstream = *moto
        .socket_addrs(|| None)?
        .first()
        .ok_or("the S3 endpoint has no address")?;
    let proxy = DelayProxy::start(upstream, DELAY_MS).await?;
    let endpoint = format!("http://{}", proxy.addr);
    let mut rows = Vec::new();
    // 5a: one job of each kind per worker, so the workers wait on storage and the shared
    // cores have room for a second one. 5b: twice that, where this machine's 2 cores (also
    // running moto, PostgreSQL, RabbitMQ and the load) start to be what limits.
    for (name, concurrency, target) in [("5a", "1", Some(1.8)), ("5b", "2", None)] {
        let mut runs = Vec::new();
        for workers in [1, 2] {
            progress(&format!(
                "row {name}: {uploads} uploads (init + complete), {workers} worker(s) × concurrency {concurrency}, storage +{}–{} ms",
                DELAY_MS.start(),
                DELAY_MS.end()
            ));
            let cluster = start_cluster(
                state,
                workers,
                &endpoint,
                &[("PARTWAY_WORKER_CONCURRENCY", concurrency)],
            )
            .await?;
            runs.push(measure(&cluster, uploads).await?);
        }
        let (one, two) = (&runs[0], &runs[1]);
        let ratio = two.jobs_per_sec / one.jobs_per_sec;
        rows.push(row(
            &format!(
                "{name}. Worker scale-out{}: {uploads} uploads (init + complete jobs), 2 workers vs 1; storage +{}–{} ms per request; PARTWAY_WORKER_CONCURRENCY={concurrency}",
                if target.is_none() { " (info)" } else { "" },
                DELAY_MS.start(),
                DELAY_MS.end()
            ),
            two.describe(),
            one.describe(),
            format!("{ratio:.2}×"),
            if target.is_some() { "≥ 1.8×" } else { "—" },
            target.map(|t| ratio >= t),
        ));
    }
    Ok(rows)
}

async fn measure(cluster: &Cluster, uploads: usize) -> Result<Run> {
    let http = http();
    // Warm up until every worker has run jobs: consumers attached, connections pooled.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        run_uploads(&http, cluster, WARM_UP_UPLOADS).await?;
        if job_totals(&http, cluster)
            .await?
            .iter()
            .all(|&(n, _)| n > 0)
        {
            break;
        }
        if Instant::now() > deadline {
            return Err("a worker ran no jobs during the warm-up".into());
        }
    }
    let jobs_before = job_totals(&http, cluster).await?;
    let cpu_before = CpuSample::take(cluster)?;
    let start = Instant::now();
    run_uploads(&http, cluster, uploads).await?;
    let secs = start.elapsed().as_secs_f64();
    let cpu_after = CpuSample::take(cluster)?;
    let jobs_after = job_totals(&http, cluster).await?;
    let per_core = |before: u64, after: u64| (after - before) as f64 / TICKS / secs;
    let workers = cluster.workers.len();
    // Keep the peak RSS under load in the log: it is what row 6 reports for the idle case.
    for (i, w) in cluster.workers.iter().enumerate() {
        progress(&format!(
            "row 5: worker {i} peak RSS {:.1} MiB",
            vm_hwm_kib(w.id())? as f64 / 1024.0
        ));
    }
    Ok(Run {
        jobs_per_sec: (2 * uploads) as f64 / secs,
        jobs_by_worker: jobs_after
            .iter()
            .zip(&jobs_before)
            .map(|(a, b)| a.0 - b.0)
            .collect(),
        mean_job_ms: {
            let (runs, secs) = jobs_after
                .iter()
                .zip(&jobs_before)
                .fold((0, 0.0), |(n, s), (a, b)| (n + a.0 - b.0, s + a.1 - b.1));
            secs * 1000.0 / runs.max(1) as f64
        },
        worker_cpu: (0..workers)
            .map(|i| per_core(cpu_before.workers[i], cpu_after.workers[i]))
            .collect(),
        api_cpu: per_core(cpu_before.api, cpu_after.api),
        machine_cpu: {
            let busy = cpu_after.machine_busy - cpu_before.machine_busy;
            let total = cpu_after.machine_total - cpu_before.machine_total;
            busy as f64 / total.max(1) as f64
        },
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// `count` uploads, `CLIENTS` at a time, each: init (waiting for its job), PUT its one
/// part to the presigned URL, complete with that part (waiting for its job).
async fn run_uploads(http: &reqwest::Client, cluster: &Cluster, count: usize) -> Result<()> {
    let (base, key) = (&cluster.base, &cluster.key);
    futures::stream::iter(0..count)
        .map(|_| async move {
            let doc = init(http, base, key, 60, PART_BYTES, None).await?;
            let token = doc["resumeToken"].as_str().ok_or("no token")?;
            let url = doc["partUrls"][0]["url"]
                .as_str()
                .ok_or_else(|| format!("init did not finish within 60 s: {doc}"))?;
            let put = http
                .put(url)
                .body(vec![7u8; PART_BYTES as usize])
                .send()
                .await?
                .error_for_status()?;
            let etag = put
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .ok_or("no ETag")?
                .to_string();
            let done: Value = http
                .post(format!("{base}/api/v1/upload/multipart/complete?wait=60"))
                .header("x-api-key", key)
                .json(&json!({"resumeToken": token, "parts": [{"partNumber": 1, "etag": etag}]}))
                .send()
                .await?
                .json()
                .await?;
            if done["status"] != "completed" {
                return Err(format!("complete did not finish: {done}").into());
            }
            Ok::<_, crate::Error>(())
        })
        .buffer_unordered(CLIENTS)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Each worker's job attempts so far and the seconds they took, from its `/metrics`.
async fn job_totals(http: &reqwest::Client, cluster: &Cluster) -> Result<Vec<(u64, f64)>> {
    let mut totals = Vec::new();
    for url in &cluster.worker_metrics {
        let text = http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let sum = |metric: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(metric))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        totals.push((
            sum("partway_job_runs_total") as u64,
            sum("partway_job_duration_seconds_sum"),
        ));
    }
    Ok(totals)
}

/// CPU time so far, in clock ticks: of each worker, of the API, and of the machine.
struct CpuSample {
    workers: Vec<u64>,
    api: u64,
    machine_busy: u64,
    machine_total: u64,
}

impl CpuSample {
    fn take(cluster: &Cluster) -> Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .ok_or("no cpu line in /proc/stat")?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        Ok(Self {
            workers: cluster
                .workers
                .iter()
                .map(|w| process_ticks(w.id()))
                .collect::<Result<_>>()?,
            api: process_ticks(cluster.api.id())?,
            machine_busy: total - idle,
            machine_total: total,
        })
    }
}

/// utime + stime of a process, in clock ticks.
fn process_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces:
    // state is the 3rd field of the line, utime the 14th, stime the 15th.
    let after = stat.rsplit_once(')').ok_or("bad /proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("no stime")?.parse()?;
    Ok(utime + stime)
}
