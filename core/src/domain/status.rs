//! The upload status machine (DESIGN §2).
//!
//! The use cases take the statuses a change may start from out of this table
//! ([`UploadStatus::sources`]), so that API and worker cannot drift apart on what is
//! allowed (e.g. the reference design made a failed complete terminal; here
//! `completing → active` lets the client retry).

use std::fmt;
use std::str::FromStr;

use super::error::ErrorCode;
use super::validate::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatus {
    Initiating,
    Active,
    Paused,
    Completing,
    Completed,
    Failed,
    Aborting,
    Aborted,
    Expired,
}

impl UploadStatus {
    pub const ALL: [UploadStatus; 9] = [
        UploadStatus::Initiating,
        UploadStatus::Active,
        UploadStatus::Paused,
        UploadStatus::Completing,
        UploadStatus::Completed,
        UploadStatus::Failed,
        UploadStatus::Aborting,
        UploadStatus::Aborted,
        UploadStatus::Expired,
    ];

    /// The lowercase form stored in the database and sent in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Initiating => "initiating",
            UploadStatus::Active => "active",
            UploadStatus::Paused => "paused",
            UploadStatus::Completing => "completing",
            UploadStatus::Completed => "completed",
            UploadStatus::Failed => "failed",
            UploadStatus::Aborting => "aborting",
            UploadStatus::Aborted => "aborted",
            UploadStatus::Expired => "expired",
        }
    }

    /// Terminal uploads have nothing left on storage to act on.
    /// `failed` is not terminal: it can still be aborted to clean storage up.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            UploadStatus::Completed | UploadStatus::Aborted | UploadStatus::Expired
        )
    }

    pub fn can_transition_to(self, next: UploadStatus) -> bool {
        use UploadStatus::*;
        matches!(
            (self, next),
            (Initiating, Active)
                | (Active, Paused)
                | (Paused, Active)
                | (Active, Completing)
                // Completing a paused upload resumes it implicitly.
                | (Paused, Completing)
                | (Completing, Completed)
                // Storage rejected the parts: the client may fix them and retry.
                | (Completing, Active)
                | (Initiating | Active | Paused | Completing | Failed, Aborting)
                | (Aborting, Aborted)
                // The sweeper aborts the storage upload of stale uploads.
                | (Active | Paused, Expired)
                // Only when storage lost the upload or retries are exhausted.
                | (Initiating | Completing, Failed)
        )
    }

    /// The statuses that may change to this one: the `from` of a conditional update.
    pub fn sources(self) -> Vec<UploadStatus> {
        UploadStatus::ALL
            .into_iter()
            .filter(|from| from.can_transition_to(self))
            .collect()
    }
}

impl fmt::Display for UploadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UploadStatus {
    type Err = ValidationError;

    /// Exact lowercase match, like the stored and JSON form. The error is
    /// `INVALID_PARAMETER` because the usual untrusted source is a `?status=` query.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UploadStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "unknown upload status {s:?}; expected one of: {}",
                        UploadStatus::ALL.map(UploadStatus::as_str).join(", ")
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::UploadStatus::*;
    use super::*;
    use std::collections::HashSet;

    const LEGAL: &[(UploadStatus, UploadStatus)] = &[
        (Initiating, Active),
        (Active, Paused),
        (Paused, Active),
        (Active, Completing),
        (Paused, Completing),
        (Completing, Completed),
        (Completing, Active),
        (Initiating, Aborting),
        (Active, Aborting),
        (Paused, Aborting),
        (Completing, Aborting),
        (Failed, Aborting),
        (Aborting, Aborted),
        (Active, Expired),
        (Paused, Expired),
        (Initiating, Failed),
        (Completing, Failed),
    ];

    #[test]
    fn exactly_the_design_transitions() {
        let legal: HashSet<_> = LEGAL.iter().copied().collect();
        assert_eq!(legal.len(), 17);
        let mut checked = 0;
        for from in UploadStatus::ALL {
            for to in UploadStatus::ALL {
                checked += 1;
                let ok = legal.contains(&(from, to));
                assert_eq!(from.can_transition_to(to), ok, "{from} -> {to}");
                assert_eq!(to.sources().contains(&from), ok, "{from} -> {to}");
            }
        }
        assert_eq!(checked, 81);
    }

    #[test]
    fn no_self_transitions_and_terminals_are_dead_ends() {
        for s in UploadStatus::ALL {
            assert!(!s.can_transition_to(s));
            if s.is_terminal() {
                assert!(UploadStatus::ALL.iter().all(|t| !s.can_transition_to(*t)));
            }
        }
        let terminal: Vec<_> = UploadStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, vec![Completed, Aborted, Expired]);
    }

    #[test]
    fn strings_serde_and_parse() {
        let all: HashSet<_> = UploadStatus::ALL.iter().collect();
        assert_eq!(all.len(), 9);
        for s in UploadStatus::ALL {
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(s.as_str().parse::<UploadStatus>(), Ok(s));
            let json = serde_json::to_string(&s).expect("serialize");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<UploadStatus>(&json).ok(), Some(s));
        }
        let err = "Active".parse::<UploadStatus>().unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidParameter);
        assert!("".parse::<UploadStatus>().is_err());
        assert!("done".parse::<UploadStatus>().is_err());
    }

    #[test]
    fn sources_of_the_conditional_updates() {
        assert_eq!(Completing.sources(), vec![Active, Paused]);
        assert_eq!(Expired.sources(), vec![Active, Paused]);
        assert_eq!(
            Aborting.sources(),
            vec![Initiating, Active, Paused, Completing, Failed]
        );
    }
}
