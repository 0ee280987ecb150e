//! Validation of client input that ends up in object keys, S3 headers or provider
//! selection.
//!
//! Filenames and owners become part of the object key, so they are checked (and
//! then sanitised again) to make path traversal impossible; metadata becomes
//! `x-amz-meta-*` headers, so it must be header-safe.

use std::collections::BTreeMap;

use partway_protocol::{ErrorCode, ResumeToken, ValidationError};

use super::plan::PlanError;

/// Lets callers treat plan failures like any other rejected input.
impl From<PlanError> for ValidationError {
    fn from(e: PlanError) -> Self {
        ValidationError::new(e.code(), e.to_string())
    }
}

/// Longest accepted filename in bytes (the usual filesystem limit).
pub const MAX_FILENAME_BYTES: usize = 255;

fn invalid_filename(message: &str) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidFilename, message)
}

/// Rejects names that could not be a plain file name on a client's disk; the key
/// uses [`key_safe_filename`] anyway, this is so clients learn about bad input
/// instead of getting a silently renamed object.
pub fn validate_filename(name: &str) -> Result<(), ValidationError> {
    if name.trim().is_empty() {
        return Err(invalid_filename("filename must not be empty"));
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(invalid_filename(&format!(
            "filename is {} bytes long; at most {MAX_FILENAME_BYTES} bytes are allowed",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid_filename(
            "filename must not contain control characters",
        ));
    }
    if name.contains(['/', '\\']) {
        return Err(invalid_filename(
            "filename must not contain '/' or '\\'; send the bare file name without a path",
        ));
    }
    if name == "." || name == ".." {
        return Err(invalid_filename("filename must not be '.' or '..'"));
    }
    Ok(())
}

/// The filename as it appears in the object key: only characters that are
/// unambiguous in keys and URLs, never a leading dot (no hidden/relative names),
/// never empty. Kept within [`MAX_FILENAME_BYTES`] even for unvalidated input.
pub fn key_safe_filename(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut out = String::with_capacity(mapped.len());
    for c in mapped.trim_start_matches('.').chars() {
        if out.len() + c.len_utf8() > MAX_FILENAME_BYTES {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push_str("file");
    }
    out
}

/// `{prefix}/{owner}/{uuid}/{filename}`. The uuid makes keys unique per upload, so
/// two uploads of the same name never collide. Slashes around the (server
/// configured) prefix are trimmed so `"uploads/"` and `"uploads"` give one key.
pub fn object_key(prefix: &str, owner: &str, token: &ResumeToken, filename: &str) -> String {
    let owner = key_safe_filename(owner);
    let file = key_safe_filename(filename);
    let uuid = token.uuid().hyphenated();
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{owner}/{uuid}/{file}")
    } else {
        format!("{prefix}/{owner}/{uuid}/{file}")
    }
}

/// Upper bound for all metadata keys and values together, in bytes (S3 allows
/// 2 KiB of user metadata).
pub const MAX_METADATA_BYTES: usize = 2048;
/// Longest accepted metadata key in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 128;

fn invalid_metadata(message: String) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidMetadata, message)
}

/// Metadata is sent to storage as `x-amz-meta-<key>: <value>` headers, so keys must
/// be header-name tokens and values printable ASCII.
pub fn validate_metadata(m: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    let mut total = 0usize;
    for (key, value) in m {
        if key.is_empty() {
            return Err(invalid_metadata(
                "metadata keys must not be empty (keys become x-amz-meta-* HTTP headers)"
                    .to_owned(),
            ));
        }
        if key.len() > MAX_METADATA_KEY_BYTES {
            return Err(invalid_metadata(format!(
                "metadata key is {} bytes long; at most {MAX_METADATA_KEY_BYTES} are allowed \
                 (keys become x-amz-meta-* HTTP headers)",
                key.len()
            )));
        }
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid_metadata(format!(
                "metadata key {key:?} may only contain A-Z, a-z, 0-9, '_' and '-' \
                 (keys become x-amz-meta-* HTTP headers)"
            )));
        }
        if !value.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
            return Err(invalid_metadata(format!(
                "metadata value for {key:?} may only contain printable ASCII characters \
                 (values are sent as x-amz-meta-* HTTP headers)"
            )));
        }
        total = total.saturating_add(key.len()).saturating_add(value.len());
    }
    if total > MAX_METADATA_BYTES {
        return Err(invalid_metadata(format!(
            "metadata is {total} bytes (keys plus values); at most {MAX_METADATA_BYTES} \
             are allowed because it is stored as x-amz-meta-* headers"
        )));
    }
    Ok(())
}

/// Longest accepted owner name.
pub const MAX_OWNER_NAME_LEN: usize = 64;

/// Owner names go verbatim into object keys, so only key-safe slugs are allowed.
pub fn validate_owner_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_OWNER_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            ErrorCode::InvalidParameter,
            format!(
                "owner name must be 1 to {MAX_OWNER_NAME_LEN} characters of a-z, 0-9, '_' and '-'"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<(), ValidationError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn filenames_accepted() {
        for name in [
            "a",
            "report.pdf",
            "..hidden",
            "...",
            ".bashrc",
            "my file (1).tar.gz",
            "résumé.docx",
            "日本語のファイル.txt",
            "emoji 🎉.png",
            &"a".repeat(255),
        ] {
            assert_eq!(validate_filename(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn filenames_rejected() {
        let long = "a".repeat(256);
        // 128 two-byte chars: 128 chars but 256 bytes.
        let long_bytes = "é".repeat(128);
        for name in [
            "",
            " ",
            "\t\n",
            long.as_str(),
            long_bytes.as_str(),
            "a\0b",
            "a\nb",
            "bell\u{7}",
            "del\u{7f}",
            "c1\u{85}",
            ".",
            "..",
            "../etc/passwd",
            "..\\windows\\system32",
            "/etc/passwd",
            "dir/file.txt",
            "C:\\file.txt",
            "a/../../b",
        ] {
            assert_eq!(
                code(validate_filename(name)),
                Some(ErrorCode::InvalidFilename),
                "{name:?}"
            );
        }
    }

    #[test]
    fn key_safe_filenames() {
        assert_eq!(key_safe_filename("report.pdf"), "report.pdf");
        assert_eq!(
            key_safe_filename("my file (1).tar.gz"),
            "my_file__1_.tar.gz"
        );
        assert_eq!(
            key_safe_filename("résumé-v2_final.docx"),
            "résumé-v2_final.docx"
        );
        assert_eq!(key_safe_filename("日本語.txt"), "日本語.txt");
        assert_eq!(key_safe_filename("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(key_safe_filename(".bashrc"), "bashrc");
        assert_eq!(key_safe_filename("...x"), "x");
        assert_eq!(key_safe_filename(".."), "file");
        assert_eq!(key_safe_filename(""), "file");
        assert_eq!(key_safe_filename("a\0b"), "a_b");
        assert_eq!(key_safe_filename("a%2Fb?c#d"), "a_2Fb_c_d");
        assert_eq!(key_safe_filename("🎉"), "_");
        let long = key_safe_filename(&"é".repeat(300));
        assert!(long.len() <= MAX_FILENAME_BYTES);
        for name in ["x", ".y", "a/b\\c", "..", "\u{202e}evil"] {
            let k = key_safe_filename(name);
            assert!(!k.is_empty() && !k.starts_with('.'));
            assert!(!k.contains(['/', '\\']));
        }
    }

    #[test]
    fn object_keys() {
        let token = ResumeToken::new_random();
        let uuid = token.uuid().hyphenated().to_string();
        assert_eq!(
            object_key("uploads", "acme", &token, "a b.txt"),
            format!("uploads/acme/{uuid}/a_b.txt")
        );
        assert_eq!(
            object_key("", "acme", &token, "a.txt"),
            format!("acme/{uuid}/a.txt")
        );
        assert_eq!(
            object_key("/uploads/", "acme", &token, "a.txt"),
            format!("uploads/acme/{uuid}/a.txt")
        );
        assert_eq!(
            object_key("p", "../x", &token, "../../etc/passwd"),
            format!("p/_x/{uuid}/_.._etc_passwd")
        );
        assert!(!object_key("p", "o", &token, "f").contains("mpu_"));
    }

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn metadata() {
        assert_eq!(validate_metadata(&BTreeMap::new()), Ok(()));
        assert_eq!(
            validate_metadata(&meta(&[("project-id", "42"), ("Owner_Name", "A b ~!")])),
            Ok(())
        );
        assert_eq!(validate_metadata(&meta(&[("k", "")])), Ok(()));
        let bad = [
            meta(&[("", "v")]),
            meta(&[("a b", "v")]),
            meta(&[("a.b", "v")]),
            meta(&[("ключ", "v")]),
            meta(&[("k", "line\nbreak")]),
            meta(&[("k", "tab\there")]),
            meta(&[("k", "é")]),
            meta(&[("k", "\u{7f}")]),
        ];
        for m in &bad {
            let e = validate_metadata(m).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidMetadata, "{m:?}");
            assert!(e.message.contains("x-amz-meta"), "{}", e.message);
        }
        let k129 = "k".repeat(129);
        assert_eq!(
            code(validate_metadata(&meta(&[(k129.as_str(), "v")]))),
            Some(ErrorCode::InvalidMetadata)
        );
        let k128 = "k".repeat(128);
        assert_eq!(validate_metadata(&meta(&[(k128.as_str(), "v")])), Ok(()));
        // Exactly 2048 bytes of keys + values is fine, one more is not.
        let v = "v".repeat(2048 - 1);
        assert_eq!(validate_metadata(&meta(&[("k", v.as_str())])), Ok(()));
        let v = "v".repeat(2048);
        let e = validate_metadata(&meta(&[("k", v.as_str())])).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMetadata);
        assert!(e.message.contains("x-amz-meta"));
        let v = "v".repeat(1020);
        assert_eq!(
            code(validate_metadata(&meta(&[
                ("a1", v.as_str()),
                ("b1", v.as_str()),
                ("c", "xxxx")
            ]))),
            Some(ErrorCode::InvalidMetadata)
        );
    }

    #[test]
    fn owner_names() {
        for ok in ["a", "acme", "team-7_b", &"a".repeat(64)] {
            assert_eq!(validate_owner_name(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "Acme", "a b", "a/b", "..", "a.b", "é", &"a".repeat(65)] {
            assert_eq!(
                code(validate_owner_name(bad)),
                Some(ErrorCode::InvalidParameter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn plan_error_converts() {
        let e: ValidationError = PlanError::FileSizeZero.into();
        assert_eq!(e.code, ErrorCode::InvalidFileSize);
        assert_eq!(e.message, PlanError::FileSizeZero.to_string());
        assert_eq!(e.to_string(), e.message);
    }
}
