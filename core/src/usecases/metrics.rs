//! `/metrics`: the gauges computed from the database (uploads by status, unfinished
//! jobs by kind), then every metric in Prometheus text format.
//!
//! The gauges cost two `GROUP BY` scans, so they are refreshed at most once per
//! [`GAUGE_REFRESH`]: scraping as often as anyone likes costs the database nothing more.
use std::time::{Duration, Instant};

use super::App;
use crate::{domain::UploadStatus, jobs::JobKind, metrics};

/// The longest the database gauges may be stale.
pub const GAUGE_REFRESH: Duration = Duration::from_secs(5);

impl App {
    pub async fn render_metrics(&self) -> String {
        if let Some(m) = metrics::metrics() {
            if self.claim_gauge_refresh() {
                if let Ok(rows) = self.store.uploads_by_status().await {
                    for status in UploadStatus::all() {
                        let n = rows
                            .iter()
                            .find(|(s, _)| *s == status)
                            .map_or(0, |(_, n)| *n);
                        m.uploads.with_label_values(&[status.as_str()]).set(n);
                    }
                }
                if let Ok(n) = self.store.undelivered_count().await {
                    m.webhook_undelivered
                        .with_label_values(&[] as &[&str])
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                if let Ok(rows) = self.store.unfinished_jobs_by_kind().await {
                    for kind in JobKind::all() {
                        let n = rows.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n);
                        m.queue_depth.with_label_values(&[kind.as_str()]).set(n);
                    }
                }
            }
        }
        metrics::render()
    }

    /// True for the one caller that should query now (none did in the last
    /// [`GAUGE_REFRESH`]); concurrent scrapes do not each query.
    fn claim_gauge_refresh(&self) -> bool {
        let mut last = self
            .gauges_refreshed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < GAUGE_REFRESH) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestApp;

    #[tokio::test]
    async fn the_gauges_are_queried_at_most_once_per_refresh_interval() {
        let t = TestApp::new().await;
        assert!(t.app.claim_gauge_refresh(), "the first scrape queries");
        assert!(
            !t.app.claim_gauge_refresh(),
            "a second one right after does not"
        );
        let backdated = Instant::now() - GAUGE_REFRESH;
        *t.app.gauges_refreshed.lock().unwrap() = Some(backdated);
        assert!(
            t.app.claim_gauge_refresh(),
            "once the interval passed, one does"
        );
        assert!(!t.app.claim_gauge_refresh());
    }
}
