//! Resume: a paused or active upload is (again) active, and a job reconciles the part
//! rows with storage's list and presigns what is still missing.
use chrono::Utc;
use tracing::instrument;

use super::{effective_status, Accepted, App, AppError};
use crate::{auth::Caller, domain::UploadStatus, jobs::JobKind};

impl App {
    #[instrument(skip_all, fields(upload = %token))]
    pub async fn resume(&self, caller: &Caller, token: &str) -> Result<Accepted, AppError> {
        let current = self.owned_upload(caller, token).await?;
        let status = effective_status(&current, Utc::now());
        if !status.accepts_parts() {
            return Err(AppError::conflict(status));
        }
        // Active → active is no transition in the machine, but resuming an active upload
        // is allowed: it reconciles again.
        let from = [UploadStatus::Active, UploadStatus::Paused];
        match self
            .transition_with_job(
                current.id,
                &from,
                UploadStatus::Active,
                JobKind::Resume,
                serde_json::Value::Null,
            )
            .await?
        {
            Some(job_id) => Ok(Accepted {
                upload: self.reload(current.id).await?,
                job_id: Some(job_id),
            }),
            None => Err(AppError::conflict(self.reload(current.id).await?.status)),
        }
    }
}
