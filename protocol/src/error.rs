//! The error-code vocabulary of the HTTP API (DESIGN §3).
//!
//! One enum so every layer (validation, use cases, the worker's `lastError`) speaks
//! the same codes and the HTTP status is decided in exactly one place.

use strum::IntoEnumIterator;

/// A machine-readable error code; serialized as the SCREAMING_SNAKE string clients
/// of the reference design already match on.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::EnumIter,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Unauthorized,
    MissingRequiredFields,
    InvalidFileSize,
    InvalidPartSize,
    InvalidFilename,
    InvalidMetadata,
    InvalidProvider,
    MissingS3Credentials,
    MissingR2Credentials,
    MissingResumeToken,
    MissingParts,
    /// Not every part of the upload's plan is named, or held by storage (409: the
    /// request is well formed; the upload needs its other parts first).
    IncompleteParts,
    /// The parts named do not fit the upload's plan: a part number beyond its
    /// totalParts, a part listed twice, a reported size other than the part's (409).
    PartsMismatch,
    InvalidParts,
    InvalidJson,
    InvalidParameter,
    InvalidEndpoint,
    /// A content type a browser token does not allow.
    InvalidContentType,
    UploadNotFound,
    NotFound,
    MethodNotAllowed,
    UploadAlreadyCompleted,
    UploadAborted,
    UploadNotReady,
    UploadExpired,
    Forbidden,
    QuotaExceeded,
    RateLimited,
    PayloadTooLarge,
    UnsupportedMediaType,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    /// The wire string; equals the serde form (a test checks it).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Every code, so tests (and docs generators) can check the whole vocabulary.
    pub fn all() -> impl Iterator<Item = ErrorCode> {
        ErrorCode::iter()
    }

    /// HTTP status per DESIGN §3; the only place that mapping lives.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::MissingRequiredFields
            | ErrorCode::InvalidFileSize
            | ErrorCode::InvalidPartSize
            | ErrorCode::InvalidFilename
            | ErrorCode::InvalidMetadata
            | ErrorCode::InvalidProvider
            | ErrorCode::MissingS3Credentials
            | ErrorCode::MissingR2Credentials
            | ErrorCode::MissingResumeToken
            | ErrorCode::MissingParts
            | ErrorCode::InvalidParts
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidParameter
            | ErrorCode::InvalidEndpoint
            | ErrorCode::InvalidContentType => 400,
            ErrorCode::Forbidden | ErrorCode::QuotaExceeded => 403,
            ErrorCode::UploadNotFound | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::UploadAlreadyCompleted
            | ErrorCode::UploadAborted
            | ErrorCode::UploadNotReady
            | ErrorCode::IncompleteParts
            | ErrorCode::PartsMismatch => 409,
            ErrorCode::UploadExpired => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::InternalError => 500,
        }
    }

    /// Parses a stored code back (e.g. an upload's `lastError` read from the
    /// database); `None` for strings that are not one of our codes.
    pub fn from_code(s: &str) -> Option<ErrorCode> {
        s.parse().ok()
    }
}

/// A rejected input, already carrying the API code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub code: ErrorCode,
    pub message: String,
}

impl ValidationError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ValidationError {
        ValidationError {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique() {
        let codes: HashSet<_> = ErrorCode::all().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ErrorCode::all().count());
    }

    #[test]
    fn serde_matches_as_str_and_round_trips() {
        for c in ErrorCode::all() {
            let json = serde_json::to_string(&c).expect("serialize");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, c);
            assert_eq!(c.as_str().parse::<ErrorCode>().ok(), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(
            ErrorCode::MissingS3Credentials.as_str(),
            "MISSING_S3_CREDENTIALS"
        );
        assert_eq!(
            ErrorCode::MissingR2Credentials.as_str(),
            "MISSING_R2_CREDENTIALS"
        );
        assert!(ErrorCode::from_code("missing_parts").is_none());
        assert!("NOPE".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn http_status_per_design_table() {
        let expected: &[(&str, u16)] = &[
            ("UNAUTHORIZED", 401),
            ("MISSING_REQUIRED_FIELDS", 400),
            ("INVALID_FILE_SIZE", 400),
            ("INVALID_PART_SIZE", 400),
            ("INVALID_FILENAME", 400),
            ("INVALID_METADATA", 400),
            ("INVALID_PROVIDER", 400),
            ("MISSING_S3_CREDENTIALS", 400),
            ("MISSING_R2_CREDENTIALS", 400),
            ("MISSING_RESUME_TOKEN", 400),
            ("MISSING_PARTS", 400),
            ("INCOMPLETE_PARTS", 409),
            ("PARTS_MISMATCH", 409),
            ("INVALID_PARTS", 400),
            ("INVALID_JSON", 400),
            ("INVALID_PARAMETER", 400),
            ("INVALID_ENDPOINT", 400),
            ("INVALID_CONTENT_TYPE", 400),
            ("FORBIDDEN", 403),
            ("QUOTA_EXCEEDED", 403),
            ("UPLOAD_NOT_FOUND", 404),
            ("NOT_FOUND", 404),
            ("METHOD_NOT_ALLOWED", 405),
            ("UPLOAD_ALREADY_COMPLETED", 409),
            ("UPLOAD_ABORTED", 409),
            ("UPLOAD_NOT_READY", 409),
            ("UPLOAD_EXPIRED", 410),
            ("PAYLOAD_TOO_LARGE", 413),
            ("UNSUPPORTED_MEDIA_TYPE", 415),
            ("RATE_LIMITED", 429),
            ("SERVICE_UNAVAILABLE", 503),
            ("INTERNAL_ERROR", 500),
        ];
        assert_eq!(expected.len(), ErrorCode::all().count());
        for (code, status) in expected {
            let c = ErrorCode::from_code(code).expect("known code");
            assert_eq!(c.http_status(), *status, "{code}");
        }
    }
}
