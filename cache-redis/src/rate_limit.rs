//! The Redis [`RateLimiter`]: GCRA in one Lua script, so every API replica takes from
//! the same budget atomically, on the cache's connection (same timeouts and reconnects).
//!
//! Key: `partway:ratelimit:{subject key}` (`key:{sha256 of the API key}` or
//! `addr:{ip}`), holding the theoretical arrival time (TAT) in microseconds of Redis's
//! own clock (`TIME`), so replicas with skewed clocks agree. It expires when the
//! budget is full again, so idle subjects cost nothing.
use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use partway_core::{
    domain::{RateDecision, RateLimit},
    rate_limit::{RateLimiter, RateLimiterError},
};

use crate::Inner;

/// KEYS[1] = the subject's key; ARGV[1] = emission interval (µs), ARGV[2] = burst.
/// Returns {allowed (0/1), remaining, retry_after µs, reset µs}.
///
/// With T the interval and N the burst: a request is allowed when
/// `max(tat, now) + T - N*T <= now`; it then moves the TAT by T. Lua numbers are
/// doubles: microseconds since the epoch (~2^51) are exact in them, and the TAT is
/// written with `%.0f` (tostring would round it to 14 digits).
const GCRA_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), 0, math.ceil(new_tat - now)}
";

const KEY_PREFIX: &str = "partway:ratelimit:";

/// A [`RateLimiter`] on Redis, from [`crate::RedisCache::rate_limiter`].
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
    script: redis::Script,
}

impl RedisRateLimiter {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self {
            inner,
            script: redis::Script::new(GCRA_SCRIPT),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, limit: RateLimit) -> Result<RateDecision, RateLimiterError> {
        let interval_us = limit.emission_interval().as_secs_f64() * 1e6;
        let burst = limit.requests();
        let mut invocation = self.script.key(format!("{KEY_PREFIX}{key}"));
        invocation.arg(interval_us).arg(burst);
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
        let (allowed, remaining, retry_after_us, reset_us) = answer;
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Ok(RateDecision {
            allowed: allowed == 1,
            limit: burst,
            remaining: u32::try_from(remaining).unwrap_or(0).min(burst),
            reset: micros(reset_us),
            retry_after: micros(retry_after_us),
        })
    }
}
