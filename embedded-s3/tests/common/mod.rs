//! Helpers shared by the integration tests: a server on a temp dir and port 0,
//! a real aws-sdk-s3 client pointed at it, and small S3 shortcuts.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Part};
use aws_sdk_s3::Client;
use md5::{Digest as _, Md5};
use partway_embedded_s3::{EmbeddedS3, EmbeddedS3Config};
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "partway-test-access";
pub const SECRET_KEY: &str = "partway-test-secret-0123456789";
pub const BUCKET: &str = "uploads";
pub const MIB: usize = 1024 * 1024;

pub fn config(root: &Path) -> EmbeddedS3Config {
    EmbeddedS3Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        root: root.to_owned(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        buckets: vec![BUCKET.into()],
    }
}

pub async fn start_at(root: &Path) -> EmbeddedS3 {
    EmbeddedS3::start(config(root))
        .await
        .expect("embedded S3 starts")
}

pub fn client_with(endpoint: &str, access_key: &str, secret_key: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .build();
    Client::from_conf(conf)
}

pub fn client(s3: &EmbeddedS3) -> Client {
    client_with(&s3.endpoint_url(), ACCESS_KEY, SECRET_KEY)
}

/// A server on a fresh temp dir plus a client for it.
pub struct TestServer {
    pub dir: TempDir,
    pub s3: EmbeddedS3,
    pub client: Client,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s3 = start_at(dir.path()).await;
        let client = client(&s3);
        Self { dir, s3, client }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.s3.endpoint_url(), path_and_query)
    }
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

pub fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// `"<md5 of the concatenated binary part md5s>-<count>"`, as S3 computes it.
pub fn multipart_etag(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(Md5::digest(p));
    }
    format!("\"{}-{}\"", hex::encode(h.finalize()), parts.len())
}

/// Deterministic, non-repeating-ish test bytes.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

pub async fn create_upload(client: &Client, key: &str) -> String {
    client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("CreateMultipartUpload")
        .upload_id
        .expect("upload id")
}

/// UploadPart through the SDK; returns the ETag header (quoted).
pub async fn upload_part(
    client: &Client,
    key: &str,
    upload_id: &str,
    n: i32,
    data: Vec<u8>,
) -> String {
    client
        .upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(upload_id)
        .part_number(n)
        .body(ByteStream::from(data))
        .send()
        .await
        .unwrap_or_else(|e| panic!("UploadPart {n}: {e:?}"))
        .e_tag
        .expect("part etag")
}

pub async fn presigned_part_url(
    client: &Client,
    key: &str,
    upload_id: &str,
    n: i32,
    config: PresigningConfig,
) -> String {
    client
        .upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(upload_id)
        .part_number(n)
        .presigned(config)
        .await
        .expect("presign UploadPart")
        .uri()
        .to_owned()
}

pub fn presign_for(secs: u64) -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(secs)).unwrap()
}

/// A plain `PUT` of `data` to `url`, as `curl -T` or browser fetch sends it
/// (no Content-Type, no Content-MD5, no checksum headers).
pub async fn plain_put(url: &str, data: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .put(url)
        .body(data)
        .send()
        .await
        .expect("PUT reaches the server")
}

/// One page of ListParts.
pub async fn list_parts_page(
    client: &Client,
    key: &str,
    upload_id: &str,
    marker: Option<i32>,
) -> aws_sdk_s3::operation::list_parts::ListPartsOutput {
    let mut req = client
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(upload_id);
    if let Some(m) = marker {
        req = req.part_number_marker(m.to_string());
    }
    req.send().await.expect("ListParts")
}

pub async fn list_parts(client: &Client, key: &str, upload_id: &str) -> Vec<Part> {
    list_parts_page(client, key, upload_id, None)
        .await
        .parts
        .unwrap_or_default()
}

pub fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, etag)| {
                    CompletedPart::builder()
                        .part_number(*n)
                        .e_tag(*etag)
                        .build()
                })
                .collect(),
        ))
        .build()
}

pub async fn complete(
    client: &Client,
    key: &str,
    upload_id: &str,
    parts: &[(i32, &str)],
) -> Result<
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput,
    (Option<String>, Option<u16>),
> {
    client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(completed(parts))
        .send()
        .await
        .map_err(|e| {
            (
                e.code().map(str::to_owned),
                e.raw_response().map(|r| r.status().as_u16()),
            )
        })
}

/// The S3 error code of a failed SDK call.
pub fn code_of<E: ProvideErrorMetadata, R>(
    e: &aws_sdk_s3::error::SdkError<E, R>,
) -> Option<String> {
    e.code().map(str::to_owned)
}

pub async fn get_object_bytes(
    client: &Client,
    key: &str,
) -> (Vec<u8>, aws_sdk_s3::operation::get_object::GetObjectOutput) {
    let mut out = client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("GetObject");
    let body = std::mem::take(&mut out.body);
    let data = body
        .collect()
        .await
        .expect("object body")
        .into_bytes()
        .to_vec();
    (data, out)
}
