//! Expiry: active and paused uploads past their time become `expired` and get a job
//! that aborts them on storage. Safe with many sweepers (conditional updates). And the
//! history's retention: what only records the past is deleted after it.
use std::time::Duration;

use tracing::{info, instrument};

use super::{App, AppError};
use crate::{domain::UploadStatus, jobs::JobKind, store::history::Pruned};

/// Uploads expired per sweep (the next sweep takes the rest).
const SWEEP_BATCH: u64 = 500;

impl App {
    #[instrument(skip_all)]
    pub async fn sweep_expired(&self) -> Result<u32, AppError> {
        let due = self.store.expired_uploads(SWEEP_BATCH).await?;
        let to = UploadStatus::Expired;
        let mut swept = 0;
        for id in due {
            if self
                .transition_with_job(
                    id,
                    &to.sources(),
                    to,
                    JobKind::Expire,
                    serde_json::Value::Null,
                )
                .await?
                .is_some()
            {
                swept += 1;
            }
        }
        if swept > 0 {
            info!(swept, "expired uploads swept");
        }
        Ok(swept)
    }

    /// Deletes finished jobs, settled webhook deliveries and attempts, and events nothing
    /// still owes, once older than `retention` (`PARTWAY_HISTORY_RETENTION`).
    #[instrument(skip_all)]
    pub async fn prune_history(&self, retention: Duration) -> Result<Pruned, AppError> {
        let Ok(retention) = chrono::Duration::from_std(retention) else {
            // Longer than chrono can count: nothing is that old.
            return Ok(Pruned::default());
        };
        let pruned = self
            .store
            .prune_history(chrono::Utc::now() - retention)
            .await?;
        if pruned.total() > 0 {
            info!(
                jobs = pruned.jobs,
                deliveries = pruned.deliveries,
                attempts = pruned.attempts,
                events = pruned.events,
                idempotency_keys = pruned.idempotency_keys,
                "history pruned"
            );
        }
        Ok(pruned)
    }
}
