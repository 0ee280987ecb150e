//! The `s3s::S3` implementation: object and bucket operations go to
//! `s3s_fs::FileSystem`; multipart uploads are implemented here over
//! [`MultipartStore`] so that they behave like S3 (ETags, ordering,
//! pagination, validation before completion, persistence across restarts).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt as _;
use md5::{Digest as _, Md5};
use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;
use tokio::io::AsyncWriteExt as _;
use tracing::debug;
use uuid::Uuid;

use crate::layout::{self, ObjectAttributes};
use crate::multipart::{now_unix_ms, MultipartStore, StoredPart, UploadState};

/// S3's limits.
pub(crate) const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub(crate) const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
const MAX_LIST: i32 = 1_000;
const MAX_KEY_BYTES: usize = 1024;
/// Read size of GetObject's body stream.
const READ_CHUNK: usize = 64 * 1024;

const WRITE_BUFFER: usize = 1024 * 1024;

pub(crate) struct Backend {
    fs: FileSystem,
    store: Arc<MultipartStore>,
    root: std::path::PathBuf,
}

impl Backend {
    pub fn new(fs: FileSystem, store: MultipartStore, root: &Path) -> Self {
        Self {
            fs,
            store: Arc::new(store),
            root: root.to_owned(),
        }
    }

    fn bucket_exists(&self, bucket: &str) -> bool {
        self.root.join(bucket).is_dir()
    }

    fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.bucket_exists(bucket) {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }

    /// Loads an upload and checks it belongs to `bucket/key`.
    async fn load_upload(
        &self,
        upload_id: &str,
        bucket: &str,
        key: &str,
    ) -> S3Result<(Uuid, UploadState)> {
        let id = parse_upload_id(upload_id)?;
        let store = Arc::clone(&self.store);
        let state = blocking(move || store.load(id)).await?;
        match state {
            Some(state) if state.bucket == bucket && state.key == key => Ok((id, state)),
            _ => Err(no_such_upload()),
        }
    }

    /// [`describe`] off the async threads.
    async fn describe(
        &self,
        bucket: &str,
        key: &str,
    ) -> S3Result<Option<(std::fs::File, Described)>> {
        let (root, bucket, key) = (self.root.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || describe(&root, &bucket, &key)).await
    }

    /// After s3s-fs wrote, replaced or removed `bucket/key`: its hashed sidecar
    /// (from a multipart complete) no longer describes what is there.
    async fn forget_sidecar(&self, bucket: String, key: String) -> S3Result<()> {
        let root = self.root.clone();
        blocking(move || layout::remove_sidecar(&root, &bucket, &key)).await
    }

    async fn stored_parts(
        &self,
        id: Uuid,
    ) -> S3Result<std::collections::BTreeMap<i32, StoredPart>> {
        let store = Arc::clone(&self.store);
        blocking(move || store.parts(id)).await
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn no_such_upload() -> S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
}

fn parse_upload_id(upload_id: &str) -> S3Result<Uuid> {
    Uuid::parse_str(upload_id).map_err(|_| no_such_upload())
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T, F>(f: F) -> S3Result<T>
where
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(S3Error::internal_error(e)),
        Err(e) => Err(S3Error::internal_error(e)),
    }
}

/// Keys are stored as paths under the bucket directory: refuse the ones that
/// would not map to a path inside it.
pub(crate) fn check_key(key: &str) -> S3Result<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\0')
        || key.split('/').any(|seg| seg == "." || seg == "..");
    if bad {
        return Err(s3_error!(
            InvalidArgument,
            "object keys must not be empty, start with '/', or contain '.' or '..' path segments"
        ));
    }
    // S3's limit; and each `/`-separated segment becomes a file or directory
    // name, which holds at most 255 bytes (partway's filenames are at most 255).
    if key.len() > MAX_KEY_BYTES || key.split('/').any(|seg| seg.len() > layout::MAX_FILE_NAME) {
        return Err(s3_error!(
            KeyTooLongError,
            "object keys hold at most 1024 bytes, here at most 255 between slashes"
        ));
    }
    Ok(())
}

/// ETag text as a client sent it: quotes (and a weak prefix) optional.
fn normalize_etag(raw: &str) -> String {
    let s = raw.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"').to_ascii_lowercase()
}

fn timestamp(t: std::time::SystemTime) -> Timestamp {
    Timestamp::from(t)
}

fn format_expires(expires: Option<Timestamp>) -> Option<String> {
    let ts = expires?;
    let mut buf = Vec::new();
    ts.format(TimestampFormat::DateTime, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

/// Removes a temp file when dropped (e.g. if the client goes away mid-part).
struct TempFile(Option<std::path::PathBuf>);

impl TempFile {
    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn checksum_hasher(input: &UploadPartInput) -> S3Result<ChecksumHasher> {
    let mut h = ChecksumHasher::default();
    if input.checksum_crc32.is_some() {
        h.crc32 = Some(Default::default());
    }
    if input.checksum_crc32c.is_some() {
        h.crc32c = Some(Default::default());
    }
    if input.checksum_sha1.is_some() {
        h.sha1 = Some(Default::default());
    }
    if input.checksum_sha256.is_some() {
        h.sha256 = Some(Default::default());
    }
    if input.checksum_crc64nvme.is_some() {
        h.crc64nvme = Some(Default::default());
    }
    if let Some(alg) = &input.checksum_algorithm {
        match alg.as_str() {
            ChecksumAlgorithm::CRC32 => h.crc32 = Some(Default::default()),
            ChecksumAlgorithm::CRC32C => h.crc32c = Some(Default::default()),
            ChecksumAlgorithm::SHA1 => h.sha1 = Some(Default::default()),
            ChecksumAlgorithm::SHA256 => h.sha256 = Some(Default::default()),
            ChecksumAlgorithm::CRC64NVME => h.crc64nvme = Some(Default::default()),
            other => {
                return Err(s3_error!(
                    InvalidArgument,
                    "unsupported checksum algorithm {other}"
                ))
            }
        }
    }
    Ok(h)
}

/// Compares the checksums a client declared (header or trailer) with the
/// computed ones. Algorithms the client named but gave no value for are not
/// checked.
fn verify_checksums(computed: &Checksum, declared: &Checksum) -> S3Result<()> {
    let pairs = [
        ("crc32", &computed.checksum_crc32, &declared.checksum_crc32),
        (
            "crc32c",
            &computed.checksum_crc32c,
            &declared.checksum_crc32c,
        ),
        ("sha1", &computed.checksum_sha1, &declared.checksum_sha1),
        (
            "sha256",
            &computed.checksum_sha256,
            &declared.checksum_sha256,
        ),
        (
            "crc64nvme",
            &computed.checksum_crc64nvme,
            &declared.checksum_crc64nvme,
        ),
    ];
    for (name, got, want) in pairs {
        if let Some(want) = want {
            if got.as_deref() != Some(want.as_str()) {
                return Err(s3_error!(
                    BadDigest,
                    "the {name} checksum you specified did not match what we received"
                ));
            }
        }
    }
    Ok(())
}

fn declared_checksums(
    input: &UploadPartInput,
    trailers: Option<&http::HeaderMap>,
) -> S3Result<Checksum> {
    let mut declared = Checksum {
        checksum_crc32: input.checksum_crc32.clone(),
        checksum_crc32c: input.checksum_crc32c.clone(),
        checksum_sha1: input.checksum_sha1.clone(),
        checksum_sha256: input.checksum_sha256.clone(),
        checksum_crc64nvme: input.checksum_crc64nvme.clone(),
        checksum_type: None,
    };
    if let Some(trailers) = trailers {
        let get = |name: &str| -> S3Result<Option<String>> {
            trailers
                .get(name)
                .map(|v| {
                    v.to_str()
                        .map(str::to_owned)
                        .map_err(|_| s3_error!(InvalidArgument, "invalid trailer {name}"))
                })
                .transpose()
        };
        if let Some(v) = get("x-amz-checksum-crc32")? {
            declared.checksum_crc32 = Some(v);
        }
        if let Some(v) = get("x-amz-checksum-crc32c")? {
            declared.checksum_crc32c = Some(v);
        }
        if let Some(v) = get("x-amz-checksum-sha1")? {
            declared.checksum_sha1 = Some(v);
        }
        if let Some(v) = get("x-amz-checksum-sha256")? {
            declared.checksum_sha256 = Some(v);
        }
        if let Some(v) = get("x-amz-checksum-crc64nvme")? {
            declared.checksum_crc64nvme = Some(v);
        }
    }
    Ok(declared)
}

#[async_trait::async_trait]
impl S3 for Backend {
    // ---- delegated to s3s-fs -------------------------------------------------

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        if self.bucket_exists(&req.input.bucket) {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        self.fs.create_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        // s3s-fs would delete a non-empty bucket recursively.
        let path = self.root.join(&req.input.bucket);
        let non_empty = match std::fs::read_dir(&path) {
            Ok(mut it) => it.next().is_some(),
            Err(_) => return Err(s3_error!(NoSuchBucket)),
        };
        if non_empty {
            return Err(s3_error!(BucketNotEmpty));
        }
        self.fs.delete_bucket(req).await
    }

    // GetObject and HeadObject are served here, not by s3s-fs: s3s-fs looks for
    // an object's ETag and attributes only under names built from the key,
    // which do not exist for long keys (see `layout.rs`).

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        use tokio::io::AsyncSeekExt as _;

        let input = req.input;
        check_key(&input.key)?;
        let object = self.describe(&input.bucket, &input.key).await?;
        let Some((file, described)) = object else {
            return Err(s3_error!(NoSuchKey));
        };
        let (start, length, content_range) = match &input.range {
            None => (0, described.len, None),
            Some(range) => {
                let r = range.check(described.len)?;
                let range_text = format!("bytes {}-{}/{}", r.start, r.end - 1, described.len);
                (r.start, r.end - r.start, Some(range_text))
            }
        };
        let mut file = tokio::fs::File::from_std(file);
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(S3Error::internal_error)?;
        }
        let a = described.attributes;
        let output = GetObjectOutput {
            body: Some(StreamingBlob::wrap(read_stream(file, length))),
            content_length: Some(i64::try_from(length).map_err(S3Error::internal_error)?),
            content_range,
            last_modified: Some(timestamp(described.modified)),
            e_tag: Some(ETag::Strong(described.e_tag)),
            metadata: a.user_metadata,
            content_encoding: a.content_encoding,
            // s3s-fs ignored the response-* overrides of a (presigned, signed)
            // GetObject; S3 answers with them, and partway's download URLs rely
            // on the disposition.
            content_type: input.response_content_type.or(a.content_type),
            content_disposition: input.response_content_disposition.or(a.content_disposition),
            content_language: a.content_language,
            cache_control: a.cache_control,
            expires: parse_expires(a.expires.as_deref()),
            website_redirect_location: a.website_redirect_location,
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let Some((_, described)) = self.describe(&input.bucket, &input.key).await? else {
            self.require_bucket(&input.bucket)?;
            return Err(s3_error!(NoSuchKey));
        };
        let a = described.attributes;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(i64::try_from(described.len).map_err(S3Error::internal_error)?),
            last_modified: Some(timestamp(described.modified)),
            e_tag: Some(ETag::Strong(described.e_tag)),
            metadata: a.user_metadata,
            content_encoding: a.content_encoding,
            content_type: a.content_type,
            content_disposition: a.content_disposition,
            content_language: a.content_language,
            cache_control: a.cache_control,
            expires: parse_expires(a.expires.as_deref()),
            website_redirect_location: a.website_redirect_location,
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        check_key(&req.input.key)?;
        self.require_bucket(&req.input.bucket)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        // A browser form POST (s3s's PostObject stores through here) answers 204
        // without headers; S3 sends the object's ETag and Location, which clients read.
        let posted = req.method == http::Method::POST;
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        let mut answer = self.fs.put_object(req).await?;
        self.forget_sidecar(bucket.clone(), key.clone()).await?;
        if posted {
            if let Some(etag) = answer.output.e_tag.as_ref() {
                if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", etag.value())) {
                    answer.headers.insert(http::header::ETAG, v);
                }
            }
            if let Some(host) = host {
                let location = format!("http://{host}/{bucket}/{}", encode_key(&key));
                if let Ok(v) = http::HeaderValue::from_str(&location) {
                    answer.headers.insert(http::header::LOCATION, v);
                }
            }
        }
        Ok(answer)
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        check_key(&req.input.key)?;
        if let CopySource::Bucket { key, .. } = &req.input.copy_source {
            check_key(key)?;
        }
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let answer = self.fs.copy_object(req).await?;
        self.forget_sidecar(bucket, key).await?;
        Ok(answer)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        check_key(&req.input.key)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let answer = self.fs.delete_object(req).await?;
        self.forget_sidecar(bucket, key).await?;
        Ok(answer)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        for object in &req.input.delete.objects {
            check_key(&object.key)?;
        }
        let bucket = req.input.bucket.clone();
        let keys: Vec<String> = req
            .input
            .delete
            .objects
            .iter()
            .map(|o| o.key.clone())
            .collect();
        let answer = self.fs.delete_objects(req).await?;
        for key in keys {
            self.forget_sidecar(bucket.clone(), key).await?;
        }
        Ok(answer)
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    // ---- multipart uploads ---------------------------------------------------

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        if input.key.ends_with('/') {
            return Err(s3_error!(
                InvalidArgument,
                "multipart uploads to keys ending in '/' are not supported"
            ));
        }
        self.require_bucket(&input.bucket)?;

        let state = UploadState {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            initiated_unix_ms: now_unix_ms(),
            attributes: ObjectAttributes {
                user_metadata: input.metadata,
                content_encoding: input.content_encoding,
                content_type: input.content_type,
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                expires: format_expires(input.expires),
                website_redirect_location: input.website_redirect_location,
            },
        };
        let store = Arc::clone(&self.store);
        let id = blocking(move || store.create(&state)).await?;
        debug!(bucket = %input.bucket, key = %input.key, upload_id = %id, "multipart upload created");

        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id.hyphenated().to_string()),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let S3Request {
            mut input,
            trailing_headers,
            ..
        } = req;

        if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        let (id, _state) = self
            .load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        if let Some(len) = input.content_length {
            if u64::try_from(len).unwrap_or(u64::MAX) > MAX_PART_SIZE {
                return Err(s3_error!(EntityTooLarge));
            }
        }
        let mut hasher = checksum_hasher(&input)?;
        let Some(mut body) = input.body.take() else {
            return Err(s3_error!(IncompleteBody));
        };

        // Stream the body to a temp file next to the parts.
        let tmp_path = self.store.tmp_path(id);
        let file = match tokio::fs::File::create(&tmp_path).await {
            Ok(f) => f,
            // the upload directory went away: completed or aborted meanwhile
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_such_upload()),
            Err(e) => return Err(S3Error::internal_error(e)),
        };
        let mut tmp = TempFile(Some(tmp_path.clone()));
        let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut md5 = Md5::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| S3Error::with_source(S3ErrorCode::IncompleteBody, e))?;
            size += chunk.len() as u64;
            if size > MAX_PART_SIZE {
                return Err(s3_error!(EntityTooLarge));
            }
            md5.update(&chunk);
            hasher.update(&chunk);
            writer
                .write_all(&chunk)
                .await
                .map_err(S3Error::internal_error)?;
        }
        writer.flush().await.map_err(S3Error::internal_error)?;
        drop(writer);

        if let Some(len) = input.content_length {
            if u64::try_from(len).ok() != Some(size) {
                return Err(s3_error!(IncompleteBody));
            }
        }
        let digest = md5.finalize();
        let md5_hex = hex::encode(digest);
        if let Some(content_md5) = &input.content_md5 {
            use base64::Engine as _;
            let declared = base64::engine::general_purpose::STANDARD
                .decode(content_md5.trim())
                .map_err(|_| s3_error!(InvalidDigest))?;
            if declared.as_slice() != digest.as_slice() {
                return Err(s3_error!(
                    BadDigest,
                    "The Content-MD5 you specified did not match what we received."
                ));
            }
        }
        let computed = hasher.finalize();
        let trailers = trailing_headers.as_ref().and_then(|t| t.take());
        verify_checksums(&computed, &declared_checksums(&input, trailers.as_ref())?)?;

        // Put it in place under the upload's lock.
        let guard = self.store.lock(id).await;
        let store = Arc::clone(&self.store);
        let number = input.part_number;
        let md5_for_commit = md5_hex.clone();
        let committed = blocking(move || {
            let _guard = guard;
            store.commit_part(id, number, &md5_for_commit, &tmp_path)
        })
        .await?;
        tmp.keep();
        if !committed {
            return Err(no_such_upload());
        }
        debug!(upload_id = %id, part_number = number, size, etag = %md5_hex, "part stored");

        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(md5_hex)),
            checksum_crc32: computed.checksum_crc32,
            checksum_crc32c: computed.checksum_crc32c,
            checksum_sha1: computed.checksum_sha1,
            checksum_sha256: computed.checksum_sha256,
            checksum_crc64nvme: computed.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let max_parts = match input.max_parts {
            None => MAX_LIST,
            Some(n) if n < 0 => {
                return Err(s3_error!(InvalidArgument, "max-parts must be non-negative"))
            }
            Some(n) => n.min(MAX_LIST),
        };
        let marker = input.part_number_marker.unwrap_or(0);
        if marker < 0 {
            return Err(s3_error!(
                InvalidArgument,
                "part-number-marker must be non-negative"
            ));
        }

        let (id, _state) = self
            .load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let stored = {
            let _guard = self.store.lock(id).await;
            self.stored_parts(id).await?
        };

        let limit = usize::try_from(max_parts).unwrap_or(0);
        let mut remaining = stored.range(marker.saturating_add(1)..).map(|(_, p)| p);
        let page: Vec<&StoredPart> = remaining.by_ref().take(limit).collect();
        let is_truncated = remaining.next().is_some();
        let next_marker = page.last().map_or(marker, |p| p.number);

        let parts: Vec<Part> = page
            .iter()
            .map(|p| Part {
                part_number: Some(p.number),
                e_tag: Some(ETag::Strong(p.md5_hex.clone())),
                size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                last_modified: Some(timestamp(p.modified)),
                ..Default::default()
            })
            .collect();

        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max_parts),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: Some(next_marker),
            is_truncated: Some(is_truncated),
            parts: Some(parts),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let id = parse_upload_id(&input.upload_id)?;

        // Everything below is checked under the upload's lock, before anything changes.
        let guard = self.store.lock(id).await;
        let (_, state) = self
            .load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;

        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let mut previous = 0;
        for part in &requested {
            let Some(number) = part.part_number else {
                return Err(s3_error!(MalformedXML, "every part needs a PartNumber"));
            };
            if !(1..=MAX_PART_NUMBER).contains(&number) {
                return Err(s3_error!(
                    InvalidArgument,
                    "Part number must be an integer between 1 and 10000, inclusive"
                ));
            }
            if number <= previous {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The list of parts was not in ascending order. Parts must be ordered by part number."
                ));
            }
            previous = number;
        }

        let stored = self.stored_parts(id).await?;
        let mut chosen: Vec<StoredPart> = Vec::with_capacity(requested.len());
        for part in &requested {
            let number = part.part_number.unwrap_or_default();
            let matches = match (stored.get(&number), &part.e_tag) {
                (Some(s), Some(etag)) => normalize_etag(etag.value()) == s.md5_hex,
                _ => false,
            };
            if !matches {
                return Err(s3_error!(
                    InvalidPart,
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {number})"
                ));
            }
            if let Some(s) = stored.get(&number) {
                chosen.push(s.clone());
            }
        }
        if let Some((_, all_but_last)) = chosen.split_last() {
            if let Some(small) = all_but_last.iter().find(|p| p.size < MIN_PART_SIZE) {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed size (part {} is {} bytes; every part but the last must be at least 5 MiB)",
                    small.number,
                    small.size
                ));
            }
        }

        let object_path = layout::object_path(&self.root, &state.bucket, &state.key);
        if let Some(cond) = &input.if_none_match {
            if cond.is_any() && object_path.is_file() {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        }
        if let Some(cond) = &input.if_match {
            let current = current_etag(&self.root, &state.bucket, &state.key);
            let holds = match (cond.as_etag(), current) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(want), Some(have)) => {
                    normalize_etag(want.value()) == have.to_ascii_lowercase()
                }
            };
            if !holds {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        }

        // Validated: concatenate in a blocking task that finishes even if the
        // client goes away; s3s keeps the connection alive meanwhile.
        let store = Arc::clone(&self.store);
        let bucket = state.bucket.clone();
        let key = state.key.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            store.complete(id, &state, &chosen)
        });
        let future = Box::pin(async move {
            match task.await {
                Ok(Ok(e_tag)) => Ok(CompleteMultipartUploadOutput {
                    bucket: Some(bucket),
                    key: Some(key),
                    e_tag: Some(ETag::Strong(e_tag)),
                    ..Default::default()
                }),
                Ok(Err(e)) => Err(S3Error::internal_error(e)),
                Err(e) => Err(S3Error::internal_error(e)),
            }
        });
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            future: Some(future),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let id = parse_upload_id(&input.upload_id)?;
        let guard = self.store.lock(id).await;
        self.load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let store = Arc::clone(&self.store);
        let removed = blocking(move || {
            let _guard = guard;
            store.remove(id)
        })
        .await?;
        if !removed {
            return Err(no_such_upload());
        }
        debug!(upload_id = %id, "multipart upload aborted");
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket)?;
        let max_uploads = match input.max_uploads {
            None => MAX_LIST,
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-uploads must be non-negative"
                ))
            }
            Some(n) => n.min(MAX_LIST),
        };
        let store = Arc::clone(&self.store);
        let all = blocking(move || store.uploads()).await?;

        let prefix = input.prefix.clone().unwrap_or_default();
        let mut uploads: Vec<(String, String, UploadState)> = all
            .into_iter()
            .filter(|(_, s)| s.bucket == input.bucket && s.key.starts_with(&prefix))
            .map(|(id, s)| (s.key.clone(), id.hyphenated().to_string(), s))
            .collect();
        uploads.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));

        if let Some(key_marker) = input.key_marker.as_deref().filter(|k| !k.is_empty()) {
            let id_marker = input.upload_id_marker.as_deref().filter(|s| !s.is_empty());
            uploads.retain(|(key, id, _)| match id_marker {
                Some(id_marker) => {
                    key.as_str() > key_marker || (key == key_marker && id.as_str() > id_marker)
                }
                None => key.as_str() > key_marker,
            });
        }

        let limit = usize::try_from(max_uploads).unwrap_or(0);
        let is_truncated = uploads.len() > limit;
        uploads.truncate(limit);
        let (next_key_marker, next_upload_id_marker) = match uploads.last() {
            Some((key, id, _)) if is_truncated => (Some(key.clone()), Some(id.clone())),
            _ => (None, None),
        };
        let list: Vec<MultipartUpload> = uploads
            .into_iter()
            .map(|(key, id, s)| MultipartUpload {
                key: Some(key),
                upload_id: Some(id),
                initiated: Some(timestamp(s.initiated())),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            })
            .collect();

        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            next_key_marker,
            next_upload_id_marker,
            max_uploads: Some(max_uploads),
            is_truncated: Some(is_truncated),
            uploads: Some(list),
            ..Default::default()
        }))
    }
}

/// What GetObject and HeadObject tell about an object besides its bytes.
struct Described {
    len: u64,
    modified: std::time::SystemTime,
    e_tag: String,
    attributes: ObjectAttributes,
}

/// Opens `bucket/key` and finds its ETag and attributes: from the hashed
/// sidecar (objects completed here), else from s3s-fs's own sidecars (objects
/// it stored, and multipart objects of earlier versions), else the ETag is the
/// MD5 of the bytes as s3s-fs computes it. `None`: no such object.
fn describe(
    root: &Path,
    bucket: &str,
    key: &str,
) -> std::io::Result<Option<(std::fs::File, Described)>> {
    let file = match std::fs::File::open(layout::object_path(root, bucket, key)) {
        Ok(file) => file,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let (e_tag, attributes) = match layout::read_sidecar(root, bucket, key)? {
        Some(sidecar) => (Some(sidecar.e_tag), sidecar.attributes),
        None => (
            legacy_e_tag(root, bucket, key),
            legacy_attributes(root, bucket, key).unwrap_or_default(),
        ),
    };
    let e_tag = match e_tag {
        Some(e_tag) => e_tag,
        None => {
            let mut hasher = Md5::new();
            std::io::copy(&mut (&file), &mut Md5Writer(&mut hasher))?;
            std::io::Seek::rewind(&mut (&file))?;
            hex::encode(hasher.finalize())
        }
    };
    Ok(Some((
        file,
        Described {
            len: meta.len(),
            modified: meta.modified()?,
            e_tag,
            attributes,
        },
    )))
}

struct Md5Writer<'a>(&'a mut Md5);

impl std::io::Write for Md5Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The ETag in s3s-fs's internal-info sidecar, if it has one. Unreadable
/// sidecars count as absent, as in s3s-fs.
fn legacy_e_tag(root: &Path, bucket: &str, key: &str) -> Option<String> {
    let bytes = std::fs::read(layout::internal_info_path(root, bucket, key)?).ok()?;
    let map: HashMap<String, serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
    map.get("e_tag")?.as_str().map(str::to_owned)
}

/// The attributes in s3s-fs's metadata sidecar (or, in its oldest format,
/// only the user metadata).
fn legacy_attributes(root: &Path, bucket: &str, key: &str) -> Option<ObjectAttributes> {
    let bytes = std::fs::read(layout::metadata_path(root, bucket, key)?).ok()?;
    if let Ok(attributes) = serde_json::from_slice::<ObjectAttributes>(&bytes) {
        return Some(attributes);
    }
    let user_metadata: HashMap<String, String> = serde_json::from_slice(&bytes).ok()?;
    Some(ObjectAttributes {
        user_metadata: Some(user_metadata),
        ..Default::default()
    })
}

/// The ETag of an existing object (for If-Match), if any.
fn current_etag(root: &Path, bucket: &str, key: &str) -> Option<String> {
    describe(root, bucket, key)
        .ok()
        .flatten()
        .map(|(_, d)| d.e_tag)
}

fn parse_expires(expires: Option<&str>) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::DateTime, expires?).ok()
}

/// `length` bytes of `file` from where it stands, in chunks.
fn read_stream(
    file: tokio::fs::File,
    length: u64,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static {
    futures::stream::try_unfold((file, length), |(mut file, remaining)| async move {
        use tokio::io::AsyncReadExt as _;
        if remaining == 0 {
            return Ok(None);
        }
        let want = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(READ_CHUNK);
        let mut buf = vec![0u8; want];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "object shorter than it was",
            ));
        }
        buf.truncate(n);
        Ok(Some((
            bytes::Bytes::from(buf),
            (file, remaining - n as u64),
        )))
    })
}

/// A key as a URL path: unreserved characters and `/` kept, the rest percent-encoded.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_escape_the_bucket_are_refused() {
        for bad in ["", "/abs", "../x", "a/../b", "a/./b", ".", "a/.."] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "a/b/c.txt", "...", "a..b", ".hidden", "dir/"] {
            assert!(check_key(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn etags_compare_with_or_without_quotes() {
        assert_eq!(normalize_etag("\"ABC\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
    }
}
