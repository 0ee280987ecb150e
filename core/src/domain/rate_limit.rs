//! Request rate limits (DESIGN §7): the `N/s`, `N/m`, `N/h` settings, who a request is
//! counted against, and what a limiter decided. Pure values; the limiters themselves
//! are in `crate::rate_limit`.
use std::{fmt, net::IpAddr, time::Duration};

/// The largest N accepted: beyond it a limit is meaningless on one process, and the
/// emission interval (period / N) stays at least a microsecond, which the Redis
/// limiter's clock resolves.
pub const MAX_RATE_LIMIT_REQUESTS: u32 = 1_000_000;

/// `N/period`: up to N requests at once (the burst), then N per period, spread evenly
/// (GCRA: one request every `period / N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    requests: u32,
    period: RatePeriod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RatePeriod {
    Second,
    Minute,
    Hour,
}

impl RatePeriod {
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            RatePeriod::Second => 1,
            RatePeriod::Minute => 60,
            RatePeriod::Hour => 3600,
        })
    }

    fn suffix(self) -> &'static str {
        match self {
            RatePeriod::Second => "s",
            RatePeriod::Minute => "m",
            RatePeriod::Hour => "h",
        }
    }
}

impl RateLimit {
    /// `requests` must be 1..=[`MAX_RATE_LIMIT_REQUESTS`].
    pub fn new(requests: u32, period: RatePeriod) -> Result<RateLimit, String> {
        if requests == 0 || requests > MAX_RATE_LIMIT_REQUESTS {
            return Err(format!(
                "the number of requests must be from 1 to {MAX_RATE_LIMIT_REQUESTS}, not {requests}"
            ));
        }
        Ok(RateLimit { requests, period })
    }

    /// Parses `N/s`, `N/m`, `N/h` (a limit) or `off` (None: no limit).
    pub fn parse(text: &str) -> Result<Option<RateLimit>, String> {
        let text = text.trim();
        let expected =
            || format!("expected `N/s`, `N/m`, `N/h` (e.g. `600/m`) or `off`, not {text:?}");
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (count, unit) = text.split_once('/').ok_or_else(expected)?;
        let period = match unit.trim() {
            "s" => RatePeriod::Second,
            "m" => RatePeriod::Minute,
            "h" => RatePeriod::Hour,
            _ => return Err(expected()),
        };
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(expected());
        }
        let requests = count.parse::<u32>().map_err(|_| {
            format!("{text:?}: too many requests (at most {MAX_RATE_LIMIT_REQUESTS})")
        })?;
        RateLimit::new(requests, period)
            .map(Some)
            .map_err(|e| format!("{text:?}: {e}"))
    }

    /// N: the burst, and how many requests each period allows.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    pub fn period(&self) -> Duration {
        self.period.duration()
    }

    /// The time one request costs: `period / N`.
    pub fn emission_interval(&self) -> Duration {
        self.period() / self.requests
    }

    /// How many requests a replica takes from a shared budget in one call: what the
    /// limit allows in [`RESERVATION_WINDOW`], 1 to [`MAX_RESERVATION`]. Taking a few
    /// at once makes a shared limiter cost one round trip per batch instead of per
    /// request; a batch unused within [`RESERVATION_LIFETIME`] is forfeited, so a
    /// client can lose up to a window's worth of requests, and never gets more than
    /// the shared budget granted.
    pub fn reservation_size(&self) -> u32 {
        let per_window = RESERVATION_WINDOW.as_nanos() / self.emission_interval().as_nanos().max(1);
        u32::try_from(per_window)
            .unwrap_or(MAX_RESERVATION)
            .clamp(1, MAX_RESERVATION)
    }
}

/// See [`RateLimit::reservation_size`]: 5% of a second's budget.
pub const RESERVATION_WINDOW: Duration = Duration::from_millis(50);
pub const MAX_RESERVATION: u32 = 100;
/// Reserved requests not used by then are forfeited (they were taken long ago).
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(1);

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.requests, self.period.suffix())
    }
}

/// The two limits of DESIGN §7; None is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// Per credential (API key): `PARTWAY_RATE_LIMIT`.
    pub per_credential: Option<RateLimit>,
    /// Per client address, for requests without a valid credential:
    /// `PARTWAY_RATE_LIMIT_ANON`.
    pub anonymous: Option<RateLimit>,
}

impl RateLimits {
    /// No limits (tests, and the use cases without the HTTP layer).
    pub const OFF: RateLimits = RateLimits {
        per_credential: None,
        anonymous: None,
    };

    /// The limit `subject` is held to, if any.
    pub fn for_subject(&self, subject: &RateSubject) -> Option<RateLimit> {
        match subject {
            RateSubject::Credential(_) => self.per_credential,
            RateSubject::Address(_) => self.anonymous,
        }
    }
}

/// Whose budget a request is taken from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateSubject {
    /// A valid credential, by its stored hash (never the secret itself).
    Credential(String),
    /// A request without a valid credential, by the client's address: IPv4 as is,
    /// IPv6 by its /64 (one host usually holds a whole /64).
    Address(IpAddr),
}

impl RateSubject {
    pub fn address(ip: IpAddr) -> RateSubject {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut segments = v6.segments();
                    segments[4..].fill(0);
                    IpAddr::V6(segments.into())
                }
            },
            v4 => v4,
        };
        RateSubject::Address(ip)
    }

    /// The limiter's key: distinct for every subject, and never the credential.
    pub fn key(&self) -> String {
        match self {
            RateSubject::Credential(hash) => format!("key:{hash}"),
            RateSubject::Address(ip) => format!("addr:{ip}"),
        }
    }

    /// For metrics: `credential` or `address`.
    pub fn kind(&self) -> &'static str {
        match self {
            RateSubject::Credential(_) => "credential",
            RateSubject::Address(_) => "address",
        }
    }
}

/// A limiter's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// The limit's N (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests that could still be made at once (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the whole burst is available again (`RateLimit-Reset`).
    pub reset: Duration,
    /// For a refused request: until the next one can pass (`Retry-After`).
    pub retry_after: Duration,
}

impl RateDecision {
    /// `Retry-After` in whole seconds, rounded up (and at least 1 when refused), so a
    /// client that waits that long is allowed.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = ceil_secs(self.retry_after);
        if self.allowed {
            secs
        } else {
            secs.max(1)
        }
    }

    /// `RateLimit-Reset` in whole seconds, rounded up.
    pub fn reset_secs(&self) -> u64 {
        ceil_secs(self.reset)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_three_periods_and_off() {
        let limit = RateLimit::parse("600/m").unwrap().unwrap();
        assert_eq!(
            (limit.requests(), limit.period()),
            (600, Duration::from_secs(60))
        );
        assert_eq!(limit.emission_interval(), Duration::from_millis(100));
        let limit = RateLimit::parse(" 5/s ").unwrap().unwrap();
        assert_eq!(limit.emission_interval(), Duration::from_millis(200));
        let limit = RateLimit::parse("3600/h").unwrap().unwrap();
        assert_eq!(limit.emission_interval(), Duration::from_secs(1));
        assert_eq!(RateLimit::parse("off").unwrap(), None);
        assert_eq!(RateLimit::parse("OFF").unwrap(), None);
    }

    #[test]
    fn a_reservation_is_what_the_limit_allows_in_50_ms_within_1_to_100() {
        let size = |text: &str| RateLimit::parse(text).unwrap().unwrap().reservation_size();
        assert_eq!(size("5/m"), 1);
        assert_eq!(size("19/s"), 1);
        assert_eq!(size("6000/m"), 5);
        assert_eq!(size("1000/s"), 50);
        assert_eq!(size("1000000/s"), MAX_RESERVATION);
        assert_eq!(size("1000000/h"), 13);
    }

    #[test]
    fn bad_limits_say_what_is_expected() {
        for bad in [
            "",
            "600",
            "600/d",
            "/m",
            "-1/m",
            "0/s",
            "1.5/s",
            "600/min",
            "ten/s",
            "+5/s",
            "5000000/s",
            "99999999999/s",
            "on",
        ] {
            let err = RateLimit::parse(bad).unwrap_err();
            assert!(
                err.contains("N/s") || err.contains("from 1 to") || err.contains("at most"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let refused = |retry_after| RateDecision {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset: retry_after,
            retry_after,
        };
        assert_eq!(refused(Duration::from_millis(1)).retry_after_secs(), 1);
        assert_eq!(refused(Duration::from_millis(1000)).retry_after_secs(), 1);
        assert_eq!(refused(Duration::from_millis(1001)).retry_after_secs(), 2);
        assert_eq!(refused(Duration::ZERO).retry_after_secs(), 1);
        assert_eq!(refused(Duration::from_millis(59_500)).reset_secs(), 60);
    }

    #[test]
    fn subjects_key_by_hash_or_address_and_ipv6_by_its_64() {
        let a = RateSubject::address("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = RateSubject::address("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = RateSubject::address("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = RateSubject::address("::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(mapped.key(), "addr:10.1.2.3");
        assert_eq!(RateSubject::Credential("ab12".into()).key(), "key:ab12");
    }

    proptest! {
        #[test]
        fn display_parses_back(n in 1u32..=MAX_RATE_LIMIT_REQUESTS, unit in 0usize..3) {
            let period = [RatePeriod::Second, RatePeriod::Minute, RatePeriod::Hour][unit];
            let limit = RateLimit::new(n, period).unwrap();
            prop_assert_eq!(RateLimit::parse(&limit.to_string()).unwrap(), Some(limit));
            prop_assert!(limit.emission_interval() >= Duration::from_micros(1));
            // period / N, truncated to whole nanoseconds.
            let spent = limit.emission_interval() * n;
            prop_assert!(spent <= limit.period() && limit.period() - spent < Duration::from_nanos(n.into()));
        }

        #[test]
        fn parsing_anything_never_panics_and_accepts_only_the_grammar(text in ".{0,12}") {
            if let Ok(Some(limit)) = RateLimit::parse(&text) {
                prop_assert!(text.contains('/'));
                prop_assert_eq!(RateLimit::parse(&limit.to_string()).unwrap(), Some(limit));
            }
        }
    }
}
