//! `/metrics`: the gauges computed from the database (uploads by status, unfinished
//! jobs by kind), then every metric in Prometheus text format.
use super::App;
use crate::{domain::UploadStatus, jobs::JobKind, metrics};

impl App {
    pub async fn render_metrics(&self) -> String {
        if let Some(m) = metrics::metrics() {
            if let Ok(rows) = self.store.uploads_by_status().await {
                for status in UploadStatus::all() {
                    let n = rows
                        .iter()
                        .find(|(s, _)| *s == status)
                        .map_or(0, |(_, n)| *n);
                    m.uploads.with_label_values(&[status.as_str()]).set(n);
                }
            }
            if let Ok(rows) = self.store.unfinished_jobs_by_kind().await {
                for kind in JobKind::all() {
                    let n = rows.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n);
                    m.queue_depth.with_label_values(&[kind.as_str()]).set(n);
                }
            }
        }
        metrics::render()
    }
}
