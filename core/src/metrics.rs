//! Prometheus metrics of this process, rendered at `/metrics`.
use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Requests by route (operation id) and status.
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    /// Job attempts by kind and outcome (done, retry, failed).
    pub job_runs: IntCounterVec,
    pub job_duration: HistogramVec,
    pub presigned_urls: IntCounter,
    /// Refreshed from the database at each scrape.
    pub uploads: IntGaugeVec,
    /// Jobs not finished yet (pending or running), by kind; refreshed at each scrape.
    pub queue_depth: IntGaugeVec,
    /// Requests refused with 429, by subject (`credential` or `address`).
    pub rate_limited: IntCounterVec,
    /// Requests let through because the rate limiter could not answer (fail open).
    pub rate_limiter_errors: IntCounter,
    /// Webhook delivery attempts by outcome (`delivered`, `retry`, `failed`, `gone`).
    pub webhook_deliveries: IntCounterVec,
    /// From an event's status change to the first attempt at delivering it.
    pub webhook_first_attempt_latency: HistogramVec,
    /// Webhook deliveries not over yet; refreshed at each scrape.
    pub webhook_undelivered: IntGaugeVec,
    /// Events published to the AMQP event exchange (confirmed).
    pub events_published: IntCounter,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let buckets = vec![
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let metrics = Metrics {
        http_requests: IntCounterVec::new(
            Opts::new(
                "partway_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )?,
        http_duration: HistogramVec::new(
            HistogramOpts::new(
                "partway_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(buckets.clone()),
            &["route"],
        )?,
        job_runs: IntCounterVec::new(
            Opts::new("partway_job_runs_total", "Job attempts by kind and outcome"),
            &["kind", "outcome"],
        )?,
        job_duration: HistogramVec::new(
            HistogramOpts::new("partway_job_duration_seconds", "Job attempt duration")
                .buckets(buckets),
            &["kind"],
        )?,
        presigned_urls: IntCounter::new("partway_presigned_urls_total", "Part URLs presigned")?,
        uploads: IntGaugeVec::new(
            Opts::new("partway_uploads", "Uploads by status"),
            &["status"],
        )?,
        queue_depth: IntGaugeVec::new(
            Opts::new("partway_queue_depth", "Jobs pending or running, by kind"),
            &["kind"],
        )?,
        rate_limited: IntCounterVec::new(
            Opts::new(
                "partway_rate_limited_total",
                "Requests refused by a rate limit, by subject (credential or address)",
            ),
            &["subject"],
        )?,
        rate_limiter_errors: IntCounter::new(
            "partway_rate_limiter_errors_total",
            "Requests allowed without a limit because the rate limiter could not answer",
        )?,
        webhook_deliveries: IntCounterVec::new(
            Opts::new(
                "partway_webhook_deliveries_total",
                "Webhook delivery attempts by outcome (delivered, retry, failed, gone)",
            ),
            &["outcome"],
        )?,
        webhook_first_attempt_latency: HistogramVec::new(
            HistogramOpts::new(
                "partway_webhook_first_attempt_seconds",
                "From an event's status change to the first attempt at delivering it",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
            ]),
            &[],
        )?,
        webhook_undelivered: IntGaugeVec::new(
            Opts::new(
                "partway_webhook_undelivered",
                "Webhook deliveries not over yet (pending or being retried)",
            ),
            &[],
        )?,
        events_published: IntCounter::new(
            "partway_events_published_total",
            "Events published to the AMQP event exchange (confirmed)",
        )?,
        registry,
    };
    metrics
        .registry
        .register(Box::new(metrics.http_requests.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.http_duration.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.job_runs.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.job_duration.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.presigned_urls.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.uploads.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.queue_depth.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.rate_limited.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.rate_limiter_errors.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.webhook_deliveries.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.webhook_first_attempt_latency.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.webhook_undelivered.clone()))?;
    metrics
        .registry
        .register(Box::new(metrics.events_published.clone()))?;
    Ok(metrics)
}

static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();

/// The process's metrics; None only if the fixed metric definitions were rejected,
/// in which case nothing is recorded rather than panicking.
pub fn metrics() -> Option<&'static Metrics> {
    METRICS.get_or_init(|| build().ok()).as_ref()
}

/// Counts part URLs presigned (by jobs and on the spot).
pub fn count_presigned(n: usize) {
    if let Some(m) = metrics() {
        m.presigned_urls.inc_by(n as u64);
    }
}

pub fn render() -> String {
    let Some(metrics) = metrics() else {
        return String::new();
    };
    let mut out = Vec::new();
    if TextEncoder::new()
        .encode(&metrics.registry.gather(), &mut out)
        .is_err()
    {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_show_in_the_text_format() {
        let m = metrics().expect("metrics build");
        m.http_requests.with_label_values(&["init", "202"]).inc();
        m.presigned_urls.inc_by(3);
        let text = render();
        assert!(
            text.contains("partway_http_requests_total{route=\"init\",status=\"202\"}"),
            "{text}"
        );
        assert!(text.contains("partway_presigned_urls_total"), "{text}");
    }
}
