//! An owner's uploads, newest first, a page at a time behind an opaque cursor.
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

/// `{seconds}.{nanoseconds}_{id}` of the last row: every string of
/// [`CURSOR_PATTERN`] decodes (the spec declares the pattern), and one this server
/// issued names exactly where the page ended.
pub(crate) fn encode_cursor(created_at: DateTime<Utc>, id: Uuid) -> String {
    format!(
        "{}.{:09}_{}",
        created_at.timestamp(),
        created_at.timestamp_subsec_nanos(),
        id.simple()
    )
}

/// What `cursor=` must look like (openapi.yaml says the same; a test checks).
pub const CURSOR_PATTERN: &str = r"^[0-9]{1,12}\.[0-9]{9}_[0-9a-f]{32}$";

pub(crate) fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (at, id) = cursor.split_once('_')?;
    let (secs, nanos) = at.split_once('.')?;
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(secs, 12) || nanos.len() != 9 || !digits(nanos, 9) {
        return None;
    }
    if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some((
        DateTime::from_timestamp(secs.parse().ok()?, nanos.parse().ok()?)?,
        Uuid::parse_str(id).ok()?,
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
        let mut filter = UploadFilter {
            browser_token: caller.browser_token_id(),
            ..UploadFilter::default()
        };
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

#[cfg(test)]
mod cursor_tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_every_well_formed_one_decodes() {
        let at = DateTime::from_timestamp(1_764_400_000, 123_456_789).unwrap();
        let id = Uuid::new_v4();
        let cursor = encode_cursor(at, id);
        assert_eq!(decode_cursor(&cursor), Some((at, id)));
        // The extremes of CURSOR_PATTERN still name a point in time.
        for c in [
            format!("0.000000000_{}", "0".repeat(32)),
            format!("{}.{}_{}", "9".repeat(12), "9".repeat(9), "f".repeat(32)),
        ] {
            assert!(decode_cursor(&c).is_some(), "{c}");
        }
        for bad in [
            "",
            "1_2",
            "1.5_abc",
            &format!("1.000000000_{}", "g".repeat(32)),
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
