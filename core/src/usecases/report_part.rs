//! A client reports a part it PUT to storage; progress is visible to every poller at once.
use chrono::Utc;
use partway_entity::upload;
use tracing::instrument;

use super::{effective_status, App, AppError};
use crate::{auth::Caller, domain::ErrorCode, ports::StoredPart};

impl App {
    #[instrument(skip_all, fields(upload = %token, part = part_number))]
    pub async fn report_part(
        &self,
        caller: &Caller,
        token: &str,
        part_number: u32,
        etag: &str,
        size: u64,
    ) -> Result<upload::Model, AppError> {
        let current = self.owned_upload(caller, token).await?;
        let status = effective_status(&current, Utc::now());
        if !status.accepts_parts() {
            return Err(AppError::conflict(status));
        }
        if current.sizing.is_some() {
            // DESIGN §5: no plan until complete; storage's list is the progress.
            return Err(AppError::client(
                ErrorCode::UploadNotReady,
                "this upload's size is unknown until complete: its progress is what storage lists (resume reads it)",
            ));
        }
        let plan = super::parts::plan_of(&current)?;
        let Some(range) = plan.part(part_number) else {
            return Err(AppError::client(
                ErrorCode::PartsMismatch,
                format!("partNumber must be within 1..={}", plan.total_parts()),
            ));
        };
        let etag = etag.trim().trim_matches('"');
        if etag.is_empty() || etag.len() > 128 {
            return Err(AppError::client(
                ErrorCode::InvalidParts,
                "etag is required (the ETag header storage returned)",
            ));
        }
        if size != range.size {
            return Err(AppError::client(
                ErrorCode::PartsMismatch,
                format!(
                    "part {part_number} must be {} bytes (bytes {}..={}), not {size}",
                    range.size, range.start, range.end
                ),
            ));
        }
        let part = StoredPart {
            part_number,
            etag: etag.to_string(),
            size,
        };
        self.store.record_part(current.id, &part).await?;
        self.publish(current.id).await;
        self.reload(current.id).await
    }
}
