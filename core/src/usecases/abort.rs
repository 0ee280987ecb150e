//! Abort: queue the storage abort. An upload past its time is expired instead (what
//! the sweeper would do); aborted and expired uploads answer again; completed is 409.
use chrono::Utc;
use partway_entity::upload;
use tracing::instrument;

use super::{effective_status, Accepted, App, AppError};
use crate::{auth::Caller, domain::UploadStatus, jobs::JobKind};

const SETTLED: [UploadStatus; 2] = [UploadStatus::Aborted, UploadStatus::Expired];

impl App {
    #[instrument(skip_all, fields(upload = %token))]
    pub async fn abort(&self, caller: &Caller, token: &str) -> Result<Accepted, AppError> {
        let current = self.owned_upload(caller, token).await?;
        if effective_status(&current, Utc::now()) == UploadStatus::Expired
            && current.status != UploadStatus::Expired
        {
            // Past its time but not swept yet: expire it now.
            if let Ok(accepted) = self
                .accept_transition(
                    current.id,
                    UploadStatus::Expired,
                    JobKind::Expire,
                    serde_json::Value::Null,
                )
                .await?
            {
                return Ok(accepted);
            }
        }
        let current = self.reload(current.id).await?;
        if matches!(
            current.status,
            UploadStatus::Completed
                | UploadStatus::Aborting
                | UploadStatus::Aborted
                | UploadStatus::Expired
        ) {
            return self.join_abort(current).await;
        }
        match self
            .accept_transition(
                current.id,
                UploadStatus::Aborting,
                JobKind::Abort,
                serde_json::Value::Null,
            )
            .await?
        {
            Ok(accepted) => Ok(accepted),
            Err(now) => self.join_abort(now).await,
        }
    }

    async fn join_abort(&self, upload: upload::Model) -> Result<Accepted, AppError> {
        self.join(upload, &SETTLED, UploadStatus::Aborting, JobKind::Abort)
            .await
    }
}
