//! The chaos loop: seeded, so a run's faults can be replayed from the printed seed.
//! Every 10–30 s (5–15 s in short runs) one fault: SIGKILL an API or a worker and start it again, SIGSTOP a
//! worker for 40 s (a hung process whose lease must be taken over), stop RabbitMQ
//! (20 s), Redis (20 s) or PostgreSQL (10 s) through `scripts/services`, or restart the
//! proxy in front of moto while parts are being PUT (its connections dropped, its port
//! refusing for 2–5 s).
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, seq::SliceRandom as _, Rng as _, SeedableRng as _};

use super::cluster::{Cluster, Kind};
use crate::Result;

#[derive(Default)]
pub struct Faults {
    pub by_kind: BTreeMap<&'static str, u64>,
    /// When a fault's effect lasted: latencies inside these windows count as "during".
    pub windows: Vec<(Instant, Instant)>,
    /// Processes that exited by themselves (not by the chaos loop), by name.
    pub exits: BTreeMap<String, u64>,
}

impl Faults {
    pub fn during(&self, at: Instant) -> bool {
        self.windows.iter().any(|(a, b)| *a <= at && at <= *b)
    }
}

/// How long a process or service restart is felt by clients, past the fault itself.
const SETTLE: Duration = Duration::from_secs(5);

async fn services(verb: &str, name: &str) -> Result<()> {
    let script = crate::env("PARTWAY_SOAK_SERVICES")?;
    let out = tokio::process::Command::new(script)
        .args([verb, name])
        .stdout(std::process::Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!(
            "services {verb} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

pub async fn run(
    cluster: Arc<Mutex<Cluster>>,
    faults: Arc<Mutex<Faults>>,
    seed: u64,
    duration: Duration,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    // The planned faults, "a few times" each scaled to the run (once per 4 minutes, at
    // least once; a SIGSTOP per 3 minutes), shuffled among a few kills; kills fill the rest.
    let outages = (duration.as_secs() / 240).max(1);
    let stops = (duration.as_secs() / 180).max(1);
    let mut plan: Vec<u8> = Vec::new();
    for _ in 0..outages {
        plan.extend([1, 2, 3, 4]);
    }
    plan.extend(std::iter::repeat_n(0, stops as usize));
    // One kill per round of outages in the plan: a 2-minute run (about eight faults) still
    // gets every outage once.
    plan.extend(std::iter::repeat_n(9, outages as usize));
    plan.shuffle(&mut rng);
    plan.reverse(); // popped from the end
                    // 10–30 s between faults; 5–15 s in runs under 5 minutes, so that a 2-minute run
                    // (CI's) still meets every kind once.
    let (lo, hi) = if duration < Duration::from_secs(300) {
        (5, 15)
    } else {
        (10, 30)
    };
    let nap = |rng: &mut StdRng| Duration::from_secs(rng.gen_range(lo..=hi));
    let mut outage: Option<tokio::task::JoinHandle<Result<()>>> = None;
    let mut next = Instant::now() + nap(&mut rng);
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        next = Instant::now() + nap(&mut rng);
        let roll = plan.pop().unwrap_or(9);
        let started = Instant::now();
        // `lasted` None: the fault's window is recorded when it ends (an outage).
        let (kind, lasted): (&'static str, Option<Duration>) = match roll {
            0 => {
                let mut c = cluster.lock().map_err(|_| "poisoned")?;
                let workers: Vec<usize> = (0..c.procs.len())
                    .filter(|&i| c.procs[i].kind == Kind::Worker && !c.procs[i].stopped)
                    .collect();
                if workers.is_empty() {
                    continue;
                }
                let i = workers[rng.gen_range(0..workers.len())];
                c.procs[i].signal(libc::SIGSTOP);
                c.procs[i].stopped = true;
                eprintln!("[soak] chaos: SIGSTOP {} for 40 s", c.procs[i].name);
                let (cl, st) = (cluster.clone(), stop.clone());
                tokio::spawn(async move {
                    // Woken early when the run ends, so the drain never waits on it.
                    let until = Instant::now() + Duration::from_secs(40);
                    while Instant::now() < until && !st.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    if let Ok(mut c) = cl.lock() {
                        c.procs[i].signal(libc::SIGCONT);
                        c.procs[i].stopped = false;
                    }
                });
                ("sigstop worker 40s", Some(Duration::from_secs(40)))
            }
            1..=3 => {
                // One service down at a time; the loop goes on meanwhile (kills and
                // hangs overlap an outage, as production failures do).
                if let Some(o) = outage.take() {
                    wait_outage(o).await;
                }
                let name = ["rabbitmq", "redis", "postgres"][roll as usize - 1];
                let (kind, down) = match name {
                    "rabbitmq" => ("stop rabbitmq 20s", 20),
                    "redis" => ("stop redis 20s", 20),
                    _ => ("stop postgres 10s", 10),
                };
                eprintln!("[soak] chaos: stop {name} for {down} s");
                let started = Instant::now();
                services("stop", name).await?;
                let f = faults.clone();
                outage = Some(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(down)).await;
                    let r = services("start", name).await;
                    if let Ok(mut f) = f.lock() {
                        f.windows.push((started, Instant::now() + SETTLE));
                    }
                    r
                }));
                (kind, None)
            }
            4 => {
                let counter = cluster.lock().map_err(|_| "poisoned")?.counter.clone();
                let down = Duration::from_millis(rng.gen_range(2000..=5000));
                // Mid-PUT: when some connection is open through the proxy (clients PUT
                // parts most of the time; a few seconds at most otherwise).
                let deadline = Instant::now() + Duration::from_secs(10);
                while counter.open.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                eprintln!(
                    "[soak] chaos: restart the moto proxy ({} connections dropped, down {} ms)",
                    counter.open.load(Ordering::Relaxed),
                    down.as_millis()
                );
                let started = Instant::now();
                counter.restart(down).await?;
                (
                    "restart moto proxy mid-PUT (2–5 s)",
                    Some(started.elapsed()),
                )
            }
            _ => {
                let mut c = cluster.lock().map_err(|_| "poisoned")?;
                let i = rng.gen_range(0..c.procs.len());
                let p = &mut c.procs[i];
                p.sample_rss();
                eprintln!("[soak] chaos: SIGKILL {}", p.name);
                // A stopped worker that is killed comes back running.
                p.kill();
                p.start()?;
                match p.kind {
                    Kind::Api => ("kill api", Some(Duration::ZERO)),
                    Kind::Worker => ("kill worker", Some(Duration::ZERO)),
                }
            }
        };
        if let Ok(mut f) = faults.lock() {
            *f.by_kind.entry(kind).or_default() += 1;
            if let Some(lasted) = lasted {
                f.windows.push((started, started + lasted + SETTLE));
            }
        }
    }
    // Returns once a service it stopped is back.
    if let Some(o) = outage.take() {
        wait_outage(o).await;
    }
    Ok(())
}

async fn wait_outage(o: tokio::task::JoinHandle<Result<()>>) {
    match o.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("[soak] chaos: restarting a service: {e}"),
        Err(e) => eprintln!("[soak] chaos: outage task: {e}"),
    }
}
