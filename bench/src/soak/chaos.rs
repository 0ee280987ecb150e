//! The chaos loop: seeded, so a run's faults can be replayed from the printed seed.
//! Every 10–30 s one fault: SIGKILL an API or a worker and start it again, SIGSTOP a
//! worker for 40 s (a hung process whose lease must be taken over), or stop RabbitMQ
//! (20 s), Redis (20 s) or PostgreSQL (10 s) through `scripts/services`.
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
        plan.extend([1, 2, 3]);
    }
    plan.extend(std::iter::repeat_n(0, stops as usize));
    // One kill per round of outages in the plan: a 2-minute run (about five faults) still
    // gets every outage once.
    plan.extend(std::iter::repeat_n(9, outages as usize));
    plan.shuffle(&mut rng);
    plan.reverse(); // popped from the end
    let nap = |rng: &mut StdRng| Duration::from_secs(rng.gen_range(10..=30));
    let mut next = Instant::now() + nap(&mut rng);
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        next = Instant::now() + nap(&mut rng);
        let roll = plan.pop().unwrap_or(9);
        let started = Instant::now();
        let (kind, lasted): (&'static str, Duration) = match roll {
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
                ("sigstop worker 40s", Duration::from_secs(40))
            }
            1..=3 => {
                let name = ["rabbitmq", "redis", "postgres"][roll as usize - 1];
                let down = if name == "postgres" { 10 } else { 20 };
                eprintln!("[soak] chaos: stop {name} for {down} s");
                services("stop", name).await?;
                tokio::time::sleep(Duration::from_secs(down)).await;
                services("start", name).await?;
                let kind = match name {
                    "rabbitmq" => "stop rabbitmq 20s",
                    "redis" => "stop redis 20s",
                    _ => "stop postgres 10s",
                };
                (kind, started.elapsed())
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
                    Kind::Api => ("kill api", Duration::ZERO),
                    Kind::Worker => ("kill worker", Duration::ZERO),
                }
            }
        };
        if let Ok(mut f) = faults.lock() {
            *f.by_kind.entry(kind).or_default() += 1;
            f.windows.push((started, started + lasted + SETTLE));
        }
    }
    Ok(())
}
