//! `ObjectStorage` over aws-sdk-s3: one implementation for AWS S3, R2, MinIO and the
//! embedded endpoint. `StorageRegistry` picks the bucket and credentials of each
//! upload: the server's, or the ones a client brought (bring-your-own).
use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use aws_sdk_s3::{
    config::{
        http::HttpResponse, retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion,
        Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    },
    error::{ProvideErrorMetadata, SdkError},
    presigning::PresigningConfig,
    types::{CompletedMultipartUpload, CompletedPart},
    Client,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    domain::Provider,
    outbound::{OutboundError, OutboundPolicy},
    ports::{
        CompletedObject, ObjectStorage, PresignedUrl, SharedStorage, StorageError, StorageFactory,
        StoredPart,
    },
    presign::BatchPresigner,
};

/// Access keys for one bucket. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for StorageCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Where an upload's bytes go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageTarget {
    pub provider: Provider,
    pub bucket: String,
    pub region: String,
    /// None: AWS S3's own endpoint for the region.
    pub endpoint: Option<String>,
    /// Endpoint written into presigned URLs when clients reach storage by another
    /// address than the service does (e.g. `minio:9000` inside compose).
    pub public_endpoint: Option<String>,
    pub force_path_style: bool,
    pub credentials: StorageCredentials,
}

impl StorageTarget {
    /// A bucket given with its own credentials (a client's, or a stored upload's): path-style
    /// addressing whenever an endpoint is named, presigned URLs on that same endpoint.
    pub fn with_credentials(
        provider: Provider,
        bucket: String,
        region: String,
        endpoint: Option<String>,
        credentials: StorageCredentials,
    ) -> StorageTarget {
        StorageTarget {
            provider,
            bucket,
            region,
            force_path_style: endpoint.is_some(),
            endpoint,
            public_endpoint: None,
            credentials,
        }
    }

    /// A Cloudflare R2 bucket of `account`.
    pub fn r2(account: &str, bucket: String, credentials: StorageCredentials) -> StorageTarget {
        StorageTarget::with_credentials(
            Provider::R2,
            bucket,
            "auto".into(),
            Some(r2_endpoint(account)),
            credentials,
        )
    }

    fn cache_key(&self) -> [u8; 32] {
        // Includes the secret so that rotated credentials get a fresh client.
        let encoded = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(encoded).into()
    }
}

/// The S3 endpoint of a Cloudflare R2 account.
/// `scheme://host[:port]` of an endpoint URL (path, query and user info dropped).
pub fn origin_of(endpoint: &str) -> String {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}")
}

pub fn r2_endpoint(account: &str) -> String {
    format!("https://{account}.r2.cloudflarestorage.com")
}

/// Server-side storage configuration per provider, and the factory that makes the
/// storage handle of any target (the server's or a client's own bucket).
pub struct StorageRegistry {
    server_targets: HashMap<Provider, StorageTarget>,
    factory: Arc<dyn StorageFactory>,
    /// The guard over buckets clients bring (DESIGN §7).
    outbound: Arc<OutboundPolicy>,
}

impl StorageRegistry {
    pub fn new(
        server_targets: HashMap<Provider, StorageTarget>,
        factory: Arc<dyn StorageFactory>,
    ) -> Self {
        Self {
            server_targets,
            factory,
            outbound: Arc::new(OutboundPolicy::default()),
        }
    }

    /// Replaces the outbound guard (the default: guarded, no exceptions, system DNS).
    pub fn with_outbound(mut self, outbound: OutboundPolicy) -> Self {
        self.outbound = Arc::new(outbound);
        self
    }

    pub fn outbound(&self) -> &OutboundPolicy {
        &self.outbound
    }

    /// The origins (`scheme://host[:port]`) that presigned URLs of the server's storage
    /// point to: what a browser page must be allowed to connect to (its CSP
    /// `connect-src`). AWS S3 without an endpoint: the bucket's virtual-hosted and the
    /// region's path-style origin.
    pub fn browser_origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = Vec::new();
        for target in self.server_targets.values() {
            match target
                .public_endpoint
                .as_deref()
                .or(target.endpoint.as_deref())
            {
                Some(endpoint) => origins.push(origin_of(endpoint)),
                None => {
                    origins.push(format!(
                        "https://{}.s3.{}.amazonaws.com",
                        target.bucket, target.region
                    ));
                    origins.push(format!("https://s3.{}.amazonaws.com", target.region));
                }
            }
        }
        origins.sort();
        origins.dedup();
        origins
    }

    pub fn server_target(&self, provider: Provider) -> Option<&StorageTarget> {
        self.server_targets.get(&provider)
    }

    /// Storage the operator configured (trusted).
    pub fn storage(&self, target: &StorageTarget) -> SharedStorage {
        self.factory.storage(target)
    }

    /// A bucket a client brought: its connections go through the outbound guard.
    pub fn client_storage(&self, target: &StorageTarget) -> SharedStorage {
        self.factory.client_storage(target, &self.outbound)
    }
}

/// Makes [`S3Storage`] handles, one per bucket and credentials, kept for reuse (an
/// SDK client holds a connection pool).
#[derive(Default)]
pub struct S3Factory {
    clients: Mutex<HashMap<[u8; 32], SharedStorage>>,
}

/// Bounds the client cache: bring-your-own credentials create one entry each.
const MAX_CACHED_CLIENTS: usize = 256;

impl S3Factory {
    fn cached(&self, key: [u8; 32], make: impl FnOnce() -> S3Storage) -> SharedStorage {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = clients.get(&key) {
            return found.clone();
        }
        if clients.len() >= MAX_CACHED_CLIENTS {
            clients.clear();
        }
        let storage: SharedStorage = Arc::new(make());
        clients.insert(key, storage.clone());
        storage
    }
}

impl StorageFactory for S3Factory {
    fn storage(&self, target: &StorageTarget) -> SharedStorage {
        self.cached(target.cache_key(), || S3Storage::new(target, None))
    }

    fn client_storage(&self, target: &StorageTarget, guard: &Arc<OutboundPolicy>) -> SharedStorage {
        // Never the same entry as a trusted client of the same target.
        let mut key = target.cache_key();
        key[0] ^= 0x5a;
        self.cached(key, || {
            S3Storage::new(target, Some(guarded_http_client(guard.clone())))
        })
    }
}

/// The resolver of a bring-your-own target's HTTP client: every host name is resolved
/// through the outbound guard at connect time, which refuses forbidden answers, so a
/// name that passed the check at init and then resolves elsewhere (DNS rebinding) is
/// refused before any connection. An address-literal endpoint never reaches a
/// resolver: it was checked at init and cannot change.
#[derive(Debug, Clone)]
struct GuardedDns(Arc<OutboundPolicy>);

impl aws_smithy_runtime_api::client::dns::ResolveDns for GuardedDns {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        aws_smithy_runtime_api::client::dns::DnsFuture::new(async move {
            self.0.resolve(name).await.map_err(|e| {
                tracing::warn!(host = name, "outbound guard refused a connection: {e}");
                aws_smithy_runtime_api::client::dns::ResolveDnsError::new(e)
            })
        })
    }
}

/// The SDK's default HTTPS client (hyper + rustls on aws-lc, as aws-sdk-s3's
/// `default-https-client`), resolving through the guard. Neither it nor the SDK follows
/// redirects: a 3xx answer is returned to the caller as an error, so storage cannot send
/// partway on to another address (a test checks it).
fn guarded_http_client(guard: Arc<OutboundPolicy>) -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_with_resolver(GuardedDns(guard))
}

pub struct S3Storage {
    client: Client,
    /// Same credentials, pointed at the public endpoint: presigning does no I/O.
    presign_client: Client,
    /// Presigns part URLs without the SDK pipeline (one HMAC per URL).
    part_presigner: BatchPresigner,
    bucket: String,
    object_base_url: String,
}

fn build_client(
    target: &StorageTarget,
    endpoint: Option<&str>,
    http: Option<aws_sdk_s3::config::SharedHttpClient>,
) -> Client {
    let credentials = Credentials::new(
        &target.credentials.access_key_id,
        &target.credentials.secret_access_key,
        None,
        None,
        "partway",
    );
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(target.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(target.force_path_style)
        // R2, MinIO and older S3-compatible stores reject the newer default checksums.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    if let Some(http) = http {
        builder = builder.http_client(http);
    }
    Client::from_conf(builder.build())
}

impl S3Storage {
    /// `http`: the HTTP client to use (a guarded one for a client's bucket), else the
    /// SDK's default.
    pub fn new(target: &StorageTarget, http: Option<aws_sdk_s3::config::SharedHttpClient>) -> Self {
        let public = target
            .public_endpoint
            .as_deref()
            .or(target.endpoint.as_deref());
        let object_base_url = match public {
            Some(endpoint) => format!("{}/{}", endpoint.trim_end_matches('/'), target.bucket),
            None => format!(
                "https://{}.s3.{}.amazonaws.com",
                target.bucket, target.region
            ),
        };
        Self {
            client: build_client(target, target.endpoint.as_deref(), http.clone()),
            presign_client: build_client(target, public, http),
            part_presigner: BatchPresigner::new(
                target.credentials.access_key_id.clone(),
                target.credentials.secret_access_key.clone(),
                None,
                target.region.clone(),
                public,
                &target.bucket,
                target.force_path_style,
            ),
            bucket: target.bucket.clone(),
            object_base_url,
        }
    }

    /// The SDK's presigning config (its own check of the expiry: at most 7 days) for URLs
    /// signed at `now`, and when they expire.
    fn presigning(
        now: SystemTime,
        expires_in: Duration,
    ) -> Result<(PresigningConfig, DateTime<Utc>), StorageError> {
        let config = PresigningConfig::builder()
            .start_time(now)
            .expires_in(expires_in)
            .build()
            .map_err(|e| StorageError::Rejected(format!("invalid URL expiry: {e}")))?;
        let expires_at = DateTime::<Utc>::from(now + expires_in);
        Ok((config, expires_at))
    }
}

/// Storage's words for "these parts can't be assembled".
const INVALID_PART_CODES: [&str; 4] = [
    "InvalidPart",
    "InvalidPartOrder",
    "EntityTooSmall",
    "MalformedXML",
];

fn classify<E>(err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match &err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let status = service.raw().status().as_u16();
            // Some stores answer without an XML body (e.g. a bare 404): name the status.
            let code = inner
                .code()
                .map_or_else(|| format!("HTTP {status}"), str::to_string);
            let message = inner.message().unwrap_or("").to_string();
            let described = if message.is_empty() {
                code.clone()
            } else {
                format!("{code}: {message}")
            };
            if code == "NoSuchUpload" {
                StorageError::NoSuchUpload
            } else if INVALID_PART_CODES.contains(&code.as_str()) {
                StorageError::InvalidParts(described)
            } else if status >= 500 || status == 429 || code == "SlowDown" {
                StorageError::Unavailable(described)
            } else {
                StorageError::Rejected(described)
            }
        }
        SdkError::TimeoutError(_) => StorageError::Unavailable("timeout".into()),
        SdkError::DispatchFailure(failure)
            if failure
                .as_connector_error()
                .is_some_and(|e| refused_by_guard(e)) =>
        {
            StorageError::Rejected("the endpoint was refused by the outbound guard".into())
        }
        SdkError::DispatchFailure(_) => StorageError::Unavailable("could not connect".into()),
        SdkError::ResponseError(_) => StorageError::Unavailable("unreadable response".into()),
        _ => StorageError::Rejected("could not build the request".into()),
    }
}

/// A connection the outbound guard refused: final, not worth retrying.
fn refused_by_guard(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<OutboundError>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

#[async_trait]
impl ObjectStorage for S3Storage {
    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, StorageError> {
        // Reuse an upload an earlier, interrupted try opened on this key. Stores that
        // can't list uploads just get a new one.
        if let Ok(listed) = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(key)
            .send()
            .await
        {
            if let Some(existing) = listed
                .uploads()
                .iter()
                .find(|u| u.key() == Some(key))
                .and_then(|u| u.upload_id())
            {
                return Ok(existing.to_string());
            }
        }
        let mut request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type);
        for (name, value) in metadata {
            request = request.metadata(name, value);
        }
        let created = request.send().await.map_err(classify)?;
        created
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| StorageError::Unavailable("storage returned no UploadId".into()))
    }

    async fn presign_upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        part_numbers: &[u32],
        expires_in: Duration,
    ) -> Result<Vec<PresignedUrl>, StorageError> {
        let now = SystemTime::now();
        let (_, expires_at) = Self::presigning(now, expires_in)?;
        Ok(self
            .part_presigner
            .presign_upload_parts(key, upload_id, part_numbers, expires_in, now)
            .into_iter()
            .map(|url| PresignedUrl {
                url: Arc::new(url),
                expires_at,
            })
            .collect())
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>, StorageError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(classify)?;
            for part in page.parts() {
                let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) else {
                    continue;
                };
                parts.push(StoredPart {
                    part_number: number.max(0) as u32,
                    etag: unquote(etag),
                    size: part.size().unwrap_or(0).max(0) as u64,
                });
            }
            let next = page.next_part_number_marker().map(str::to_string);
            if page.is_truncated() != Some(true) || next.is_none() || next == marker {
                break;
            }
            marker = next;
        }
        parts.sort_by_key(|p| p.part_number);
        parts.dedup_by_key(|p| p.part_number);
        Ok(parts)
    }

    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<CompletedObject, StorageError> {
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|(number, etag)| {
                CompletedPart::builder()
                    .part_number(*number as i32)
                    .e_tag(format!("\"{}\"", unquote(etag)))
                    .build()
            })
            .collect();
        let output = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(classify)?;
        Ok(CompletedObject {
            etag: output.e_tag().map(unquote).unwrap_or_default(),
            location: output.location().map(str::to_string),
        })
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(classify)
        {
            Ok(_) | Err(StorageError::NoSuchUpload) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn head_object(&self, key: &str) -> Result<Option<(u64, String)>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some((
                head.content_length().unwrap_or(0).max(0) as u64,
                head.e_tag().map(unquote).unwrap_or_default(),
            ))),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(err) => match classify(err) {
                StorageError::Rejected(msg) if msg.starts_with("NotFound") => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
        content_disposition: &str,
    ) -> Result<PresignedUrl, StorageError> {
        let (config, expires_at) = Self::presigning(SystemTime::now(), expires_in)?;
        let presigned = self
            .presign_client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(content_disposition)
            .presigned(config)
            .await
            .map_err(classify)?;
        Ok(PresignedUrl {
            url: Arc::new(presigned.uri().to_string()),
            expires_at,
        })
    }

    fn object_url(&self, key: &str) -> String {
        format!("{}/{}", self.object_base_url, key)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::{
        error::ErrorMetadata, operation::complete_multipart_upload::CompleteMultipartUploadError,
        primitives::SdkBody,
    };

    use super::*;

    /// What storage answered: an HTTP status and, when it sent one, an error code.
    fn answered(status: u16, code: Option<&str>, message: &str) -> StorageError {
        let mut meta = ErrorMetadata::builder().message(message);
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let err = CompleteMultipartUploadError::generic(meta.build());
        let raw = HttpResponse::new(status.try_into().expect("status"), SdkBody::empty());
        classify(SdkError::service_error(err, raw))
    }

    #[test]
    fn storage_answers_are_classified() {
        assert!(matches!(
            answered(404, Some("NoSuchUpload"), "gone"),
            StorageError::NoSuchUpload
        ));
        for code in INVALID_PART_CODES {
            match answered(400, Some(code), "bad part 2") {
                StorageError::InvalidParts(reason) => {
                    assert_eq!(reason, format!("{code}: bad part 2"))
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        assert!(matches!(
            answered(503, Some("ServiceUnavailable"), ""),
            StorageError::Unavailable(r) if r == "ServiceUnavailable"
        ));
        assert!(matches!(
            answered(503, Some("SlowDown"), "reduce"),
            StorageError::Unavailable(_)
        ));
        assert!(matches!(
            answered(429, None, ""),
            StorageError::Unavailable(_)
        ));
        assert!(matches!(
            answered(403, Some("AccessDenied"), "no"),
            StorageError::Rejected(r) if r == "AccessDenied: no"
        ));
        // A bare answer without an XML body is named by its status.
        assert!(matches!(
            answered(404, None, ""),
            StorageError::Rejected(r) if r == "HTTP 404"
        ));
    }

    #[test]
    fn transport_failures_are_worth_retrying() {
        let timeout: SdkError<CompleteMultipartUploadError, HttpResponse> =
            SdkError::timeout_error("slow");
        assert!(matches!(classify(timeout), StorageError::Unavailable(r) if r == "timeout"));
        let refused: SdkError<CompleteMultipartUploadError, HttpResponse> =
            SdkError::dispatch_failure(aws_sdk_s3::error::ConnectorError::io("refused".into()));
        assert!(matches!(
            classify(refused),
            StorageError::Unavailable(r) if r == "could not connect"
        ));
    }

    #[test]
    fn rotated_credentials_get_another_client() {
        let target = |secret: &str| {
            StorageTarget::with_credentials(
                Provider::S3,
                "bucket".into(),
                "us-east-1".into(),
                Some("http://127.0.0.1:9".into()),
                StorageCredentials {
                    access_key_id: "AK".into(),
                    secret_access_key: secret.into(),
                },
            )
        };
        assert_eq!(target("one").cache_key(), target("one").cache_key());
        assert_ne!(target("one").cache_key(), target("two").cache_key());
        assert!(!format!("{:?}", target("very-secret")).contains("very-secret"));
    }

    /// A loopback server that answers every request with a redirect to itself at
    /// `/followed`, and records each request line.
    async fn redirecting_server() -> (String, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                log.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_string());
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{port}/followed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (format!("http://127.0.0.1:{port}"), seen)
    }

    /// The SDK follows no redirects: storage cannot send a guarded client elsewhere.
    #[tokio::test]
    async fn a_client_bucket_never_follows_redirects() {
        let (endpoint, seen) = redirecting_server().await;
        let guard = Arc::new(OutboundPolicy::new(
            crate::outbound::AllowList::parse("127.0.0.1/32").unwrap(),
            crate::outbound::OutboundMode::Guarded,
            Arc::new(crate::outbound::StaticResolver::new()),
        ));
        let target = StorageTarget::with_credentials(
            Provider::S3,
            "theirs".into(),
            "us-east-1".into(),
            Some(endpoint),
            StorageCredentials {
                access_key_id: "a".into(),
                secret_access_key: "b".into(),
            },
        );
        let storage = S3Factory::default().client_storage(&target, &guard);
        let result = storage
            .create_multipart("k", "application/octet-stream", &BTreeMap::new())
            .await;
        assert!(result.is_err(), "{result:?}");
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty(), "the server was asked");
        assert!(
            seen.iter().all(|line| !line.contains("/followed")),
            "a redirect was followed: {seen:?}"
        );
    }
}
