//! Complete: check the named parts against the plan, move to `completing` and queue
//! the complete job. A completed upload answers again; a complete under way is joined.
use chrono::Utc;
use partway_entity::upload::UploadSizing;
use tracing::instrument;

use super::{effective_status, Accepted, App, AppError};
use crate::{
    auth::Caller,
    domain::{complete_parts, UploadStatus},
    jobs::{CompletePayload, JobKind},
};

impl App {
    /// `parts`: the parts the client names, or None for "what storage lists".
    #[instrument(skip_all, fields(upload = %token))]
    pub async fn complete(
        &self,
        caller: &Caller,
        token: &str,
        parts: Option<Vec<(u32, String)>>,
    ) -> Result<Accepted, AppError> {
        let current = self.owned_upload(caller, token).await?;
        let status = effective_status(&current, Utc::now());
        if !status.accepts_parts() {
            return self.join_complete(current).await;
        }
        let (parts, max_size) =
            match current.sizing {
                None => (complete_parts(parts, current.total_parts as u32)?, None),
                Some(UploadSizing::Multipart) => (
                    crate::domain::uppy::unsized_complete_parts(parts)?,
                    caller.browser.as_ref().and_then(|b| b.max_file_size),
                ),
                Some(UploadSizing::Post) => return Err(AppError::client(
                    crate::domain::ErrorCode::UploadNotReady,
                    "this upload is one object sent by form POST: it completes when storage has it",
                )),
            };
        let payload = serde_json::to_value(CompletePayload { parts, max_size })
            .map_err(|e| AppError::Internal(e.to_string()))?;
        match self
            .accept_transition(
                current.id,
                UploadStatus::Completing,
                JobKind::Complete,
                payload,
            )
            .await?
        {
            Ok(accepted) => Ok(accepted),
            // A concurrent complete got there first: join it.
            Err(now) => self.join_complete(now).await,
        }
    }

    async fn join_complete(
        &self,
        upload: partway_entity::upload::Model,
    ) -> Result<Accepted, AppError> {
        self.join(
            upload,
            &[UploadStatus::Completed],
            UploadStatus::Completing,
            JobKind::Complete,
        )
        .await
    }
}
