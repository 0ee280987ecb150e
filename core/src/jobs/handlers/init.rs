//! Init job: create the storage multipart upload (or find ours from an earlier try),
//! make the upload active, presign every part URL.
use partway_entity::upload;

use crate::{
    domain::UploadStatus, jobs::JobError, ports::StorageError, store::UploadPatch, usecases::App,
};

impl App {
    pub(in crate::jobs) async fn job_init(
        &self,
        mut upload: upload::Model,
    ) -> Result<(), JobError> {
        let storage = self.storage_for(&upload)?;
        if upload.status == UploadStatus::Initiating && upload.storage_upload_id.is_none() {
            let metadata = serde_json::from_value(upload.metadata.clone()).unwrap_or_default();
            let created = storage
                .create_multipart(&upload.file_key, &upload.content_type, &metadata)
                .await
                .map_err(|e| match e {
                    StorageError::Rejected(reason) => {
                        JobError::Fatal(format!("storage refused to create the upload: {reason}"))
                    }
                    other => JobError::Retry(other.to_string()),
                })?;
            let stored = self
                .store
                .set_storage_upload_id(upload.id, &created)
                .await?;
            upload = self
                .store
                .upload(upload.id)
                .await?
                .ok_or_else(|| JobError::Fatal("upload vanished".into()))?;
            if !stored && upload.storage_upload_id.as_deref() != Some(created.as_str()) {
                // Aborted meanwhile (or another try won): don't leave ours behind.
                let _ = storage.abort(&upload.file_key, &created).await;
            }
        }
        if upload.storage_upload_id.is_some() {
            let to = UploadStatus::Active;
            if self
                .store
                .transition(
                    upload.id,
                    &[UploadStatus::Initiating],
                    to,
                    UploadPatch::default(),
                )
                .await?
            {
                upload.status = to;
                self.publish(upload.id).await;
            }
        }
        if !upload.status.accepts_parts() {
            return Ok(());
        }
        let all: Vec<u32> = (1..=upload.total_parts as u32).collect();
        self.presign_into_cache(&upload, &storage, &all, 0).await
    }
}
