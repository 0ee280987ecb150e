//! Where objects and what is known about them live on disk.
//!
//! * object bytes: `<root>/<bucket>/<key>` (shared with `s3s-fs` 0.14.1, which
//!   serves PutObject, CopyObject, DeleteObject and the listings)
//! * an object completed by a multipart upload: its ETag and attributes
//!   (content type, `x-amz-meta-*`, ...) in one sidecar,
//!   `<root>/.objects/<sha256hex(bucket "/" key)>.json`, a JSON [`Sidecar`].
//!   Named by a hash because a file name holds at most 255 bytes while a key
//!   holds up to 1024: a name derived from the key itself cannot fit.
//! * s3s-fs's own sidecars, written by its PutObject and CopyObject (see
//!   `s3s-fs-0.14.1/src/fs.rs`), which embed the key in their names:
//!   `<root>/.bucket-<b64url(bucket)>.object-<b64url(key)>.metadata.json` (a
//!   JSON [`ObjectAttributes`]) and `….internal.json` (a JSON object whose
//!   `"e_tag"` is the unquoted ETag); `b64url` is URL-safe base64 without
//!   padding. They only exist for keys short enough (about 110 bytes), and
//!   GetObject/HeadObject read them when there is no hashed sidecar.
//!
//! Earlier versions wrote multipart objects' sidecars under s3s-fs's names;
//! such objects are still read through that fallback, so no migration is
//! needed (and keys too long for those names never completed before).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

fn encode(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// The longest file name (in bytes) of the file systems we run on.
pub(crate) const MAX_FILE_NAME: usize = 255;

/// Directory (under the root) of the hashed sidecars. Starts with a dot so it
/// is never taken for a bucket.
pub(crate) const SIDECAR_DIR: &str = ".objects";

/// The file name of `bucket/key`'s sidecar: 64 hex digits of SHA-256 and
/// `.json`, 69 bytes whatever the key. Bucket names cannot contain `/`, so
/// `bucket "/" key` names one object.
pub(crate) fn sidecar_file_name(bucket: &str, key: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(bucket.as_bytes());
    hasher.update(b"/");
    hasher.update(key.as_bytes());
    format!("{}.json", hex::encode(hasher.finalize()))
}

pub(crate) fn sidecar_dir(root: &Path) -> PathBuf {
    root.join(SIDECAR_DIR)
}

pub(crate) fn sidecar_path(root: &Path, bucket: &str, key: &str) -> PathBuf {
    sidecar_dir(root).join(sidecar_file_name(bucket, key))
}

/// What the hashed sidecar records about an object. `bucket` and `key` make a
/// sidecar readable on its own (and a hash collision detectable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    pub bucket: String,
    pub key: String,
    /// Unquoted.
    pub e_tag: String,
    #[serde(default)]
    pub attributes: ObjectAttributes,
}

/// Reads `bucket/key`'s hashed sidecar; `None` if there is none (or it belongs
/// to another key).
pub(crate) fn read_sidecar(
    root: &Path,
    bucket: &str,
    key: &str,
) -> std::io::Result<Option<Sidecar>> {
    match std::fs::read(sidecar_path(root, bucket, key)) {
        Ok(bytes) => {
            let sidecar: Sidecar = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
            Ok((sidecar.bucket == bucket && sidecar.key == key).then_some(sidecar))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `bucket/key`'s hashed sidecar, if any: after s3s-fs wrote or removed
/// the object, so that its own sidecars (or none) describe it.
pub(crate) fn remove_sidecar(root: &Path, bucket: &str, key: &str) -> std::io::Result<()> {
    match std::fs::remove_file(sidecar_path(root, bucket, key)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn fits(path: PathBuf) -> Option<PathBuf> {
    let len = path.file_name().map_or(0, |n| n.len());
    (len <= MAX_FILE_NAME).then_some(path)
}

/// Where s3s-fs keeps the bytes of `bucket/key`. `key` must have passed
/// [`crate::backend::check_key`].
pub(crate) fn object_path(root: &Path, bucket: &str, key: &str) -> PathBuf {
    root.join(bucket).join(key)
}

/// s3s-fs's attributes sidecar of `bucket/key`; `None` when the key is too long
/// for such a name (s3s-fs cannot have written it).
pub(crate) fn metadata_path(root: &Path, bucket: &str, key: &str) -> Option<PathBuf> {
    fits(root.join(format!(
        ".bucket-{}.object-{}.metadata.json",
        encode(bucket),
        encode(key)
    )))
}

/// s3s-fs's internal-info sidecar of `bucket/key`; `None` when too long.
pub(crate) fn internal_info_path(root: &Path, bucket: &str, key: &str) -> Option<PathBuf> {
    fits(root.join(format!(
        ".bucket-{}.object-{}.internal.json",
        encode(bucket),
        encode(key)
    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_names_match_s3s_fs() {
        let root = Path::new("/r");
        assert_eq!(
            metadata_path(root, "b", "dir/k.txt"),
            Some(PathBuf::from(
                "/r/.bucket-Yg.object-ZGlyL2sudHh0.metadata.json"
            ))
        );
        assert_eq!(
            internal_info_path(root, "b", "dir/k.txt"),
            Some(PathBuf::from(
                "/r/.bucket-Yg.object-ZGlyL2sudHh0.internal.json"
            ))
        );
        // 200 bytes of key: no such name can exist
        assert_eq!(metadata_path(root, "b", &"k".repeat(200)), None);
        assert_eq!(internal_info_path(root, "b", &"k".repeat(200)), None);
        assert_eq!(
            object_path(root, "b", "dir/k.txt"),
            PathBuf::from("/r/b/dir/k.txt")
        );
    }

    /// Any key S3 allows (up to 1024 bytes), multi-byte characters included,
    /// gives a sidecar name well under the 255-byte limit, distinct per key.
    #[test]
    fn sidecar_names_fit_for_every_key_length() {
        let mut keys = std::collections::HashSet::new();
        let mut seen = std::collections::HashSet::new();
        for len in [1usize, 112, 113, 255, 256, 1023, 1024] {
            for key in [
                "k".repeat(len),
                "é".repeat(len / 2),
                format!("p/o/{}", "🦀".repeat(len.saturating_sub(4) / 4)),
            ] {
                assert!(key.len() <= 1024);
                let name = sidecar_file_name("uploads", &key);
                assert!(name.len() <= MAX_FILE_NAME, "{} bytes", name.len());
                assert_eq!(name.len(), 69);
                assert!(name.is_ascii());
                seen.insert(name);
                keys.insert(key);
            }
        }
        assert_eq!(seen.len(), keys.len());
        // the bucket is part of the name
        assert_ne!(sidecar_file_name("a", "k"), sidecar_file_name("b", "k"));
    }

    #[test]
    fn a_sidecar_of_another_key_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(sidecar_dir(dir.path())).unwrap();
        let sidecar = Sidecar {
            bucket: "b".into(),
            key: "other".into(),
            e_tag: "x".into(),
            attributes: ObjectAttributes::default(),
        };
        std::fs::write(
            sidecar_path(dir.path(), "b", "k"),
            serde_json::to_vec(&sidecar).unwrap(),
        )
        .unwrap();
        assert_eq!(read_sidecar(dir.path(), "b", "k").unwrap(), None);
        assert_eq!(read_sidecar(dir.path(), "b", "absent").unwrap(), None);
    }
}
