//! One handler per job kind. Each is idempotent: a redelivered or retried job finds the
//! upload's status and storage's state and does only what is still missing.
use std::sync::Arc;

use partway_entity::upload;

use super::JobError;
use crate::{
    domain::{by_url_page, fill_page},
    metrics::count_presigned,
    ports::SharedStorage,
    usecases::App,
};

mod abort;
mod complete;
mod init;
mod resume;
mod uppy;
mod webhook;

impl App {
    /// Presigns `numbers` page by page, storing each page in the cache as soon as it
    /// exists and counting it in `urls_ready`, so clients can start long before the
    /// last page.
    async fn presign_into_cache(
        &self,
        upload: &upload::Model,
        storage: &SharedStorage,
        numbers: &[u32],
        already_ready: u32,
    ) -> Result<(), JobError> {
        let storage_upload_id = upload
            .storage_upload_id
            .clone()
            .ok_or_else(|| JobError::Fatal("no storage upload id".into()))?;
        let total = upload.total_parts as u32;
        let mut ready = already_ready;
        for (page, wanted) in by_url_page(numbers) {
            let signed = storage
                .presign_upload_parts(
                    &upload.file_key,
                    &storage_upload_id,
                    &wanted,
                    self.settings.url_ttl,
                )
                .await?;
            count_presigned(signed.len());
            let mut slots = self
                .cache
                .url_page(upload.id, page)
                .await
                .map(Arc::unwrap_or_clone)
                .unwrap_or_default();
            fill_page(&mut slots, total, page, &wanted, signed);
            self.cache
                .put_url_page(upload.id, page, Arc::new(slots))
                .await;
            ready = (ready + wanted.len() as u32).min(total);
            self.store.set_urls_ready(upload.id, ready).await?;
            self.publish(upload.id).await;
        }
        Ok(())
    }
}
