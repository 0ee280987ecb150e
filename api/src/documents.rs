//! The answers built from an upload row: the status document and the results of init,
//! resume and complete. One place, so every route and the event stream agree.
use chrono::Utc;
use partway_core::{
    domain::shown_last_error,
    usecases::{
        effective_status,
        parts::{missing_parts, progress_of},
        size_known, token_of,
    },
    App,
};
use partway_entity::upload;

use crate::{error::ApiError, models::*};

type ApiResult<T> = Result<T, ApiError>;

/// The status document of an upload; `downloadUrl` is presigned afresh.
pub async fn status_doc(app: &App, upload: &upload::Model) -> ApiResult<StatusDoc> {
    let status = effective_status(upload, Utc::now());
    let known = size_known(upload);
    let (url, download_url) = match app.completed_urls(upload).await? {
        Some((url, download_url)) => (Some(url), Some(download_url)),
        None => (None, None),
    };
    Ok(StatusDoc {
        success: true,
        resume_token: token_of(upload).to_string(),
        status: status.as_str().to_string(),
        filename: upload.filename.clone(),
        content_type: upload.content_type.clone(),
        file_size: known.then_some(upload.file_size as u64),
        part_size: known.then_some(upload.part_size as u64),
        total_parts: known.then_some(upload.total_parts as u32),
        file_key: upload.file_key.clone(),
        provider: upload.provider.to_string(),
        metadata: serde_json::from_value(upload.metadata.clone()).unwrap_or_default(),
        progress: progress_doc(progress_of(upload), size_known(upload)),
        urls_ready: upload.urls_ready.max(0) as u32,
        created_at: rfc3339(upload.created_at),
        updated_at: rfc3339(upload.updated_at),
        expires_at: rfc3339(upload.expires_at),
        completed_at: upload.completed_at.map(rfc3339),
        url,
        download_url,
        // The text comes from the code (DESIGN §7), not from the row's message column.
        last_error: upload.last_error_code.as_deref().map(|stored| {
            let (code, message) = shown_last_error(stored);
            LastErrorDoc {
                code: code.as_str().to_string(),
                message: message.to_string(),
            }
        }),
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
