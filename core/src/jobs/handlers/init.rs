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
        if upload.sizing == Some(partway_entity::upload::UploadSizing::Post) {
            // One object by form POST (DESIGN §5): no storage upload to create.
            return self.post_upload_ready(&upload).await;
        }
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

#[cfg(test)]
mod tests {
    use crate::{
        domain::{ErrorCode, UploadStatus, MIB},
        ports::{JobRun, StorageError},
        testing::{init_input, StorageCall, TestApp},
    };

    #[tokio::test]
    async fn init_creates_the_storage_upload_and_presigns_every_part() {
        let t = TestApp::new().await;
        let (_, upload) = t.active_upload(12 * MIB, 5 * MIB).await;
        assert_eq!(upload.status, UploadStatus::Active);
        assert_eq!(upload.urls_ready, 3);
        assert!(t.storage.has_upload(&TestApp::storage_upload_id(&upload)));
    }

    #[tokio::test]
    async fn storage_refusing_the_upload_fails_it_and_an_outage_is_retried() {
        let t = TestApp::new().await;
        t.storage.fail_next(
            StorageCall::Create,
            StorageError::Unavailable("timeout".into()),
        );
        let input = init_input("a.bin", 12 * MIB);
        let accepted = t.app.init(&t.caller, input.clone(), None).await.unwrap();
        let job = accepted.job_id.unwrap();
        let run = t.app.process_job(job, false).await.unwrap();
        assert!(matches!(run, JobRun::RetryAfter(_)), "{run:?}");
        let waiting = t.app.reload(accepted.upload.id).await.unwrap();
        assert_eq!(waiting.status, UploadStatus::Initiating);

        t.storage.fail_next(
            StorageCall::Create,
            StorageError::Rejected("AccessDenied: no".into()),
        );
        let refused = t.app.init(&t.caller, input, None).await.unwrap();
        let run = t
            .app
            .process_job(refused.job_id.unwrap(), false)
            .await
            .unwrap();
        assert!(matches!(run, JobRun::GaveUp(_)), "{run:?}");
        let failed = t.app.reload(refused.upload.id).await.unwrap();
        assert_eq!(failed.status, UploadStatus::Failed);
        assert_eq!(
            failed.last_error_code.as_deref(),
            Some(ErrorCode::ServiceUnavailable.as_str())
        );
    }
}
