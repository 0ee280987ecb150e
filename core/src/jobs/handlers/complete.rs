//! Complete job. Its outcomes:
//! - storage completes the object → `completed` (with storage's parts as the part rows
//!   when it listed them);
//! - storage lacks parts or rejects them → `active` again with `lastError`, so the
//!   client can fix them and complete again;
//! - storage no longer knows the upload → an earlier try completed it (the object is
//!   there with the upload's size: `completed`), or it is gone for good (`failed`);
//! - storage is unavailable → retried with backoff.
use partway_entity::upload;
use tracing::{info, warn};

use crate::{
    domain::{ErrorCode, UploadStatus},
    jobs::{CompletePayload, JobError},
    ports::{SharedStorage, StorageError, StoredPart},
    store::UploadPatch,
    usecases::{parts::missing_parts, App},
};

/// Missing part numbers logged (the rest are elided); `lastError` shows a fixed text.
const SHOWN_MISSING: usize = 20;

impl App {
    pub(in crate::jobs) async fn job_complete(
        &self,
        upload: upload::Model,
        payload: CompletePayload,
    ) -> Result<(), JobError> {
        if upload.status != UploadStatus::Completing {
            return Ok(());
        }
        let Some(storage_upload_id) = upload.storage_upload_id.clone() else {
            return Err(JobError::Fatal("no storage upload id".into()));
        };
        if upload.sizing.is_some() {
            return self
                .job_complete_unsized(upload, storage_upload_id, payload)
                .await;
        }
        let storage = self.storage_for(&upload)?;
        let total = upload.total_parts as u32;
        let mut listed: Option<Vec<StoredPart>> = None;
        let parts: Vec<(u32, String)> = match payload.parts {
            Some(parts) => parts,
            None => match storage
                .list_parts(&upload.file_key, &storage_upload_id)
                .await
            {
                Ok(found) => {
                    let missing = missing_parts(total, &found);
                    if !missing.is_empty() {
                        let shown: Vec<String> = missing
                            .iter()
                            .take(SHOWN_MISSING)
                            .map(u32::to_string)
                            .collect();
                        let detail = format!(
                            "storage holds {} of {total} parts; missing: {}{}",
                            total as usize - missing.len(),
                            shown.join(", "),
                            if missing.len() > SHOWN_MISSING {
                                ", …"
                            } else {
                                ""
                            }
                        );
                        // Not the request's fault but the upload's state (409): upload
                        // the missing parts, then complete again.
                        return self
                            .back_to_active(&upload, ErrorCode::IncompleteParts, &detail)
                            .await;
                    }
                    let parts = found
                        .iter()
                        .filter(|p| p.part_number <= total)
                        .map(|p| (p.part_number, p.etag.clone()))
                        .collect();
                    listed = Some(found);
                    parts
                }
                Err(StorageError::NoSuchUpload) => {
                    return self.complete_or_fail_missing(&upload, &storage).await
                }
                Err(e) => return Err(e.into()),
            },
        };
        match storage
            .complete(&upload.file_key, &storage_upload_id, &parts)
            .await
        {
            Ok(object) => {
                let location = object
                    .location
                    .unwrap_or_else(|| storage.object_url(&upload.file_key));
                self.mark_completed(&upload, &object.etag, &location, listed.as_deref())
                    .await
            }
            Err(StorageError::InvalidParts(reason)) => {
                self.back_to_active(&upload, ErrorCode::InvalidParts, &reason)
                    .await
            }
            Err(StorageError::NoSuchUpload) => {
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

    /// Storage no longer knows the upload: either an earlier try completed it (the
    /// object is there, so we only missed recording it) or it is gone for good.
    pub(super) async fn complete_or_fail_missing(
        &self,
        upload: &upload::Model,
        storage: &SharedStorage,
    ) -> Result<(), JobError> {
        match storage.head_object(&upload.file_key).await? {
            Some((size, etag)) if size == upload.file_size as u64 => {
                self.mark_completed(upload, &etag, &storage.object_url(&upload.file_key), None)
                    .await
            }
            _ => {
                warn!("storage no longer has this multipart upload; the upload failed");
                self.store
                    .fail_upload(
                        upload.id,
                        UploadStatus::Completing,
                        ErrorCode::UploadExpired,
                    )
                    .await?;
                Ok(())
            }
        }
    }

    pub(super) async fn mark_completed(
        &self,
        upload: &upload::Model,
        etag: &str,
        location: &str,
        listed: Option<&[StoredPart]>,
    ) -> Result<(), JobError> {
        self.store
            .mark_completed(upload.id, etag, location, listed)
            .await?;
        self.cache.forget(upload.id).await;
        info!(file_size = upload.file_size, "upload completed");
        Ok(())
    }

    /// `detail` (what storage said) goes to the log only; the upload shows `code`'s
    /// fixed text.
    pub(super) async fn back_to_active(
        &self,
        upload: &upload::Model,
        code: ErrorCode,
        detail: &str,
    ) -> Result<(), JobError> {
        self.store
            .transition(
                upload.id,
                &[UploadStatus::Completing],
                UploadStatus::Active,
                UploadPatch::error(code),
            )
            .await?;
        info!(code = code.as_str(), %detail, "storage rejected the completion; upload is active again");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        domain::{last_error_message, ErrorCode, UploadStatus, MIB},
        ports::{JobRun, StorageError},
        testing::{StorageCall, TestApp},
    };

    /// Three parts of 5 MiB, 5 MiB and 2 MiB.
    const FILE: u64 = 12 * MIB;
    const PART: u64 = 5 * MIB;

    fn last_error(upload: &partway_entity::upload::Model) -> (Option<ErrorCode>, String) {
        (
            upload
                .last_error_code
                .as_deref()
                .and_then(ErrorCode::from_code),
            upload.last_error_message.clone().unwrap_or_default(),
        )
    }

    #[tokio::test]
    async fn storage_completes_the_object_and_its_parts_become_the_rows() {
        let t = TestApp::new().await;
        let (token, upload) = t.active_upload(FILE, PART).await;
        assert_eq!(upload.status, UploadStatus::Active);
        t.put_parts(&upload, 1..=3);
        let accepted = t.app.complete(&t.caller, &token, None).await.unwrap();
        assert_eq!(accepted.upload.status, UploadStatus::Completing);
        assert_eq!(t.run_jobs().await, vec![JobRun::Settled]);

        let done = t.app.reload(upload.id).await.unwrap();
        assert_eq!(done.status, UploadStatus::Completed);
        let (size, etag) = t.storage.object(&done.file_key).expect("object on storage");
        assert_eq!(size, FILE);
        assert_eq!(done.etag.as_deref(), Some(etag.as_str()));
        assert!(done.location.is_some() && done.completed_at.is_some());
        assert_eq!((done.uploaded_parts, done.uploaded_bytes), (3, FILE as i64));
        assert_eq!(t.app.uploaded_parts(upload.id).await.unwrap().len(), 3);
        assert_eq!(last_error(&done).0, None);
        // A second complete answers the result without completing again.
        let again = t.app.complete(&t.caller, &token, None).await.unwrap();
        assert_eq!(
            (again.upload.status, again.job_id),
            (UploadStatus::Completed, None)
        );
        assert_eq!(t.storage.completes(), 1);
    }

    #[tokio::test]
    async fn parts_storage_lacks_or_rejects_make_the_upload_active_again() {
        let t = TestApp::new().await;
        let (token, upload) = t.active_upload(FILE, PART).await;
        t.put_parts(&upload, 1..=2);
        t.app.complete(&t.caller, &token, None).await.unwrap();
        t.run_jobs().await;
        let back = t.app.reload(upload.id).await.unwrap();
        assert_eq!(back.status, UploadStatus::Active);
        assert_eq!(
            last_error(&back),
            (
                Some(ErrorCode::IncompleteParts),
                last_error_message(ErrorCode::IncompleteParts).to_string()
            )
        );

        // The client names the parts, one with an ETag storage does not have.
        let mut named = t.put_parts(&upload, 1..=3);
        named[1].1 = "\"0000\"".into();
        t.app
            .complete(&t.caller, &token, Some(named))
            .await
            .unwrap();
        t.run_jobs().await;
        let rejected = t.app.reload(upload.id).await.unwrap();
        assert_eq!(rejected.status, UploadStatus::Active);
        let (code, message) = last_error(&rejected);
        assert_eq!(code, Some(ErrorCode::InvalidParts));
        assert_eq!(message, last_error_message(ErrorCode::InvalidParts));
        assert!(t.storage.has_upload(&TestApp::storage_upload_id(&upload)));

        // Fixed, the next complete succeeds and clears the error.
        t.app.complete(&t.caller, &token, None).await.unwrap();
        t.run_jobs().await;
        let done = t.app.reload(upload.id).await.unwrap();
        assert_eq!(done.status, UploadStatus::Completed);
        assert_eq!(last_error(&done).0, None);
    }

    #[tokio::test]
    async fn an_upload_storage_already_completed_is_recorded_completed() {
        let t = TestApp::new().await;
        let (token, upload) = t.active_upload(FILE, PART).await;
        let parts = t.put_parts(&upload, 1..=3);
        // An earlier try completed on storage, then died before recording it.
        use crate::ports::ObjectStorage;
        t.storage
            .complete(
                &upload.file_key,
                &TestApp::storage_upload_id(&upload),
                &parts,
            )
            .await
            .unwrap();
        t.app.complete(&t.caller, &token, None).await.unwrap();
        assert_eq!(t.run_jobs().await, vec![JobRun::Settled]);
        let done = t.app.reload(upload.id).await.unwrap();
        assert_eq!(done.status, UploadStatus::Completed);
        assert_eq!(
            done.etag,
            t.storage.object(&upload.file_key).map(|(_, e)| e)
        );
        assert_eq!(t.storage.completes(), 1);
    }

    #[tokio::test]
    async fn an_upload_storage_lost_fails_with_the_reason() {
        let t = TestApp::new().await;
        let (token, upload) = t.active_upload(FILE, PART).await;
        t.put_parts(&upload, 1..=3);
        t.storage.lose_upload(&TestApp::storage_upload_id(&upload));
        t.app.complete(&t.caller, &token, None).await.unwrap();
        t.run_jobs().await;
        let failed = t.app.reload(upload.id).await.unwrap();
        assert_eq!(failed.status, UploadStatus::Failed);
        assert_eq!(
            last_error(&failed),
            (
                Some(ErrorCode::UploadExpired),
                last_error_message(ErrorCode::UploadExpired).to_string()
            )
        );
        // A failed upload is no longer completable, but can be aborted.
        let err = t.app.complete(&t.caller, &token, None).await.unwrap_err();
        assert!(matches!(
            err,
            crate::AppError::Client {
                code: ErrorCode::UploadNotReady,
                ..
            }
        ));
        let aborting = t.app.abort(&t.caller, &token).await.unwrap();
        assert_eq!(aborting.upload.status, UploadStatus::Aborting);
    }

    #[tokio::test]
    async fn storage_refusing_or_unavailable() {
        let t = TestApp::new().await;
        let (token, upload) = t.active_upload(FILE, PART).await;
        t.put_parts(&upload, 1..=3);

        // Unavailable: the job is retried later, the upload stays completing.
        t.storage.fail_next(
            StorageCall::Complete,
            StorageError::Unavailable("timeout".into()),
        );
        let accepted = t.app.complete(&t.caller, &token, None).await.unwrap();
        let job = accepted.job_id.expect("a complete job");
        let run = t.app.process_job(job, false).await.unwrap();
        assert!(matches!(run, JobRun::RetryAfter(_)), "{run:?}");
        assert_eq!(
            t.app.reload(upload.id).await.unwrap().status,
            UploadStatus::Completing
        );
        assert_eq!(
            t.app.store().job_state(job).await.unwrap(),
            Some(crate::jobs::JobState::Pending)
        );
        assert!(
            t.app.due_jobs(10).await.unwrap().is_empty(),
            "not before its backoff"
        );

        // Refused for good (e.g. permissions): active again, with the reason.
        let t = TestApp::new().await;
        let (token, upload) = t.active_upload(FILE, PART).await;
        t.put_parts(&upload, 1..=3);
        t.storage.fail_next(
            StorageCall::Complete,
            StorageError::Rejected("AccessDenied: no".into()),
        );
        t.app.complete(&t.caller, &token, None).await.unwrap();
        t.run_jobs().await;
        let back = t.app.reload(upload.id).await.unwrap();
        assert_eq!(back.status, UploadStatus::Active);
        assert_eq!(last_error(&back).0, Some(ErrorCode::ServiceUnavailable));
    }

    /// DESIGN §7: what storage (or a client's own endpoint) answered, or a database
    /// error, never reaches `lastError` or the error a `?wait` answers with.
    #[tokio::test]
    async fn last_error_shows_a_fixed_text_never_storage_or_database_text() {
        let internal = "InternalError: <html>nginx at 10.1.2.3:9000</html>";
        let t = TestApp::new().await;
        let (token, upload) = t.active_upload(FILE, PART).await;
        t.put_parts(&upload, 1..=3);
        t.storage.fail_next(
            StorageCall::Complete,
            StorageError::Rejected(internal.into()),
        );
        t.app.complete(&t.caller, &token, None).await.unwrap();
        t.run_jobs().await;
        let back = t.app.reload(upload.id).await.unwrap();
        let shown = |row: &partway_entity::upload::Model| {
            let settled = crate::usecases::Settled {
                upload: row.clone(),
                finished: true,
            };
            let err = settled.job_error().expect("a job error");
            (last_error(row), err.to_string())
        };
        let ((code, message), waited) = shown(&back);
        assert_eq!(code, Some(ErrorCode::ServiceUnavailable));
        assert_eq!(message, last_error_message(ErrorCode::ServiceUnavailable));
        assert_eq!(waited, message);

        // Storage refusing the init for good: the upload fails, with the fixed text.
        t.storage
            .fail_next(StorageCall::Create, StorageError::Rejected(internal.into()));
        let (_, failed) = t.active_upload(FILE, PART).await;
        assert_eq!(failed.status, UploadStatus::Failed);
        let ((code, message), waited) = shown(&failed);
        assert_eq!(code, Some(ErrorCode::ServiceUnavailable));
        for text in [&message, &waited] {
            assert!(
                !text.contains("10.1.2.3") && !text.contains("InternalError"),
                "{text}"
            );
        }

        // A row an earlier version wrote with a raw reason shows the fixed text too.
        let mut legacy = back.clone();
        legacy.last_error_message = Some(format!("database: {internal}"));
        let (_, waited) = shown(&legacy);
        assert_eq!(waited, last_error_message(ErrorCode::ServiceUnavailable));
    }

    #[tokio::test]
    async fn named_parts_of_an_upload_storage_lost_fail_and_a_list_outage_is_retried() {
        let t = TestApp::new().await;
        let (token, upload) = t.active_upload(FILE, PART).await;
        let named = t.put_parts(&upload, 1..=3);
        t.storage.lose_upload(&TestApp::storage_upload_id(&upload));
        t.app
            .complete(&t.caller, &token, Some(named))
            .await
            .unwrap();
        t.run_jobs().await;
        assert_eq!(
            t.app.reload(upload.id).await.unwrap().status,
            UploadStatus::Failed
        );

        let (token, upload) = t.active_upload(FILE, PART).await;
        t.put_parts(&upload, 1..=3);
        t.storage.fail_next(
            StorageCall::ListParts,
            StorageError::Unavailable("reset".into()),
        );
        let job = t
            .app
            .complete(&t.caller, &token, None)
            .await
            .unwrap()
            .job_id
            .unwrap();
        let run = t.app.process_job(job, false).await.unwrap();
        assert!(matches!(run, JobRun::RetryAfter(_)), "{run:?}");
        assert_eq!(
            t.app.reload(upload.id).await.unwrap().status,
            UploadStatus::Completing
        );
    }
}
