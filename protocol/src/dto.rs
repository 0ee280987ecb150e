//! The request and response documents of the HTTP contract (camelCase JSON).
//!
//! Each derives `poem_openapi::Object`, which is the spec's schema (the doc comments are
//! its descriptions), and serde, so a client can send and parse them. The two must put
//! the same JSON on the wire: a response field that `#[oai(skip_serializing_if_is_none)]`
//! leaves out is also `skip_serializing_if` for serde, any other `None` is `null` in
//! both (the tests compare them). Request bodies are parsed by serde on the server; their
//! `None` fields are left out rather than sent as `null`.
use std::{collections::BTreeMap, sync::Arc};

use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};

use crate::UploadStatus;

#[cfg(test)]
mod tests;

/// Start an upload. Storage credentials are only needed when the server has none for
/// the provider (bring-your-own bucket); they are encrypted at rest and never returned.
#[derive(Object, Serialize, Deserialize, Default)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct InitRequest {
    /// Original file name: no path separators or control characters, not `.` or
    /// `..`, not blank, at most 255 bytes (UTF-8).
    #[oai(validator(
        min_length = 1,
        max_length = 255,
        custom = "crate::pattern::Matches(&crate::pattern::FILENAME)"
    ))]
    pub filename: String,
    /// Size in bytes, 1 ..= the provider's maximum (S3 53,687,091,200,000; R2
    /// 5,497,558,138,880).
    #[oai(validator(minimum(value = "1"), maximum(value = "53687091200000")))]
    pub file_size: u64,
    /// A media type: at most 255 printable ASCII characters, not blank (it becomes the
    /// object's `Content-Type` header).
    #[oai(validator(
        min_length = 1,
        max_length = 255,
        custom = "crate::pattern::Matches(&crate::pattern::CONTENT_TYPE)"
    ))]
    pub content_type: String,
    /// `S3` or `R2` (either case); empty or absent: the server's default.
    #[oai(validator(custom = "crate::pattern::Matches(&crate::pattern::PROVIDER)"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Bytes per part (5 MiB ..= 5 GiB, at most 10,000 parts); default: the smallest
    /// whole MiB that fits.
    #[oai(validator(minimum(value = "5242880"), maximum(value = "5368709120")))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
    /// String → string, at most 2 KiB in all; stored as object metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(write_only)]
    pub s3_secret_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// S3-compatible endpoint URL (MinIO, …): http(s); the outbound guard decides
    /// whether it may be reached (DESIGN §7).
    #[oai(validator(custom = "crate::pattern::Matches(&crate::pattern::S3_ENDPOINT)"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r2_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(write_only)]
    pub r2_secret_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r2_account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r2_bucket: Option<String>,
}

/// Names an upload by its resume token.
#[derive(Object, Serialize, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// `mpu_<uuid v4>` from init.
    #[oai(validator(custom = "crate::pattern::Matches(&crate::pattern::RESUME_TOKEN)"))]
    pub resume_token: String,
}

#[derive(Object, Serialize, Deserialize, Clone)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CompletePart {
    /// 1 ..= 10000, and at most the upload's totalParts.
    #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
    pub part_number: u32,
    /// The ETag header storage returned for the part's PUT (quotes optional); must
    /// have a character other than white space and `"`.
    #[oai(validator(custom = "crate::pattern::Matches(&crate::pattern::ETAG)"))]
    pub etag: String,
}

#[derive(Object, Serialize, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CompleteRequest {
    /// `mpu_<uuid v4>` from init.
    #[oai(validator(custom = "crate::pattern::Matches(&crate::pattern::RESUME_TOKEN)"))]
    pub resume_token: String,
    /// Every part with its ETag; omit to complete with what storage lists.
    #[oai(validator(min_items = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<CompletePart>>,
}

/// What the client got back from storage for one part's PUT.
#[derive(Object, Serialize, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct PartReport {
    /// Must have a character other than white space and `"`; at most 128 characters
    /// once quotes and spaces around it are removed.
    #[oai(validator(custom = "crate::pattern::Matches(&crate::pattern::ETAG)"))]
    pub etag: String,
    /// The part's size in bytes, as the part's `size` in its part document.
    #[oai(validator(minimum(value = "0"), maximum(value = "5368709120")))]
    pub size: u64,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ProgressDoc {
    pub uploaded: u32,
    /// null while the upload's size is unknown (an upload made through the Uppy routes,
    /// until complete).
    pub total: Option<u32>,
    /// null while the size is unknown.
    pub percentage: Option<f64>,
    pub uploaded_bytes: u64,
    /// null while the size is unknown.
    pub total_bytes: Option<u64>,
    /// null while the size is unknown.
    pub bytes_percentage: Option<f64>,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct LastErrorDoc {
    pub code: String,
    pub message: String,
}

/// The status document of one upload.
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct StatusDoc {
    pub success: bool,
    pub resume_token: String,
    /// initiating, active, paused, completing, completed, failed, aborting, aborted, expired.
    pub status: String,
    pub filename: String,
    pub content_type: String,
    /// null while the size is unknown (an upload made through the Uppy routes sends
    /// no size: known at complete).
    pub file_size: Option<u64>,
    /// null while the size is unknown.
    pub part_size: Option<u64>,
    /// null while the size is unknown.
    pub total_parts: Option<u32>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Presigned GET, fresh on every read.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastErrorDoc>,
}

impl StatusDoc {
    /// `status` as the contract's enum; `None` for a status this version does not know.
    pub fn upload_status(&self) -> Option<UploadStatus> {
        self.status.parse().ok()
    }
}

/// A part to upload: a plain `PUT` of bytes `start..=end` to `url` stores it and
/// answers its `ETag` header.
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct PartDoc {
    pub part_number: u32,
    // Shared with the server's cached URL page (`Arc`), so large answers don't copy
    // every URL; its schema is a string's.
    pub url: Arc<String>,
    pub size: u64,
    pub start: u64,
    pub end: u64,
    pub expires_at: String,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
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

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct UploadedPartDoc {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
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

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
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

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct AbortResult {
    pub success: bool,
    pub resume_token: String,
    pub status: String,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct PartsPage {
    pub success: bool,
    pub parts: Vec<PartDoc>,
    /// Pass as `after` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u32>,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ProgressResult {
    pub success: bool,
    pub progress: ProgressDoc,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct UploadList {
    pub success: bool,
    pub uploads: Vec<StatusDoc>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
pub struct HealthDoc {
    pub status: String,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Always false.
    pub success: bool,
    /// Machine-readable code, e.g. `UPLOAD_NOT_FOUND`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

/// `GET …/parts?state=`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum PartStateParam {
    Pending,
    Uploaded,
    All,
}

impl PartStateParam {
    pub fn as_str(self) -> &'static str {
        match self {
            PartStateParam::Pending => "pending",
            PartStateParam::Uploaded => "uploaded",
            PartStateParam::All => "all",
        }
    }
}

/// `GET /api/v1/uploads?status=`: the upload statuses.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum UploadStatusParam {
    Initiating,
    Active,
    Paused,
    Completing,
    Completed,
    Failed,
    Aborting,
    Aborted,
    Expired,
}

impl UploadStatusParam {
    pub fn as_str(self) -> &'static str {
        poem_openapi::types::ToJSON::to_json(&self)
            .and_then(|v| v.as_str().map(str::to_owned))
            .and_then(|s| UploadStatus::all().find(|st| st.as_str() == s))
            .map_or("", UploadStatus::as_str)
    }
}

/// Mint a browser token (DESIGN §5): a short-lived credential for a web page, scoped to
/// the uploads it creates.
#[derive(Object, Serialize, Deserialize, Default, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct BrowserTokenRequest {
    /// Seconds the token lives, 60 ..= 86400 (default 3600).
    #[oai(validator(minimum(value = "60"), maximum(value = "86400")))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// The largest `fileSize` an init with this token may declare (bytes).
    #[oai(validator(minimum(value = "1"), maximum(value = "53687091200000")))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<u64>,
    /// Media types an init may declare: exact (`application/pdf`) or a main type
    /// (`image/*`); absent: any. At most 32 entries.
    #[oai(validator(
        max_items = 32,
        custom = "crate::pattern::Matches(&crate::pattern::ALLOWED_CONTENT_TYPE)"
    ))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_content_types: Option<Vec<String>>,
    /// How many uploads the token may start, 1 ..= 1000000 (absent: no limit).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uploads: Option<u64>,
    /// Merged into the metadata of every upload made with the token, over the page's
    /// keys (the same rules as an init's metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// A name for lists: at most 128 printable ASCII characters.
    #[oai(validator(
        max_length = 128,
        custom = "crate::pattern::Matches(&crate::pattern::LABEL)"
    ))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A browser token as lists show it (never its secret).
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct BrowserTokenDoc {
    pub id: String,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    pub created_at: String,
    pub expires_at: String,
    /// How many uploads were started with the token.
    pub uploads_created: u64,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<u64>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_content_types: Option<Vec<String>>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uploads: Option<u64>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A new browser token: `token` is shown this once.
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct BrowserTokenCreated {
    pub success: bool,
    pub id: String,
    /// `pwb_…`: give it to the page; it is not stored and never shown again.
    pub token: String,
    pub expires_at: String,
    /// Seconds the token lives.
    pub expires_in: u64,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<u64>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_content_types: Option<Vec<String>>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uploads: Option<u64>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct BrowserTokenList {
    pub success: bool,
    /// The owner's live tokens (not revoked, not expired), newest first.
    pub tokens: Vec<BrowserTokenDoc>,
}

/// `DELETE /api/v1/browser-tokens/{id}`.
#[derive(Object, Serialize, Deserialize, Clone, Debug)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct BrowserTokenRevoked {
    pub success: bool,
    pub id: String,
    pub revoked: bool,
}
