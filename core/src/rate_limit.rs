//! Request rate limiting (DESIGN §7): the [`RateLimiter`] port, its in-process
//! implementation on `governor` (the Redis one, shared by every API replica, is in
//! `partway-cache-redis`), and [`RequestLimiter`], which holds the configured limits and
//! fails open when the limiter cannot answer.
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use governor::{
    clock::{Clock, MonotonicClock},
    middleware::StateInformationMiddleware,
    state::keyed::DashMapStateStore,
    Quota,
};

use crate::domain::{RateDecision, RateLimit, RateLimits, RateSubject};

/// The limiter could not decide (Redis unreachable, a timeout, a script error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct RateLimiterError(pub String);

/// Takes one request from a key's budget, GCRA style: `limit.requests()` at once, then
/// one every `limit.emission_interval()`.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    async fn check(&self, key: &str, limit: RateLimit) -> Result<RateDecision, RateLimiterError>;
}

type KeyedLimiter<C> =
    governor::RateLimiter<String, DashMapStateStore<String>, C, StateInformationMiddleware>;

/// How many checks between sweeps of keys whose budget is full again (they hold no
/// information, and anonymous traffic brings a new key per address).
const SWEEP_EVERY: u64 = 4096;

/// The in-process limiter: one keyed `governor` limiter per distinct limit. Each process
/// counts alone, so N API replicas without Redis allow N times the limit.
pub struct LocalRateLimiter<C: Clock = MonotonicClock> {
    clock: C,
    limiters: RwLock<HashMap<RateLimit, Arc<KeyedLimiter<C>>>>,
    checks: AtomicU64,
}

impl LocalRateLimiter {
    pub fn new() -> Self {
        Self::with_clock(MonotonicClock)
    }
}

impl Default for LocalRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock + Clone> LocalRateLimiter<C> {
    /// With another clock (tests advance a fake one instead of sleeping).
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            limiters: RwLock::default(),
            checks: AtomicU64::new(0),
        }
    }

    fn limiter(&self, limit: RateLimit) -> Arc<KeyedLimiter<C>> {
        if let Some(found) = self
            .limiters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&limit)
        {
            return found.clone();
        }
        let mut limiters = self.limiters.write().unwrap_or_else(|e| e.into_inner());
        limiters
            .entry(limit)
            .or_insert_with(|| {
                Arc::new(
                    governor::RateLimiter::dashmap_with_clock(quota(limit), self.clock.clone())
                        .with_middleware::<StateInformationMiddleware>(),
                )
            })
            .clone()
    }

    /// The same decision, synchronously.
    pub fn check_now(&self, key: &str, limit: RateLimit) -> RateDecision {
        let limiter = self.limiter(limit);
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        let interval = limit.emission_interval();
        let burst = limit.requests();
        // governor keys by owned String; the key is short (a hash or an address).
        match limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(burst - 1);
                RateDecision {
                    allowed: true,
                    limit: burst,
                    remaining,
                    reset: interval * (burst - remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.clock.now());
                RateDecision {
                    allowed: false,
                    limit: burst,
                    remaining: 0,
                    reset: retry_after + interval * (burst - 1),
                    retry_after,
                }
            }
        }
    }
}

fn quota(limit: RateLimit) -> Quota {
    let burst = NonZeroU32::new(limit.requests()).unwrap_or(NonZeroU32::MIN);
    // RateLimit guarantees an interval of at least a microsecond.
    Quota::with_period(limit.emission_interval())
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

#[async_trait]
impl<C: Clock + Clone + Send + Sync> RateLimiter for LocalRateLimiter<C>
where
    C::Instant: Send + Sync,
{
    async fn check(&self, key: &str, limit: RateLimit) -> Result<RateDecision, RateLimiterError> {
        Ok(self.check_now(key, limit))
    }
}

/// At most one warning about a failing limiter per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The configured limits over a limiter. Requests are allowed when their limit is off,
/// and when the limiter cannot answer (fail open: an unreachable Redis must not take
/// the API down), counted in `partway_rate_limiter_errors_total`.
pub struct RequestLimiter {
    limits: RateLimits,
    limiter: Arc<dyn RateLimiter>,
    last_warning: Mutex<Option<Instant>>,
}

impl RequestLimiter {
    pub fn new(limits: RateLimits, limiter: Arc<dyn RateLimiter>) -> Self {
        Self {
            limits,
            limiter,
            last_warning: Mutex::new(None),
        }
    }

    /// No limits at all.
    pub fn off() -> Self {
        Self::new(RateLimits::OFF, Arc::new(LocalRateLimiter::new()))
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Whether any request could be limited (lets the HTTP layer skip the work).
    pub fn is_off(&self) -> bool {
        self.limits == RateLimits::OFF
    }

    /// Takes one request from `subject`'s budget; None when no limit applies or the
    /// limiter failed (the request is allowed either way).
    #[tracing::instrument(level = "debug", skip_all, fields(subject = subject.kind()))]
    pub async fn admit(&self, subject: &RateSubject) -> Option<RateDecision> {
        let limit = self.limits.for_subject(subject)?;
        match self.limiter.check(&subject.key(), limit).await {
            Ok(decision) => {
                if !decision.allowed {
                    if let Some(m) = crate::metrics::metrics() {
                        m.rate_limited.with_label_values(&[subject.kind()]).inc();
                    }
                }
                Some(decision)
            }
            Err(e) => {
                if let Some(m) = crate::metrics::metrics() {
                    m.rate_limiter_errors.inc();
                }
                self.warn(&e);
                None
            }
        }
    }

    fn warn(&self, error: &RateLimiterError) {
        let now = Instant::now();
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *last = Some(now);
            drop(last);
            // The error names the operation and Redis's answer; never a key or credential.
            tracing::warn!(
                "{error}; allowing requests without limits meanwhile (further warnings are \
                 held back for {}s)",
                WARN_EVERY.as_secs()
            );
        } else {
            tracing::debug!("{error}; request allowed");
        }
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::RatePeriod;

    fn limit(n: u32, period: RatePeriod) -> RateLimit {
        RateLimit::new(n, period).unwrap()
    }

    /// Requests made at one instant until the first refusal: how many passed.
    fn drain(limiter: &LocalRateLimiter<FakeRelativeClock>, key: &str, l: RateLimit) -> u32 {
        let mut passed = 0;
        while limiter.check_now(key, l).allowed {
            passed += 1;
            assert!(passed <= l.requests(), "more than the burst passed");
        }
        passed
    }

    #[test]
    fn the_burst_passes_then_requests_are_refused_with_retry_after() {
        let clock = FakeRelativeClock::default();
        let limiter = LocalRateLimiter::with_clock(clock);
        let l = limit(5, RatePeriod::Second);
        let first = limiter.check_now("k", l);
        assert_eq!((first.allowed, first.limit, first.remaining), (true, 5, 4));
        assert_eq!(drain(&limiter, "k", l), 4);
        let refused = limiter.check_now("k", l);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after, Duration::from_millis(200));
        assert_eq!(refused.retry_after_secs(), 1);
        assert_eq!(refused.reset, Duration::from_secs(1));
    }

    #[test]
    fn the_budget_refills_one_request_per_interval_and_fully_after_the_period() {
        let clock = FakeRelativeClock::default();
        let limiter = LocalRateLimiter::with_clock(clock.clone());
        let l = limit(60, RatePeriod::Minute);
        assert_eq!(drain(&limiter, "k", l), 60);
        clock.advance(Duration::from_millis(999));
        assert!(!limiter.check_now("k", l).allowed, "before one interval");
        clock.advance(Duration::from_millis(1));
        assert!(limiter.check_now("k", l).allowed, "after one interval");
        assert!(!limiter.check_now("k", l).allowed);
        clock.advance(Duration::from_secs(60));
        assert_eq!(drain(&limiter, "k", l), 60, "a full burst after the period");
    }

    #[test]
    fn keys_and_limits_are_independent() {
        let clock = FakeRelativeClock::default();
        let limiter = LocalRateLimiter::with_clock(clock);
        let l = limit(3, RatePeriod::Hour);
        assert_eq!(drain(&limiter, "key:a", l), 3);
        assert_eq!(drain(&limiter, "key:b", l), 3);
        assert!(!limiter.check_now("key:a", l).allowed);
        let other = limit(2, RatePeriod::Hour);
        assert_eq!(drain(&limiter, "key:a", other), 2);
    }

    proptest! {
        /// Over any schedule of requests, a key gets at most N + elapsed / interval
        /// through, and a request refused is told a retry-after that does pass.
        #[test]
        fn never_more_than_the_burst_plus_the_refill(
            n in 1u32..50,
            gaps_ms in proptest::collection::vec(0u64..400, 1..200),
        ) {
            let clock = FakeRelativeClock::default();
            let limiter = LocalRateLimiter::with_clock(clock.clone());
            let l = limit(n, RatePeriod::Second);
            let mut elapsed = Duration::ZERO;
            let mut allowed = 0u64;
            for gap in gaps_ms {
                clock.advance(Duration::from_millis(gap));
                elapsed += Duration::from_millis(gap);
                let d = limiter.check_now("k", l);
                prop_assert!(d.remaining < n);
                if d.allowed {
                    allowed += 1;
                } else {
                    prop_assert!(d.retry_after > Duration::ZERO);
                    prop_assert!(d.retry_after <= l.emission_interval());
                }
                let refill = (elapsed.as_nanos() / l.emission_interval().as_nanos()) as u64;
                prop_assert!(allowed <= u64::from(n) + refill);
            }
        }
    }

    struct Failing;

    #[async_trait]
    impl RateLimiter for Failing {
        async fn check(&self, _: &str, _: RateLimit) -> Result<RateDecision, RateLimiterError> {
            Err(RateLimiterError("redis: connection refused".into()))
        }
    }

    #[tokio::test]
    async fn a_failing_limiter_allows_and_counts_the_error() {
        let limits = RateLimits {
            per_credential: Some(limit(1, RatePeriod::Hour)),
            anonymous: None,
        };
        let gate = RequestLimiter::new(limits, Arc::new(Failing));
        let errors = || crate::metrics::metrics().unwrap().rate_limiter_errors.get();
        let before = errors();
        let subject = RateSubject::Credential("h".into());
        assert_eq!(gate.admit(&subject).await, None);
        assert_eq!(gate.admit(&subject).await, None);
        assert!(errors() >= before + 2);
        // An off limit never reaches the limiter.
        let anon = RateSubject::address("127.0.0.1".parse().unwrap());
        let before = errors();
        assert_eq!(gate.admit(&anon).await, None);
        assert_eq!(errors(), before);
    }

    #[tokio::test]
    async fn refusals_are_counted_by_subject_kind() {
        let limits = RateLimits {
            per_credential: None,
            anonymous: Some(limit(1, RatePeriod::Hour)),
        };
        let gate = RequestLimiter::new(limits, Arc::new(LocalRateLimiter::new()));
        let refused = || {
            crate::metrics::metrics()
                .unwrap()
                .rate_limited
                .with_label_values(&["address"])
                .get()
        };
        let before = refused();
        let anon = RateSubject::address("192.0.2.7".parse().unwrap());
        assert!(gate.admit(&anon).await.unwrap().allowed);
        assert!(!gate.admit(&anon).await.unwrap().allowed);
        assert!(refused() > before);
    }
}
