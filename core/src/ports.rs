//! The ports: every external part sits behind one of these traits. The embedded mode
//! wires in-process implementations; the distributed mode wires RabbitMQ and Redis.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

/// A part as storage lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPart {
    pub part_number: u32,
    /// Without quotes.
    pub etag: String,
    pub size: u64,
}

/// What storage answered to a successful complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedObject {
    pub etag: String,
    pub location: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The multipart upload does not exist (aborted, completed, or never created).
    #[error("the multipart upload no longer exists")]
    NoSuchUpload,
    /// Storage rejected the parts at completion (InvalidPart, InvalidPartOrder,
    /// EntityTooSmall); the message is storage's reason, safe to show.
    #[error("{0}")]
    InvalidParts(String),
    /// Storage refused the request for good (credentials, bucket, permissions).
    /// The message is storage's error code and text, never our secrets.
    #[error("storage refused the request: {0}")]
    Rejected(String),
    /// Network trouble, timeouts, 5xx: worth retrying.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
}

/// A presigned URL and when it stops working.
///
/// The text is shared (`Arc`): a cached page, the part list built from it and the
/// answer written from that list hold one copy of a 10,000-part upload's URLs, not
/// three (issue 11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignedUrl {
    pub url: Arc<String>,
    pub expires_at: DateTime<Utc>,
}

/// One bucket at one provider, with the credentials to use it.
#[async_trait]
pub trait ObjectStorage: Send + Sync {
    /// Starts a multipart upload, or returns the one already open on `key` (the key
    /// is unique per upload, so an open upload there is ours from an earlier try).
    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, StorageError>;
    /// Presigns UploadPart for each part number, signing only the host.
    async fn presign_upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        part_numbers: &[u32],
        expires_in: Duration,
    ) -> Result<Vec<PresignedUrl>, StorageError>;
    /// Every part storage holds, following ListParts pagination to the end.
    async fn list_parts(&self, key: &str, upload_id: &str)
        -> Result<Vec<StoredPart>, StorageError>;
    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<CompletedObject, StorageError>;
    /// Succeeds when the upload is already gone.
    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StorageError>;
    /// Size and ETag of a stored object, None when absent.
    async fn head_object(&self, key: &str) -> Result<Option<(u64, String)>, StorageError>;
    /// Presigns GetObject; the answer carries `content_disposition` as its
    /// `Content-Disposition` (`response-content-disposition`, signed).
    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
        content_disposition: &str,
    ) -> Result<PresignedUrl, StorageError>;
    /// The object's plain (unsigned) URL.
    fn object_url(&self, key: &str) -> String;
}

/// Makes the storage handle of a target: S3 over the network in production, an
/// in-memory double in use-case tests (`testing`).
pub trait StorageFactory: Send + Sync {
    /// Storage the operator configured: trusted.
    fn storage(&self, target: &crate::storage::StorageTarget) -> SharedStorage;

    /// A bucket a client brought: every connection it opens resolves host names through
    /// `guard`, which refuses forbidden answers. Doubles without a network ignore it.
    fn client_storage(
        &self,
        target: &crate::storage::StorageTarget,
        guard: &Arc<crate::outbound::OutboundPolicy>,
    ) -> SharedStorage {
        let _ = guard;
        self.storage(target)
    }
}

/// Something happened to an upload: pollers waiting on it look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEvent {
    pub upload_id: Uuid,
}

/// One page of part URLs (slot `n % 1000`); `None` where none is signed yet.
pub type UrlPage = Vec<Option<PresignedUrl>>;

/// Per-upload progress and presigned-URL pages, plus change notifications.
/// A cache: every read may miss, and callers fall back to the database.
#[async_trait]
pub trait ProgressCache: Send + Sync {
    /// Pages are shared (`Arc`): a page of 1,000 URLs can weigh a megabyte, and a read
    /// must not copy it.
    async fn put_url_page(&self, upload_id: Uuid, page: u32, urls: Arc<UrlPage>);
    async fn url_page(&self, upload_id: Uuid, page: u32) -> Option<Arc<UrlPage>>;
    /// A serialized status snapshot (what a status poll answers), kept briefly.
    async fn put_snapshot(&self, upload_id: Uuid, snapshot: String);
    async fn snapshot(&self, upload_id: Uuid) -> Option<String>;
    /// Drops everything cached for the upload (URL pages and snapshot).
    async fn forget(&self, upload_id: Uuid);
    /// The upload changed: drops its snapshot and tells every subscriber.
    async fn publish(&self, event: UploadEvent);
    /// Receives the events of one upload from now on.
    async fn subscribe(&self, upload_id: Uuid) -> broadcast::Receiver<UploadEvent>;
}

/// How one attempt at a job ended, for the queue that delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRun {
    /// Done, given up earlier, or held by another worker: nothing more to do here.
    Settled,
    /// Failed for now; the row is pending again and due after this delay.
    RetryAfter(Duration),
    /// Retries exhausted; the upload shows the error. Keep the message for inspection.
    GaveUp(String),
}

/// Hands committed job rows to workers.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// New job rows were committed: wake whatever moves them on (the in-process runner,
    /// or the outbox relay). The rows are the queue, so there is nothing to pass.
    async fn wake(&self);
    /// Whether the queue can take work (for /readyz).
    async fn is_ready(&self) -> bool;
}

pub type SharedStorage = Arc<dyn ObjectStorage>;
