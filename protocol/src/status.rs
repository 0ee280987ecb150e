//! The upload status machine (DESIGN §2).
//!
//! The use cases take the statuses a change may start from out of this table
//! ([`UploadStatus::sources`]), so that API and worker cannot drift apart on what is
//! allowed (e.g. the reference design made a failed complete terminal; here
//! `completing → active` lets the client retry).

use std::str::FromStr;

use strum::IntoEnumIterator;

use crate::error::{ErrorCode, ValidationError};

/// Stored as its lowercase name (the JSON form), so rows stay readable in `psql`.
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
    strum::IntoStaticStr,
    strum::Display,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
pub enum UploadStatus {
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "initiating"))]
    Initiating,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "active"))]
    Active,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "paused"))]
    Paused,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "completing"))]
    Completing,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "completed"))]
    Completed,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "failed"))]
    Failed,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "aborting"))]
    Aborting,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "aborted"))]
    Aborted,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "expired"))]
    Expired,
}

impl UploadStatus {
    /// The lowercase form stored in the database and sent in JSON.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn all() -> impl Iterator<Item = UploadStatus> {
        UploadStatus::iter()
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

    /// Nothing will change this status on its own: no job is queued or running
    /// for it (the terminal ones, and `failed`). Event streams end here.
    pub fn is_final(self) -> bool {
        self.is_terminal() || self == UploadStatus::Failed
    }

    /// The client may PUT and report parts, pause, resume and complete.
    pub fn accepts_parts(self) -> bool {
        matches!(self, UploadStatus::Active | UploadStatus::Paused)
    }

    /// The statuses that may change to this one: the `from` of a conditional update.
    pub fn sources(self) -> Vec<UploadStatus> {
        UploadStatus::all()
            .filter(|from| from.can_transition_to(self))
            .collect()
    }
}

impl FromStr for UploadStatus {
    type Err = ValidationError;

    /// Exact lowercase match, like the stored and JSON form. The error is
    /// `INVALID_PARAMETER` because the usual untrusted source is a `?status=` query.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UploadStatus::all()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "unknown upload status {s:?}; expected one of: {}",
                        UploadStatus::all()
                            .map(UploadStatus::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
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
        for from in UploadStatus::all() {
            for to in UploadStatus::all() {
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
        for s in UploadStatus::all() {
            assert!(!s.can_transition_to(s));
            if s.is_terminal() {
                assert!(UploadStatus::all().all(|t| !s.can_transition_to(t)));
            }
        }
        let terminal: Vec<_> = UploadStatus::all().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, vec![Completed, Aborted, Expired]);
    }

    #[test]
    fn strings_serde_and_parse() {
        let all: HashSet<_> = UploadStatus::all().collect();
        assert_eq!(all.len(), 9);
        for s in UploadStatus::all() {
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
