//! The Redis [`RateLimiter`]: GCRA in one Lua script, so every API replica takes from
//! the same budget atomically, on the cache's connection (same timeouts and reconnects).
//!
//! Key: `partway:ratelimit:{subject key}` (`key:{sha256 of the API key}` or
//! `addr:{ip}`), holding the theoretical arrival time (TAT) in microseconds of Redis's
//! own clock (`TIME`), so replicas with skewed clocks agree. It expires when the
//! budget is full again, so idle subjects cost nothing.
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use partway_core::{
    domain::{RateDecision, RateLimit, RESERVATION_LIFETIME},
    rate_limit::{RateLimiter, RateLimiterError},
};

use crate::Inner;

/// KEYS[1] = the subject's key; ARGV[1] = emission interval (µs), ARGV[2] = burst,
/// ARGV[3] = how many requests to take at most.
/// Returns {granted (0 = refused), remaining, retry_after µs, reset µs}.
///
/// With T the interval and N the burst, `floor((now + N*T - max(tat, now)) / T)`
/// requests are available now; taking k of them moves the TAT by k*T. (With k = 1 this
/// is the textbook GCRA: allowed when `max(tat, now) + T - N*T <= now`.) Lua numbers
/// are doubles: microseconds since the epoch (~2^51) are exact in them, and the TAT is
/// written with `%.0f` (tostring would round it to 14 digits).
const GCRA_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local available = math.floor((now + burst * interval - tat) / interval)
if available < 1 then
  local allow_at = tat + interval - burst * interval
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
local granted = math.min(wanted, available)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {granted, available - granted, 0, math.ceil(new_tat - now)}
";

const KEY_PREFIX: &str = "partway:ratelimit:";

/// A [`RateLimiter`] on Redis, from [`crate::RedisCache::rate_limiter`].
///
/// Each call takes [`RateLimit::reservation_size`] requests from the shared budget and
/// serves the extra ones from memory, so a busy credential costs one round trip per
/// batch (issue 10: one per request cost 23% of status polling's throughput).
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
    script: redis::Script,
    reserved: Mutex<HashMap<String, Reservation>>,
    checks: AtomicU64,
}

/// Requests this replica took from a subject's shared budget and has not served yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reservation {
    left: u32,
    /// What the shared budget had left after the reservation.
    remaining: u32,
    full_at: Instant,
    forfeit_at: Instant,
}

impl Reservation {
    /// Serves one request from the reservation, while there is one and it is fresh.
    fn take(&mut self, limit: u32, now: Instant) -> Option<RateDecision> {
        if self.left == 0 || now >= self.forfeit_at {
            return None;
        }
        self.left -= 1;
        Some(RateDecision {
            allowed: true,
            limit,
            remaining: self.remaining.saturating_add(self.left).min(limit),
            reset: self.full_at.saturating_duration_since(now),
            retry_after: Duration::ZERO,
        })
    }
}

/// How many checks between sweeps of forfeited reservations.
const SWEEP_EVERY: u64 = 4096;

impl RedisRateLimiter {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self {
            inner,
            script: redis::Script::new(GCRA_SCRIPT),
            reserved: Mutex::default(),
            checks: AtomicU64::new(0),
        }
    }

    fn reservations(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reservation>> {
        self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds requests taken from the shared budget to this replica's reservation
    /// (concurrent calls for one subject each bring some; none is dropped).
    fn reserve(&self, key: &str, extra: u32, remaining: u32, reset: Duration) {
        let now = Instant::now();
        let mut reserved = self.reservations();
        let left = match reserved.get(key) {
            Some(r) if now < r.forfeit_at => r.left.saturating_add(extra),
            _ => extra,
        };
        reserved.insert(
            key.to_owned(),
            Reservation {
                left,
                remaining,
                full_at: now + reset,
                forfeit_at: now + RESERVATION_LIFETIME,
            },
        );
    }

    fn take_reserved(&self, key: &str, limit: RateLimit) -> Option<RateDecision> {
        let now = Instant::now();
        let mut reserved = self.reservations();
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            reserved.retain(|_, r| r.left > 0 && now < r.forfeit_at);
        }
        reserved.get_mut(key)?.take(limit.requests(), now)
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, limit: RateLimit) -> Result<RateDecision, RateLimiterError> {
        let wanted = limit.reservation_size();
        if wanted > 1 {
            if let Some(decision) = self.take_reserved(key, limit) {
                return Ok(decision);
            }
        }
        let interval_us = limit.emission_interval().as_secs_f64() * 1e6;
        let burst = limit.requests();
        let mut invocation = self.script.key(format!("{KEY_PREFIX}{key}"));
        invocation.arg(interval_us).arg(burst).arg(wanted);
        // EVALSHA, falling back to EVAL (which loads it) when Redis does not know it yet.
        let answer = self
            .inner
            .run("rate limit", move |mut conn| async move {
                invocation
                    .invoke_async::<(i64, i64, i64, i64)>(&mut conn)
                    .await
            })
            .await
            .ok_or_else(|| RateLimiterError("Redis did not answer".into()))?;
        let (granted, remaining, retry_after_us, reset_us) = answer;
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        let granted = u32::try_from(granted).unwrap_or(0).min(wanted);
        let remaining = u32::try_from(remaining).unwrap_or(0).min(burst);
        let reset = micros(reset_us);
        if granted > 1 {
            self.reserve(key, granted - 1, remaining, reset);
        }
        Ok(RateDecision {
            allowed: granted > 0,
            limit: burst,
            remaining: remaining
                .saturating_add(granted.saturating_sub(1))
                .min(burst),
            reset,
            retry_after: micros(retry_after_us),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_serves_what_it_holds_until_it_is_forfeited() {
        let start = Instant::now();
        let mut r = Reservation {
            left: 2,
            remaining: 10,
            full_at: start + Duration::from_secs(3),
            forfeit_at: start + RESERVATION_LIFETIME,
        };
        let first = r.take(100, start).expect("one left");
        assert!(first.allowed);
        assert_eq!((first.remaining, first.reset), (11, Duration::from_secs(3)));
        let second = r
            .take(100, start + Duration::from_secs(1) / 2)
            .expect("one left");
        assert_eq!(second.remaining, 10);
        assert_eq!(r.take(100, start), None, "used up");
        let mut stale = Reservation { left: 5, ..r };
        assert_eq!(
            stale.take(100, start + RESERVATION_LIFETIME),
            None,
            "forfeited"
        );
    }
}
