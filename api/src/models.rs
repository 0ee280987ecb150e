//! Request and response documents of the HTTP contract (camelCase JSON).
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use partway_core::{
    domain::{ByoCredentials, ErrorCode, Progress},
    usecases::{InitInput, PartView},
};
use poem_openapi::Object;
use serde::Deserialize;

use crate::body::ContractBody;

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Start an upload. Storage credentials are only needed when the server has none for
/// the provider (bring-your-own bucket); they are encrypted at rest and never returned.
#[derive(Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct InitRequest {
    /// Original file name (no path separators).
    pub filename: String,
    /// Size in bytes, 1 ..= the provider's maximum.
    pub file_size: u64,
    pub content_type: String,
    /// `S3` or `R2`; default: the server's.
    #[serde(default)]
    pub provider: Option<String>,
    /// Bytes per part (5 MiB ..= 5 GiB, at most 10,000 parts); default: the smallest
    /// whole MiB that fits.
    #[serde(default)]
    pub part_size: Option<u64>,
    /// String → string, at most 2 KiB in all; stored as object metadata.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub s3_access_key: Option<String>,
    #[serde(default)]
    #[oai(write_only)]
    pub s3_secret_key: Option<String>,
    #[serde(default)]
    pub s3_bucket: Option<String>,
    #[serde(default)]
    pub s3_region: Option<String>,
    /// S3-compatible endpoint URL (MinIO, …).
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    #[serde(default)]
    pub r2_access_key: Option<String>,
    #[serde(default)]
    #[oai(write_only)]
    pub r2_secret_key: Option<String>,
    #[serde(default)]
    pub r2_account_id: Option<String>,
    #[serde(default)]
    pub r2_bucket: Option<String>,
}

impl ContractBody for InitRequest {
    fn missing_code(_field: &str) -> ErrorCode {
        ErrorCode::MissingRequiredFields
    }
    fn invalid_code(field: &str) -> ErrorCode {
        match field {
            "filename" => ErrorCode::InvalidFilename,
            "fileSize" => ErrorCode::InvalidFileSize,
            "partSize" => ErrorCode::InvalidPartSize,
            "metadata" => ErrorCode::InvalidMetadata,
            "provider" => ErrorCode::InvalidProvider,
            f if f.starts_with("s3") => ErrorCode::MissingS3Credentials,
            f if f.starts_with("r2") => ErrorCode::MissingR2Credentials,
            _ => ErrorCode::InvalidParameter,
        }
    }
}

impl InitRequest {
    pub fn into_input(self) -> InitInput {
        InitInput {
            filename: self.filename,
            file_size: self.file_size,
            content_type: self.content_type,
            provider: self.provider,
            part_size: self.part_size,
            metadata: self.metadata.unwrap_or_default(),
            credentials: ByoCredentials {
                s3_access_key: self.s3_access_key,
                s3_secret_key: self.s3_secret_key,
                s3_bucket: self.s3_bucket,
                s3_region: self.s3_region,
                s3_endpoint: self.s3_endpoint,
                r2_access_key: self.r2_access_key,
                r2_secret_key: self.r2_secret_key,
                r2_account_id: self.r2_account_id,
                r2_bucket: self.r2_bucket,
            },
        }
    }
}

/// Names an upload by its resume token.
#[derive(Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// `mpu_<uuid>` from init.
    pub resume_token: String,
}

impl ContractBody for TokenRequest {
    fn missing_code(_field: &str) -> ErrorCode {
        ErrorCode::MissingResumeToken
    }
    fn invalid_code(_field: &str) -> ErrorCode {
        ErrorCode::MissingResumeToken
    }
}

#[derive(Object, Deserialize, Clone)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CompletePart {
    pub part_number: u32,
    /// The ETag header storage returned for the part's PUT (quotes optional).
    pub etag: String,
}

#[derive(Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CompleteRequest {
    pub resume_token: String,
    /// Every part with its ETag; omit to complete with what storage lists.
    #[serde(default)]
    pub parts: Option<Vec<CompletePart>>,
}

impl ContractBody for CompleteRequest {
    fn missing_code(field: &str) -> ErrorCode {
        match field {
            "resumeToken" => ErrorCode::MissingResumeToken,
            _ => ErrorCode::InvalidParts,
        }
    }
    fn invalid_code(field: &str) -> ErrorCode {
        match field {
            "resumeToken" => ErrorCode::MissingResumeToken,
            _ => ErrorCode::InvalidParts,
        }
    }
}

/// What the client got back from storage for one part's PUT.
#[derive(Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct PartReport {
    pub etag: String,
    pub size: u64,
}

impl ContractBody for PartReport {
    fn missing_code(_field: &str) -> ErrorCode {
        ErrorCode::InvalidParts
    }
    fn invalid_code(_field: &str) -> ErrorCode {
        ErrorCode::InvalidParts
    }
}

#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ProgressDoc {
    pub uploaded: u32,
    pub total: u32,
    pub percentage: f64,
    pub uploaded_bytes: u64,
    pub total_bytes: u64,
    pub bytes_percentage: f64,
}

impl From<Progress> for ProgressDoc {
    fn from(p: Progress) -> Self {
        Self {
            uploaded: p.uploaded,
            total: p.total,
            percentage: p.percentage,
            uploaded_bytes: p.uploaded_bytes,
            total_bytes: p.total_bytes,
            bytes_percentage: p.bytes_percentage,
        }
    }
}

#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct LastErrorDoc {
    pub code: String,
    pub message: String,
}

/// The status document of one upload.
#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct StatusDoc {
    pub success: bool,
    pub resume_token: String,
    /// initiating, active, paused, completing, completed, failed, aborting, aborted, expired.
    pub status: String,
    pub filename: String,
    pub content_type: String,
    pub file_size: u64,
    pub part_size: u64,
    pub total_parts: u32,
    pub file_key: String,
    pub provider: String,
    /// The metadata given at init.
    pub metadata: BTreeMap<String, String>,
    pub progress: ProgressDoc,
    /// Parts that have a presigned URL ready or are already uploaded; equal to
    /// totalParts when every part you still need has a URL.
    pub urls_ready: u32,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
    #[oai(skip_serializing_if_is_none)]
    pub completed_at: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub url: Option<String>,
    /// Presigned GET, fresh on every read.
    #[oai(skip_serializing_if_is_none)]
    pub download_url: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<LastErrorDoc>,
}

/// A part to upload: a plain `PUT` of bytes `start..=end` to `url` stores it and
/// answers its `ETag` header.
#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PartDoc {
    pub part_number: u32,
    pub url: String,
    pub size: u64,
    pub start: u64,
    pub end: u64,
    pub expires_at: String,
}

impl From<PartView> for PartDoc {
    fn from(p: PartView) -> Self {
        Self {
            part_number: p.part_number,
            url: p.url,
            size: p.size,
            start: p.start,
            end: p.end,
            expires_at: rfc3339(p.expires_at),
        }
    }
}

#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct InitResult {
    pub success: bool,
    pub resume_token: String,
    /// Storage's multipart UploadId.
    pub upload_id: String,
    pub file_key: String,
    pub part_urls: Vec<PartDoc>,
    pub total_parts: u32,
    pub part_size: u64,
    pub file_size: u64,
    /// Seconds the part URLs stay valid.
    pub expires_in: u64,
    /// When the upload itself expires.
    pub expires_at: String,
    pub status: String,
}

#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UploadedPartDoc {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
}

#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ResumeResult {
    pub success: bool,
    pub resume_token: String,
    pub upload_id: String,
    pub file_key: String,
    pub filename: String,
    pub total_parts: u32,
    pub part_size: u64,
    /// What storage lists, with storage's sizes.
    pub uploaded_parts: Vec<UploadedPartDoc>,
    /// Every part still missing, with a fresh URL.
    pub remaining_parts: Vec<PartDoc>,
    pub progress: ProgressDoc,
}

#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct CompleteResult {
    pub success: bool,
    pub resume_token: String,
    pub status: String,
    pub url: String,
    pub download_url: String,
    pub file_key: String,
    pub filename: String,
    pub file_size: u64,
    pub etag: String,
    pub location: String,
    pub provider: String,
    pub bucket: String,
    pub total_parts: u32,
}

#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct AbortResult {
    pub success: bool,
    pub resume_token: String,
    pub status: String,
}

#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PartsPage {
    pub success: bool,
    pub parts: Vec<PartDoc>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<u32>,
}

#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ProgressResult {
    pub success: bool,
    pub progress: ProgressDoc,
}

#[derive(Object, Clone, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UploadList {
    pub success: bool,
    pub uploads: Vec<StatusDoc>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Object, Clone, Debug)]
pub struct HealthDoc {
    pub status: String,
}
