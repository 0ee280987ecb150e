//! Client input parsed into typed values at the edge: the HTTP layer hands raw
//! strings and numbers to these parsers and the use cases receive only what passed.
use std::{collections::BTreeSet, time::Duration};

use partway_protocol::{ErrorCode, Provider, ValidationError};

fn invalid(message: impl Into<String>) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidParameter, message)
}

/// Printable ASCII (space to `~`) with at least one character that is not a space:
/// what may go into an HTTP header value.
pub const PRINTABLE_NOT_BLANK: &str = "^[ -~]*[!-~][ -~]*$";

/// [`PRINTABLE_NOT_BLANK`] as code.
pub fn printable_not_blank(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b)) && s.bytes().any(|b| b != b' ')
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `?wait=N`: how long a request waits for its queued job (0–60 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wait(Duration);

impl Wait {
    pub const MAX_SECONDS: u32 = 60;

    pub fn parse(seconds: Option<u32>) -> Result<Wait, ValidationError> {
        match seconds.unwrap_or(0) {
            s if s <= Wait::MAX_SECONDS => Ok(Wait(Duration::from_secs(s as u64))),
            _ => Err(invalid("wait must be between 0 and 60 seconds")),
        }
    }

    pub fn duration(self) -> Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

/// An `Idempotency-Key` header: 1 to 255 printable ASCII characters, not starting
/// with a space; spaces and tabs after it are not part of the key (HTTP drops them,
/// and so does `parse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;
    /// The header as sent, a JSON Schema pattern (openapi.yaml; a test checks both
    /// agree). Leading white space is left out: HTTP clients refuse to send it.
    pub const HEADER_PATTERN: &'static str = r"^[!-~]([ -~]*[!-~])?[\t ]*$";

    pub fn parse(header: Option<String>) -> Result<Option<IdempotencyKey>, ValidationError> {
        match header.as_deref().map(|k| k.trim_end_matches([' ', '\t'])) {
            None => Ok(None),
            Some(key)
                if key.len() <= IdempotencyKey::MAX_LEN
                    && printable_not_blank(key)
                    && !key.starts_with(' ') =>
            {
                Ok(Some(IdempotencyKey(key.to_string())))
            }
            Some(_) => Err(invalid(
                "Idempotency-Key must be 1 to 255 printable ASCII characters, not starting with a space",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A page size: `limit=` of the list routes, 1 ..= 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub const MAX: u32 = 1000;

    pub fn parse(limit: Option<u32>, default: u32) -> Result<PageLimit, ValidationError> {
        match limit.unwrap_or(default) {
            n @ 1..=PageLimit::MAX => Ok(PageLimit(n)),
            _ => Err(invalid("limit must be between 1 and 1000")),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// `GET …/parts?state=`: which parts to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartState {
    Pending,
    Uploaded,
    All,
}

impl PartState {
    /// Every value `parse` accepts (the spec's enum; a test checks they agree).
    pub const NAMES: [&'static str; 3] = ["pending", "uploaded", "all"];

    /// Default `pending`: what a client still has to send.
    pub fn parse(state: Option<&str>) -> Result<PartState, ValidationError> {
        match state.unwrap_or("pending") {
            "pending" => Ok(PartState::Pending),
            "uploaded" => Ok(PartState::Uploaded),
            "all" => Ok(PartState::All),
            other => Err(invalid(format!(
                "state must be pending, uploaded or all, not {other:?}"
            ))),
        }
    }
}

/// Bring-your-own storage credentials as a client sent them (all optional strings).
/// `Debug` shows which fields were sent, never the keys.
#[derive(Default, Clone)]
pub struct ByoCredentials {
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
    pub s3_endpoint: Option<String>,
    pub r2_access_key: Option<String>,
    pub r2_secret_key: Option<String>,
    pub r2_account_id: Option<String>,
    pub r2_bucket: Option<String>,
}

impl ByoCredentials {
    /// Whether any credential field was sent with a value (blank counts as absent).
    pub fn any_sent(&self) -> bool {
        [
            &self.s3_access_key,
            &self.s3_secret_key,
            &self.s3_bucket,
            &self.s3_region,
            &self.s3_endpoint,
            &self.r2_access_key,
            &self.r2_secret_key,
            &self.r2_account_id,
            &self.r2_bucket,
        ]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.trim().is_empty()))
    }
}

impl std::fmt::Debug for ByoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        f.debug_struct("ByoCredentials")
            .field("s3_access_key", &secret(&self.s3_access_key))
            .field("s3_secret_key", &secret(&self.s3_secret_key))
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_region", &self.s3_region)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("r2_access_key", &secret(&self.r2_access_key))
            .field("r2_secret_key", &secret(&self.r2_secret_key))
            .field("r2_account_id", &self.r2_account_id)
            .field("r2_bucket", &self.r2_bucket)
            .finish()
    }
}

/// Where an upload goes: the server's storage for a provider, or a bucket the client
/// brought with its own keys. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageChoice {
    Server(Provider),
    ByoS3 {
        access_key: String,
        secret_key: String,
        bucket: String,
        region: String,
        /// An http(s) URL without a trailing slash; None: AWS's own endpoint.
        endpoint: Option<String>,
    },
    ByoR2 {
        access_key: String,
        secret_key: String,
        account_id: String,
        bucket: String,
    },
}

impl std::fmt::Debug for StorageChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageChoice::Server(p) => write!(f, "Server({p})"),
            StorageChoice::ByoS3 { bucket, .. } => write!(f, "ByoS3({bucket})"),
            StorageChoice::ByoR2 { bucket, .. } => write!(f, "ByoR2({bucket})"),
        }
    }
}

impl StorageChoice {
    /// Any credential field sent for `provider` means bring-your-own; then its
    /// required fields must all be there.
    pub fn parse(
        provider: Provider,
        byo: &ByoCredentials,
    ) -> Result<StorageChoice, ValidationError> {
        match provider {
            Provider::S3 => {
                let sent = [
                    &byo.s3_access_key,
                    &byo.s3_secret_key,
                    &byo.s3_bucket,
                    &byo.s3_endpoint,
                ];
                if sent.iter().all(|f| non_empty(f).is_none()) {
                    return Ok(StorageChoice::Server(provider));
                }
                let (Some(access), Some(secret), Some(bucket)) = (
                    non_empty(&byo.s3_access_key),
                    non_empty(&byo.s3_secret_key),
                    non_empty(&byo.s3_bucket),
                ) else {
                    return Err(ValidationError::new(
                        ErrorCode::MissingS3Credentials,
                        "s3AccessKey, s3SecretKey and s3Bucket are required together",
                    ));
                };
                let endpoint = match non_empty(&byo.s3_endpoint) {
                    Some(e) if e.starts_with("http://") || e.starts_with("https://") => {
                        Some(e.trim_end_matches('/').to_string())
                    }
                    Some(_) => return Err(invalid("s3Endpoint must be an http(s) URL")),
                    None => None,
                };
                Ok(StorageChoice::ByoS3 {
                    access_key: access.to_string(),
                    secret_key: secret.to_string(),
                    bucket: bucket.to_string(),
                    region: non_empty(&byo.s3_region).unwrap_or("us-east-1").to_string(),
                    endpoint,
                })
            }
            Provider::R2 => {
                let sent = [
                    &byo.r2_access_key,
                    &byo.r2_secret_key,
                    &byo.r2_account_id,
                    &byo.r2_bucket,
                ];
                if sent.iter().all(|f| non_empty(f).is_none()) {
                    return Ok(StorageChoice::Server(provider));
                }
                let (Some(access), Some(secret), Some(account), Some(bucket)) = (
                    non_empty(&byo.r2_access_key),
                    non_empty(&byo.r2_secret_key),
                    non_empty(&byo.r2_account_id),
                    non_empty(&byo.r2_bucket),
                ) else {
                    return Err(ValidationError::new(
                        ErrorCode::MissingR2Credentials,
                        "r2AccessKey, r2SecretKey, r2AccountId and r2Bucket are required together",
                    ));
                };
                if !account.chars().all(|c| c.is_ascii_alphanumeric()) || account.len() > 64 {
                    return Err(invalid("r2AccountId must be alphanumeric"));
                }
                Ok(StorageChoice::ByoR2 {
                    access_key: access.to_string(),
                    secret_key: secret.to_string(),
                    account_id: account.to_string(),
                    bucket: bucket.to_string(),
                })
            }
        }
    }
}

/// The parts a client names at complete, checked against the plan's part count and
/// sorted by number; `None` means "complete with what storage lists".
pub fn complete_parts(
    parts: Option<Vec<(u32, String)>>,
    total: u32,
) -> Result<Option<Vec<(u32, String)>>, ValidationError> {
    let Some(mut parts) = parts else {
        return Ok(None);
    };
    if parts.is_empty() {
        return Err(ValidationError::new(
            ErrorCode::MissingParts,
            "parts must list every part, or be omitted to use what storage holds",
        ));
    }
    let mut seen = BTreeSet::new();
    for (number, etag) in &parts {
        if *number < 1 || *number > total {
            return Err(ValidationError::new(
                ErrorCode::PartsMismatch,
                format!("partNumber {number} is outside 1..={total}"),
            ));
        }
        if etag.trim().trim_matches('"').is_empty() {
            return Err(ValidationError::new(
                ErrorCode::InvalidParts,
                format!("part {number} has an empty etag"),
            ));
        }
        if !seen.insert(*number) {
            return Err(ValidationError::new(
                ErrorCode::PartsMismatch,
                format!("part {number} is listed twice"),
            ));
        }
    }
    if seen.len() as u32 != total {
        return Err(ValidationError::new(
            ErrorCode::IncompleteParts,
            format!("expected {total} parts, got {}", seen.len()),
        ));
    }
    parts.sort_by_key(|(n, _)| *n);
    Ok(Some(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: std::fmt::Debug>(r: Result<T, ValidationError>) -> ErrorCode {
        r.expect_err("should be refused").code
    }

    #[test]
    fn wait_limit_and_state() {
        assert!(Wait::parse(None).unwrap().is_zero());
        assert_eq!(
            Wait::parse(Some(60)).unwrap().duration(),
            Duration::from_secs(60)
        );
        assert_eq!(code(Wait::parse(Some(61))), ErrorCode::InvalidParameter);
        assert_eq!(PageLimit::parse(None, 50).unwrap().get(), 50);
        assert_eq!(PageLimit::parse(Some(1000), 50).unwrap().get(), 1000);
        for bad in [0, 1001] {
            assert_eq!(
                code(PageLimit::parse(Some(bad), 50)),
                ErrorCode::InvalidParameter
            );
        }
        assert_eq!(PartState::parse(None), Ok(PartState::Pending));
        assert_eq!(PartState::parse(Some("all")), Ok(PartState::All));
        assert_eq!(
            code(PartState::parse(Some("done"))),
            ErrorCode::InvalidParameter
        );
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(IdempotencyKey::parse(None), Ok(None));
        let key = IdempotencyKey::parse(Some("k-1".into())).unwrap().unwrap();
        assert_eq!(key.as_str(), "k-1");
        let longest = "x".repeat(255);
        assert!(IdempotencyKey::parse(Some(longest)).unwrap().is_some());
        let spaced = IdempotencyKey::parse(Some("a b \t".into()))
            .unwrap()
            .unwrap();
        assert_eq!(spaced.as_str(), "a b");
        for bad in [
            "",
            "a\nb",
            &"x".repeat(256),
            " ",
            "   ",
            " a",
            "\u{e9}",
            "a\tb",
        ] {
            assert_eq!(
                code(IdempotencyKey::parse(Some(bad.to_string()))),
                ErrorCode::InvalidParameter
            );
        }
    }

    #[test]
    fn byo_credentials_debug_shows_no_key() {
        let byo = ByoCredentials {
            s3_access_key: Some("AKIA-ACCESS-KEY".into()),
            s3_secret_key: Some("very-secret-key".into()),
            s3_bucket: Some("bucket".into()),
            r2_access_key: Some("r2-access".into()),
            r2_secret_key: Some("r2-secret".into()),
            ..Default::default()
        };
        let shown = format!("{byo:?}");
        for secret in [
            "AKIA-ACCESS-KEY",
            "very-secret-key",
            "r2-access",
            "r2-secret",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("bucket") && shown.contains("[redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn storage_choices() {
        let none = ByoCredentials::default();
        assert_eq!(
            StorageChoice::parse(Provider::R2, &none).unwrap(),
            StorageChoice::Server(Provider::R2)
        );
        let partial = ByoCredentials {
            s3_bucket: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(
            code(StorageChoice::parse(Provider::S3, &partial)),
            ErrorCode::MissingS3Credentials
        );
        // R2 fields do not make an S3 upload bring-your-own.
        let r2_only = ByoCredentials {
            r2_bucket: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(
            StorageChoice::parse(Provider::S3, &r2_only).unwrap(),
            StorageChoice::Server(Provider::S3)
        );
        let full = ByoCredentials {
            s3_access_key: Some("AK".into()),
            s3_secret_key: Some("very-secret".into()),
            s3_bucket: Some("bucket".into()),
            s3_endpoint: Some("http://minio:9000/".into()),
            ..Default::default()
        };
        let choice = StorageChoice::parse(Provider::S3, &full).unwrap();
        assert!(matches!(
            &choice,
            StorageChoice::ByoS3 { endpoint: Some(e), region, .. }
                if e == "http://minio:9000" && region == "us-east-1"
        ));
        assert!(!format!("{choice:?}").contains("very-secret"));
        let ftp = ByoCredentials {
            s3_endpoint: Some("ftp://x".into()),
            ..full
        };
        assert_eq!(
            code(StorageChoice::parse(Provider::S3, &ftp)),
            ErrorCode::InvalidParameter
        );
        let bad_account = ByoCredentials {
            r2_access_key: Some("a".into()),
            r2_secret_key: Some("s".into()),
            r2_account_id: Some("not/alnum".into()),
            r2_bucket: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(
            code(StorageChoice::parse(Provider::R2, &bad_account)),
            ErrorCode::InvalidParameter
        );
    }

    #[test]
    fn complete_part_lists() {
        let etag = |n: u32| (n, format!("\"e{n}\""));
        assert_eq!(complete_parts(None, 3), Ok(None));
        assert_eq!(
            complete_parts(Some(vec![etag(3), etag(1), etag(2)]), 3).unwrap(),
            Some(vec![etag(1), etag(2), etag(3)])
        );
        assert_eq!(
            code(complete_parts(Some(vec![]), 3)),
            ErrorCode::MissingParts
        );
        assert_eq!(
            code(complete_parts(Some(vec![etag(4)]), 3)),
            ErrorCode::PartsMismatch
        );
        assert_eq!(
            code(complete_parts(Some(vec![etag(0)]), 3)),
            ErrorCode::PartsMismatch
        );
        assert_eq!(
            code(complete_parts(Some(vec![etag(1), etag(1), etag(2)]), 3)),
            ErrorCode::PartsMismatch
        );
        assert_eq!(
            code(complete_parts(Some(vec![(1, " \"\" ".into())]), 1)),
            ErrorCode::InvalidParts
        );
        assert_eq!(
            code(complete_parts(Some(vec![etag(1), etag(2)]), 3)),
            ErrorCode::IncompleteParts
        );
    }
}
