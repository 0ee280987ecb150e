//! Key and channel names, and the TTL rules: pure helpers, unit tested.
use std::time::Duration;

use partway_core::ports::PresignedUrl;
use uuid::Uuid;

/// A URL page never outlives this (the in-memory cache's `PAGE_TTL`).
pub(crate) const PAGE_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// Nor lives shorter than this (a page whose URLs expire sooner is still kept briefly).
pub(crate) const PAGE_TTL_MIN: Duration = Duration::from_secs(60);
/// Status snapshots only absorb bursts of polling.
pub(crate) const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// The pattern the listener subscribes to: every upload's event channel.
pub(crate) const EVENT_PATTERN: &str = "partway:events:*";
const EVENT_PREFIX: &str = "partway:events:";

/// `partway:{id}:urls:{page}`: one JSON page of presigned URLs.
pub(crate) fn page_key(upload_id: Uuid, page: u32) -> String {
    format!("{}{page}", page_key_prefix(upload_id))
}

/// `partway:{id}:urls:`: what every page key of the upload starts with.
pub(crate) fn page_key_prefix(upload_id: Uuid) -> String {
    format!("partway:{upload_id}:urls:")
}

/// `partway:{id}:pages`: the SET of page numbers cached for the upload (for `forget`).
pub(crate) fn pages_key(upload_id: Uuid) -> String {
    format!("partway:{upload_id}:pages")
}

/// `partway:{id}:snapshot`: the serialized status snapshot.
pub(crate) fn snapshot_key(upload_id: Uuid) -> String {
    format!("partway:{upload_id}:snapshot")
}

/// `partway:events:{id}`: the pub/sub channel of the upload's events.
pub(crate) fn event_channel(upload_id: Uuid) -> String {
    format!("{EVENT_PREFIX}{upload_id}")
}

/// The upload an event channel belongs to.
pub(crate) fn upload_id_from_channel(channel: &str) -> Option<Uuid> {
    channel.strip_prefix(EVENT_PREFIX)?.parse().ok()
}

/// How long a URL page may be cached: until its last URL expires, capped at
/// [`PAGE_TTL_MAX`], at least [`PAGE_TTL_MIN`]. A page without any URL (every part
/// already uploaded) gets the cap.
pub(crate) fn page_ttl(urls: &[Option<PresignedUrl>], now_unix_secs: i64) -> Duration {
    let Some(latest) = urls
        .iter()
        .flatten()
        .map(|u| u.expires_at.timestamp())
        .max()
    else {
        return PAGE_TTL_MAX;
    };
    let remaining = u64::try_from(latest.saturating_sub(now_unix_secs)).unwrap_or(0);
    Duration::from_secs(remaining).clamp(PAGE_TTL_MIN, PAGE_TTL_MAX)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn url_expiring_at(unix: i64) -> Option<PresignedUrl> {
        Some(PresignedUrl {
            url: std::sync::Arc::new("https://s3.example/bucket/key?X-Amz-Signature=abc".into()),
            expires_at: Utc.timestamp_opt(unix, 0).unwrap(),
        })
    }

    const NOW: i64 = 1_750_000_000;

    #[test]
    fn key_names_are_namespaced_per_upload() {
        let id = Uuid::parse_str("0196b5c2-7d1e-7a3b-9c4d-5e6f708192a3").unwrap();
        assert_eq!(
            page_key(id, 3),
            "partway:0196b5c2-7d1e-7a3b-9c4d-5e6f708192a3:urls:3"
        );
        assert_eq!(
            pages_key(id),
            "partway:0196b5c2-7d1e-7a3b-9c4d-5e6f708192a3:pages"
        );
        assert_eq!(
            snapshot_key(id),
            "partway:0196b5c2-7d1e-7a3b-9c4d-5e6f708192a3:snapshot"
        );
        assert_eq!(
            event_channel(id),
            "partway:events:0196b5c2-7d1e-7a3b-9c4d-5e6f708192a3"
        );
    }

    #[test]
    fn channel_names_round_trip() {
        let id = Uuid::new_v4();
        assert_eq!(upload_id_from_channel(&event_channel(id)), Some(id));
        assert_eq!(upload_id_from_channel("partway:events:not-a-uuid"), None);
        assert_eq!(upload_id_from_channel(&snapshot_key(id)), None);
        assert_eq!(upload_id_from_channel(""), None);
    }

    #[test]
    fn event_pattern_matches_event_channels() {
        let id = Uuid::new_v4();
        let prefix = EVENT_PATTERN.strip_suffix('*').unwrap();
        assert!(event_channel(id).starts_with(prefix));
    }

    #[test]
    fn page_ttl_follows_the_latest_expiry() {
        let urls = vec![
            url_expiring_at(NOW + 600),
            None,
            url_expiring_at(NOW + 3600),
        ];
        assert_eq!(page_ttl(&urls, NOW), Duration::from_secs(3600));
    }

    #[test]
    fn page_ttl_is_capped_at_a_day() {
        let urls = vec![url_expiring_at(NOW + 7 * 24 * 3600)];
        assert_eq!(page_ttl(&urls, NOW), PAGE_TTL_MAX);
    }

    #[test]
    fn page_ttl_is_at_least_a_minute() {
        assert_eq!(page_ttl(&[url_expiring_at(NOW + 5)], NOW), PAGE_TTL_MIN);
        assert_eq!(page_ttl(&[url_expiring_at(NOW)], NOW), PAGE_TTL_MIN);
        assert_eq!(page_ttl(&[url_expiring_at(NOW - 3600)], NOW), PAGE_TTL_MIN);
        assert_eq!(page_ttl(&[url_expiring_at(0)], NOW), PAGE_TTL_MIN);
    }

    #[test]
    fn page_without_urls_gets_the_cap() {
        assert_eq!(page_ttl(&[], NOW), PAGE_TTL_MAX);
        assert_eq!(page_ttl(&[None, None], NOW), PAGE_TTL_MAX);
    }
}
