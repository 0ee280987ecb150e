//! Expiry: active and paused uploads past their time become `expired` and get a job
//! that aborts them on storage. Safe with many sweepers (conditional updates).
use tracing::{info, instrument};

use super::{App, AppError};
use crate::{domain::UploadStatus, jobs::JobKind};

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
}
