//! Rules of uploads made through the Uppy (Companion-compatible) routes, whose size is
//! unknown until complete (DESIGN §5): part numbers signed on demand, Uppy's metadata,
//! and the complete checked against what storage lists.
use std::collections::{BTreeMap, BTreeSet};

use super::{ErrorCode, ValidationError, S3_MAX_OBJECT_SIZE};
use crate::ports::StoredPart;

/// S3's part numbers: 1..=10,000.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// A part number from a path: 1..=10,000, else 400 `INVALID_PARAMETER`.
pub fn part_number(raw: &str) -> Result<u32, ValidationError> {
    raw.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            ValidationError::new(
                ErrorCode::InvalidParameter,
                format!("partNumber must be a whole number from 1 to {MAX_PART_NUMBER}"),
            )
        })
}

/// An ETag without quotes or surrounding spaces (5.x sends them quoted, 6.x not, and
/// 6.x after a resume mixes both).
pub fn bare_etag(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// Uppy's `metadata` as partway stores it: `name` and `type` dropped (they are
/// `filename` and `contentType`), nulls dropped, numbers and booleans as their text,
/// other values that are not printable ASCII percent-encoded (UTF-8), keys that cannot
/// be an `x-amz-meta-*` header name (A-Z, a-z, 0-9, `_`, `-`) dropped.
pub fn uppy_metadata(raw: &serde_json::Map<String, serde_json::Value>) -> BTreeMap<String, String> {
    raw.iter()
        .filter(|(key, _)| key.as_str() != "name" && key.as_str() != "type")
        .filter(|(key, _)| {
            !key.is_empty()
                && key.len() <= 128
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .filter_map(|(key, value)| {
            let text = match value {
                serde_json::Value::Null => return None,
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((key.clone(), printable(&text)))
        })
        .collect()
}

/// `text` unchanged when it is printable ASCII without `%`, else percent-encoded.
pub fn printable(text: &str) -> String {
    if text
        .bytes()
        .all(|b| (0x20..=0x7E).contains(&b) && b != b'%')
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if (0x21..=0x7E).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The parts a client completes a size-unknown upload with: at least one, numbers
/// 1..=10,000, each once, non-empty ETags; sorted (storage wants ascending order).
/// None: what storage lists.
pub fn unsized_complete_parts(
    parts: Option<Vec<(u32, String)>>,
) -> Result<Option<Vec<(u32, String)>>, ValidationError> {
    let Some(mut parts) = parts else {
        return Ok(None);
    };
    if parts.is_empty() {
        return Err(ValidationError::new(
            ErrorCode::MissingParts,
            "parts must list the uploaded parts",
        ));
    }
    let mut seen = BTreeSet::new();
    for (number, etag) in &parts {
        if !(1..=MAX_PART_NUMBER).contains(number) {
            return Err(ValidationError::new(
                ErrorCode::InvalidParts,
                format!("PartNumber {number} is outside 1..={MAX_PART_NUMBER}"),
            ));
        }
        if bare_etag(etag).is_empty() {
            return Err(ValidationError::new(
                ErrorCode::InvalidParts,
                format!("part {number} has an empty ETag"),
            ));
        }
        if !seen.insert(*number) {
            return Err(ValidationError::new(
                ErrorCode::InvalidParts,
                format!("part {number} is listed twice"),
            ));
        }
    }
    parts.sort_by_key(|(n, _)| *n);
    Ok(Some(
        parts
            .into_iter()
            .map(|(n, e)| (n, bare_etag(&e).to_string()))
            .collect(),
    ))
}

/// The size of an upload completed with `named` parts (or every part storage lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalSize {
    pub file_size: u64,
    /// The first part's size (every part but the last has it, when storage accepts).
    pub part_size: u64,
    pub total_parts: u32,
    /// The parts to complete with, ETags as storage lists them.
    pub parts: Vec<(u32, String)>,
}

/// Why a size-unknown complete is refused before storage is asked to complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A named part storage does not hold, or holds with another ETag (or none at all).
    InvalidParts(String),
    /// The parts add up to more than the token's `maxFileSize` (or the provider's
    /// maximum): the storage upload is aborted.
    TooLarge { size: u64, max: u64 },
}

/// Checks the named parts against storage's list and adds up their sizes.
pub fn final_size(
    named: Option<&[(u32, String)]>,
    listed: &[StoredPart],
    max_size: Option<u64>,
) -> Result<FinalSize, Refusal> {
    let by_number: BTreeMap<u32, &StoredPart> = listed.iter().map(|p| (p.part_number, p)).collect();
    let chosen: Vec<&StoredPart> = match named {
        Some(named) => {
            let mut chosen = Vec::with_capacity(named.len());
            for (number, etag) in named {
                match by_number.get(number) {
                    Some(p) if bare_etag(&p.etag) == bare_etag(etag) => chosen.push(*p),
                    Some(_) => {
                        return Err(Refusal::InvalidParts(format!(
                            "part {number}: the ETag does not match storage's"
                        )))
                    }
                    None => {
                        return Err(Refusal::InvalidParts(format!(
                            "part {number} is not on storage"
                        )))
                    }
                }
            }
            chosen
        }
        None => by_number.values().copied().collect(),
    };
    if chosen.is_empty() {
        return Err(Refusal::InvalidParts("storage holds no part".into()));
    }
    let file_size = chosen
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.size));
    let max = max_size
        .unwrap_or(S3_MAX_OBJECT_SIZE)
        .min(S3_MAX_OBJECT_SIZE);
    if file_size > max {
        return Err(Refusal::TooLarge {
            size: file_size,
            max,
        });
    }
    Ok(FinalSize {
        file_size,
        part_size: chosen[0].size,
        total_parts: chosen.len() as u32,
        parts: chosen
            .iter()
            .map(|p| (p.part_number, bare_etag(&p.etag).to_string()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn part(n: u32, size: u64) -> StoredPart {
        StoredPart {
            part_number: n,
            etag: format!("e{n}"),
            size,
        }
    }

    #[test]
    fn part_numbers_are_1_to_10000() {
        assert_eq!(part_number("1").unwrap(), 1);
        assert_eq!(part_number("10000").unwrap(), 10_000);
        for bad in ["0", "10001", "-1", "", "1.5", "x", "99999999999"] {
            let e = part_number(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParameter, "{bad}");
        }
    }

    #[test]
    fn metadata_drops_name_type_nulls_and_bad_keys_and_encodes_the_rest() {
        let raw = serde_json::json!({
            "name": "a.bin", "type": "image/png", "relativePath": null,
            "caption": "Grüße 100%", "n": 3, "ok": true, "bad key": "x", "plain": "hello"
        });
        let m = uppy_metadata(raw.as_object().unwrap());
        assert_eq!(
            m,
            BTreeMap::from([
                ("caption".into(), "Gr%C3%BC%C3%9Fe%20100%25".into()),
                ("n".into(), "3".into()),
                ("ok".into(), "true".into()),
                ("plain".into(), "hello".into()),
            ])
        );
        crate::domain::validate_metadata(&m).expect("valid partway metadata");
    }

    #[test]
    fn complete_parts_are_checked_and_sorted_with_bare_etags() {
        let parts = unsized_complete_parts(Some(vec![(2, "\"b\"".into()), (1, "a".into())]))
            .unwrap()
            .unwrap();
        assert_eq!(parts, vec![(1, "a".into()), (2, "b".into())]);
        assert_eq!(unsized_complete_parts(None).unwrap(), None);
        for bad in [
            vec![],
            vec![(0, "a".to_string())],
            vec![(10_001, "a".to_string())],
            vec![(1, "\"\"".to_string())],
            vec![(1, "a".to_string()), (1, "b".to_string())],
        ] {
            assert!(
                unsized_complete_parts(Some(bad.clone())).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn final_size_checks_named_parts_against_storage() {
        let listed = [part(1, 10), part(2, 10), part(3, 4)];
        let all = final_size(None, &listed, None).unwrap();
        assert_eq!((all.file_size, all.part_size, all.total_parts), (24, 10, 3));
        let named = vec![(1, "\"e1\"".to_string()), (2, "e2".to_string())];
        let two = final_size(Some(&named), &listed, None).unwrap();
        assert_eq!((two.file_size, two.total_parts), (20, 2));
        assert_eq!(two.parts, vec![(1, "e1".into()), (2, "e2".into())]);
        let wrong = vec![(1, "zz".to_string())];
        assert!(matches!(
            final_size(Some(&wrong), &listed, None),
            Err(Refusal::InvalidParts(_))
        ));
        let missing = vec![(4, "e4".to_string())];
        assert!(matches!(
            final_size(Some(&missing), &listed, None),
            Err(Refusal::InvalidParts(_))
        ));
        assert_eq!(
            final_size(None, &listed, Some(23)),
            Err(Refusal::TooLarge { size: 24, max: 23 })
        );
        assert!(final_size(None, &listed, Some(24)).is_ok());
        assert!(matches!(
            final_size(None, &[], None),
            Err(Refusal::InvalidParts(_))
        ));
    }

    proptest! {
        /// Whatever storage lists, completing with everything it lists is accepted
        /// exactly when the sum fits the limit, and the sum is the sum of the sizes.
        #[test]
        fn the_size_is_the_sum_and_the_limit_holds(
            sizes in proptest::collection::btree_map(1u32..=10_000, 0u64..=5 << 30, 1..40),
            max in proptest::option::of(0u64..=200 << 30),
        ) {
            let listed: Vec<StoredPart> = sizes.iter().map(|(n, s)| part(*n, *s)).collect();
            let sum: u64 = sizes.values().sum();
            match final_size(None, &listed, max) {
                Ok(f) => {
                    prop_assert_eq!(f.file_size, sum);
                    prop_assert_eq!(f.total_parts as usize, sizes.len());
                    prop_assert!(max.is_none_or(|m| sum <= m));
                }
                Err(Refusal::TooLarge { size, max: m }) => {
                    prop_assert_eq!(size, sum);
                    prop_assert!(sum > m);
                }
                Err(other) => prop_assert!(false, "{:?}", other),
            }
        }

        /// Metadata after the Uppy rules always passes partway's metadata rules
        /// (when it fits 2 KiB), whatever the page sent.
        #[test]
        fn uppy_metadata_is_always_valid(
            entries in proptest::collection::btree_map("[a-zA-Z _-]{1,12}", "\\PC{0,20}", 0..8),
        ) {
            let raw: serde_json::Map<String, serde_json::Value> = entries
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let m = uppy_metadata(&raw);
            prop_assert!(crate::domain::validate_metadata(&m).is_ok(), "{:?}", m);
        }
    }
}
