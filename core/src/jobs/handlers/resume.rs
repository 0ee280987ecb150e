//! Resume job: storage's list of parts (every ListParts page) becomes the part rows and
//! the progress; the parts still missing get fresh URLs.
use partway_entity::upload;
use tracing::warn;

use crate::{
    domain::ErrorCode,
    jobs::JobError,
    ports::{StorageError, StoredPart},
    usecases::{parts::missing_parts, App},
};

impl App {
    pub(in crate::jobs) async fn job_resume(&self, upload: upload::Model) -> Result<(), JobError> {
        if !upload.status.accepts_parts() {
            return Ok(());
        }
        let Some(storage_upload_id) = upload.storage_upload_id.clone() else {
            return Err(JobError::Fatal("no storage upload id".into()));
        };
        let storage = self.storage_for(&upload)?;
        let listed = match storage
            .list_parts(&upload.file_key, &storage_upload_id)
            .await
        {
            Ok(listed) => listed,
            Err(StorageError::NoSuchUpload) => {
                warn!("storage no longer has this multipart upload");
                self.store
                    .set_last_error(upload.id, ErrorCode::UploadExpired)
                    .await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        // A size-unknown upload (DESIGN §5) may hold any of 1..=10,000; nothing is
        // presigned ahead for it.
        let sized = upload.sizing.is_none();
        let total = if sized {
            upload.total_parts as u32
        } else {
            crate::domain::uppy::MAX_PART_NUMBER
        };
        let listed: Vec<StoredPart> = listed
            .into_iter()
            .filter(|p| p.part_number >= 1 && p.part_number <= total)
            .collect();
        self.store.reconcile_parts(upload.id, &listed).await?;
        self.publish(upload.id).await;
        if !sized {
            return Ok(());
        }
        let remaining = missing_parts(total, &listed);
        self.presign_into_cache(&upload, &storage, &remaining, listed.len() as u32)
            .await
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        domain::{PageLimit, PartState, UploadStatus, MIB},
        ports::StorageError,
        testing::{StorageCall, TestApp, LIST_PAGE_SIZE},
    };

    const PART: u64 = 5 * MIB;

    #[tokio::test]
    async fn resume_reads_every_list_page_and_presigns_only_what_is_missing() {
        let t = TestApp::new().await;
        let total = 2_500u32;
        let (token, upload) = t.active_upload(total as u64 * PART, PART).await;
        assert_eq!(upload.urls_ready, total as i32);
        // Storage holds more parts than one ListParts page, and one far away.
        let held: Vec<u32> = (1..=1_200).chain([2_400]).collect();
        t.put_parts(&upload, held.iter().copied());
        t.app.pause(&t.caller, &token).await.unwrap();

        let accepted = t.app.resume(&t.caller, &token).await.unwrap();
        assert_eq!(accepted.upload.status, UploadStatus::Active);
        let pages_before = t.storage.list_pages();
        t.run_jobs().await;
        assert_eq!(
            t.storage.list_pages() - pages_before,
            held.len().div_ceil(LIST_PAGE_SIZE) as u64
        );

        let resumed = t.app.reload(upload.id).await.unwrap();
        assert_eq!(resumed.uploaded_parts, held.len() as i32);
        assert_eq!(resumed.uploaded_bytes, held.len() as i64 * PART as i64);
        assert_eq!(resumed.urls_ready, total as i32);
        let recorded: Vec<u32> = t
            .app
            .uploaded_parts(upload.id)
            .await
            .unwrap()
            .iter()
            .map(|p| p.part_number)
            .collect();
        assert_eq!(recorded, held);

        // The missing parts, a page at a time, each with a URL.
        let mut pending = Vec::new();
        let mut after = 0;
        let mut pages = 0;
        loop {
            let (parts, next) = t
                .app
                .list_parts(
                    &t.caller,
                    &token,
                    PartState::Pending,
                    after,
                    PageLimit::parse(Some(500), 1000).unwrap(),
                )
                .await
                .unwrap();
            pages += 1;
            assert!(parts.len() <= 500);
            assert!(parts
                .iter()
                .all(|p| p.url.contains(&format!("partNumber={}&", p.part_number))));
            pending.extend(parts.iter().map(|p| p.part_number));
            match next {
                Some(n) => after = n,
                None => break,
            }
        }
        let expected: Vec<u32> = (1..=total).filter(|n| !held.contains(n)).collect();
        assert_eq!(pending, expected);
        assert_eq!(pages, expected.len().div_ceil(500));
    }

    #[tokio::test]
    async fn storage_that_lost_the_upload_is_shown_and_unavailable_storage_retried() {
        let t = TestApp::new().await;
        let (token, upload) = t.active_upload(12 * MIB, PART).await;
        t.storage.fail_next(
            StorageCall::ListParts,
            StorageError::Unavailable("reset".into()),
        );
        let job = t
            .app
            .resume(&t.caller, &token)
            .await
            .unwrap()
            .job_id
            .unwrap();
        let run = t.app.process_job(job, false).await.unwrap();
        assert!(
            matches!(run, crate::ports::JobRun::RetryAfter(_)),
            "{run:?}"
        );

        t.storage.lose_upload(&TestApp::storage_upload_id(&upload));
        t.app.resume(&t.caller, &token).await.unwrap();
        t.run_jobs().await;
        let shown = t.app.reload(upload.id).await.unwrap();
        assert_eq!(shown.last_error_code.as_deref(), Some("UPLOAD_EXPIRED"));
    }
}
