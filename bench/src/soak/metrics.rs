//! "Jobs retried" from the processes' Prometheus text: the sum over kinds of
//! `partway_job_runs_total{outcome="retry"}`, scraped every 2 s from each API and worker.
//!
//! A counter lives as long as its process: a SIGKILL loses it. So each process slot keeps
//! the last value scraped in every earlier life and adds the current life's; retries that
//! a process counted in the ≤ 2 s between its last scrape and its death are not seen, so
//! the figure is a lower bound ("at least").

/// Sum of the samples of `metric` whose labels include `label="value"` (all samples when
/// `label` is None), from Prometheus text exposition.
pub fn sum(text: &str, metric: &str, label: Option<(&str, &str)>) -> f64 {
    let want = label.map(|(k, v)| format!("{k}=\"{v}\""));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if name != metric {
                return None;
            }
            if let Some(w) = &want {
                if !labels.split(',').any(|kv| kv.trim() == w) {
                    return None;
                }
            }
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// A counter over a process slot's lives.
#[derive(Default, Debug, Clone)]
pub struct LifeCounter {
    /// The last values of the lives that ended.
    earlier: u64,
    /// The current life's latest value.
    current: u64,
}

impl LifeCounter {
    /// A new life starts from zero; the ended one's last value is kept.
    pub fn new_life(&mut self) {
        self.earlier += self.current;
        self.current = 0;
    }

    pub fn observe(&mut self, value: u64) {
        self.current = self.current.max(value);
    }

    pub fn total(&self) -> u64 {
        self.earlier + self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_one_outcome_over_kinds() {
        let text = "# HELP partway_job_runs_total Job attempts by kind and outcome\n\
            # TYPE partway_job_runs_total counter\n\
            partway_job_runs_total{kind=\"complete\",outcome=\"done\"} 7\n\
            partway_job_runs_total{kind=\"complete\",outcome=\"retry\"} 3\n\
            partway_job_runs_total{kind=\"init\",outcome=\"retry\"} 2\n\
            partway_job_runs_total_other{outcome=\"retry\"} 100\n\
            partway_job_duration_seconds_sum{kind=\"init\"} 1.5\n";
        let retry = Some(("outcome", "retry"));
        assert_eq!(sum(text, "partway_job_runs_total", retry), 5.0);
        assert_eq!(sum(text, "partway_job_runs_total", None), 12.0);
        assert_eq!(sum(text, "partway_job_duration_seconds_sum", None), 1.5);
        assert_eq!(sum("", "partway_job_runs_total", retry), 0.0);
    }

    #[test]
    fn keeps_counts_across_restarts() {
        let mut c = LifeCounter::default();
        c.new_life();
        c.observe(3);
        c.observe(5);
        c.new_life();
        c.observe(2);
        assert_eq!(c.total(), 7);
    }
}
