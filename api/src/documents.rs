//! The answers built from an upload row: the status document and the results of init,
//! resume and complete. One place, so every route and the event stream agree.
use chrono::Utc;
use partway_core::{
    usecases::{
        parts::{missing_parts, progress_of},
        size_known,
        status::{progress_doc, status_document},
        token_of,
    },
    App,
};
use partway_entity::upload;

use crate::{error::ApiError, models::*};

type ApiResult<T> = Result<T, ApiError>;

/// The status document of an upload; `downloadUrl` is presigned afresh.
pub async fn status_doc(app: &App, upload: &upload::Model) -> ApiResult<StatusDoc> {
    let (url, download_url) = match app.completed_urls(upload).await? {
        Some((url, download_url)) => (Some(url), Some(download_url)),
        None => (None, None),
    };
    Ok(StatusDoc {
        url,
        download_url,
        ..status_document(upload, Utc::now())
    })
}

/// Init's 200: every part URL.
pub async fn init_result(app: &App, upload: &upload::Model) -> ApiResult<InitResult> {
    let numbers: Vec<u32> = (1..=upload.total_parts as u32).collect();
    let parts = app.part_views(upload, &numbers).await?;
    Ok(InitResult {
        success: true,
        resume_token: token_of(upload).to_string(),
        upload_id: upload.storage_upload_id.clone().unwrap_or_default(),
        file_key: upload.file_key.clone(),
        part_urls: parts.into_iter().map(part_doc).collect(),
        total_parts: upload.total_parts as u32,
        part_size: upload.part_size as u64,
        file_size: upload.file_size as u64,
        expires_in: app.settings().url_ttl.as_secs(),
        expires_at: rfc3339(upload.expires_at),
        status: upload.status.as_str().into(),
    })
}

/// Resume's 200: what storage holds, and URLs for the rest.
pub async fn resume_result(app: &App, upload: &upload::Model) -> ApiResult<ResumeResult> {
    let uploaded = app.uploaded_parts(upload.id).await?;
    let remaining = missing_parts(upload.total_parts as u32, &uploaded);
    let parts = app.part_views(upload, &remaining).await?;
    Ok(ResumeResult {
        success: true,
        resume_token: token_of(upload).to_string(),
        upload_id: upload.storage_upload_id.clone().unwrap_or_default(),
        file_key: upload.file_key.clone(),
        filename: upload.filename.clone(),
        total_parts: upload.total_parts as u32,
        part_size: upload.part_size as u64,
        uploaded_parts: uploaded
            .into_iter()
            .map(|p| UploadedPartDoc {
                part_number: p.part_number,
                etag: p.etag,
                size: p.size,
            })
            .collect(),
        remaining_parts: parts.into_iter().map(part_doc).collect(),
        progress: progress_doc(progress_of(upload), size_known(upload)),
    })
}

/// Complete's 200 (also for a repeat).
pub async fn complete_result(app: &App, upload: &upload::Model) -> ApiResult<CompleteResult> {
    let (url, download_url) = app.completed_urls(upload).await?.unwrap_or_default();
    Ok(CompleteResult {
        success: true,
        resume_token: token_of(upload).to_string(),
        status: upload.status.as_str().into(),
        url,
        download_url,
        file_key: upload.file_key.clone(),
        filename: upload.filename.clone(),
        file_size: upload.file_size as u64,
        etag: upload.etag.clone().unwrap_or_default(),
        location: upload.location.clone().unwrap_or_default(),
        provider: upload.provider.to_string(),
        bucket: upload.bucket.clone(),
        total_parts: upload.total_parts as u32,
    })
}
