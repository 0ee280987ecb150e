//! Pause: synchronous, no job; a paused upload keeps its URLs and parts.
use chrono::Utc;
use partway_entity::upload;
use tracing::instrument;

use super::{effective_status, App, AppError};
use crate::{auth::Caller, domain::UploadStatus, store::UploadPatch};

impl App {
    #[instrument(skip_all, fields(upload = %token))]
    pub async fn pause(&self, caller: &Caller, token: &str) -> Result<upload::Model, AppError> {
        let current = self.owned_upload(caller, token).await?;
        match effective_status(&current, Utc::now()) {
            UploadStatus::Paused => return Ok(current),
            UploadStatus::Active => {}
            other => return Err(AppError::conflict(other)),
        }
        let to = UploadStatus::Paused;
        let moved = self
            .store
            .transition(current.id, &to.sources(), to, UploadPatch::default())
            .await?;
        let now = self.reload(current.id).await?;
        if !moved && now.status != UploadStatus::Paused {
            return Err(AppError::conflict(now.status));
        }
        self.publish(current.id).await;
        Ok(now)
    }
}
