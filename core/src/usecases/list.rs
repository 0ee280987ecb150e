//! An owner's uploads, newest first, a page at a time behind an opaque cursor.
use base64::Engine;
use chrono::{DateTime, Utc};
use partway_entity::upload;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{App, AppError};
use crate::{
    auth::Caller,
    domain::{validate_metadata, ErrorCode, PageLimit, UploadStatus},
    store::UploadFilter,
};

fn encode_cursor(created_at: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{id}", created_at.to_rfc3339()))
}

fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, id) = text.split_once('|')?;
    Some((
        DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
        id.parse().ok()?,
    ))
}

/// `key:value` → (key, value), with the key held to the metadata key rules.
fn parse_metadata_filter(filter: &str) -> Result<(String, String), AppError> {
    let (key, value) = filter.split_once(':').ok_or_else(|| {
        AppError::client(
            ErrorCode::InvalidParameter,
            "metadata must be key:value, e.g. metadata=fingerprint:3f2a9c",
        )
    })?;
    let entry = BTreeMap::from([(key.to_string(), value.to_string())]);
    validate_metadata(&entry)
        .map_err(|e| AppError::client(ErrorCode::InvalidParameter, e.message.clone()))?;
    Ok((key.to_string(), value.to_string()))
}

impl App {
    /// The caller's uploads, newest first; `metadata` is `key:value`, an exact match on
    /// one metadata entry (how a client finds the upload of a file it fingerprinted).
    pub async fn list_uploads(
        &self,
        caller: &Caller,
        status: Option<&str>,
        metadata: Option<&str>,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<(Vec<upload::Model>, Option<String>), AppError> {
        let mut filter = UploadFilter::default();
        if let Some(entry) = metadata.filter(|m| !m.is_empty()) {
            filter.metadata = Some(parse_metadata_filter(entry)?);
        }
        if let Some(status) = status.filter(|s| !s.is_empty()) {
            let parsed: UploadStatus = status.parse().map_err(|_| {
                AppError::client(
                    ErrorCode::InvalidParameter,
                    format!("status must be one of the upload statuses, not {status:?}"),
                )
            })?;
            filter.status = Some(parsed);
        }
        if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
            filter.after = Some(decode_cursor(cursor).ok_or_else(|| {
                AppError::client(
                    ErrorCode::InvalidParameter,
                    "cursor is not one this server issued",
                )
            })?);
        }
        let limit = limit.get() as usize;
        let mut rows = self
            .store
            .list_uploads(caller.owner_id, &filter, limit as u64 + 1)
            .await?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| encode_cursor(r.created_at, r.id))
        } else {
            None
        };
        Ok((rows, next))
    }
}
