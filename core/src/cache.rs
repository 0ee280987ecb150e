//! In-process `ProgressCache` for the embedded mode (Redis replaces it when
//! `PARTWAY_REDIS_URL` is set).
//!
//! Bounded in bytes (`PARTWAY_CACHE_MAX_BYTES`, DESIGN §7): a page of 1,000 URLs with
//! a long file name weighs over a megabyte, so a bound by count would let a few large
//! uploads pin gigabytes. moka weighs each entry and evicts the least used past the
//! budget; entries also expire on their own.
use std::{collections::HashMap, mem::size_of, sync::Arc, sync::Mutex, time::Duration};

use async_trait::async_trait;
use moka::{policy::EvictionPolicy, sync::Cache};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{
    domain::{MAX_PARTS, URL_PAGE_SIZE},
    ports::{PresignedUrl, ProgressCache, UploadEvent, UrlPage},
};

/// URL pages expire like the Redis ones would.
const PAGE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Status snapshots live briefly: they only absorb bursts of polling.
const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// The default of `PARTWAY_CACHE_MAX_BYTES`.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// What one cached page costs: its slots and its URLs' text.
fn page_weight(_: &(Uuid, u32), page: &Arc<UrlPage>) -> u32 {
    let bytes = size_of::<UrlPage>()
        + page.len() * size_of::<Option<PresignedUrl>>()
        + page.iter().flatten().map(|u| u.url.len()).sum::<usize>();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn snapshot_weight(_: &Uuid, snapshot: &Arc<str>) -> u32 {
    u32::try_from(size_of::<Arc<str>>() + snapshot.len()).unwrap_or(u32::MAX)
}

pub struct InMemoryCache {
    pages: Cache<(Uuid, u32), Arc<UrlPage>>,
    snapshots: Cache<Uuid, Arc<str>>,
    channels: Mutex<HashMap<Uuid, broadcast::Sender<UploadEvent>>>,
}

impl InMemoryCache {
    /// Pages and snapshots together stay within `max_bytes` (snapshots get an eighth).
    pub fn new(max_bytes: u64) -> Self {
        let snapshot_bytes = max_bytes / 8;
        Self {
            pages: Cache::builder()
                .max_capacity(max_bytes - snapshot_bytes)
                .weigher(page_weight)
                // Least recently used goes first. moka's default (TinyLFU) may refuse a
                // new page while the cache is full, and an init's own pages were then
                // presigned a second time by the API, with their memory.
                .eviction_policy(EvictionPolicy::lru())
                .time_to_live(PAGE_TTL)
                .build(),
            snapshots: Cache::builder()
                .max_capacity(snapshot_bytes)
                .weigher(snapshot_weight)
                .time_to_live(SNAPSHOT_TTL)
                .build(),
            channels: Mutex::default(),
        }
    }

    /// Bytes held now (after pending evictions ran).
    pub fn weighed_bytes(&self) -> u64 {
        self.pages.run_pending_tasks();
        self.snapshots.run_pending_tasks();
        self.pages.weighted_size() + self.snapshots.weighted_size()
    }
}

impl Default for InMemoryCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

#[async_trait]
impl ProgressCache for InMemoryCache {
    async fn put_url_page(&self, upload_id: Uuid, page: u32, urls: Arc<UrlPage>) {
        self.pages.insert((upload_id, page), urls);
        // Evict now: moka batches its bookkeeping, and pages are large enough for the
        // batch to hold the cache well past its budget.
        self.pages.run_pending_tasks();
    }

    async fn url_page(&self, upload_id: Uuid, page: u32) -> Option<Arc<UrlPage>> {
        self.pages.get(&(upload_id, page))
    }

    async fn put_snapshot(&self, upload_id: Uuid, snapshot: String) {
        self.snapshots.insert(upload_id, Arc::from(snapshot));
    }

    async fn snapshot(&self, upload_id: Uuid) -> Option<String> {
        self.snapshots.get(&upload_id).map(|s| s.to_string())
    }

    async fn forget(&self, upload_id: Uuid) {
        self.snapshots.invalidate(&upload_id);
        for page in 0..MAX_PARTS.div_ceil(URL_PAGE_SIZE) {
            self.pages.invalidate(&(upload_id, page));
        }
    }

    async fn publish(&self, event: UploadEvent) {
        self.snapshots.invalidate(&event.upload_id);
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = channels.get(&event.upload_id) {
            if sender.send(event).is_err() {
                // Nobody listens any more.
                channels.remove(&event.upload_id);
            }
        }
    }

    async fn subscribe(&self, upload_id: Uuid) -> broadcast::Receiver<UploadEvent> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(upload_id)
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    /// A full page of 1,000 URLs of `url_len` characters.
    fn page(url_len: usize) -> Arc<UrlPage> {
        Arc::new(
            (0..1000)
                .map(|_| {
                    Some(PresignedUrl {
                        url: Arc::new("u".repeat(url_len)),
                        expires_at: Utc::now(),
                    })
                })
                .collect(),
        )
    }

    #[tokio::test]
    async fn pages_stay_within_the_byte_budget_however_many_are_put() {
        let budget = 8 * 1024 * 1024;
        let cache = InMemoryCache::new(budget);
        // 40 uploads × 10 pages of 1,182-character URLs: ~480 MB if nothing were evicted.
        for _ in 0..40 {
            let id = Uuid::new_v4();
            for n in 0..10 {
                cache.put_url_page(id, n, page(1182)).await;
            }
        }
        let held = cache.weighed_bytes();
        assert!(held <= budget, "{held} bytes held, budget {budget}");
        assert!(held > budget / 2, "the budget is used: {held}");
    }

    #[tokio::test]
    async fn a_full_cache_keeps_the_newest_pages() {
        let cache = InMemoryCache::new(8 * 1024 * 1024);
        for _ in 0..20 {
            let id = Uuid::new_v4();
            for n in 0..5 {
                cache.put_url_page(id, n, page(1182)).await;
                assert!(
                    cache.url_page(id, n).await.is_some(),
                    "page {n} was refused"
                );
            }
            // Never more than the budget, even between moka's batches.
            assert!(cache.pages.weighted_size() <= 7 * 1024 * 1024);
        }
    }

    #[tokio::test]
    async fn a_page_is_shared_not_copied_and_forget_drops_all_of_an_upload() {
        let cache = InMemoryCache::default();
        let id = Uuid::new_v4();
        let stored = page(100);
        cache.put_url_page(id, 3, Arc::clone(&stored)).await;
        let read = cache.url_page(id, 3).await.expect("cached");
        assert!(Arc::ptr_eq(&read, &stored));
        cache.put_snapshot(id, "{}".into()).await;
        cache.forget(id).await;
        assert!(cache.url_page(id, 3).await.is_none());
        assert!(cache.snapshot(id).await.is_none());
    }
}
