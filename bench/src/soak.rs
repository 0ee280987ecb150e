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
mod client;
mod cluster;
mod s3_counter;

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

/// Runs the soak; Ok(true) when every invariant held.
pub async fn run(args: &[String]) -> Result<bool> {
    let args = parse_args(args)?;
    println!(
        "soak: seed {} duration {}s uploads {}",
        args.seed,
        args.duration.as_secs(),
        args.uploads
    );
    let c = cluster::start(2, 3).await?;
    eprintln!("[soak] cluster up, logs in {}", c.dir.display());
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
    let api = Arc::new(client::Api::new(bases, key, stats.clone())?);
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Mutex::new(chaos::Faults::default()));
    let sampler_stop = Arc::new(AtomicBool::new(false));

    // Every 2 s: RSS, so a climb shows in the peak even for processes killed later; and a
    // supervisor's restart of any process that exited on its own (as systemd or Kubernetes
    // would), counted, because a process that gives up under a fault is worth knowing.
    let sampler = {
        let (cl, st, fl) = (cluster.clone(), sampler_stop.clone(), faults.clone());
        tokio::spawn(async move {
            loop {
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
    let clients: Vec<_> = (0..args.uploads as u64)
        .map(|i| {
            tokio::spawn(client::run(
                api.clone(),
                args.seed ^ (i + 1).wrapping_mul(0xA24B_AED4_963E_E407),
                stop.clone(),
            ))
        })
        .collect();
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
    // Let the last jobs (an abort's storage call) settle before storage is compared.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let records = stats.uploads.lock().map_err(|_| "poisoned")?.clone();
    let mut verdict = check::run(&api, &s3, &bucket, &db_url, &records).await?;
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
        (complete_requests, retried_keys),
    )?;
    for (what, list) in [
        ("lost", &verdict.lost),
        ("duplicate", &verdict.duplicates),
        ("aborted leftover", &verdict.aborted_leftovers),
        ("unfinished job", &verdict.unfinished_jobs),
        ("status mismatch", &verdict.status_mismatches),
    ] {
        for item in list.iter().take(20) {
            println!("{what}: {item}");
        }
    }
    if let Ok(c) = cluster.lock() {
        println!("logs: {}", c.dir.display());
    }
    println!(
        "verdict: {} — lost {}, duplicates {}, aborted leftovers {}, unfinished jobs {}, status mismatches {} (seed {})",
        if verdict.ok() { "PASS" } else { "FAIL" },
        verdict.lost.len(),
        verdict.duplicates.len(),
        verdict.aborted_leftovers.len(),
        verdict.unfinished_jobs.len(),
        verdict.status_mismatches.len(),
        args.seed
    );
    Ok(verdict.ok())
}

fn print_table(
    args: &Args,
    records: &[client::Record],
    stats: &client::Stats,
    faults: &Mutex<chaos::Faults>,
    cluster: &Mutex<cluster::Cluster>,
    verdict: &check::Verdict,
    (complete_requests, retried_keys): (u64, usize),
) -> Result<()> {
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
    rows.push(("duplicates".into(), verdict.duplicates.len().to_string()));
    rows.push(("lost".into(), verdict.lost.len().to_string()));
    rows.push((
        "aborted with multipart left".into(),
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
    let c = cluster.lock().map_err(|_| "poisoned")?;
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
