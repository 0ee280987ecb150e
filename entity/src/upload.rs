use partway_protocol::{Provider, UploadStatus};
use sea_orm::entity::prelude::*;

/// One multipart upload. `id` is the uuid of the resume token (`mpu_<id>`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "uploads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    pub provider: Provider,
    pub bucket: String,
    pub region: Option<String>,
    /// Storage endpoint for bring-your-own S3-compatible storage (None: server's).
    pub endpoint: Option<String>,
    /// Fixed at init, before storage is called, so a retried init reuses it.
    pub file_key: String,
    /// Storage's multipart UploadId; None until the init job created it.
    pub storage_upload_id: Option<String>,
    pub filename: String,
    pub content_type: String,
    pub file_size: i64,
    pub part_size: i64,
    pub total_parts: i32,
    pub status: UploadStatus,
    /// How many part URLs the presign step has produced (grows in batches).
    pub urls_ready: i32,
    /// Progress counters, kept equal to the rows of `upload_parts`.
    pub uploaded_parts: i32,
    pub uploaded_bytes: i64,
    /// User metadata as a JSON object of strings.
    pub metadata: Json,
    /// Bring-your-own storage credentials, AES-256-GCM sealed (nonce ‖ ciphertext).
    pub credentials_sealed: Option<Vec<u8>>,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    /// Final object's ETag and location, set at completion.
    pub etag: Option<String>,
    pub location: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    /// The browser token the upload was made with (None: an API key); such a token
    /// sees only its own uploads.
    pub browser_token_id: Option<Uuid>,
    /// None: the size was declared at init. Otherwise the size is unknown until
    /// complete (Uppy's Companion routes), and `file_size`, `part_size` and
    /// `total_parts` are 0 until then.
    pub sizing: Option<UploadSizing>,
}

/// How an upload whose size is unknown at init sends its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum UploadSizing {
    /// A multipart upload whose parts are signed one by one on demand.
    #[sea_orm(string_value = "multipart")]
    Multipart,
    /// One object sent by a browser form POST with a presigned POST policy.
    #[sea_orm(string_value = "post")]
    Post,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
