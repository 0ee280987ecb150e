//! One upload as its owner sees it: the row, the cached status document that absorbs
//! polling, and a completed upload's URLs.
use std::sync::Arc;

use partway_entity::upload;

use super::{App, AppError};
use crate::{
    auth::Caller,
    domain::{ResumeToken, UploadStatus},
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
