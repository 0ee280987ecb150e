//! `partway-bench soak`: the chaos soak of issue 15. Many uploads through a cluster of
//! 2 APIs and 3 workers while processes are killed and hung and RabbitMQ, Redis and
//! PostgreSQL go down, then the invariants (nothing lost, nothing completed twice,
//! nothing left behind) and one table. A mode of the bench binary rather than a crate of
//! its own: it reuses the bench's process helpers and its build, and `scripts/soak`
//! provides the services and binaries the way `scripts/bench` does.
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

mod chaos;
mod check;
mod cli;
mod client;
mod cluster;
mod metrics;
mod s3_counter;
mod webhooks;

use crate::Result;

struct Args {
    duration: Duration,
    uploads: usize,
    seed: u64,
}

/// `600`, `90s`, `10m`, `1h`.
fn parse_duration(s: &str) -> Result<Duration> {
    let (n, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad duration unit in {s:?}").into()),
    };
    Ok(Duration::from_secs(secs))
}

fn parse_args(args: &[String]) -> Result<Args> {
    let mut a = Args {
        duration: Duration::from_secs(600),
        uploads: 50,
        seed: rand::random(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--duration" => a.duration = parse_duration(value)?,
            "--uploads" => a.uploads = value.parse()?,
            "--seed" => a.seed = value.parse()?,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    Ok(a)
}

fn percentile(mut v: Vec<f64>, p: f64) -> String {
    if v.is_empty() {
        return "—".into();
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    format!("{:.1} ms", v[i])
}

/// How long, once clients are done, the run waits for every terminal event to arrive: a
/// delivery job held by a worker that was killed is taken over when its lease lapses
/// (30 s, `jobs::LEASE`), and the retry schedule's first retries come within a minute
/// (DESIGN §6). A passing run stops waiting as soon as all have arrived.
const EVENT_DRAIN: Duration = Duration::from_secs(120);

/// Samples every process's `partway_job_runs_total{outcome="retry"}` into its slot's
/// counter. The lock is not held across the scrape; a value scraped from a life that has
/// since ended is dropped.
async fn scrape_retries(cluster: &Mutex<cluster::Cluster>) {
    let targets: Vec<(usize, String, u32)> = match cluster.lock() {
        Ok(c) => c
            .procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.child.is_some() && !p.stopped)
            .map(|(i, p)| (i, p.metrics_url.clone(), p.lives()))
            .collect(),
        Err(_) => return,
    };
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
    else {
        return;
    };
    let scraped = futures::future::join_all(targets.into_iter().map(|(i, url, life)| {
        let http = http.clone();
        async move {
            let text = http.get(&url).send().await.ok()?.text().await.ok()?;
            let retries = metrics::sum(&text, "partway_job_runs_total", Some(("outcome", "retry")));
            let runs = metrics::sum(&text, "partway_job_runs_total", None);
            Some((i, life, retries as u64, runs as u64))
        }
    }))
    .await;
    if let Ok(mut c) = cluster.lock() {
        for (i, life, retries, runs) in scraped.into_iter().flatten() {
            if c.procs[i].lives() == life {
                c.procs[i].retries.observe(retries);
                c.procs[i].runs.observe(runs);
            }
        }
    }
}

/// Runs the soak; Ok(true) when every invariant held.
pub async fn run(args: &[String]) -> Result<bool> {
    let args = parse_args(args)?;
    println!(
        "soak: seed {} duration {}s uploads {}",
        args.seed,
        args.duration.as_secs(),
        args.uploads
    );
    let receiver = webhooks::Receiver::start().await?;
    let extra = [
        // The webhook receiver is on loopback, which the outbound guard refuses unless
        // allowed (DESIGN §7).
        (
            "PARTWAY_ALLOWED_ENDPOINTS",
            format!("127.0.0.1:{}", receiver.port),
        ),
        // Abandoned uploads are expired within seconds of their expiry being moved.
        ("PARTWAY_SWEEP_INTERVAL", "5s".to_string()),
    ];
    let c = cluster::start(2, 3, &extra).await?;
    eprintln!("[soak] cluster up, logs in {}", c.dir.display());
    let logs = c.dir.clone();
    let completes = c.counter.completes.clone();
    let (bases, key, bucket, db_url, s3) = (
        c.bases.clone(),
        c.key.clone(),
        c.bucket.clone(),
        c.db_url.clone(),
        c.s3.clone(),
    );
    let cluster = Arc::new(Mutex::new(c));
    let stats = Arc::new(client::Stats::default());
    let mut api = client::Api::new(
        bases,
        key,
        stats.clone(),
        s3.clone(),
        bucket.clone(),
        db_url.clone(),
    )?;
    api.cli_logs = logs.join("cli");
    std::fs::create_dir_all(&api.cli_logs)?;
    let api = Arc::new(api);
    let (s, doc) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks",
            Some(
                &serde_json::json!({"url": receiver.url(), "events": webhooks::TERMINAL,
                "description": "the chaos soak's receiver"}),
            ),
            None,
        )
        .await?;
    if s != 201 {
        return Err(format!("registering the webhook: {s} {doc}").into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Mutex::new(chaos::Faults::default()));
    let sampler_stop = Arc::new(AtomicBool::new(false));

    // Every 2 s: RSS, so a climb shows in the peak even for processes killed later; the
    // job retries each process counted (metrics.rs); and a supervisor's restart of any
    // process that exited on its own (as systemd or Kubernetes would), counted, because a
    // process that gives up under a fault is worth knowing.
    let sampler = {
        let (cl, st, fl) = (cluster.clone(), sampler_stop.clone(), faults.clone());
        tokio::spawn(async move {
            loop {
                scrape_retries(&cl).await;
                if let Ok(mut c) = cl.lock() {
                    for p in c.procs.iter_mut() {
                        p.sample_rss();
                        if let Some(status) = p.exited() {
                            eprintln!("[soak] {} exited on its own ({status}): restarting", p.name);
                            if let Err(e) = p.start() {
                                eprintln!("[soak] restarting {}: {e}", p.name);
                            }
                            if let Ok(mut f) = fl.lock() {
                                *f.exits.entry(p.name.clone()).or_default() += 1;
                            }
                        }
                    }
                }
                if st.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    // The CLI clients' temp files and state dirs, one dir per client; removed at the end.
    let scratch = tempfile::Builder::new()
        .prefix("partway-soak-files-")
        .tempdir()?;
    let mut clients = Vec::new();
    for i in 0..args.uploads as u64 {
        let dir = scratch.path().join(format!("client-{i}"));
        std::fs::create_dir_all(&dir)?;
        clients.push(tokio::spawn(client::run(
            api.clone(),
            args.seed ^ (i + 1).wrapping_mul(0xA24B_AED4_963E_E407),
            stop.clone(),
            dir,
        )));
    }
    let chaos_stop = Arc::new(AtomicBool::new(false));
    let chaos = tokio::spawn(chaos::run(
        cluster.clone(),
        faults.clone(),
        args.seed,
        args.duration,
        chaos_stop.clone(),
    ));

    tokio::time::sleep(args.duration).await;
    eprintln!("[soak] time is up: faults stop, clients finish");
    chaos_stop.store(true, Ordering::Relaxed);
    // The loop returns once a service it stopped is back.
    match chaos.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("[soak] chaos loop failed: {e}"),
        Err(e) => eprintln!("[soak] chaos loop panicked: {e}"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Ok(mut c) = cluster.lock() {
        for p in &mut c.procs {
            p.signal(libc::SIGCONT);
            p.stopped = false;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let drain = Instant::now();
    for c in clients {
        let _ = c.await;
    }
    eprintln!(
        "[soak] clients finished in {:.0} s",
        drain.elapsed().as_secs_f64()
    );
    sampler_stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    // Let the last jobs (an abort's storage call) finish before storage is compared.
    check::settle(&db_url, Duration::from_secs(60)).await;
    scrape_retries(&cluster).await;

    let records = stats.uploads.lock().map_err(|_| "poisoned")?.clone();
    let mut verdict = check::run(&api, &s3, &bucket, &db_url, &records).await?;
    verdict.recomplete_mismatches = stats
        .recomplete_mismatches
        .lock()
        .map_err(|_| "poisoned")?
        .clone();
    verdict.left_behind = stats.cli_orphans.lock().map_err(|_| "poisoned")?.clone();
    // Every terminal event of an upload that reached that status, delivered at least once:
    // polled, because the last ones (and retries of those a fault failed) are on their way.
    let want: Vec<(String, String)> = verdict
        .statuses
        .iter()
        .filter(|(_, st)| matches!(st.as_str(), "completed" | "aborted" | "expired"))
        .map(|(t, st)| (format!("upload.{st}"), t.clone()))
        .collect();
    let deadline = Instant::now() + EVENT_DRAIN;
    loop {
        let got = receiver.delivered();
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(*w)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            verdict.undelivered_events = missing
                .into_iter()
                .map(|(ty, token)| format!("{ty} of {token}"))
                .collect();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (events, repeated) = receiver.counts();
    // Storage's side of "completed twice": two multipart uploads completed onto one key.
    let (complete_requests, retried_keys) = {
        let c = completes.lock().map_err(|_| "poisoned")?;
        for (k, (ids, _)) in &c.by_key {
            if ids.len() > 1 {
                verdict
                    .duplicates
                    .push(format!("{k}: {} multipart uploads completed", ids.len()));
            }
        }
        (
            c.by_key.values().map(|(_, n)| n).sum::<u64>(),
            c.by_key.values().filter(|(_, n)| *n > 1).count(),
        )
    };
    if let Ok(mut c) = cluster.lock() {
        c.procs.iter_mut().for_each(cluster::Proc::sample_rss);
    }
    print_table(
        &args,
        &records,
        &stats,
        &faults,
        &cluster,
        &verdict,
        &Counts {
            complete_requests,
            retried_keys,
            events_due: want.len(),
            events,
            repeated,
        },
    )?;
    for (what, list) in [
        ("lost", &verdict.lost),
        ("duplicate", &verdict.duplicates),
        ("aborted/expired leftover", &verdict.aborted_leftovers),
        ("unfinished job", &verdict.unfinished_jobs),
        ("status mismatch", &verdict.status_mismatches),
        ("re-complete mismatch", &verdict.recomplete_mismatches),
        ("undelivered event", &verdict.undelivered_events),
        ("left behind", &verdict.left_behind),
    ] {
        for item in list.iter().take(20) {
            println!("{what}: {item}");
        }
    }
    if let Ok(c) = cluster.lock() {
        println!("logs: {}", c.dir.display());
    }
    println!(
        "verdict: {} — lost {}, duplicates {}, aborted/expired leftovers {}, unfinished jobs {}, status mismatches {}, re-complete mismatches {}, undelivered events {}, uploads left behind {} (seed {})",
        if verdict.ok() { "PASS" } else { "FAIL" },
        verdict.lost.len(),
        verdict.duplicates.len(),
        verdict.aborted_leftovers.len(),
        verdict.unfinished_jobs.len(),
        verdict.status_mismatches.len(),
        verdict.recomplete_mismatches.len(),
        verdict.undelivered_events.len(),
        verdict.left_behind.len(),
        args.seed
    );
    Ok(verdict.ok())
}

/// Figures gathered after the run, for the table.
#[derive(Clone, Copy)]
struct Counts {
    /// Storage CompleteMultipartUpload requests, and keys that were sent more than one.
    complete_requests: u64,
    retried_keys: usize,
    /// Terminal events due, distinct events delivered, deliveries repeating one.
    events_due: usize,
    events: usize,
    repeated: usize,
}

fn print_table(
    args: &Args,
    records: &[client::Record],
    stats: &client::Stats,
    faults: &Mutex<chaos::Faults>,
    cluster: &Mutex<cluster::Cluster>,
    verdict: &check::Verdict,
    counts: &Counts,
) -> Result<()> {
    let Counts {
        complete_requests,
        retried_keys,
        events_due,
        events,
        repeated,
    } = *counts;
    use client::Outcome;
    let count = |f: &dyn Fn(&Outcome) -> bool| records.iter().filter(|r| f(&r.outcome)).count();
    let completed = count(&|o| *o == Outcome::Completed);
    let bytes: u64 = records
        .iter()
        .filter(|r| r.outcome == Outcome::Completed)
        .map(|r| r.size)
        .sum();
    let mut rows: Vec<(String, String)> = vec![
        ("seed".into(), args.seed.to_string()),
        ("duration".into(), format!("{} s", args.duration.as_secs())),
        ("clients".into(), args.uploads.to_string()),
        ("uploads started".into(), records.len().to_string()),
        ("uploads completed".into(), completed.to_string()),
        (
            "uploads aborted".into(),
            count(&|o| *o == Outcome::Aborted).to_string(),
        ),
        (
            "uploads expired (abandoned, expiry moved into the past)".into(),
            count(&|o| *o == Outcome::Expired).to_string(),
        ),
        (
            "uploads by the partway CLI (completed)".into(),
            format!(
                "{} ({})",
                records.iter().filter(|r| r.cli).count(),
                records
                    .iter()
                    .filter(|r| r.cli && r.outcome == Outcome::Completed)
                    .count()
            ),
        ),
        (
            "partway CLI runs SIGKILLed mid-way / failed and run again / uploads a killed run completed unknown to the next (file sent again)".into(),
            format!(
                "{} / {} / {}",
                stats.cli_kills.load(Ordering::Relaxed),
                stats.cli_reruns.load(Ordering::Relaxed),
                stats.cli_extra_completed.load(Ordering::Relaxed)
            ),
        ),
        (
            "uploads of a CLI file left unfinished beside the one the CLI finished".into(),
            verdict.left_behind.len().to_string(),
        ),
        (
            "completes sent again after completion (same answer)".into(),
            format!(
                "{} ({})",
                stats.recompletes.load(Ordering::Relaxed) + verdict.recomplete_mismatches.len(),
                stats.recompletes.load(Ordering::Relaxed)
            ),
        ),
        (
            "uploads given up by clients".into(),
            count(&|o| matches!(o, Outcome::GaveUp(_))).to_string(),
        ),
        (
            "inits that failed".into(),
            stats.init_failed.load(Ordering::Relaxed).to_string(),
        ),
        (
            "bytes completed".into(),
            format!("{:.1} MiB", bytes as f64 / client::MIB as f64),
        ),
    ];
    let f = faults.lock().map_err(|_| "poisoned")?;
    for (k, n) in &f.by_kind {
        rows.push((format!("faults: {k}"), n.to_string()));
    }
    for (k, n) in &f.exits {
        rows.push((format!("exited on its own (restarted): {k}"), n.to_string()));
    }
    for (k, n) in stats.errors.lock().map_err(|_| "poisoned")?.iter() {
        rows.push((format!("client-visible errors: {k}"), n.to_string()));
    }
    for (k, n) in stats.expected.lock().map_err(|_| "poisoned")?.iter() {
        rows.push((format!("expected answers (not errors): {k}"), n.to_string()));
    }
    let polls = stats.long_polls.lock().map_err(|_| "poisoned")?.clone();
    rows.push((
        format!(
            "?wait long-polls ({} calls, not in the latencies) p50 / p99",
            polls.len()
        ),
        format!(
            "{} / {}",
            percentile(polls.clone(), 0.5),
            percentile(polls, 0.99)
        ),
    ));
    let lat = stats.latencies.lock().map_err(|_| "poisoned")?;
    let (during, outside): (Vec<_>, Vec<_>) = lat.iter().partition(|(at, _)| f.during(*at));
    let during: Vec<f64> = during.into_iter().map(|(_, ms)| ms).collect();
    let outside: Vec<f64> = outside.into_iter().map(|(_, ms)| ms).collect();
    rows.push((
        format!(
            "API latency during faults ({} calls) p50 / p99",
            during.len()
        ),
        format!(
            "{} / {}",
            percentile(during.clone(), 0.5),
            percentile(during, 0.99)
        ),
    ));
    rows.push((
        format!(
            "API latency outside faults ({} calls) p50 / p99",
            outside.len()
        ),
        format!(
            "{} / {}",
            percentile(outside.clone(), 0.5),
            percentile(outside, 0.99)
        ),
    ));
    rows.push((
        "storage CompleteMultipartUpload requests (keys sent more than one)".into(),
        format!("{complete_requests} ({retried_keys})"),
    ));
    let c = cluster.lock().map_err(|_| "poisoned")?;
    // At least: a killed process's counters are known as of its last scrape (every 2 s).
    rows.push((
        "job attempts / of which retried (at least; metrics sampled every 2 s)".into(),
        format!(
            "{} / {}",
            c.procs.iter().map(|p| p.runs.total()).sum::<u64>(),
            c.procs.iter().map(|p| p.retries.total()).sum::<u64>()
        ),
    ));
    rows.push((
        "webhook events delivered (distinct webhook-id) / deliveries repeating one".into(),
        format!("{events} / {repeated}"),
    ));
    rows.push((
        format!("terminal events undelivered (of {events_due} due)"),
        verdict.undelivered_events.len().to_string(),
    ));
    rows.push((
        "re-completes not answering the same document".into(),
        verdict.recomplete_mismatches.len().to_string(),
    ));
    rows.push(("duplicates".into(), verdict.duplicates.len().to_string()));
    rows.push(("lost".into(), verdict.lost.len().to_string()));
    rows.push((
        "aborted or expired with multipart left".into(),
        verdict.aborted_leftovers.len().to_string(),
    ));
    rows.push((
        "jobs unfinished".into(),
        verdict.unfinished_jobs.len().to_string(),
    ));
    rows.push((
        "API status ≠ storage".into(),
        verdict.status_mismatches.len().to_string(),
    ));
    let mut rss: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for p in &c.procs {
        let kind = match p.kind {
            cluster::Kind::Api => "partway-api",
            cluster::Kind::Worker => "partway-worker",
        };
        let e = rss.entry(kind).or_default();
        e.0 = e.0.max(p.peak_kib);
        e.1 = e.1.max(p.last_kib);
    }
    for (kind, (peak, last)) in rss {
        rows.push((
            format!("RSS {kind} peak / final (max over processes)"),
            format!(
                "{:.1} / {:.1} MiB",
                peak as f64 / 1024.0,
                last as f64 / 1024.0
            ),
        ));
    }
    println!("| soak | value |");
    println!("|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}
