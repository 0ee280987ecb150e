//! The on-disk layout of `s3s-fs` 0.14.1, which serves the delegated object
//! operations (GetObject, HeadObject, ...). A completed multipart upload is
//! written in exactly this layout so that s3s-fs reads it back like any object
//! it stored itself (see `s3s-fs-0.14.1/src/fs.rs`):
//!
//! * object bytes: `<root>/<bucket>/<key>`
//! * attributes (content type, `x-amz-meta-*`, ...):
//!   `<root>/.bucket-<b64url(bucket)>.object-<b64url(key)>.metadata.json`,
//!   a JSON [`ObjectAttributes`]
//! * internal info (ETag, checksums):
//!   `<root>/.bucket-<b64url(bucket)>.object-<b64url(key)>.internal.json`,
//!   a JSON object whose `"e_tag"` is the unquoted ETag
//!
//! `b64url` is URL-safe base64 without padding.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

fn encode(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// Where s3s-fs keeps the bytes of `bucket/key`. `key` must have passed
/// [`crate::backend::check_key`].
pub(crate) fn object_path(root: &Path, bucket: &str, key: &str) -> PathBuf {
    root.join(bucket).join(key)
}

pub(crate) fn metadata_path(root: &Path, bucket: &str, key: &str) -> PathBuf {
    root.join(format!(
        ".bucket-{}.object-{}.metadata.json",
        encode(bucket),
        encode(key)
    ))
}

pub(crate) fn internal_info_path(root: &Path, bucket: &str, key: &str) -> PathBuf {
    root.join(format!(
        ".bucket-{}.object-{}.internal.json",
        encode(bucket),
        encode(key)
    ))
}

/// Mirror of s3s-fs's private `ObjectAttributes` (same serde field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectAttributes {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_metadata: Option<std::collections::HashMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_disposition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cache_control: Option<String>,
    /// `Expires`, formatted as s3s `TimestampFormat::DateTime`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub website_redirect_location: Option<String>,
}

/// The content of the internal-info sidecar for an object whose ETag is `e_tag`
/// (unquoted). No checksums are recorded.
pub(crate) fn internal_info_json(e_tag: &str) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert(
        "e_tag".to_owned(),
        serde_json::Value::String(e_tag.to_owned()),
    );
    serde_json::to_vec(&map).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_names_match_s3s_fs() {
        let root = Path::new("/r");
        assert_eq!(
            metadata_path(root, "b", "dir/k.txt"),
            PathBuf::from("/r/.bucket-Yg.object-ZGlyL2sudHh0.metadata.json")
        );
        assert_eq!(
            internal_info_path(root, "b", "dir/k.txt"),
            PathBuf::from("/r/.bucket-Yg.object-ZGlyL2sudHh0.internal.json")
        );
        assert_eq!(
            object_path(root, "b", "dir/k.txt"),
            PathBuf::from("/r/b/dir/k.txt")
        );
    }
}
