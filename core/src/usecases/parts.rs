//! Part URLs: from the cached pages the jobs wrote, presigned here for whatever the
//! cache lacks (evicted, restarted, near expiry); and `GET …/parts`, a page at a time.
use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use partway_entity::upload;

use super::{effective_status, App, AppError};
use crate::{
    auth::Caller,
    domain::{
        by_url_page, fill_page, page_slot, PageLimit, PartPlan, PartState, Progress, UploadStatus,
    },
    metrics::count_presigned,
    ports::{PresignedUrl, SharedStorage, StoredPart},
};

/// A cached URL this close to expiry is presigned again.
const URL_REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

/// A part with its presigned URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartView {
    pub part_number: u32,
    /// Shared with the cached page it came from.
    pub url: Arc<String>,
    pub size: u64,
    pub start: u64,
    pub end: u64,
    pub expires_at: DateTime<Utc>,
}

pub fn plan_of(upload: &upload::Model) -> Result<PartPlan, AppError> {
    PartPlan::from_stored(
        upload.file_size as u64,
        upload.part_size as u64,
        upload.total_parts as u32,
    )
    .map_err(|e| AppError::Internal(format!("stored plan of {} is inconsistent: {e}", upload.id)))
}

pub fn progress_of(upload: &upload::Model) -> Progress {
    Progress::compute(
        upload.uploaded_parts.max(0) as u32,
        upload.total_parts.max(0) as u32,
        upload.uploaded_bytes.max(0) as u64,
        upload.file_size.max(0) as u64,
    )
}

/// Part numbers `1..=total` that `have` lacks.
pub fn missing_parts(total: u32, have: &[StoredPart]) -> Vec<u32> {
    let have: BTreeSet<u32> = have.iter().map(|p| p.part_number).collect();
    (1..=total).filter(|n| !have.contains(n)).collect()
}

impl App {
    /// The parts recorded for the upload (reported by clients or listed by storage).
    pub async fn uploaded_parts(&self, upload_id: uuid::Uuid) -> Result<Vec<StoredPart>, AppError> {
        Ok(self.store.uploaded_parts(upload_id).await?)
    }

    /// Parts with URLs for `numbers`.
    pub async fn part_views(
        &self,
        upload: &upload::Model,
        numbers: &[u32],
    ) -> Result<Vec<PartView>, AppError> {
        if numbers.is_empty() {
            // Also a size-unknown upload's resume: it has no plan until complete.
            return Ok(Vec::new());
        }
        let plan = plan_of(upload)?;
        let Some(storage_upload_id) = upload.storage_upload_id.clone() else {
            return Err(AppError::conflict(UploadStatus::Initiating));
        };
        let fresh_until = Utc::now() + URL_REFRESH_MARGIN;
        let mut urls: HashMap<u32, PresignedUrl> = HashMap::with_capacity(numbers.len());
        let mut storage: Option<SharedStorage> = None;
        for (page, wanted) in by_url_page(numbers) {
            let mut cached = self
                .cache
                .url_page(upload.id, page)
                .await
                .unwrap_or_default();
            let missing: Vec<u32> = wanted
                .iter()
                .copied()
                .filter(|&n| {
                    !matches!(cached.get(page_slot(n)), Some(Some(u)) if u.expires_at > fresh_until)
                })
                .collect();
            if !missing.is_empty() {
                let storage = match &storage {
                    Some(s) => s.clone(),
                    None => storage.insert(self.storage_for(upload)?).clone(),
                };
                let signed = storage
                    .presign_upload_parts(
                        &upload.file_key,
                        &storage_upload_id,
                        &missing,
                        self.settings.url_ttl,
                    )
                    .await?;
                count_presigned(signed.len());
                let mut filled = Arc::unwrap_or_clone(cached);
                fill_page(&mut filled, plan.total_parts(), page, &missing, signed);
                cached = Arc::new(filled);
                self.cache
                    .put_url_page(upload.id, page, Arc::clone(&cached))
                    .await;
            }
            for n in wanted {
                if let Some(Some(url)) = cached.get(page_slot(n)) {
                    urls.insert(n, url.clone());
                }
            }
        }
        numbers
            .iter()
            .map(|&n| {
                let range = plan
                    .part(n)
                    .ok_or_else(|| AppError::Internal(format!("part {n} outside plan")))?;
                let url = urls
                    .remove(&n)
                    .ok_or_else(|| AppError::Internal(format!("no URL for part {n}")))?;
                Ok(PartView {
                    part_number: n,
                    url: url.url,
                    size: range.size,
                    start: range.start,
                    end: range.end,
                    expires_at: url.expires_at,
                })
            })
            .collect()
    }

    /// `GET …/parts`: part numbers after `after` in the requested state, at most
    /// `limit`, and the number to continue after when there are more.
    pub async fn list_parts(
        &self,
        caller: &Caller,
        token: &str,
        state: PartState,
        after: u32,
        limit: PageLimit,
    ) -> Result<(Vec<PartView>, Option<u32>), AppError> {
        let upload = self.owned_upload(caller, token).await?;
        let status = effective_status(&upload, Utc::now());
        if !(status.accepts_parts() || status == UploadStatus::Completing) {
            return Err(AppError::conflict(status));
        }
        if upload.sizing.is_some() {
            // No plan yet: what storage holds is listed by the Uppy routes.
            return self.unsized_part_views(&upload, state, after, limit).await;
        }
        // state=all needs no part rows.
        let uploaded: BTreeSet<u32> = match state {
            PartState::All => BTreeSet::new(),
            _ => self
                .store
                .uploaded_parts(upload.id)
                .await?
                .into_iter()
                .map(|p| p.part_number)
                .collect(),
        };
        let limit = limit.get() as usize;
        let total = upload.total_parts as u32;
        let mut selected: Vec<u32> = ((after.saturating_add(1))..=total)
            .filter(|n| match state {
                PartState::All => true,
                PartState::Uploaded => uploaded.contains(n),
                PartState::Pending => !uploaded.contains(n),
            })
            .take(limit + 1)
            .collect();
        let next_after = if selected.len() > limit {
            selected.truncate(limit);
            selected.last().copied()
        } else {
            None
        };
        let views = self.part_views(&upload, &selected).await?;
        Ok((views, next_after))
    }
}
