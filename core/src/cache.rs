//! In-process `ProgressCache` for the embedded mode (Redis replaces it when
//! `PARTWAY_REDIS_URL` is set).
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::ports::{PresignedUrl, ProgressCache, UploadEvent};

type Page = Vec<Option<PresignedUrl>>;

/// URL pages expire like the Redis ones would, so memory stays bounded.
const PAGE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Above this many cached pages the oldest are dropped (10,000 parts = 10 pages).
const MAX_PAGES: usize = 2_000;

/// Status snapshots live briefly: they only absorb bursts of polling.
const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct InMemoryCache {
    pages: Mutex<HashMap<(Uuid, u32), (Instant, Page)>>,
    snapshots: Mutex<HashMap<Uuid, (Instant, String)>>,
    channels: Mutex<HashMap<Uuid, broadcast::Sender<UploadEvent>>>,
}

impl InMemoryCache {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ProgressCache for InMemoryCache {
    async fn put_url_page(&self, upload_id: Uuid, page: u32, urls: Page) {
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        if pages.len() >= MAX_PAGES {
            let now = Instant::now();
            pages.retain(|_, (stored, _)| now.duration_since(*stored) < PAGE_TTL);
            if pages.len() >= MAX_PAGES {
                if let Some(oldest) = pages.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| *k) {
                    pages.remove(&oldest);
                }
            }
        }
        pages.insert((upload_id, page), (Instant::now(), urls));
    }

    async fn url_page(&self, upload_id: Uuid, page: u32) -> Option<Page> {
        let pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        pages
            .get(&(upload_id, page))
            .filter(|(at, _)| at.elapsed() < PAGE_TTL)
            .map(|(_, urls)| urls.clone())
    }

    async fn put_snapshot(&self, upload_id: Uuid, snapshot: String) {
        let mut snapshots = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        if snapshots.len() >= MAX_PAGES {
            snapshots.retain(|_, (at, _)| at.elapsed() < SNAPSHOT_TTL);
        }
        snapshots.insert(upload_id, (Instant::now(), snapshot));
    }

    async fn snapshot(&self, upload_id: Uuid) -> Option<String> {
        let snapshots = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        snapshots
            .get(&upload_id)
            .filter(|(at, _)| at.elapsed() < SNAPSHOT_TTL)
            .map(|(_, s)| s.clone())
    }

    async fn forget(&self, upload_id: Uuid) {
        self.snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&upload_id);
        self.pages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _), _| *id != upload_id);
    }

    async fn publish(&self, event: UploadEvent) {
        self.snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&event.upload_id);
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
