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

/// How often the keys of form-POST uploads are headed (DESIGN §5: such an upload is
/// `completed` within 10 s of its object reaching storage).
pub const POST_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Periodically marks expired uploads and queues their storage aborts and deletes history
/// older than `retention`, and (every [`POST_CHECK_INTERVAL`]) completes form-POST uploads
/// whose object storage has.
pub async fn run_sweeper(
    app: Arc<App>,
    interval: Duration,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next_sweep = tokio::time::Instant::now();
    while !*shutdown.borrow() {
        if tokio::time::Instant::now() >= next_sweep {
            if let Err(e) = app.sweep_expired().await {
                error!(error = %e, "expiry sweep failed");
            }
            if let Err(e) = app.prune_history(retention).await {
                error!(error = %e, "history pruning failed");
            }
            next_sweep = tokio::time::Instant::now() + interval;
        }
        if let Err(e) = app.check_posted_objects().await {
            error!(error = %e, "form-POST check failed");
        }
        let tick = POST_CHECK_INTERVAL.min(interval);
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
    }
}
