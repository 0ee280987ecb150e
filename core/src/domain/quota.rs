//! Per-owner quotas on unfinished uploads (DESIGN §7): how many an owner may hold and
//! how many bytes they declare in total. Pure: the store counts, this decides.
use super::{ErrorCode, UploadStatus, ValidationError};

/// The limits one owner is held to; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub max_active_uploads: Option<u64>,
    pub max_active_bytes: Option<u64>,
}

/// One of an owner's own limits, as `partway owners set-quota` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OwnerLimit {
    /// The server's default applies.
    #[default]
    Default,
    Unlimited,
    Max(u64),
}

impl OwnerLimit {
    /// `default`, `unlimited`, or a number (for bytes, sizes like `10GiB` too).
    pub fn parse(text: &str, bytes: bool) -> Result<OwnerLimit, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(OwnerLimit::Default),
            "unlimited" => Ok(OwnerLimit::Unlimited),
            t if bytes && t == "0" => Ok(OwnerLimit::Max(0)),
            t if bytes => partway_protocol::parse_size(t).map(OwnerLimit::Max),
            t => t
                .parse()
                .map(OwnerLimit::Max)
                .map_err(|_| format!("expected a number, `unlimited` or `default`, not {text:?}")),
        }
    }

    fn or(self, default: Option<u64>) -> Option<u64> {
        match self {
            OwnerLimit::Default => default,
            OwnerLimit::Unlimited => None,
            OwnerLimit::Max(n) => Some(n),
        }
    }
}

impl std::fmt::Display for OwnerLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnerLimit::Default => f.write_str("default"),
            OwnerLimit::Unlimited => f.write_str("unlimited"),
            OwnerLimit::Max(n) => write!(f, "{n}"),
        }
    }
}

/// An owner's own limits, each replacing the server default unless `Default`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaOverride {
    pub max_active_uploads: OwnerLimit,
    pub max_active_bytes: OwnerLimit,
}

/// What an owner holds now: unfinished uploads and their declared bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub uploads: u64,
    pub bytes: u64,
}

/// The statuses that count against a quota. `failed` counts: a failed upload still
/// holds its storage multipart upload (and its parts) until it is aborted or expires,
/// so the owner frees quota by aborting it. `aborting` does not: it is on its way out.
pub const ACTIVE_STATUSES: [UploadStatus; 5] = [
    UploadStatus::Initiating,
    UploadStatus::Active,
    UploadStatus::Paused,
    UploadStatus::Completing,
    UploadStatus::Failed,
];

impl Quota {
    /// The owner's limits: their override where set, the server default otherwise.
    pub fn for_owner(self, own: QuotaOverride) -> Quota {
        Quota {
            max_active_uploads: own.max_active_uploads.or(self.max_active_uploads),
            max_active_bytes: own.max_active_bytes.or(self.max_active_bytes),
        }
    }

    pub fn is_unlimited(self) -> bool {
        self.max_active_uploads.is_none() && self.max_active_bytes.is_none()
    }

    /// Whether one more upload of `file_size` bytes fits beside `usage`; the refusal
    /// names the limit and the numbers.
    pub fn admit(self, usage: Usage, file_size: u64) -> Result<(), ValidationError> {
        if let Some(max) = self.max_active_uploads {
            if usage.uploads.saturating_add(1) > max {
                return Err(ValidationError::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "active upload quota exceeded: {} unfinished uploads, the limit is {max}",
                        usage.uploads
                    ),
                ));
            }
        }
        if let Some(max) = self.max_active_bytes {
            let total = usage.bytes.saturating_add(file_size);
            if total > max {
                return Err(ValidationError::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "active bytes quota exceeded: {} bytes unfinished plus {file_size} would be {total}, the limit is {max}",
                        usage.bytes
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(uploads: Option<u64>, bytes: Option<u64>) -> Quota {
        Quota {
            max_active_uploads: uploads,
            max_active_bytes: bytes,
        }
    }

    #[test]
    fn unlimited_admits_anything() {
        let usage = Usage {
            uploads: u64::MAX,
            bytes: u64::MAX,
        };
        assert!(Quota::default().is_unlimited());
        assert!(Quota::default().admit(usage, u64::MAX).is_ok());
    }

    #[test]
    fn upload_count_limit_is_inclusive() {
        let q = quota(Some(2), None);
        assert!(q
            .admit(
                Usage {
                    uploads: 1,
                    bytes: 0
                },
                10
            )
            .is_ok());
        let err = q
            .admit(
                Usage {
                    uploads: 2,
                    bytes: 0,
                },
                10,
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::QuotaExceeded);
        assert!(err.message.contains("active upload"), "{}", err.message);
        assert!(err.message.contains("2 unfinished"), "{}", err.message);
        assert!(err.message.contains("limit is 2"), "{}", err.message);
        assert!(quota(Some(0), None).admit(Usage::default(), 1).is_err());
    }

    #[test]
    fn byte_limit_counts_the_new_upload() {
        let q = quota(None, Some(100));
        assert!(q
            .admit(
                Usage {
                    uploads: 9,
                    bytes: 60
                },
                40
            )
            .is_ok());
        let err = q
            .admit(
                Usage {
                    uploads: 9,
                    bytes: 60,
                },
                41,
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::QuotaExceeded);
        assert!(err.message.contains("bytes"), "{}", err.message);
        assert!(err.message.contains("would be 101"), "{}", err.message);
        assert!(err.message.contains("limit is 100"), "{}", err.message);
        // No overflow at the edges.
        let usage = Usage {
            uploads: 0,
            bytes: u64::MAX,
        };
        assert!(q.admit(usage, u64::MAX).is_err());
    }

    #[test]
    fn overrides_replace_defaults_one_by_one() {
        let default = quota(Some(10), Some(1000));
        let own = QuotaOverride {
            max_active_uploads: OwnerLimit::Max(3),
            max_active_bytes: OwnerLimit::Default,
        };
        assert_eq!(default.for_owner(own), quota(Some(3), Some(1000)));
        assert_eq!(default.for_owner(QuotaOverride::default()), default);
        let unlimited = QuotaOverride {
            max_active_uploads: OwnerLimit::Unlimited,
            max_active_bytes: OwnerLimit::Max(5),
        };
        assert_eq!(default.for_owner(unlimited), quota(None, Some(5)));
    }

    #[test]
    fn owner_limits_parse() {
        assert_eq!(OwnerLimit::parse("12", false), Ok(OwnerLimit::Max(12)));
        assert_eq!(OwnerLimit::parse("0", false), Ok(OwnerLimit::Max(0)));
        assert_eq!(
            OwnerLimit::parse("Unlimited", false),
            Ok(OwnerLimit::Unlimited)
        );
        assert_eq!(OwnerLimit::parse("default", true), Ok(OwnerLimit::Default));
        assert_eq!(
            OwnerLimit::parse("10GiB", true),
            Ok(OwnerLimit::Max(10 << 30))
        );
        assert_eq!(OwnerLimit::parse("0", true), Ok(OwnerLimit::Max(0)));
        assert!(OwnerLimit::parse("10GiB", false).is_err());
        assert!(OwnerLimit::parse("-1", false).is_err());
        assert!(OwnerLimit::parse("lots", true).is_err());
        for l in [
            OwnerLimit::Default,
            OwnerLimit::Unlimited,
            OwnerLimit::Max(7),
        ] {
            assert_eq!(OwnerLimit::parse(&l.to_string(), false), Ok(l));
        }
    }

    #[test]
    fn failed_counts_and_finished_do_not() {
        assert!(ACTIVE_STATUSES.contains(&UploadStatus::Failed));
        for s in [
            UploadStatus::Completed,
            UploadStatus::Aborting,
            UploadStatus::Aborted,
            UploadStatus::Expired,
        ] {
            assert!(!ACTIVE_STATUSES.contains(&s), "{s:?}");
        }
    }
}
