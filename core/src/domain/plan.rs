//! Splitting a file into S3 multipart parts (DESIGN §2).
//!
//! S3 allows 1..=10,000 parts of 5 MiB..=5 GiB (the last may be smaller), and R2
//! additionally rejects uploads whose non-final parts differ in size, so a plan is
//! one fixed `part_size` with a possibly shorter last part. The automatic size
//! grows with the file instead of being capped (the reference design's fixed
//! 100 MiB cap broke above ~1 TB).

use partway_protocol::ErrorCode;
#[cfg(test)]
use partway_protocol::R2_MAX_OBJECT_SIZE;
use partway_protocol::S3_MAX_OBJECT_SIZE;

pub const MIB: u64 = 1_048_576;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;
/// S3's minimum size of every part but the last.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's maximum part size.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// S3's maximum number of parts in one multipart upload.
pub const MAX_PARTS: u32 = 10_000;

/// Smallest whole MiB part size ≥ 5 MiB that needs at most 10,000 parts.
///
/// Whole MiB keeps sizes readable and aligned; "smallest" keeps parts cheap to
/// retry. Above [`S3_MAX_OBJECT_SIZE`] the result exceeds [`MAX_PART_SIZE`];
/// [`PartPlan::new`] rejects such files before that matters.
pub fn auto_part_size(file_size: u64) -> u64 {
    // ceil(file/part) <= N  <=>  part >= ceil(file/N).
    let needed = file_size.div_ceil(u64::from(MAX_PARTS));
    let whole_mib = needed.div_ceil(MIB).saturating_mul(MIB);
    whole_mib.max(MIN_PART_SIZE)
}

/// Renders a byte count for error messages: exact bytes plus a readable unit, so
/// a user can compare with both their file manager and the S3 docs.
pub fn format_size(bytes: u64) -> String {
    // f64 is only used for display; exact bytes are printed alongside.
    let (value, unit) = if bytes >= TIB {
        (bytes as f64 / TIB as f64, "TiB")
    } else if bytes >= GIB {
        (bytes as f64 / GIB as f64, "GiB")
    } else {
        (bytes as f64 / MIB as f64, "MiB")
    };
    let mut readable = format!("{value:.2}");
    while readable.ends_with('0') {
        readable.pop();
    }
    if readable.ends_with('.') {
        readable.pop();
    }
    format!("{bytes} bytes ({readable} {unit})")
}

/// Why a plan could not be made; messages are shown to API clients as-is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("fileSize must be at least 1 byte")]
    FileSizeZero,
    #[error(
        "fileSize {} exceeds the maximum object size of {} for this provider",
        format_size(*.file_size),
        format_size(*.max)
    )]
    FileTooLarge { file_size: u64, max: u64 },
    #[error(
        "partSize {} is below the minimum part size of {}",
        format_size(*.part_size),
        format_size(MIN_PART_SIZE)
    )]
    PartTooSmall { part_size: u64 },
    #[error(
        "partSize {} is above the maximum part size of {}",
        format_size(*.part_size),
        format_size(MAX_PART_SIZE)
    )]
    PartTooLarge { part_size: u64 },
    #[error(
        "this partSize would need {parts} parts but at most 10000 are allowed; \
         use a larger partSize or omit it to have one chosen"
    )]
    TooManyParts { parts: u64 },
    #[error("stored part plan is inconsistent: fileSize, partSize and totalParts do not agree")]
    Inconsistent,
}

impl PlanError {
    /// API error code: size-of-file problems vs. size-of-part problems.
    pub fn code(&self) -> ErrorCode {
        match self {
            PlanError::FileSizeZero | PlanError::FileTooLarge { .. } => ErrorCode::InvalidFileSize,
            PlanError::PartTooSmall { .. }
            | PlanError::PartTooLarge { .. }
            | PlanError::TooManyParts { .. }
            | PlanError::Inconsistent => ErrorCode::InvalidPartSize,
        }
    }
}

/// One part's byte range; `end` is inclusive like an HTTP `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRange {
    pub number: u32,
    pub start: u64,
    pub end: u64,
    pub size: u64,
}

/// A validated part plan. Fields are private so every value in circulation obeys
/// the S3 limits, which lets [`PartPlan::part`] do plain arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    file_size: u64,
    part_size: u64,
    total_parts: u32,
}

impl PartPlan {
    /// Plans an upload. `max_object_size` is the provider's configured limit; it is
    /// additionally capped at [`S3_MAX_OBJECT_SIZE`] because no multipart upload can
    /// be larger, whatever the configuration says.
    pub fn new(
        file_size: u64,
        requested_part_size: Option<u64>,
        max_object_size: u64,
    ) -> Result<PartPlan, PlanError> {
        if file_size == 0 {
            return Err(PlanError::FileSizeZero);
        }
        let max = max_object_size.min(S3_MAX_OBJECT_SIZE);
        if file_size > max {
            return Err(PlanError::FileTooLarge { file_size, max });
        }
        let part_size = requested_part_size.unwrap_or_else(|| auto_part_size(file_size));
        let total_parts = check_part_size(file_size, part_size)?;
        Ok(PartPlan {
            file_size,
            part_size,
            total_parts,
        })
    }

    /// Rebuilds a plan read back from the database. Rejects rows that could not
    /// have come from [`PartPlan::new`], so a corrupted row cannot produce bogus
    /// ranges or presign part numbers storage would refuse.
    pub fn from_stored(
        file_size: u64,
        part_size: u64,
        total_parts: u32,
    ) -> Result<PartPlan, PlanError> {
        if file_size == 0 {
            return Err(PlanError::FileSizeZero);
        }
        if file_size > S3_MAX_OBJECT_SIZE {
            return Err(PlanError::FileTooLarge {
                file_size,
                max: S3_MAX_OBJECT_SIZE,
            });
        }
        let expected = check_part_size(file_size, part_size)?;
        if expected != total_parts {
            return Err(PlanError::Inconsistent);
        }
        Ok(PartPlan {
            file_size,
            part_size,
            total_parts,
        })
    }

    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Size of every part but the last (which may be smaller).
    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    pub fn total_parts(&self) -> u32 {
        self.total_parts
    }

    /// The byte range of part `number` (1-based, as S3 numbers parts).
    pub fn part(&self, number: u32) -> Option<PartRange> {
        if number == 0 || number > self.total_parts {
            return None;
        }
        // Cannot overflow: number <= 10,000 and part_size <= 5 GiB.
        let start = u64::from(number - 1) * self.part_size;
        let end_exclusive = (u64::from(number) * self.part_size).min(self.file_size);
        Some(PartRange {
            number,
            start,
            end: end_exclusive - 1,
            size: end_exclusive - start,
        })
    }

    /// All parts in order.
    pub fn parts(&self) -> impl Iterator<Item = PartRange> + '_ {
        (1..=self.total_parts).filter_map(move |n| self.part(n))
    }

    /// Size of the last part, the only one allowed to differ.
    pub fn last_part_size(&self) -> u64 {
        self.file_size - u64::from(self.total_parts - 1) * self.part_size
    }
}

/// Checks a part size against S3's limits for `file_size` (> 0) and returns the
/// part count.
fn check_part_size(file_size: u64, part_size: u64) -> Result<u32, PlanError> {
    if part_size < MIN_PART_SIZE {
        return Err(PlanError::PartTooSmall { part_size });
    }
    if part_size > MAX_PART_SIZE {
        return Err(PlanError::PartTooLarge { part_size });
    }
    let parts = file_size.div_ceil(part_size);
    if parts > u64::from(MAX_PARTS) {
        return Err(PlanError::TooManyParts { parts });
    }
    u32::try_from(parts).map_err(|_| PlanError::TooManyParts { parts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn auto(file_size: u64) -> PartPlan {
        PartPlan::new(file_size, None, S3_MAX_OBJECT_SIZE).expect("valid plan")
    }

    #[test]
    fn constants() {
        assert_eq!(MAX_PART_SIZE, 5 * GIB);
        assert_eq!(S3_MAX_OBJECT_SIZE, u64::from(MAX_PARTS) * MAX_PART_SIZE);
        assert_eq!(R2_MAX_OBJECT_SIZE, 5 * TIB);
    }

    #[test]
    fn one_byte_file() {
        let p = auto(1);
        assert_eq!(p.part_size(), MIN_PART_SIZE);
        assert_eq!(p.total_parts(), 1);
        assert_eq!(
            p.part(1),
            Some(PartRange {
                number: 1,
                start: 0,
                end: 0,
                size: 1
            })
        );
        assert_eq!(p.part(0), None);
        assert_eq!(p.part(2), None);
    }

    #[test]
    fn exactly_five_mib_is_one_part() {
        let p = auto(5 * MIB);
        assert_eq!((p.part_size(), p.total_parts()), (5 * MIB, 1));
        assert_eq!(
            p.part(1).map(|r| (r.end, r.size)),
            Some((5 * MIB - 1, 5 * MIB))
        );
    }

    #[test]
    fn five_mib_plus_one_is_two_parts() {
        let p = auto(5 * MIB + 1);
        assert_eq!((p.part_size(), p.total_parts()), (5 * MIB, 2));
        let last = p.part(2).expect("part 2");
        assert_eq!((last.start, last.end, last.size), (5 * MIB, 5 * MIB, 1));
        assert_eq!(p.last_part_size(), 1);
    }

    #[test]
    fn ten_thousand_min_parts_boundary() {
        let p = auto(10_000 * 5 * MIB);
        assert_eq!((p.part_size(), p.total_parts()), (5 * MIB, 10_000));
        let p = auto(10_000 * 5 * MIB + 1);
        assert_eq!(p.part_size(), 6 * MIB);
        assert_eq!(p.total_parts(), 8_334);
    }

    #[test]
    fn above_one_terabyte_where_a_100_mib_cap_breaks() {
        let file_size = 10_000 * 100 * MIB + 1;
        assert!(file_size > 1_000_000_000_000);
        let p = auto(file_size);
        assert_eq!(p.part_size(), 101 * MIB);
        assert!(p.total_parts() <= MAX_PARTS);
        // A fixed 100 MiB part would need 10,001 parts.
        assert_eq!(
            PartPlan::new(file_size, Some(100 * MIB), S3_MAX_OBJECT_SIZE),
            Err(PlanError::TooManyParts { parts: 10_001 })
        );
    }

    #[test]
    fn s3_maximum_object() {
        assert_eq!(auto_part_size(S3_MAX_OBJECT_SIZE), MAX_PART_SIZE);
        let p = auto(S3_MAX_OBJECT_SIZE);
        assert_eq!((p.part_size(), p.total_parts()), (MAX_PART_SIZE, MAX_PARTS));
        let last = p.part(MAX_PARTS).expect("last part");
        assert_eq!(last.end, S3_MAX_OBJECT_SIZE - 1);
        assert_eq!(last.size, MAX_PART_SIZE);
        let err = PartPlan::new(S3_MAX_OBJECT_SIZE + 1, None, S3_MAX_OBJECT_SIZE).unwrap_err();
        assert_eq!(
            err,
            PlanError::FileTooLarge {
                file_size: S3_MAX_OBJECT_SIZE + 1,
                max: S3_MAX_OBJECT_SIZE
            }
        );
        assert_eq!(err.code(), ErrorCode::InvalidFileSize);
        // A larger configured limit cannot lift the multipart ceiling.
        assert!(matches!(
            PartPlan::new(S3_MAX_OBJECT_SIZE + 1, None, u64::MAX),
            Err(PlanError::FileTooLarge { .. })
        ));
        assert!(PartPlan::new(u64::MAX, None, u64::MAX).is_err());
        assert!(auto_part_size(u64::MAX) > MAX_PART_SIZE);
    }

    #[test]
    fn r2_limit() {
        assert!(PartPlan::new(R2_MAX_OBJECT_SIZE, None, R2_MAX_OBJECT_SIZE).is_ok());
        assert!(matches!(
            PartPlan::new(R2_MAX_OBJECT_SIZE + 1, None, R2_MAX_OBJECT_SIZE),
            Err(PlanError::FileTooLarge {
                max: R2_MAX_OBJECT_SIZE,
                ..
            })
        ));
    }

    #[test]
    fn zero_file_size() {
        let err = PartPlan::new(0, None, S3_MAX_OBJECT_SIZE).unwrap_err();
        assert_eq!(err, PlanError::FileSizeZero);
        assert_eq!(err.code(), ErrorCode::InvalidFileSize);
    }

    #[test]
    fn requested_part_sizes() {
        let fs = 100 * MIB;
        let err = PartPlan::new(fs, Some(MIN_PART_SIZE - 1), S3_MAX_OBJECT_SIZE).unwrap_err();
        assert_eq!(
            err,
            PlanError::PartTooSmall {
                part_size: MIN_PART_SIZE - 1
            }
        );
        assert_eq!(err.code(), ErrorCode::InvalidPartSize);
        assert!(matches!(
            PartPlan::new(fs, Some(0), S3_MAX_OBJECT_SIZE),
            Err(PlanError::PartTooSmall { part_size: 0 })
        ));
        let err = PartPlan::new(fs, Some(MAX_PART_SIZE + 1), S3_MAX_OBJECT_SIZE).unwrap_err();
        assert_eq!(
            err,
            PlanError::PartTooLarge {
                part_size: MAX_PART_SIZE + 1
            }
        );
        assert_eq!(err.code(), ErrorCode::InvalidPartSize);
        let err =
            PartPlan::new(10_000 * 5 * MIB + 1, Some(5 * MIB), S3_MAX_OBJECT_SIZE).unwrap_err();
        assert_eq!(err, PlanError::TooManyParts { parts: 10_001 });
        assert_eq!(err.code(), ErrorCode::InvalidPartSize);
        // Boundaries accepted; a part larger than the file is just one part.
        assert!(PartPlan::new(fs, Some(MIN_PART_SIZE), S3_MAX_OBJECT_SIZE).is_ok());
        let p = PartPlan::new(fs, Some(MAX_PART_SIZE), S3_MAX_OBJECT_SIZE).expect("plan");
        assert_eq!(p.total_parts(), 1);
        assert_eq!(p.part(1).map(|r| r.size), Some(fs));
        // Non-MiB sizes are S3-legal when requested.
        let p = PartPlan::new(fs, Some(5 * MIB + 7), S3_MAX_OBJECT_SIZE).expect("plan");
        assert_eq!(p.total_parts(), 20);
    }

    #[test]
    fn messages_are_human() {
        let msg = PlanError::PartTooSmall { part_size: MIB }.to_string();
        assert!(msg.contains("1048576 bytes (1 MiB)"), "{msg}");
        assert!(msg.contains("5242880 bytes (5 MiB)"), "{msg}");
        let msg = PlanError::FileTooLarge {
            file_size: S3_MAX_OBJECT_SIZE + 1,
            max: R2_MAX_OBJECT_SIZE,
        }
        .to_string();
        assert!(msg.contains("(5 TiB)"), "{msg}");
        let msg = PlanError::PartTooLarge {
            part_size: MAX_PART_SIZE + 1,
        }
        .to_string();
        assert!(msg.contains("(5 GiB)"), "{msg}");
        assert_eq!(format_size(6 * MIB + MIB / 2), "6815744 bytes (6.5 MiB)");
        assert!(PlanError::TooManyParts { parts: 10_001 }
            .to_string()
            .contains("10001"));
    }

    #[test]
    fn from_stored_checks_consistency() {
        let p = auto(10_000 * 5 * MIB + 1);
        assert_eq!(
            PartPlan::from_stored(p.file_size(), p.part_size(), p.total_parts()),
            Ok(p)
        );
        assert_eq!(
            PartPlan::from_stored(p.file_size(), p.part_size(), p.total_parts() + 1),
            Err(PlanError::Inconsistent)
        );
        assert_eq!(
            PartPlan::from_stored(p.file_size(), p.part_size(), 0),
            Err(PlanError::Inconsistent)
        );
        assert_eq!(
            PartPlan::from_stored(0, 5 * MIB, 1),
            Err(PlanError::FileSizeZero)
        );
        assert!(matches!(
            PartPlan::from_stored(10, MIB, 1),
            Err(PlanError::PartTooSmall { .. })
        ));
        assert!(matches!(
            PartPlan::from_stored(S3_MAX_OBJECT_SIZE + 1, MAX_PART_SIZE, MAX_PARTS),
            Err(PlanError::FileTooLarge { .. })
        ));
        assert!(matches!(
            PartPlan::from_stored(10_000 * 5 * MIB + 1, 5 * MIB, 10_001),
            Err(PlanError::TooManyParts { .. })
        ));
    }

    #[test]
    fn all_ten_thousand_parts_tile_the_file() {
        let file_size = 10_000 * 5 * MIB - 3;
        let p = auto(file_size);
        assert_eq!(p.total_parts(), 10_000);
        let mut next_start = 0;
        let mut count = 0u32;
        for r in p.parts() {
            count += 1;
            assert_eq!(r.number, count);
            assert_eq!(r.start, next_start);
            assert_eq!(r.size, r.end - r.start + 1);
            if r.number < p.total_parts() {
                assert_eq!(r.size, p.part_size());
            }
            next_start = r.end + 1;
        }
        assert_eq!(count, 10_000);
        assert_eq!(next_start, file_size);
        assert_eq!(p.last_part_size(), 5 * MIB - 3);
    }

    /// Sizes spread over small, mid and huge files; a uniform draw over the whole
    /// range would almost never produce anything below a terabyte.
    fn file_size_strategy() -> impl Strategy<Value = u64> {
        prop_oneof![
            1u64..=20 * MIB,
            1u64..=2 * 10_000 * 5 * MIB,
            (1u64..=5120).prop_flat_map(|k| {
                // Around the thresholds where the auto size steps up by 1 MiB.
                let edge = k * 10_000 * MIB;
                (edge - 2..=edge + 2).prop_map(|v| v.min(S3_MAX_OBJECT_SIZE))
            }),
            1u64..=S3_MAX_OBJECT_SIZE,
            Just(S3_MAX_OBJECT_SIZE),
        ]
    }

    /// Checks tiling via first, last and one sampled part plus the arithmetic
    /// identities, which together imply the full tiling without walking 10,000 parts.
    fn check_plan(p: &PartPlan, file_size: u64, sample: u32) -> Result<(), TestCaseError> {
        let n = p.total_parts();
        prop_assert_eq!(p.file_size(), file_size);
        prop_assert!((1..=MAX_PARTS).contains(&n));
        prop_assert!((MIN_PART_SIZE..=MAX_PART_SIZE).contains(&p.part_size()));
        prop_assert_eq!(u64::from(n), file_size.div_ceil(p.part_size()));

        let first = p.part(1).ok_or_else(|| TestCaseError::fail("no part 1"))?;
        prop_assert_eq!(first.start, 0);
        let last = p
            .part(n)
            .ok_or_else(|| TestCaseError::fail("no last part"))?;
        prop_assert_eq!(last.end, file_size - 1);
        prop_assert!(last.size > 0 && last.size <= p.part_size());
        prop_assert_eq!(last.size, p.last_part_size());
        // Sizes sum to file_size: (n-1) full parts plus the last.
        prop_assert_eq!(u64::from(n - 1) * p.part_size() + last.size, file_size);
        prop_assert!(p.part(0).is_none() && p.part(n + 1).is_none());

        let k = 1 + sample % n;
        let r = p
            .part(k)
            .ok_or_else(|| TestCaseError::fail("no sampled part"))?;
        prop_assert_eq!(r.number, k);
        prop_assert_eq!(r.start, u64::from(k - 1) * p.part_size());
        prop_assert_eq!(r.size, r.end - r.start + 1);
        if k < n {
            prop_assert_eq!(r.size, p.part_size());
            let next = p
                .part(k + 1)
                .ok_or_else(|| TestCaseError::fail("no next"))?;
            prop_assert_eq!(next.start, r.end + 1);
        }
        if k > 1 {
            let prev = p
                .part(k - 1)
                .ok_or_else(|| TestCaseError::fail("no prev"))?;
            prop_assert_eq!(prev.end + 1, r.start);
            prop_assert_eq!(prev.size, p.part_size());
        }
        prop_assert_eq!(PartPlan::from_stored(file_size, p.part_size(), n), Ok(*p));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn auto_plan_tiles_and_is_minimal(file_size in file_size_strategy(), sample in any::<u32>()) {
            let p = PartPlan::new(file_size, None, S3_MAX_OBJECT_SIZE)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_plan(&p, file_size, sample)?;
            prop_assert_eq!(p.part_size() % MIB, 0);
            prop_assert_eq!(p.part_size(), auto_part_size(file_size));
            let smaller = p.part_size() - MIB;
            prop_assert!(
                smaller < MIN_PART_SIZE || file_size.div_ceil(smaller) > u64::from(MAX_PARTS)
            );
        }

        #[test]
        fn requested_valid_plan_tiles(
            (file_size, part_size) in file_size_strategy().prop_flat_map(|fs| {
                let lo = fs.div_ceil(u64::from(MAX_PARTS)).max(MIN_PART_SIZE);
                (Just(fs), lo..=MAX_PART_SIZE)
            }),
            sample in any::<u32>(),
        ) {
            let p = PartPlan::new(file_size, Some(part_size), S3_MAX_OBJECT_SIZE)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(p.part_size(), part_size);
            check_plan(&p, file_size, sample)?;
        }

        #[test]
        fn requested_any_plan_accepted_iff_legal(
            file_size in file_size_strategy(),
            part_size in prop_oneof![0u64..=MAX_PART_SIZE + 10, any::<u64>()],
        ) {
            let legal = (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size)
                && file_size.div_ceil(part_size) <= u64::from(MAX_PARTS);
            let result = PartPlan::new(file_size, Some(part_size), S3_MAX_OBJECT_SIZE);
            prop_assert_eq!(result.is_ok(), legal);
            if let Err(e) = result {
                prop_assert_eq!(e.code(), ErrorCode::InvalidPartSize);
            }
        }
    }
}
