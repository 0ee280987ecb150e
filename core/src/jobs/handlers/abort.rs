//! Abort and expire jobs: abort the storage upload (gone already counts as done), then
//! record the final status (`aborted`; `expired` was set by the sweeper).
use partway_entity::upload;

use crate::{domain::UploadStatus, jobs::JobError, store::UploadPatch, usecases::App};

impl App {
    /// `expected`: the status the job was queued with (`aborting` or `expired`).
    pub(in crate::jobs) async fn job_abort(
        &self,
        upload: upload::Model,
        expected: UploadStatus,
    ) -> Result<(), JobError> {
        if upload.status != expected {
            return Ok(());
        }
        if let Some(storage_upload_id) = &upload.storage_upload_id {
            let storage = self.storage_for(&upload)?;
            storage.abort(&upload.file_key, storage_upload_id).await?;
        }
        if expected == UploadStatus::Aborting {
            let to = UploadStatus::Aborted;
            self.store
                .transition(upload.id, &to.sources(), to, UploadPatch::default())
                .await?;
        }
        self.cache.forget(upload.id).await;
        Ok(())
    }
}
