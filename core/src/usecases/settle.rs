//! `?wait=N`: wait (bounded) for the job a request queued or joined, then read the
//! upload as it is. Every route that queues work answers from a [`Settled`].
use std::time::{Duration, Instant};

use partway_entity::upload;
use uuid::Uuid;

use super::{Accepted, App, AppError};
use crate::domain::{shown_last_error, Wait};

/// The upload after an accepted request, and whether the caller waited for its job to
/// the end (so the answer can be the job's result, not "accepted").
#[derive(Debug)]
pub struct Settled {
    pub upload: upload::Model,
    /// The caller asked to wait and the job finished in time (or there was none).
    pub finished: bool,
}

impl Settled {
    /// The error a finished job left on its upload (`lastError`), as a client error
    /// with the code's fixed text (never the stored message, which rows written by
    /// earlier versions may hold raw).
    pub fn job_error(&self) -> Option<AppError> {
        let (code, message) = shown_last_error(self.upload.last_error_code.as_deref()?);
        Some(AppError::client(code, message))
    }
}

impl App {
    /// Waits for the accepted job when asked to, then reloads the upload.
    ///
    /// The request is committed by now. A dependency lost while waiting or reading the
    /// upload back makes the answer "accepted" (the upload as it was accepted), not an
    /// error: a client retries a 5xx, and a retried init without an `Idempotency-Key`
    /// would make a second upload (the chaos soak saw one, issue 15).
    pub async fn settle(&self, accepted: Accepted, wait: Wait) -> Result<Settled, AppError> {
        match self.wait_and_reload(&accepted, wait).await {
            Err(AppError::Unavailable(reason)) => {
                tracing::warn!(%reason, "answering accepted: the wait could not finish");
                Ok(Settled {
                    upload: accepted.upload,
                    finished: false,
                })
            }
            settled => settled,
        }
    }

    async fn wait_and_reload(&self, accepted: &Accepted, wait: Wait) -> Result<Settled, AppError> {
        let finished = match accepted.job_id {
            _ if wait.is_zero() => false,
            None => true,
            Some(job) => {
                self.wait_for_job(accepted.upload.id, job, wait.duration())
                    .await?
            }
        };
        Ok(Settled {
            upload: self.reload(accepted.upload.id).await?,
            finished,
        })
    }

    /// Waits until the job finished (done or given up) or the timeout passes; true
    /// when it finished. Woken by the upload's events, re-checked at least every second.
    pub async fn wait_for_job(
        &self,
        upload_id: Uuid,
        job_id: Uuid,
        timeout: Duration,
    ) -> Result<bool, AppError> {
        let mut events = self.cache.subscribe(upload_id).await;
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.store.job_state(job_id).await?;
            if state.is_none_or(|s| s.is_finished()) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let tick = (deadline - now).min(Duration::from_secs(1));
            tokio::select! {
                received = events.recv() => {
                    if matches!(received, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        tokio::time::sleep(tick).await;
                    }
                }
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
}
