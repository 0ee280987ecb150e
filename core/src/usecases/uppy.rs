//! Uploads made through the Uppy (Companion-compatible) routes (DESIGN §5): their size
//! is unknown until complete. Starting one is an ordinary init without a size; a part
//! URL is signed on demand (no job: signing is local arithmetic); listing and
//! completing go through the resume and complete jobs; a small file is one object
//! sent by form POST with a presigned POST policy, completed when storage has it.
use std::collections::BTreeMap;

use chrono::Utc;
use partway_entity::upload::{self, UploadSizing};
use tracing::{info, instrument, warn};

use super::{effective_status, init::InitInput, parts::PartView, Accepted, App, AppError};
use crate::{
    auth::Caller,
    domain::{uppy::uppy_metadata, ErrorCode, PageLimit, PartState, UploadStatus},
    metrics::count_presigned,
    ports::PresignedUrl,
    post_policy::{post_policy_fields, PostPolicyRequest},
};

/// A single PUT (and so a form POST) is at most 5 GiB on S3.
pub const MAX_POST_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Form-POST uploads headed per check (the next check takes the rest).
const CHECK_BATCH: u64 = 200;

/// How long a signable upload's row is kept for the signing route: Uppy signs each part
/// just before its PUT (6.x one after another), so without it every signature would read
/// the row from the database. A change of status (abort, complete, expiry) is seen by
/// signing at most this late; storage refuses PUTs to an aborted or completed upload
/// anyway. Owner, token, key and storage UploadId never change once set.
pub const SIGNABLE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Rows kept at most (a few hundred bytes each).
const SIGNABLE_ROWS: u64 = 10_000;

pub(super) fn signable_cache() -> moka::sync::Cache<uuid::Uuid, std::sync::Arc<upload::Model>> {
    moka::sync::Cache::builder()
        .max_capacity(SIGNABLE_ROWS)
        .time_to_live(SIGNABLE_TTL)
        .build()
}

/// What Uppy sends to start an upload: `filename`, `type`, `metadata`.
#[derive(Debug, Clone, Default)]
pub struct UppyStart {
    pub filename: String,
    pub content_type: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A presigned POST policy: the form's `url` (the bucket, ending in `/`) and fields.
#[derive(Debug, Clone)]
pub struct PostForm {
    pub url: String,
    pub fields: Vec<(String, String)>,
    /// Seconds until the policy expires.
    pub expires_in: u64,
}

impl App {
    /// Starts a size-unknown upload (`/s3/multipart`) or a form-POST one (`/s3/params`).
    #[instrument(skip_all, fields(owner = %caller.owner_name))]
    pub async fn uppy_start(
        &self,
        caller: &Caller,
        start: UppyStart,
        sizing: UploadSizing,
    ) -> Result<Accepted, AppError> {
        let input = InitInput {
            filename: start.filename,
            file_size: 0,
            content_type: if start.content_type.trim().is_empty() {
                "application/octet-stream".into()
            } else {
                start.content_type
            },
            provider: None,
            part_size: None,
            metadata: uppy_metadata(&start.metadata),
            credentials: Default::default(),
            sizing: Some(sizing),
        };
        self.init(caller, input, None).await
    }

    /// The caller's size-unknown upload that Uppy names by `uploadId` (the resume token)
    /// and `key` (its `fileKey`): anything else is 404 `UPLOAD_NOT_FOUND`.
    pub async fn uppy_upload(
        &self,
        caller: &Caller,
        upload_id: &str,
        key: &str,
    ) -> Result<upload::Model, AppError> {
        let upload = self.owned_upload(caller, upload_id).await?;
        if upload.file_key != key || upload.sizing.is_none() {
            return Err(AppError::not_found());
        }
        Ok(upload)
    }

    /// The upload whose part `caller` asks to sign: [`App::uppy_upload`], its row kept
    /// for [`SIGNABLE_TTL`] while it can be signed. The caller is checked on every call.
    pub async fn uppy_signable(
        &self,
        caller: &Caller,
        upload_id: &str,
        key: &str,
    ) -> Result<std::sync::Arc<upload::Model>, AppError> {
        if let Some(id) = crate::domain::ResumeToken::parse(upload_id).map(|t| t.uuid()) {
            if let Some(row) = self.signable.get(&id) {
                let owned = row.owner_id == caller.owner_id
                    && caller
                        .browser_token_id()
                        .is_none_or(|t| row.browser_token_id == Some(t));
                if !owned || row.file_key != key {
                    return Err(AppError::not_found());
                }
                return Ok(row);
            }
        }
        let row = std::sync::Arc::new(self.uppy_upload(caller, upload_id, key).await?);
        if row.storage_upload_id.is_some() && effective_status(&row, Utc::now()).accepts_parts() {
            self.signable.insert(row.id, row.clone());
        }
        Ok(row)
    }

    /// Drops the kept row (the Uppy routes' complete and abort), so signing sees the
    /// new status at once on this process.
    pub fn forget_signable(&self, id: uuid::Uuid) {
        self.signable.invalidate(&id);
    }

    /// One part URL, signed now (no job, no cache).
    pub async fn uppy_sign_part(
        &self,
        upload: &upload::Model,
        part_number: u32,
    ) -> Result<PresignedUrl, AppError> {
        let status = effective_status(upload, Utc::now());
        if !status.accepts_parts() {
            return Err(AppError::conflict(status));
        }
        let Some(storage_upload_id) = upload.storage_upload_id.as_deref() else {
            return Err(AppError::conflict(UploadStatus::Initiating));
        };
        let storage = self.storage_for(upload)?;
        let mut signed = storage
            .presign_upload_parts(
                &upload.file_key,
                storage_upload_id,
                &[part_number],
                self.settings.url_ttl,
            )
            .await?;
        count_presigned(signed.len());
        signed
            .pop()
            .ok_or_else(|| AppError::Internal("storage signed no URL".into()))
    }

    /// The POST policy of a form-POST upload: the bucket, its exact key and content
    /// type, 0 to `max_size` bytes (the token's `maxFileSize`, at most 5 GiB), until
    /// the upload's expiry.
    pub fn uppy_post_form(
        &self,
        upload: &upload::Model,
        max_size: Option<u64>,
    ) -> Result<PostForm, AppError> {
        if upload.credentials_sealed.is_some() {
            return Err(AppError::client(
                ErrorCode::InvalidProvider,
                "form POST uploads use the server's storage",
            ));
        }
        let target = self.storage.server_target(upload.provider).ok_or_else(|| {
            AppError::Internal(format!("no server storage for {}", upload.provider))
        })?;
        let storage = self.storage_for(upload)?;
        let now = Utc::now();
        let fields = post_policy_fields(&PostPolicyRequest {
            access_key_id: &target.credentials.access_key_id,
            secret_access_key: &target.credentials.secret_access_key,
            session_token: None,
            region: &target.region,
            bucket: &upload.bucket,
            key: &upload.file_key,
            content_type: &upload.content_type,
            max_size: max_size.unwrap_or(MAX_POST_SIZE).min(MAX_POST_SIZE),
            now,
            expires_at: upload.expires_at,
        });
        let url = storage.object_url("");
        Ok(PostForm {
            url,
            fields,
            expires_in: (upload.expires_at - now).num_seconds().max(0) as u64,
        })
    }

    /// Heads the keys of form-POST uploads still waiting: an object there completes
    /// its upload (size and ETag from storage). Returns how many completed.
    #[instrument(skip_all)]
    pub async fn check_posted_objects(&self) -> Result<u32, AppError> {
        let waiting = self.store.posted_uploads_to_check(CHECK_BATCH).await?;
        let mut completed = 0;
        for upload in waiting {
            let storage = match self.storage_for(&upload) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "no storage for a form-POST upload");
                    continue;
                }
            };
            let (size, etag) = match storage.head_object(&upload.file_key).await {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(e) => {
                    warn!(error = %e, "heading a form-POST upload's object failed");
                    continue;
                }
            };
            // active → completing → completed, as the status machine goes.
            if !self
                .store
                .transition(
                    upload.id,
                    &[UploadStatus::Active],
                    UploadStatus::Completing,
                    crate::store::UploadPatch::default(),
                )
                .await?
            {
                continue;
            }
            self.store.set_final_size(upload.id, size, size, 1).await?;
            let location = storage.object_url(&upload.file_key);
            if self
                .store
                .mark_completed(upload.id, &etag, &location, None)
                .await?
            {
                completed += 1;
                info!(upload = %super::token_of(&upload), size, "form-POST upload completed");
            }
            self.cache.forget(upload.id).await;
            self.publish(upload.id).await;
        }
        Ok(completed)
    }

    /// `GET …/parts` of a size-unknown upload: what storage listed (the part rows);
    /// nothing is pending while the size is unknown.
    pub(super) async fn unsized_part_views(
        &self,
        upload: &upload::Model,
        state: PartState,
        after: u32,
        limit: PageLimit,
    ) -> Result<(Vec<PartView>, Option<u32>), AppError> {
        if state == PartState::Pending {
            return Ok((Vec::new(), None));
        }
        let rows = self.store.uploaded_parts(upload.id).await?;
        // Where each part starts: the parts before it, in order.
        let mut start = 0u64;
        let mut ranges = BTreeMap::new();
        for p in &rows {
            ranges.insert(p.part_number, (start, p.size));
            start = start.saturating_add(p.size);
        }
        let limit = limit.get() as usize;
        let mut selected: Vec<u32> = ranges
            .keys()
            .copied()
            .filter(|n| *n > after)
            .take(limit + 1)
            .collect();
        let next_after = if selected.len() > limit {
            selected.truncate(limit);
            selected.last().copied()
        } else {
            None
        };
        if selected.is_empty() {
            return Ok((Vec::new(), next_after));
        }
        let Some(storage_upload_id) = upload.storage_upload_id.as_deref() else {
            return Ok((Vec::new(), None));
        };
        let storage = self.storage_for(upload)?;
        let urls = storage
            .presign_upload_parts(
                &upload.file_key,
                storage_upload_id,
                &selected,
                self.settings.url_ttl,
            )
            .await?;
        count_presigned(urls.len());
        let views = selected
            .iter()
            .zip(urls)
            .map(|(n, url)| {
                let (start, size) = ranges.get(n).copied().unwrap_or_default();
                PartView {
                    part_number: *n,
                    url: url.url,
                    size,
                    start,
                    end: (start + size).saturating_sub(1),
                    expires_at: url.expires_at,
                }
            })
            .collect();
        Ok((views, next_after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::MIB,
        ports::{JobRun, ObjectStorage},
        testing::TestApp,
        usecases::{parts::progress_of, size_known},
    };

    fn start(name: &str) -> UppyStart {
        UppyStart {
            filename: name.into(),
            content_type: "application/octet-stream".into(),
            metadata: serde_json::json!({"name": name, "type": "x", "caption": "é"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// A size-unknown upload made active, with `sizes` PUT to storage as parts 1, 2, …
    async fn unsized_with_parts(t: &TestApp, sizes: &[u64]) -> (upload::Model, Vec<(u32, String)>) {
        let accepted = t
            .app
            .uppy_start(&t.caller, start("u.bin"), UploadSizing::Multipart)
            .await
            .unwrap();
        t.run_jobs().await;
        let upload = t.app.reload(accepted.upload.id).await.unwrap();
        assert_eq!(upload.status, UploadStatus::Active);
        let sid = upload.storage_upload_id.clone().unwrap();
        let mut parts = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let n = i as u32 + 1;
            let etag = t.storage.put_part(&sid, n, *size);
            parts.push((n, etag));
        }
        (upload, parts)
    }

    #[tokio::test]
    async fn a_size_unknown_upload_signs_any_part_and_completes_with_storage_sizes() {
        let t = TestApp::new().await;
        let (upload, parts) = unsized_with_parts(&t, &[5 * MIB, 5 * MIB, 3]).await;
        assert!(!size_known(&upload));
        assert_eq!((upload.file_size, upload.total_parts), (0, 0));
        assert_eq!(
            serde_json::from_value::<BTreeMap<String, String>>(upload.metadata.clone()).unwrap(),
            BTreeMap::from([("caption".to_string(), "%C3%A9".to_string())])
        );
        for n in [1, 777, 10_000] {
            t.app
                .uppy_sign_part(&upload, n)
                .await
                .expect("signed on demand");
        }
        assert_eq!(t.run_jobs().await, vec![], "signing queues nothing");
        let token = super::super::token_of(&upload).to_string();
        let quoted: Vec<(u32, String)> = parts
            .iter()
            .map(|(n, e)| (*n, format!("\"{e}\"")))
            .collect();
        t.app
            .complete(&t.caller, &token, Some(quoted))
            .await
            .unwrap();
        assert_eq!(t.run_jobs().await, vec![JobRun::Settled]);
        let done = t.app.reload(upload.id).await.unwrap();
        assert_eq!(done.status, UploadStatus::Completed);
        assert!(size_known(&done));
        assert_eq!(done.file_size as u64, 10 * MIB + 3);
        assert_eq!((done.total_parts, done.part_size as u64), (3, 5 * MIB));
        let progress = progress_of(&done);
        assert_eq!(progress.bytes_percentage, 100.0);
        assert_eq!(t.storage.object(&done.file_key).unwrap().0, 10 * MIB + 3);
    }

    #[tokio::test]
    async fn a_part_storage_lacks_makes_the_upload_active_again() {
        let t = TestApp::new().await;
        let (upload, mut parts) = unsized_with_parts(&t, &[5 * MIB, 1]).await;
        parts.push((3, "nope".into()));
        let token = super::super::token_of(&upload).to_string();
        t.app
            .complete(&t.caller, &token, Some(parts))
            .await
            .unwrap();
        t.run_jobs().await;
        let back = t.app.reload(upload.id).await.unwrap();
        assert_eq!(back.status, UploadStatus::Active);
        assert_eq!(back.last_error_code.as_deref(), Some("INVALID_PARTS"));
        assert!(!size_known(&back));
    }

    #[tokio::test]
    async fn over_max_file_size_at_complete_is_refused_and_aborted_on_storage() {
        let t = TestApp::new().await;
        let browser = t.browser_caller(Some(6 * MIB)).await;
        let accepted = t
            .app
            .uppy_start(&browser, start("big.bin"), UploadSizing::Multipart)
            .await
            .unwrap();
        t.run_jobs().await;
        let upload = t.app.reload(accepted.upload.id).await.unwrap();
        let sid = upload.storage_upload_id.clone().unwrap();
        let parts = vec![
            (1, t.storage.put_part(&sid, 1, 5 * MIB)),
            (2, t.storage.put_part(&sid, 2, 2 * MIB)),
        ];
        let token = super::super::token_of(&upload).to_string();
        t.app.complete(&browser, &token, Some(parts)).await.unwrap();
        t.run_jobs().await;
        let refused = t.app.reload(upload.id).await.unwrap();
        assert_eq!(refused.status, UploadStatus::Aborted);
        assert_eq!(
            refused.last_error_code.as_deref(),
            Some("INVALID_FILE_SIZE")
        );
        assert!(!t.storage.has_upload(&sid), "aborted on storage");
        assert!(t.storage.object(&upload.file_key).is_none());
    }

    #[tokio::test]
    async fn a_kept_signable_row_still_checks_the_caller_and_the_key() {
        let t = TestApp::new().await;
        let (upload, _) = unsized_with_parts(&t, &[]).await;
        let token = super::super::token_of(&upload).to_string();
        let row = t
            .app
            .uppy_signable(&t.caller, &token, &upload.file_key)
            .await
            .unwrap();
        assert_eq!(row.id, upload.id);
        assert!(t.app.signable.get(&upload.id).is_some(), "kept");
        let err = t
            .app
            .uppy_signable(&t.caller, &token, "uploads/other")
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AppError::Client {
                code: ErrorCode::UploadNotFound,
                ..
            }
        ));
        let other = t.browser_caller(None).await;
        let err = t
            .app
            .uppy_signable(&other, &token, &upload.file_key)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AppError::Client {
                code: ErrorCode::UploadNotFound,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_key_that_does_not_match_is_not_found() {
        let t = TestApp::new().await;
        let (upload, _) = unsized_with_parts(&t, &[]).await;
        let token = super::super::token_of(&upload).to_string();
        assert!(t
            .app
            .uppy_upload(&t.caller, &token, &upload.file_key)
            .await
            .is_ok());
        let err = t
            .app
            .uppy_upload(&t.caller, &token, "uploads/other")
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AppError::Client {
                code: ErrorCode::UploadNotFound,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_posted_object_completes_its_upload() {
        let t = TestApp::new().await;
        let accepted = t
            .app
            .uppy_start(&t.caller, start("small.txt"), UploadSizing::Post)
            .await
            .unwrap();
        t.run_jobs().await;
        let upload = t.app.reload(accepted.upload.id).await.unwrap();
        assert_eq!(upload.status, UploadStatus::Active);
        assert!(upload.storage_upload_id.is_none());
        assert_eq!(t.app.check_posted_objects().await.unwrap(), 0);
        t.storage.put_object(&upload.file_key, 42);
        assert_eq!(t.app.check_posted_objects().await.unwrap(), 1);
        let done = t.app.reload(upload.id).await.unwrap();
        assert_eq!(done.status, UploadStatus::Completed);
        assert_eq!((done.file_size, done.total_parts), (42, 1));
        assert_eq!(t.app.check_posted_objects().await.unwrap(), 0);
        let _ = t.storage.head_object(&upload.file_key).await;
    }
}
