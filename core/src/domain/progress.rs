//! Upload progress as shown in the status document (DESIGN §3).

/// Part and byte progress. Percentages have two decimals and are never NaN, so
/// they serialize as plain JSON numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub uploaded: u32,
    pub total: u32,
    pub percentage: f64,
    pub uploaded_bytes: u64,
    pub total_bytes: u64,
    pub bytes_percentage: f64,
}

impl Progress {
    pub fn compute(uploaded: u32, total: u32, uploaded_bytes: u64, total_bytes: u64) -> Progress {
        Progress {
            uploaded,
            total,
            percentage: percent(u64::from(uploaded), u64::from(total)),
            uploaded_bytes,
            total_bytes,
            bytes_percentage: percent(uploaded_bytes, total_bytes),
        }
    }
}

/// `done / total` in percent, two decimals, within 0..=100. An unfinished upload
/// never shows 100 (e.g. 1 byte short of 50 TB would round up), so clients can
/// treat 100 as "all there".
fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    if done >= total {
        return 100.0;
    }
    let rounded = ((done as f64 / total as f64) * 10_000.0).round() / 100.0;
    rounded.clamp(0.0, 99.99)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic() {
        let p = Progress::compute(1, 3, 1, 3);
        assert_eq!(p.percentage, 33.33);
        assert_eq!(p.bytes_percentage, 33.33);
        let p = Progress::compute(2, 3, 2, 3);
        assert_eq!(p.percentage, 66.67);
        let p = Progress::compute(5, 10, 512, 1024);
        assert_eq!((p.percentage, p.bytes_percentage), (50.0, 50.0));
        let p = Progress::compute(10, 10, 1024, 1024);
        assert_eq!((p.percentage, p.bytes_percentage), (100.0, 100.0));
        assert_eq!(
            (p.uploaded, p.total, p.uploaded_bytes, p.total_bytes),
            (10, 10, 1024, 1024)
        );
    }

    #[test]
    fn zero_totals_are_zero_not_nan() {
        let p = Progress::compute(0, 0, 0, 0);
        assert_eq!((p.percentage, p.bytes_percentage), (0.0, 0.0));
        let p = Progress::compute(3, 0, 7, 0);
        assert_eq!((p.percentage, p.bytes_percentage), (0.0, 0.0));
        assert!(!p.percentage.is_nan());
    }

    #[test]
    fn capped_at_100() {
        let p = Progress::compute(11, 10, u64::MAX, 1);
        assert_eq!((p.percentage, p.bytes_percentage), (100.0, 100.0));
    }

    #[test]
    fn unfinished_never_shows_100() {
        let p = Progress::compute(9_999, 10_000, 53_687_091_199_999, 53_687_091_200_000);
        assert_eq!(p.percentage, 99.99);
        assert_eq!(p.bytes_percentage, 99.99);
    }

    #[test]
    fn large_values_and_json_shape() {
        let p = Progress::compute(u32::MAX / 2, u32::MAX, u64::MAX / 4, u64::MAX);
        assert_eq!((p.percentage, p.bytes_percentage), (50.0, 25.0));
        let json = serde_json::to_value(Progress::compute(1, 4, 10, 40)).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "uploaded": 1, "total": 4, "percentage": 25.0,
                "uploadedBytes": 10, "totalBytes": 40, "bytesPercentage": 25.0
            })
        );
    }
}
