//! One upload as its owner sees it: the row, the cached status document that absorbs
//! polling, and a completed upload's URLs.
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use partway_entity::upload;
use partway_protocol::dto::{LastErrorDoc, ProgressDoc, StatusDoc};

use super::{effective_status, parts::progress_of, size_known, token_of, App, AppError};
use crate::{
    auth::Caller,
    domain::{shown_last_error, Progress, ResumeToken, UploadStatus},
};

impl App {
    pub async fn get(&self, caller: &Caller, token: &str) -> Result<upload::Model, AppError> {
        self.owned_upload(caller, token).await
    }

    /// A status snapshot from the cache, if there is one for this caller's upload.
    /// Stored as `owner id:browser token id` (the token id empty for an API key's
    /// upload), newline, document, so another owner, or another token, never gets it.
    pub async fn cached_status(&self, caller: &Caller, token: &str) -> Option<String> {
        let id = ResumeToken::parse(token)?.uuid();
        let mut raw = self.cache.snapshot(id).await?;
        let newline = raw.find('\n')?;
        let (owner, browser) = raw[..newline].split_once(':')?;
        let token_matches = match caller.browser_token_id() {
            Some(t) => browser == t.to_string(),
            None => true,
        };
        if owner != caller.owner_id.to_string() || !token_matches {
            return None;
        }
        raw.drain(..=newline);
        Some(raw)
    }

    /// Keeps a status document for the next polls (dropped on every change). A
    /// completed upload's document carries a fresh download URL each time: not kept.
    pub async fn remember_status(&self, upload: &upload::Model, doc: String) {
        if upload.status != UploadStatus::Completed {
            self.cache
                .put_snapshot(
                    upload.id,
                    format!(
                        "{}:{}\n{doc}",
                        upload.owner_id,
                        upload
                            .browser_token_id
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    ),
                )
                .await;
        }
    }

    /// A completed upload's object URL and a fresh download URL (from one storage handle).
    pub async fn completed_urls(
        &self,
        upload: &upload::Model,
    ) -> Result<Option<(String, String)>, AppError> {
        if upload.status != UploadStatus::Completed {
            return Ok(None);
        }
        let storage = self.storage_for(upload)?;
        let download = storage
            .presign_get(
                &upload.file_key,
                self.settings.download_url_ttl,
                &crate::domain::attachment_disposition(&upload.filename),
            )
            .await?;
        Ok(Some((
            storage.object_url(&upload.file_key),
            Arc::unwrap_or_clone(download.url),
        )))
    }
}

/// A time as the contract writes it (RFC 3339, milliseconds, `Z`).
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Progress as the documents show it; `known`: whether the upload's size is known
/// (totals and percentages are null until it is: DESIGN §5).
pub fn progress_doc(p: Progress, known: bool) -> ProgressDoc {
    ProgressDoc {
        uploaded: p.uploaded,
        total: known.then_some(p.total),
        percentage: known.then_some(p.percentage),
        uploaded_bytes: p.uploaded_bytes,
        total_bytes: known.then_some(p.total_bytes),
        bytes_percentage: known.then_some(p.bytes_percentage),
    }
}

/// The status document of an upload at `now`, without the completed object's `url` and
/// `downloadUrl`: the status route adds both (the download URL presigned afresh), an
/// event only `url`. One function, so every route and every event agree. Never
/// credentials.
pub fn status_document(upload: &upload::Model, now: DateTime<Utc>) -> StatusDoc {
    let known = size_known(upload);
    StatusDoc {
        success: true,
        resume_token: token_of(upload).to_string(),
        status: effective_status(upload, now).as_str().to_string(),
        filename: upload.filename.clone(),
        content_type: upload.content_type.clone(),
        file_size: known.then_some(upload.file_size.max(0) as u64),
        part_size: known.then_some(upload.part_size.max(0) as u64),
        total_parts: known.then_some(upload.total_parts.max(0) as u32),
        file_key: upload.file_key.clone(),
        provider: upload.provider.to_string(),
        metadata: serde_json::from_value(upload.metadata.clone()).unwrap_or_default(),
        progress: progress_doc(progress_of(upload), known),
        urls_ready: upload.urls_ready.max(0) as u32,
        created_at: rfc3339(upload.created_at),
        updated_at: rfc3339(upload.updated_at),
        expires_at: rfc3339(upload.expires_at),
        completed_at: upload.completed_at.map(rfc3339),
        url: None,
        download_url: None,
        // The text comes from the code (DESIGN §7), not from the row's message column.
        last_error: upload.last_error_code.as_deref().map(|stored| {
            let (code, message) = shown_last_error(stored);
            LastErrorDoc {
                code: code.as_str().to_string(),
                message: message.to_string(),
            }
        }),
    }
}
