//! The storage flavours an upload may go to.

use std::str::FromStr;

use strum::IntoEnumIterator;

use crate::error::{ErrorCode, ValidationError};

/// The largest object a multipart upload can produce (10,000 × 5 GiB); AWS's own
/// object limit was raised to about this in late 2025.
pub const S3_MAX_OBJECT_SIZE: u64 = 53_687_091_200_000;
/// Cloudflare's documented per-object limit for R2 (5 TiB).
pub const R2_MAX_OBJECT_SIZE: u64 = 5_497_558_138_880;

/// The storage flavour an upload goes to; decides the object-size limit. Stored and
/// sent as `S3` / `R2`.
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
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
pub enum Provider {
    #[serde(alias = "s3")]
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "S3"))]
    S3,
    #[serde(alias = "r2")]
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "R2"))]
    R2,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn all() -> impl Iterator<Item = Provider> {
        Provider::iter()
    }

    /// Default largest object for this provider (DESIGN §2); deployments may
    /// configure a lower one.
    pub fn max_object_size(self) -> u64 {
        match self {
            Provider::S3 => S3_MAX_OBJECT_SIZE,
            Provider::R2 => R2_MAX_OBJECT_SIZE,
        }
    }
}

impl FromStr for Provider {
    type Err = ValidationError;

    /// Case-insensitive because clients of the reference design send both forms.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::all()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                ValidationError::new(
                    ErrorCode::InvalidProvider,
                    format!("unknown provider {s:?}; expected \"S3\" or \"R2\""),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers() {
        for (s, p) in [
            ("S3", Provider::S3),
            ("s3", Provider::S3),
            ("R2", Provider::R2),
            ("r2", Provider::R2),
        ] {
            assert_eq!(s.parse::<Provider>(), Ok(p));
        }
        for s in ["", "gcs", " S3", "S3 ", "s 3", "r22"] {
            let e = s.parse::<Provider>().unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidProvider);
        }
        for p in Provider::all() {
            assert_eq!(p.to_string(), p.as_str());
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
            let json = serde_json::to_string(&p).expect("serialize");
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Provider>(&json).ok(), Some(p));
        }
        assert_eq!(
            serde_json::from_str::<Provider>("\"r2\"").ok(),
            Some(Provider::R2)
        );
        assert_eq!(Provider::S3.max_object_size(), S3_MAX_OBJECT_SIZE);
        assert_eq!(Provider::R2.max_object_size(), R2_MAX_OBJECT_SIZE);
    }
}
