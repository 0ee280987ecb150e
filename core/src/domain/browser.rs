//! Browser tokens as rules (DESIGN §5), without I/O: what a token may be created with,
//! and what an init made with it must respect (size, content type, forced metadata).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{validate_metadata, ErrorCode, ValidationError, S3_MAX_OBJECT_SIZE};

/// `expiresIn` bounds and default, in seconds.
pub const MIN_EXPIRES_IN: u64 = 60;
pub const MAX_EXPIRES_IN: u64 = 86_400;
pub const DEFAULT_EXPIRES_IN: u64 = 3_600;
/// At most this many `allowedContentTypes` entries, each at most this long.
pub const MAX_CONTENT_TYPES: usize = 32;
pub const MAX_CONTENT_TYPE_LEN: usize = 127;
/// `maxUploads` bounds.
pub const MAX_MAX_UPLOADS: u64 = 1_000_000;
/// `label`: at most this many bytes of printable ASCII.
pub const MAX_LABEL_LEN: usize = 128;
/// What an `allowedContentTypes` entry looks like (openapi.yaml says the same; a test
/// checks): `type/subtype` or `type/*`, RFC 6838 name characters.
pub const CONTENT_TYPE_PATTERN: &str =
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}/(\*|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62})$";
/// The prefix of every browser token (API keys start with `pwk_`).
pub const BROWSER_TOKEN_PREFIX: &str = "pwb_";

/// Whether a presented credential is a browser token (by its form).
pub fn is_browser_token(presented: &str) -> bool {
    presented.starts_with(BROWSER_TOKEN_PREFIX)
}

/// What a browser token allows, as its caller carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserScope {
    pub token_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub max_file_size: Option<u64>,
    /// Empty: any type.
    pub allowed_content_types: Vec<String>,
    pub max_uploads: Option<u64>,
    /// Merged into every upload's metadata, over the page's keys.
    pub metadata: BTreeMap<String, String>,
}

impl BrowserScope {
    /// Refuses an init the token does not allow: 400 `INVALID_FILE_SIZE` over
    /// `maxFileSize`, 400 `INVALID_CONTENT_TYPE` outside `allowedContentTypes`.
    pub fn admit(&self, file_size: u64, content_type: &str) -> Result<(), ValidationError> {
        if let Some(max) = self.max_file_size {
            if file_size > max {
                return Err(ValidationError::new(
                    ErrorCode::InvalidFileSize,
                    format!(
                        "the file is {file_size} bytes; this browser token allows at most {max}"
                    ),
                ));
            }
        }
        if !content_type_allowed(&self.allowed_content_types, content_type) {
            return Err(ValidationError::new(
                ErrorCode::InvalidContentType,
                format!(
                    "this browser token does not allow the content type {content_type:?}; allowed: {}",
                    self.allowed_content_types.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The page's metadata with the token's merged over it; refused when the result is
    /// not valid metadata (too large together).
    pub fn merge_metadata(
        &self,
        mut page: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ValidationError> {
        page.extend(self.metadata.clone());
        validate_metadata(&page)?;
        Ok(page)
    }
}

/// Whether `content_type` (parameters after `;` ignored, case-insensitive) matches one
/// of `allowed` (exact, or `type/*`); everything matches an empty list.
pub fn content_type_allowed(allowed: &[String], content_type: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((ty, _)) = essence.split_once('/') else {
        return false;
    };
    allowed.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_suffix("/*") {
            Some(main) => main == ty,
            None => pattern == essence,
        }
    })
}

/// A browser token's creation request, parsed at the edge.
#[derive(Debug, Clone, Default)]
pub struct TokenLimits {
    pub expires_in: Option<u64>,
    pub max_file_size: Option<u64>,
    pub allowed_content_types: Option<Vec<String>>,
    pub max_uploads: Option<u64>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub label: Option<String>,
}

fn invalid(message: impl Into<String>) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidParameter, message)
}

/// Whether `p` is an `allowedContentTypes` entry ([`CONTENT_TYPE_PATTERN`]).
pub fn valid_content_type_pattern(p: &str) -> bool {
    let Some((ty, sub)) = p.split_once('/') else {
        return false;
    };
    let name = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    name(ty) && (sub == "*" || name(sub))
}

impl TokenLimits {
    /// Checks every field against its rule; the seconds the token lives.
    pub fn validate(&self) -> Result<u64, ValidationError> {
        let expires_in = self.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
        if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&expires_in) {
            return Err(invalid(format!(
                "expiresIn must be {MIN_EXPIRES_IN} ..= {MAX_EXPIRES_IN} seconds"
            )));
        }
        if let Some(max) = self.max_file_size {
            if !(1..=S3_MAX_OBJECT_SIZE).contains(&max) {
                return Err(ValidationError::new(
                    ErrorCode::InvalidFileSize,
                    format!("maxFileSize must be 1 ..= {S3_MAX_OBJECT_SIZE} bytes"),
                ));
            }
        }
        if let Some(types) = &self.allowed_content_types {
            if types.len() > MAX_CONTENT_TYPES {
                return Err(ValidationError::new(
                    ErrorCode::InvalidContentType,
                    format!("allowedContentTypes has at most {MAX_CONTENT_TYPES} entries"),
                ));
            }
            if let Some(bad) = types.iter().find(|t| !valid_content_type_pattern(t)) {
                return Err(ValidationError::new(
                    ErrorCode::InvalidContentType,
                    format!("allowedContentTypes entry {bad:?} is not `type/subtype` or `type/*`"),
                ));
            }
        }
        if let Some(n) = self.max_uploads {
            if !(1..=MAX_MAX_UPLOADS).contains(&n) {
                return Err(invalid(format!(
                    "maxUploads must be 1 ..= {MAX_MAX_UPLOADS}"
                )));
            }
        }
        if let Some(m) = &self.metadata {
            validate_metadata(m)?;
        }
        if let Some(label) = &self.label {
            if label.len() > MAX_LABEL_LEN || !label.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
                return Err(invalid(format!(
                    "label must be at most {MAX_LABEL_LEN} printable ASCII characters"
                )));
            }
        }
        Ok(expires_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> BrowserScope {
        BrowserScope {
            token_id: Uuid::nil(),
            expires_at: Utc::now(),
            max_file_size: Some(100),
            allowed_content_types: vec!["image/*".into(), "application/pdf".into()],
            max_uploads: None,
            metadata: BTreeMap::from([("tenant".into(), "acme".into())]),
        }
    }

    #[test]
    fn content_types_match_exactly_or_by_main_type() {
        let allowed = scope().allowed_content_types;
        for ok in [
            "image/png",
            "IMAGE/JPEG",
            "application/pdf",
            "application/pdf; x=y",
        ] {
            assert!(content_type_allowed(&allowed, ok), "{ok}");
        }
        for refused in ["text/plain", "application/pdfx", "imagex/png", "image", ""] {
            assert!(!content_type_allowed(&allowed, refused), "{refused}");
        }
        assert!(content_type_allowed(&[], "anything/at-all"));
    }

    #[test]
    fn an_init_over_the_size_or_of_another_type_is_refused_with_its_code() {
        let s = scope();
        assert!(s.admit(100, "image/png").is_ok());
        assert_eq!(
            s.admit(101, "image/png").unwrap_err().code,
            ErrorCode::InvalidFileSize
        );
        assert_eq!(
            s.admit(1, "text/html").unwrap_err().code,
            ErrorCode::InvalidContentType
        );
    }

    #[test]
    fn the_tokens_metadata_wins_over_the_pages() {
        let merged = scope()
            .merge_metadata(BTreeMap::from([
                ("tenant".into(), "evil".into()),
                ("note".into(), "hi".into()),
            ]))
            .unwrap();
        assert_eq!(merged["tenant"], "acme");
        assert_eq!(merged["note"], "hi");
    }

    #[test]
    fn limits_are_checked_and_expiry_defaults_to_an_hour() {
        assert_eq!(
            TokenLimits::default().validate().unwrap(),
            DEFAULT_EXPIRES_IN
        );
        for bad in [
            TokenLimits {
                expires_in: Some(59),
                ..Default::default()
            },
            TokenLimits {
                expires_in: Some(86_401),
                ..Default::default()
            },
            TokenLimits {
                max_file_size: Some(0),
                ..Default::default()
            },
            TokenLimits {
                max_uploads: Some(0),
                ..Default::default()
            },
            TokenLimits {
                allowed_content_types: Some(vec!["image".into()]),
                ..Default::default()
            },
            TokenLimits {
                label: Some("\n".into()),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
