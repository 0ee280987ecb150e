//! Jobs of size-unknown uploads (DESIGN §5, the Uppy routes).
//! - Complete: the named parts are checked against storage's list (every page), their
//!   sizes add up to the upload's size; over the token's `maxFileSize` the upload is
//!   refused (`INVALID_FILE_SIZE`) and aborted on storage; otherwise storage completes.
//! - Init of a form-POST upload: nothing to create on storage; it becomes active.
use partway_entity::upload;
use tracing::info;

use crate::{
    domain::{
        uppy::{final_size, Refusal},
        ErrorCode, UploadStatus,
    },
    jobs::{CompletePayload, JobError, JobKind},
    ports::{StorageError, StoredPart},
    store::UploadPatch,
    usecases::App,
};

impl App {
    pub(in crate::jobs) async fn job_complete_unsized(
        &self,
        upload: upload::Model,
        storage_upload_id: String,
        payload: CompletePayload,
    ) -> Result<(), JobError> {
        let storage = self.storage_for(&upload)?;
        let listed = match storage
            .list_parts(&upload.file_key, &storage_upload_id)
            .await
        {
            Ok(listed) => listed,
            Err(StorageError::NoSuchUpload) => {
                return self.complete_or_fail_missing(&upload, &storage).await
            }
            Err(e) => return Err(e.into()),
        };
        let size = match final_size(payload.parts.as_deref(), &listed, payload.max_size) {
            Ok(size) => size,
            Err(Refusal::InvalidParts(detail)) => {
                return self
                    .back_to_active(&upload, ErrorCode::InvalidParts, &detail)
                    .await
            }
            Err(Refusal::TooLarge { size, max }) => {
                info!(
                    size,
                    max, "parts add up to more than the limit; aborting the upload"
                );
                let to = UploadStatus::Aborting;
                let job =
                    crate::store::jobs::new_job(upload.id, JobKind::Abort, serde_json::Value::Null);
                if self
                    .store
                    .transition_with_job(upload.id, &[UploadStatus::Completing], to, job)
                    .await?
                {
                    self.store
                        .set_last_error(upload.id, ErrorCode::InvalidFileSize)
                        .await?;
                    self.queue.wake().await;
                }
                return Ok(());
            }
        };
        self.store
            .set_final_size(upload.id, size.file_size, size.part_size, size.total_parts)
            .await?;
        let chosen: Vec<StoredPart> = listed
            .into_iter()
            .filter(|p| size.parts.iter().any(|(n, _)| *n == p.part_number))
            .collect();
        match storage
            .complete(&upload.file_key, &storage_upload_id, &size.parts)
            .await
        {
            Ok(object) => {
                let location = object
                    .location
                    .unwrap_or_else(|| storage.object_url(&upload.file_key));
                self.mark_completed(&upload, &object.etag, &location, Some(&chosen))
                    .await
            }
            Err(StorageError::InvalidParts(reason)) => {
                self.back_to_active(&upload, ErrorCode::InvalidParts, &reason)
                    .await
            }
            Err(StorageError::NoSuchUpload) => {
                let upload = self
                    .store
                    .upload(upload.id)
                    .await?
                    .ok_or_else(|| JobError::Fatal("upload vanished".into()))?;
                self.complete_or_fail_missing(&upload, &storage).await
            }
            Err(StorageError::Rejected(reason)) => {
                self.back_to_active(
                    &upload,
                    ErrorCode::ServiceUnavailable,
                    &format!("storage refused to complete: {reason}"),
                )
                .await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A form-POST upload needs nothing from storage to start: it becomes active.
    pub(in crate::jobs) async fn post_upload_ready(
        &self,
        upload: &upload::Model,
    ) -> Result<(), JobError> {
        if self
            .store
            .transition(
                upload.id,
                &[UploadStatus::Initiating],
                UploadStatus::Active,
                UploadPatch::default(),
            )
            .await?
        {
            self.publish(upload.id).await;
        }
        Ok(())
    }
}
