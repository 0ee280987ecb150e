//! Workers: the loops that run queued jobs (the embedded mode's runner over the job
//! rows) and sweep expired uploads. The job handlers themselves are in
//! `partway_core::jobs`; this crate only decides when to run them.
use std::{sync::Arc, time::Duration};

use partway_core::App;
use tokio::{
    sync::{watch, Notify, Semaphore},
    task::JoinSet,
};
use tracing::{error, info, warn};

/// Jobs run at once per process: presigning is CPU, the rest waits on storage.
pub const CONCURRENCY: usize = 4;
/// Re-check for due work at least this often (retries scheduled for later).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Runs job rows from the database as they are submitted (the embedded queue).
/// Returns when `shutdown` turns true, after in-flight jobs finish or `grace` passes.
pub async fn run_embedded_queue(
    app: Arc<App>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    match app.release_all_leases().await {
        Ok(0) => {}
        Ok(n) => info!(
            jobs = n,
            "picked up jobs left unfinished by the previous run"
        ),
        Err(e) => warn!(error = %e, "could not release old job leases"),
    }
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut running: JoinSet<()> = JoinSet::new();
    while !*shutdown.borrow() {
        match app.due_jobs((CONCURRENCY * 4) as u64).await {
            Ok(ids) => {
                for id in ids {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let app = app.clone();
                    running.spawn(async move {
                        // The row carries retries (run_after), so the outcome needs no action here.
                        if let Err(e) = app.process_job(id, false).await {
                            warn!(job = %id, error = %e, "job could not be processed");
                        }
                        drop(permit);
                    });
                }
            }
            Err(e) => warn!(error = %e, "could not read due jobs"),
        }
        while running.try_join_next().is_some() {}
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(IDLE_TICK) => {}
            _ = shutdown.changed() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    drain(running, grace).await;
}

async fn drain(mut running: JoinSet<()>, grace: Duration) {
    if running.is_empty() {
        return;
    }
    info!(jobs = running.len(), "waiting for in-flight jobs");
    let finished = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        // Their leases lapse and the next run takes them again.
        warn!(
            jobs = running.len(),
            "shutdown deadline passed; abandoning in-flight jobs"
        );
        running.abort_all();
    }
}

/// Periodically marks expired uploads and queues their storage aborts.
pub async fn run_sweeper(app: Arc<App>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if let Err(e) = app.sweep_expired().await {
            error!(error = %e, "expiry sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}
