//! Running jobs: claim a row, run its kind's handler (`handlers/`, one file per kind),
//! record the outcome (done, retry later with backoff, or given up with the error on
//! the upload) and tell the queue how it ended. The rows are written by the use cases
//! (`crate::usecases`) in the transaction of the change that asks for the work.
use std::time::{Duration, Instant};

use partway_entity::job;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use uuid::Uuid;

pub use partway_entity::job::{JobKind, JobState};

use crate::{
    domain::{ErrorCode, ResumeToken, UploadStatus},
    ports::{JobRun, StorageError},
    store::MAX_ATTEMPTS,
    usecases::{App, AppError},
};

mod handlers;

/// Input of a complete job: the parts the client named, or None for "what storage lists".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CompletePayload {
    pub parts: Option<Vec<(u32, String)>>,
    /// A size-unknown upload (DESIGN §5): the largest size its parts may add up to
    /// (the browser token's `maxFileSize`); over it, the storage upload is aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
}

/// A claim lasts this long unless its worker extends it (every [`LEASE_HEARTBEAT`] while the
/// job runs): a lease that lapses means the worker died or hung, and the job is taken
/// again. Short, so a job whose worker vanished without the queue noticing (or whose claim
/// was committed but never answered) waits seconds, not minutes.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a running job's worker extends its lease.
pub const LEASE_HEARTBEAT: Duration = Duration::from_secs(10);

/// How long a claim lasts and how often it is extended ([`LEASE`], [`LEASE_HEARTBEAT`];
/// tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub lease: Duration,
    pub heartbeat: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease: LEASE,
            heartbeat: LEASE_HEARTBEAT,
        }
    }
}

/// Recording an outcome while the database is down: first pause, and the longest.
const OUTCOME_RETRY_FIRST: Duration = Duration::from_millis(250);
const OUTCOME_RETRY_MAX: Duration = Duration::from_secs(2);
/// Give up recording this long before the lease lapses: after that another worker may
/// take the job, and its claim wins.
const OUTCOME_LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Exponential backoff: 1 s, 2 s, 4 s … capped at 5 minutes.
pub fn backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    Duration::from_secs(std::cmp::Ord::min(2u64.saturating_pow(exp), 300))
}

/// How a job attempt ended, when it did not succeed.
#[derive(Debug)]
pub(crate) enum JobError {
    /// Try again later (storage or database unavailable).
    Retry(String),
    /// Trying again cannot help.
    Fatal(String),
    /// Try again after this delay, on the handler's own schedule (webhook deliveries):
    /// not counted against [`MAX_ATTEMPTS`].
    RetryIn(Duration, String),
    /// Not yet: something must happen first (an earlier delivery). No attempt is used.
    Later(Duration),
}

impl From<sea_orm::DbErr> for JobError {
    fn from(e: sea_orm::DbErr) -> Self {
        JobError::Retry(format!("database: {e}"))
    }
}

impl From<AppError> for JobError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Unavailable(reason) => JobError::Retry(reason),
            other => JobError::Fatal(other.to_string()),
        }
    }
}

impl From<StorageError> for JobError {
    /// Storage trouble is worth another try unless a handler decided otherwise.
    fn from(e: StorageError) -> Self {
        JobError::Retry(e.to_string())
    }
}

impl App {
    /// Claims and runs one job, recording its outcome in the database, and says how it
    /// ended so a queue can ack, delay or park its message.
    /// `redelivered`: the queue gave this job to another worker before, which died.
    pub async fn process_job(&self, job_id: Uuid, redelivered: bool) -> Result<JobRun, AppError> {
        let lease = self.lease_timing.lease;
        let Some(job) = self.store().claim_job(job_id, redelivered, lease).await? else {
            return Ok(JobRun::Settled);
        };
        let lease_ends = Instant::now() + lease;
        let span = tracing::info_span!(
            "job",
            job = %job.id,
            kind = %job.kind,
            upload = %ResumeToken::of_row(job.upload_id),
            attempt = job.attempts
        );
        tracing::Instrument::instrument(self.run_claimed(job, lease_ends), span).await
    }

    /// Due job ids, oldest first (the embedded runner's poll).
    pub async fn due_jobs(&self, limit: u64) -> Result<Vec<Uuid>, AppError> {
        Ok(self.store().due_jobs(limit).await?)
    }

    /// Makes jobs a previous run of this single process held claimable again.
    pub async fn release_all_leases(&self) -> Result<u64, AppError> {
        Ok(self.store().release_all_leases().await?)
    }

    async fn run_claimed(&self, job: job::Model, lease_ends: Instant) -> Result<JobRun, AppError> {
        let started = Instant::now();
        info!("job started");
        let lease_ends = std::sync::Mutex::new(lease_ends);
        let outcome = tokio::select! {
            outcome = self.run_handler(&job) => outcome,
            never = self.keep_lease(&job, &lease_ends) => match never {},
        };
        let lease_ends = *lease_ends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = crate::metrics::metrics() {
            let label = match &outcome {
                Ok(()) => "done",
                Err(JobError::Retry(_)) if job.attempts < MAX_ATTEMPTS => "retry",
                Err(JobError::RetryIn(..)) => "retry",
                Err(JobError::Later(_)) => "later",
                Err(_) => "failed",
            };
            m.job_runs
                .with_label_values(&[job.kind.as_str(), label])
                .inc();
            m.job_duration
                .with_label_values(&[job.kind.as_str()])
                .observe(started.elapsed().as_secs_f64());
        }
        // The outcome often is "the database went away", and then so is the place to write
        // it. This worker still holds the job's lease: keep trying while it does, or the job
        // sits `running` until the lease lapses, long after the database is back (the chaos
        // soak, issue 15). Each write is conditional on this claim, so repeating one
        // whose reply was lost changes nothing.
        let mut pause = OUTCOME_RETRY_FIRST;
        let run = loop {
            match self.record_outcome(&job, &outcome, started).await {
                Ok(run) => break run,
                Err(AppError::Unavailable(reason))
                    if Instant::now() + pause + OUTCOME_LEASE_MARGIN < lease_ends =>
                {
                    warn!(%reason, "could not record the job's outcome; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(OUTCOME_RETRY_MAX);
                }
                Err(e) => return Err(e),
            }
        };
        if job.kind != JobKind::Webhook {
            self.publish(job.upload_id).await;
        }
        // The change may have written events whose deliveries are jobs: move them on now.
        self.queue.wake().await;
        Ok(run)
    }

    /// Extends the job's lease every heartbeat while its handler runs (the caller drops
    /// this future when the handler ends), noting until when the claim holds.
    async fn keep_lease(
        &self,
        job: &job::Model,
        lease_ends: &std::sync::Mutex<Instant>,
    ) -> std::convert::Infallible {
        let LeaseTiming { lease, heartbeat } = self.lease_timing;
        loop {
            tokio::time::sleep(heartbeat).await;
            let asked = Instant::now();
            match self.store().extend_lease(job, lease).await {
                Ok(true) => {
                    *lease_ends.lock().unwrap_or_else(|e| e.into_inner()) = asked + lease;
                }
                Ok(false) => warn!(
                    "the job's lease lapsed and another worker took it; this run's outcome will not be recorded"
                ),
                Err(e) => warn!(error = %e, "could not extend the job's lease"),
            }
        }
    }

    /// Writes how the attempt ended and releases the lease; says what the queue should do.
    async fn record_outcome(
        &self,
        job: &job::Model,
        outcome: &Result<(), JobError>,
        started: Instant,
    ) -> Result<JobRun, AppError> {
        let store = self.store();
        Ok(match outcome {
            Ok(()) => {
                store.finish_job(job, JobState::Done, None).await?;
                info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "job done"
                );
                JobRun::Settled
            }
            Err(JobError::Retry(reason)) if job.attempts < MAX_ATTEMPTS => {
                warn!(%reason, "job failed, will retry");
                let delay = backoff(job.attempts);
                store.retry_job_later(job, delay, reason.clone()).await?;
                JobRun::RetryAfter(delay)
            }
            Err(JobError::RetryIn(delay, reason)) => {
                store.retry_job_later(job, *delay, reason.clone()).await?;
                JobRun::RetryAfter(*delay)
            }
            Err(JobError::Later(delay)) => {
                store.defer_job(job, *delay).await?;
                JobRun::RetryAfter(*delay)
            }
            Err(JobError::Retry(reason)) | Err(JobError::Fatal(reason)) => {
                warn!(%reason, attempts = job.attempts, "job given up");
                self.record_job_failure(job).await?;
                store
                    .finish_job(job, JobState::Failed, Some(reason.clone()))
                    .await?;
                JobRun::GaveUp(reason.clone())
            }
        })
    }

    /// The upload shows that its job was given up (a code and its fixed text; the
    /// reason was logged with the job and upload ids); an init or complete that cannot
    /// finish leaves the upload `failed`.
    async fn record_job_failure(&self, job: &job::Model) -> Result<(), AppError> {
        let code = ErrorCode::ServiceUnavailable;
        let failing_from = match job.kind {
            JobKind::Init => Some(UploadStatus::Initiating),
            JobKind::Complete => Some(UploadStatus::Completing),
            JobKind::Resume | JobKind::Abort | JobKind::Expire => None,
            // A delivery's failure is its own (the deliveries list), not the upload's.
            JobKind::Webhook => return Ok(()),
        };
        match failing_from {
            Some(from) => self.store().fail_upload(job.upload_id, from, code).await?,
            None => self.store().set_last_error(job.upload_id, code).await?,
        }
        Ok(())
    }

    async fn run_handler(&self, job: &job::Model) -> Result<(), JobError> {
        if job.kind == JobKind::Webhook {
            return self.job_webhook(job).await;
        }
        let Some(upload) = self.store().upload(job.upload_id).await? else {
            return Ok(());
        };
        match job.kind {
            JobKind::Init => self.job_init(upload).await,
            JobKind::Resume => self.job_resume(upload).await,
            JobKind::Complete => {
                let payload: CompletePayload =
                    serde_json::from_value(job.payload.clone()).unwrap_or_default();
                self.job_complete(upload, payload).await
            }
            JobKind::Abort => self.job_abort(upload, UploadStatus::Aborting).await,
            JobKind::Expire => self.job_abort(upload, UploadStatus::Expired).await,
            JobKind::Webhook => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that runs longer than its lease keeps it: its worker extends the lease, so
    /// no other worker takes the job meanwhile; it is done once, on its first attempt.
    #[tokio::test]
    async fn a_long_job_keeps_its_lease_while_it_runs() {
        use crate::{
            domain::MIB,
            testing::{init_input, StorageCall, TestApp},
        };
        let lease = Duration::from_millis(800);
        let t = TestApp::with_lease(lease).await;
        let release = t.storage.hold_next(StorageCall::Create);
        let input = init_input("slow.bin", 6 * MIB);
        let accepted = t.app.init(&t.caller, input, None).await.unwrap();
        let id = accepted.job_id.unwrap();
        let app = t.app.clone();
        let run = tokio::spawn(async move { app.process_job(id, false).await });
        // Three leases long inside storage's create; all along, the job is not claimable.
        let held_until = Instant::now() + lease * 3;
        while Instant::now() < held_until {
            tokio::time::sleep(lease / 8).await;
            assert_eq!(
                t.app.store().job_state(id).await.unwrap(),
                Some(JobState::Running)
            );
            assert!(
                t.app.due_jobs(10).await.unwrap().is_empty(),
                "the lease lapsed while the job ran"
            );
        }
        release.notify_one();
        assert!(matches!(run.await.unwrap().unwrap(), JobRun::Settled));
        assert_eq!(
            t.app.store().job_state(id).await.unwrap(),
            Some(JobState::Done)
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
