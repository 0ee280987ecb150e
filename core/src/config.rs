//! Configuration, layered: defaults → optional TOML file (`PARTWAY_CONFIG`, else
//! `partway.toml` when present) → `PARTWAY_*` environment → `PARTWAY_*_FILE` secrets.
use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    providers::{Format, Serialized, Toml},
    Figment,
};
use serde::{de, Deserialize, Deserializer, Serialize};

use crate::{
    domain::{OwnerLimit, Provider, Quota, RateLimit, RateLimits},
    outbound::{AllowList, OutboundMode},
};

/// A configuration value that must never be printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(#[serde(deserialize_with = "lossy_string")] String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Environment values like `9000` or `true` arrive typed; string settings take them
/// as text.
fn lossy_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        S(String),
        U(u64),
        I(i64),
        F(f64),
        B(bool),
    }
    Ok(match Any::deserialize(d)? {
        Any::S(s) => s,
        Any::U(n) => n.to_string(),
        Any::I(n) => n.to_string(),
        Any::F(n) => n.to_string(),
        Any::B(b) => b.to_string(),
    })
}

fn lossy_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(lossy_string(d)?).filter(|s| !s.is_empty()))
}

fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(lossy_opt_string(d)?.map(Secret))
}

/// `7d`, `3600s`, `90m`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&lossy_string(d)?).map_err(de::Error::custom)
}

/// `PARTWAY_MAX_ACTIVE_*`: unset, empty or `unlimited` is no limit.
fn limit<'de, D: Deserializer<'de>>(d: D, bytes: bool) -> Result<Option<u64>, D::Error> {
    let Some(text) = lossy_opt_string(d)? else {
        return Ok(None);
    };
    match OwnerLimit::parse(&text, bytes).map_err(de::Error::custom)? {
        OwnerLimit::Max(n) => Ok(Some(n)),
        OwnerLimit::Unlimited => Ok(None),
        OwnerLimit::Default => Err(de::Error::custom(
            "expected a number or `unlimited`, not `default`",
        )),
    }
}

/// A size in bytes: a number or `64MiB`, `1GB`, …
fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    partway_protocol::parse_size(&lossy_string(d)?).map_err(de::Error::custom)
}

fn count_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    limit(d, false)
}

fn bytes_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    limit(d, true)
}

/// `PARTWAY_RATE_LIMIT*`: `N/s`, `N/m`, `N/h` or `off` (None).
fn rate_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RateLimit>, D::Error> {
    RateLimit::parse(&lossy_string(d)?).map_err(de::Error::custom)
}

fn ser_rate_limit<S: serde::Serializer>(
    limit: &Option<RateLimit>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match limit {
        Some(limit) => s.serialize_str(&limit.to_string()),
        None => s.serialize_str("off"),
    }
}

/// Per credential: 100 requests/s on average with bursts of 6000, so one client
/// polling or reporting parts at 50 requests/s is never refused (DESIGN §7).
pub const DEFAULT_RATE_LIMIT: &str = "6000/m";
/// Per address, for requests without a valid credential: 10/s on average with bursts
/// of 600; such requests can only be refused (401/404) or hit unauthenticated routes.
pub const DEFAULT_RATE_LIMIT_ANON: &str = "600/m";

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs()))
}

/// A `PARTWAY_DEV_API_KEY` shorter than this is refused (DESIGN §7).
pub const MIN_DEV_API_KEY_CHARS: usize = 32;

/// The all-in-one service's development key, as configured.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum DevKey<'a> {
    /// Unset: generated into the data dir on the first start (`dev-api-key`).
    Generated,
    /// `PARTWAY_DEV_API_KEY` (at least [`MIN_DEV_API_KEY_CHARS`] characters).
    Given(&'a str),
    /// `PARTWAY_DEV_API_KEY=off`: no development key.
    Off,
}

impl fmt::Debug for DevKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DevKey::Generated => f.write_str("Generated"),
            DevKey::Given(_) => f.write_str("Given(<redacted>)"),
            DevKey::Off => f.write_str("Off"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub bind: SocketAddr,
    /// Comma-separated origins, or `*`.
    #[serde(deserialize_with = "lossy_opt_string", default)]
    pub cors_origins: Option<String>,
    pub data_dir: PathBuf,
    #[serde(deserialize_with = "opt_secret", default)]
    pub dev_api_key: Option<Secret>,
    pub embedded_s3_bind: SocketAddr,
    #[serde(deserialize_with = "opt_secret", default)]
    pub database_url: Option<Secret>,
    #[serde(deserialize_with = "opt_secret", default)]
    pub amqp_url: Option<Secret>,
    #[serde(deserialize_with = "opt_secret", default)]
    pub redis_url: Option<Secret>,
    /// Prefix of every RabbitMQ exchange and queue name, so deployments (or test
    /// runs) can share one broker.
    #[serde(deserialize_with = "lossy_string", default)]
    pub amqp_prefix: String,
    #[serde(deserialize_with = "lossy_opt_string", default)]
    pub s3_endpoint: Option<String>,
    #[serde(deserialize_with = "lossy_opt_string", default)]
    pub s3_region: Option<String>,
    #[serde(deserialize_with = "lossy_opt_string", default)]
    pub s3_bucket: Option<String>,
    #[serde(deserialize_with = "opt_secret", default)]
    pub s3_access_key_id: Option<Secret>,
    #[serde(deserialize_with = "opt_secret", default)]
    pub s3_secret_access_key: Option<Secret>,
    #[serde(deserialize_with = "lossy_opt_string", default)]
    pub s3_public_endpoint: Option<String>,
    #[serde(default)]
    pub s3_force_path_style: Option<bool>,
    #[serde(deserialize_with = "lossy_opt_string", default)]
    pub r2_account_id: Option<String>,
    #[serde(deserialize_with = "lossy_opt_string", default)]
    pub r2_bucket: Option<String>,
    #[serde(deserialize_with = "opt_secret", default)]
    pub r2_access_key_id: Option<Secret>,
    #[serde(deserialize_with = "opt_secret", default)]
    pub r2_secret_access_key: Option<Secret>,
    #[serde(deserialize_with = "lossy_opt_string", default)]
    pub default_provider: Option<String>,
    #[serde(deserialize_with = "opt_secret", default)]
    pub master_key: Option<Secret>,
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub upload_ttl: Duration,
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub url_ttl: Duration,
    /// `PARTWAY_DOWNLOAD_URL_TTL`: how long a completed upload's download URL lives
    /// (DESIGN §7; default 1 h, at most 7 days).
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub download_url_ttl: Duration,
    /// First segment of every object key.
    #[serde(deserialize_with = "lossy_string")]
    pub key_prefix: String,
    /// How often the sweeper looks for expired uploads.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub sweep_interval: Duration,
    /// How long finished jobs, settled webhook deliveries and attempts, and events are
    /// kept before the sweeper deletes them.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub history_retention: Duration,
    pub log_format: LogFormat,
    /// `partway-worker` serves its own `/metrics` here when set (jobs run there).
    #[serde(default)]
    pub metrics_bind: Option<SocketAddr>,
    /// Jobs of each kind one worker process runs at once (its AMQP prefetch per queue).
    /// Jobs mostly wait on storage, so this sets a worker's throughput; scale out with
    /// more processes once it is CPU that runs out.
    pub worker_concurrency: u16,
    /// `PARTWAY_ALLOWED_ENDPOINTS`: CIDRs and host names (comma-separated) a
    /// client-supplied endpoint may reach although the outbound guard would refuse it.
    #[serde(deserialize_with = "lossy_opt_string", default)]
    pub allowed_endpoints: Option<String>,
    /// `PARTWAY_OUTBOUND`: `guarded` (default) or `allowlist`.
    #[serde(default)]
    pub outbound: OutboundMode,
    /// `PARTWAY_MAX_ACTIVE_UPLOADS`: unfinished uploads one owner may hold (unlimited
    /// when unset); `partway owners set-quota` overrides it per owner.
    #[serde(deserialize_with = "count_limit", default)]
    pub max_active_uploads: Option<u64>,
    /// `PARTWAY_MAX_ACTIVE_BYTES`: their total declared size (`10GiB` or bytes).
    #[serde(deserialize_with = "bytes_limit", default)]
    pub max_active_bytes: Option<u64>,
    /// `PARTWAY_BODY_READ_TIMEOUT`: the longest a client may take to send a JSON
    /// request body (DESIGN §7, slow clients); over it the request fails with 408.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub body_read_timeout: Duration,
    /// `PARTWAY_HEADER_READ_TIMEOUT`: the longest a client may take to send a
    /// request's headers (slow-loris); over it the connection is closed.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub header_read_timeout: Duration,
    /// `PARTWAY_CACHE_MAX_BYTES`: what the in-process cache (URL pages and status
    /// snapshots, when there is no Redis) may hold.
    #[serde(deserialize_with = "byte_size")]
    pub cache_max_bytes: u64,
    /// `PARTWAY_MAX_CONNECTIONS`: open HTTP connections one API process serves at
    /// once; further clients wait in the listen backlog until one closes.
    pub max_connections: u32,
    /// `PARTWAY_MAX_EVENT_STREAMS`: event streams one owner may hold open on one API
    /// process; over it, 403 `QUOTA_EXCEEDED`.
    pub max_event_streams: u32,
    /// `PARTWAY_EVENT_STREAM_MAX_AGE`: an event stream ends after this long (clients
    /// reconnect), so none lives on forever.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub event_stream_max_age: Duration,
    /// `PARTWAY_EVENT_STREAM_RECHECK`: how often an open stream checks its credential
    /// again (at most 30 s); a revoked or expired one ends the stream.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub event_stream_recheck: Duration,
    /// `PARTWAY_RATE_LIMIT`: requests per credential (API key), `N/s`, `N/m`, `N/h`
    /// (N at once, then N per period) or `off`; shared by all API replicas through
    /// Redis when it is configured.
    #[serde(deserialize_with = "rate_limit", serialize_with = "ser_rate_limit")]
    pub rate_limit: Option<RateLimit>,
    /// `PARTWAY_RATE_LIMIT_ANON`: requests per client address without a valid
    /// credential, same syntax.
    #[serde(deserialize_with = "rate_limit", serialize_with = "ser_rate_limit")]
    pub rate_limit_anon: Option<RateLimit>,
    /// `PARTWAY_WEBHOOK_RETRY_SCHEDULE`: the delays between attempts at a webhook
    /// delivery, comma-separated (`5s,30s,2m,…`); unset: DESIGN §6's, about a day
    /// (`events::default_retry_schedule`).
    #[serde(deserialize_with = "lossy_opt_string", default)]
    pub webhook_retry_schedule: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cors_origins: None,
            data_dir: PathBuf::from("./data"),
            dev_api_key: None,
            embedded_s3_bind: SocketAddr::from(([127, 0, 0, 1], 9000)),
            database_url: None,
            amqp_url: None,
            redis_url: None,
            amqp_prefix: String::new(),
            s3_endpoint: None,
            s3_region: None,
            s3_bucket: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_public_endpoint: None,
            s3_force_path_style: None,
            r2_account_id: None,
            r2_bucket: None,
            r2_access_key_id: None,
            r2_secret_access_key: None,
            default_provider: None,
            body_read_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            cache_max_bytes: crate::cache::DEFAULT_MAX_BYTES,
            max_connections: 4096,
            max_event_streams: 256,
            event_stream_max_age: Duration::from_secs(3600),
            event_stream_recheck: MAX_STREAM_RECHECK,
            master_key: None,
            upload_ttl: Duration::from_secs(7 * 24 * 3600),
            url_ttl: Duration::from_secs(7 * 24 * 3600),
            download_url_ttl: Duration::from_secs(3600),
            key_prefix: "uploads".into(),
            sweep_interval: Duration::from_secs(60),
            history_retention: Duration::from_secs(30 * 24 * 3600),
            log_format: LogFormat::Pretty,
            metrics_bind: None,
            worker_concurrency: 8,
            allowed_endpoints: None,
            outbound: OutboundMode::Guarded,
            max_active_uploads: None,
            max_active_bytes: None,
            rate_limit: RateLimit::parse(DEFAULT_RATE_LIMIT).ok().flatten(),
            rate_limit_anon: RateLimit::parse(DEFAULT_RATE_LIMIT_ANON).ok().flatten(),
            webhook_retry_schedule: None,
        }
    }
}

/// Below this the cache could not hold one page of long URLs.
const MIN_CACHE_BYTES: u64 = 1024 * 1024;

/// An open event stream checks its credential at least this often (DESIGN §7).
pub const MAX_STREAM_RECHECK: Duration = Duration::from_secs(30);

/// SigV4 presigned URLs cannot live longer than 7 days.
pub const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const SECRET_FILE_KEYS: [&str; 9] = [
    "DEV_API_KEY",
    "DATABASE_URL",
    "AMQP_URL",
    "REDIS_URL",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "MASTER_KEY",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads from the process environment.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(std::env::vars().collect())
    }

    /// Loads from the given environment (tests pass their own).
    pub fn load_from(env: Vec<(String, String)>) -> Result<Config, ConfigError> {
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        // Unset optional settings are left out, not passed down as nulls.
        let mut defaults = serde_json::to_value(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(map) = defaults.as_object_mut() {
            map.retain(|_, v| !v.is_null());
        }
        let mut figment = Figment::from(Serialized::defaults(defaults));
        match lookup("PARTWAY_CONFIG") {
            Some(path) => {
                if !std::path::Path::new(&path).exists() {
                    return Err(ConfigError::Invalid(format!(
                        "PARTWAY_CONFIG file {path} does not exist"
                    )));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("partway.toml")),
        }
        let mut from_files = Vec::new();
        for key in SECRET_FILE_KEYS {
            if let Some(path) = lookup(&format!("PARTWAY_{key}_FILE")) {
                let content = std::fs::read_to_string(&path).map_err(|e| {
                    ConfigError::Invalid(format!("PARTWAY_{key}_FILE: cannot read {path}: {e}"))
                })?;
                from_files.push((key.to_ascii_lowercase(), content.trim().to_string()));
            }
        }
        let env_pairs: Vec<(String, String)> = env
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("PARTWAY_")?;
                (key != "CONFIG" && !key.ends_with("_FILE"))
                    .then(|| (key.to_ascii_lowercase(), v.clone()))
            })
            .collect();
        for (key, value) in env_pairs {
            // Typed like figment's own Env provider: "false" is a bool, "9000" a number.
            let typed: figment::value::Value =
                value.parse().unwrap_or_else(|_| value.clone().into());
            figment = figment.merge(Serialized::global(&key, typed));
        }
        for (key, value) in from_files {
            figment = figment.merge(Serialized::global(&key, value));
        }
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if config.url_ttl > MAX_URL_TTL {
            config.url_ttl = MAX_URL_TTL;
        }
        if config.download_url_ttl > MAX_URL_TTL {
            config.download_url_ttl = MAX_URL_TTL;
        }
        if config.url_ttl.is_zero() || config.upload_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "PARTWAY_URL_TTL and PARTWAY_UPLOAD_TTL must be positive".into(),
            ));
        }
        // A `?wait` follows its job's row: keep rows far longer than any wait.
        if config.history_retention < Duration::from_secs(3600) {
            return Err(ConfigError::Invalid(
                "PARTWAY_HISTORY_RETENTION must be at least 1h".into(),
            ));
        }
        if config.download_url_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "PARTWAY_DOWNLOAD_URL_TTL must be positive".into(),
            ));
        }
        if config.body_read_timeout.is_zero() || config.header_read_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "PARTWAY_BODY_READ_TIMEOUT and PARTWAY_HEADER_READ_TIMEOUT must be positive".into(),
            ));
        }
        if config.cache_max_bytes < MIN_CACHE_BYTES {
            return Err(ConfigError::Invalid(
                "PARTWAY_CACHE_MAX_BYTES must be at least 1MiB".into(),
            ));
        }
        if config.max_connections == 0 || config.max_event_streams == 0 {
            return Err(ConfigError::Invalid(
                "PARTWAY_MAX_CONNECTIONS and PARTWAY_MAX_EVENT_STREAMS must be at least 1".into(),
            ));
        }
        if config.event_stream_max_age.is_zero() {
            return Err(ConfigError::Invalid(
                "PARTWAY_EVENT_STREAM_MAX_AGE must be positive".into(),
            ));
        }
        if config.event_stream_recheck.is_zero() || config.event_stream_recheck > MAX_STREAM_RECHECK
        {
            return Err(ConfigError::Invalid(
                "PARTWAY_EVENT_STREAM_RECHECK must be between 1s and 30s".into(),
            ));
        }
        if config.worker_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "PARTWAY_WORKER_CONCURRENCY must be at least 1".into(),
            ));
        }
        config.allowed_endpoints()?;
        config.event_settings()?;
        if let Some(key) = &config.dev_api_key {
            let key = key.expose().trim();
            if crate::domain::browser::is_browser_token(key) {
                return Err(ConfigError::Invalid(
                    "PARTWAY_DEV_API_KEY must not start with `pwb_`: that prefix marks browser tokens"
                        .into(),
                ));
            }
            if !key.eq_ignore_ascii_case("off") && key.chars().count() < MIN_DEV_API_KEY_CHARS {
                return Err(ConfigError::Invalid(format!(
                    "PARTWAY_DEV_API_KEY must have at least {MIN_DEV_API_KEY_CHARS} characters \
                     (it has {}), or be `off`; e.g. `openssl rand -hex 32`",
                    key.chars().count()
                )));
            }
        }
        if let Some(provider) = &config.default_provider {
            provider.parse::<Provider>().map_err(|_| {
                ConfigError::Invalid(format!(
                    "PARTWAY_DEFAULT_PROVIDER must be S3 or R2, not {provider:?}"
                ))
            })?;
        }
        Ok(config)
    }

    /// The development key of the all-in-one service (checked by [`Config::load_from`]).
    pub fn dev_key(&self) -> DevKey<'_> {
        match &self.dev_api_key {
            None => DevKey::Generated,
            Some(key) if key.expose().trim().eq_ignore_ascii_case("off") => DevKey::Off,
            Some(key) => DevKey::Given(key.expose().trim()),
        }
    }

    /// The embedded S3 endpoint runs only when no S3 bucket or endpoint is set.
    pub fn uses_embedded_s3(&self) -> bool {
        self.s3_bucket.is_none() && self.s3_endpoint.is_none()
    }

    /// How webhook deliveries are retried (`PARTWAY_WEBHOOK_RETRY_SCHEDULE`).
    pub fn event_settings(&self) -> Result<crate::events::EventSettings, ConfigError> {
        let mut settings = crate::events::EventSettings::default();
        if let Some(text) = &self.webhook_retry_schedule {
            settings.retry_schedule = crate::events::parse_retry_schedule(text).map_err(|e| {
                ConfigError::Invalid(format!("PARTWAY_WEBHOOK_RETRY_SCHEDULE: {e}"))
            })?;
        }
        Ok(settings)
    }

    /// `PARTWAY_ALLOWED_ENDPOINTS`, parsed.
    pub fn allowed_endpoints(&self) -> Result<AllowList, ConfigError> {
        AllowList::parse(self.allowed_endpoints.as_deref().unwrap_or(""))
            .map_err(|e| ConfigError::Invalid(format!("PARTWAY_ALLOWED_ENDPOINTS: {e}")))
    }

    /// The server-wide quota every owner has unless overridden.
    pub fn quota(&self) -> Quota {
        Quota {
            max_active_uploads: self.max_active_uploads,
            max_active_bytes: self.max_active_bytes,
        }
    }

    /// The request rate limits (DESIGN §7).
    pub fn rate_limits(&self) -> RateLimits {
        RateLimits {
            per_credential: self.rate_limit,
            anonymous: self.rate_limit_anon,
        }
    }

    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_origins
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_dev_key_needs_32_characters_or_off() {
        let err = Config::load_from(env(&[("PARTWAY_DEV_API_KEY", "short-dev-key")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 32 characters"), "{err}");
        assert!(
            !err.contains("short-dev-key"),
            "the key is never shown: {err}"
        );
        let long = "k".repeat(32);
        let config = Config::load_from(env(&[("PARTWAY_DEV_API_KEY", &long)])).unwrap();
        assert_eq!(config.dev_key(), DevKey::Given(long.as_str()));
        for off in ["off", "OFF"] {
            let config = Config::load_from(env(&[("PARTWAY_DEV_API_KEY", off)])).unwrap();
            assert_eq!(config.dev_key(), DevKey::Off);
        }
        let config = Config::load_from(env(&[])).unwrap();
        assert_eq!(config.dev_key(), DevKey::Generated);
        let browser_like = format!("pwb_{}", "k".repeat(40));
        let err = Config::load_from(env(&[("PARTWAY_DEV_API_KEY", &browser_like)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pwb_"), "{err}");
        assert!(
            !err.contains(&browser_like),
            "the key is never shown: {err}"
        );
    }

    #[test]
    fn download_urls_live_an_hour_unless_configured() {
        let config = Config::load_from(env(&[])).unwrap();
        assert_eq!(config.download_url_ttl, Duration::from_secs(3600));
        let config = Config::load_from(env(&[("PARTWAY_DOWNLOAD_URL_TTL", "10m")])).unwrap();
        assert_eq!(config.download_url_ttl, Duration::from_secs(600));
        let config = Config::load_from(env(&[("PARTWAY_DOWNLOAD_URL_TTL", "30d")])).unwrap();
        assert_eq!(config.download_url_ttl, MAX_URL_TTL);
        assert!(Config::load_from(env(&[("PARTWAY_DOWNLOAD_URL_TTL", "0")])).is_err());
    }

    #[test]
    fn history_is_kept_30_days_unless_configured_and_at_least_an_hour() {
        let config = Config::load_from(env(&[])).unwrap();
        assert_eq!(config.history_retention, Duration::from_secs(30 * 86_400));
        let config = Config::load_from(env(&[("PARTWAY_HISTORY_RETENTION", "7d")])).unwrap();
        assert_eq!(config.history_retention, Duration::from_secs(7 * 86_400));
        let err = Config::load_from(env(&[("PARTWAY_HISTORY_RETENTION", "10m")])).unwrap_err();
        assert!(
            err.to_string().contains("PARTWAY_HISTORY_RETENTION"),
            "{err}"
        );
    }

    #[test]
    fn defaults_apply_without_environment() {
        let config = Config::load_from(env(&[])).unwrap();
        assert_eq!(config.bind.port(), 8080);
        assert_eq!(config.upload_ttl, Duration::from_secs(604_800));
        assert!(config.uses_embedded_s3());
    }

    #[test]
    fn environment_overrides_and_numbers_become_strings() {
        let config = Config::load_from(env(&[
            ("PARTWAY_BIND", "127.0.0.1:0"),
            ("PARTWAY_S3_BUCKET", "12345"),
            ("PARTWAY_S3_ACCESS_KEY_ID", "777"),
            ("PARTWAY_UPLOAD_TTL", "3600s"),
            ("PARTWAY_URL_TTL", "30d"),
            ("PARTWAY_S3_FORCE_PATH_STYLE", "false"),
        ]))
        .unwrap();
        assert_eq!(config.bind.port(), 0);
        assert_eq!(config.s3_bucket.as_deref(), Some("12345"));
        assert_eq!(config.s3_access_key_id.as_ref().unwrap().expose(), "777");
        assert_eq!(config.upload_ttl, Duration::from_secs(3600));
        assert_eq!(config.url_ttl, MAX_URL_TTL, "capped at SigV4's 7 days");
        assert_eq!(config.s3_force_path_style, Some(false));
        assert!(!config.uses_embedded_s3());
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = std::env::temp_dir().join(format!("partway-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let config = Config::load_from(env(&[(
            "PARTWAY_S3_SECRET_ACCESS_KEY_FILE",
            path.to_str().unwrap(),
        )]))
        .unwrap();
        let secret = config.s3_secret_access_key.clone().unwrap();
        assert_eq!(secret.expose(), "from-file");
        assert!(!format!("{config:?}").contains("from-file"));
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let err = Config::load_from(env(&[("PARTWAY_UPLOAD_TTL", "soon")])).unwrap_err();
        assert!(err.to_string().contains("upload_ttl"), "{err}");
        let err = Config::load_from(env(&[("PARTWAY_DEFAULT_PROVIDER", "GCS")])).unwrap_err();
        assert!(err.to_string().contains("S3 or R2"), "{err}");
        let err = Config::load_from(env(&[("PARTWAY_CONFIG", "/nonexistent.toml")])).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    fn worker_concurrency_defaults_to_8_and_must_be_positive() {
        assert_eq!(Config::load_from(env(&[])).unwrap().worker_concurrency, 8);
        let set = Config::load_from(env(&[("PARTWAY_WORKER_CONCURRENCY", "2")])).unwrap();
        assert_eq!(set.worker_concurrency, 2);
        let err = Config::load_from(env(&[("PARTWAY_WORKER_CONCURRENCY", "0")])).unwrap_err();
        assert!(
            err.to_string().contains("PARTWAY_WORKER_CONCURRENCY"),
            "{err}"
        );
    }

    #[test]
    fn outbound_guard_settings() {
        let config = Config::load_from(env(&[])).unwrap();
        assert_eq!(config.outbound, OutboundMode::Guarded);
        assert!(config.allowed_endpoints().unwrap().is_empty());
        let config = Config::load_from(env(&[
            ("PARTWAY_OUTBOUND", "allowlist"),
            (
                "PARTWAY_ALLOWED_ENDPOINTS",
                "127.0.0.1:9000, 10.0.0.0/8, minio",
            ),
        ]))
        .unwrap();
        assert_eq!(config.outbound, OutboundMode::Allowlist);
        let allowed = config.allowed_endpoints().unwrap();
        assert!(allowed.allows_host("127.0.0.1", Some(9000)));
        assert!(allowed.allows_ip("10.9.9.9".parse().unwrap()));
        assert!(allowed.allows_host("MINIO", Some(80)));
        let err = Config::load_from(env(&[("PARTWAY_OUTBOUND", "open")])).unwrap_err();
        assert!(err.to_string().contains("outbound"), "{err}");
        let err =
            Config::load_from(env(&[("PARTWAY_ALLOWED_ENDPOINTS", "10.0.0.0/40")])).unwrap_err();
        assert!(
            err.to_string().contains("PARTWAY_ALLOWED_ENDPOINTS"),
            "{err}"
        );
    }

    #[test]
    fn cache_max_bytes_defaults_to_64_mib_and_takes_sizes() {
        let config = Config::load_from(env(&[])).unwrap();
        assert_eq!(config.cache_max_bytes, 64 * 1024 * 1024);
        let set = Config::load_from(env(&[("PARTWAY_CACHE_MAX_BYTES", "16MiB")])).unwrap();
        assert_eq!(set.cache_max_bytes, 16 * 1024 * 1024);
        let set = Config::load_from(env(&[("PARTWAY_CACHE_MAX_BYTES", "2000000")])).unwrap();
        assert_eq!(set.cache_max_bytes, 2_000_000);
        for bad in ["lots", "1KiB"] {
            let err = Config::load_from(env(&[("PARTWAY_CACHE_MAX_BYTES", bad)])).unwrap_err();
            assert!(
                err.to_string().to_lowercase().contains("cache_max_bytes"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn connection_and_event_stream_limits() {
        let config = Config::load_from(env(&[])).unwrap();
        assert_eq!(config.max_connections, 4096);
        assert_eq!(config.max_event_streams, 256);
        assert_eq!(config.event_stream_max_age, Duration::from_secs(3600));
        assert_eq!(config.event_stream_recheck, Duration::from_secs(30));
        let set = Config::load_from(env(&[
            ("PARTWAY_MAX_CONNECTIONS", "8"),
            ("PARTWAY_MAX_EVENT_STREAMS", "2"),
            ("PARTWAY_EVENT_STREAM_MAX_AGE", "10m"),
            ("PARTWAY_EVENT_STREAM_RECHECK", "1s"),
        ]))
        .unwrap();
        assert_eq!(set.max_connections, 8);
        assert_eq!(set.max_event_streams, 2);
        assert_eq!(set.event_stream_max_age, Duration::from_secs(600));
        assert_eq!(set.event_stream_recheck, Duration::from_secs(1));
        for (name, value) in [
            ("PARTWAY_MAX_CONNECTIONS", "0"),
            ("PARTWAY_MAX_EVENT_STREAMS", "0"),
            ("PARTWAY_EVENT_STREAM_MAX_AGE", "0s"),
            ("PARTWAY_EVENT_STREAM_RECHECK", "31s"),
            ("PARTWAY_EVENT_STREAM_RECHECK", "0s"),
        ] {
            let err = Config::load_from(env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn read_timeouts_default_to_10s_and_60s_and_must_be_positive() {
        let config = Config::load_from(env(&[])).unwrap();
        assert_eq!(config.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.body_read_timeout, Duration::from_secs(60));
        let set = Config::load_from(env(&[
            ("PARTWAY_HEADER_READ_TIMEOUT", "2s"),
            ("PARTWAY_BODY_READ_TIMEOUT", "5s"),
        ]))
        .unwrap();
        assert_eq!(set.header_read_timeout, Duration::from_secs(2));
        assert_eq!(set.body_read_timeout, Duration::from_secs(5));
        for key in ["PARTWAY_HEADER_READ_TIMEOUT", "PARTWAY_BODY_READ_TIMEOUT"] {
            let name = key.trim_start_matches("PARTWAY_");
            for bad in ["0s", "soon"] {
                let err = Config::load_from(env(&[(key, bad)])).unwrap_err();
                assert!(
                    err.to_string().contains(name)
                        || err.to_string().contains(&name.to_lowercase()),
                    "{key}={bad}: {err}"
                );
            }
        }
    }

    #[test]
    fn quotas_are_unlimited_by_default_and_take_sizes() {
        let config = Config::load_from(env(&[])).unwrap();
        assert!(config.quota().is_unlimited());
        let config = Config::load_from(env(&[
            ("PARTWAY_MAX_ACTIVE_UPLOADS", "10"),
            ("PARTWAY_MAX_ACTIVE_BYTES", "10GiB"),
        ]))
        .unwrap();
        assert_eq!(config.quota().max_active_uploads, Some(10));
        assert_eq!(config.quota().max_active_bytes, Some(10 << 30));
        let config = Config::load_from(env(&[
            ("PARTWAY_MAX_ACTIVE_UPLOADS", "unlimited"),
            ("PARTWAY_MAX_ACTIVE_BYTES", "5000"),
        ]))
        .unwrap();
        assert_eq!(config.quota().max_active_uploads, None);
        assert_eq!(config.quota().max_active_bytes, Some(5000));
        for (name, value) in [
            ("PARTWAY_MAX_ACTIVE_UPLOADS", "10GiB"),
            ("PARTWAY_MAX_ACTIVE_UPLOADS", "-1"),
            ("PARTWAY_MAX_ACTIVE_BYTES", "lots"),
        ] {
            let err = Config::load_from(env(&[(name, value)])).unwrap_err();
            assert!(
                err.to_string().contains("max_active"),
                "{name}={value}: {err}"
            );
        }
    }

    #[test]
    fn rate_limits_default_to_6000_per_minute_and_600_anonymous() {
        let limits = Config::load_from(env(&[])).unwrap().rate_limits();
        let per_credential = limits.per_credential.unwrap();
        assert_eq!(per_credential.to_string(), "6000/m");
        // DESIGN §7: one client at 50 requests/s is never refused.
        assert!(per_credential.emission_interval() <= Duration::from_millis(20));
        assert_eq!(limits.anonymous.unwrap().to_string(), "600/m");
        let set = Config::load_from(env(&[
            ("PARTWAY_RATE_LIMIT", "off"),
            ("PARTWAY_RATE_LIMIT_ANON", "5/s"),
        ]))
        .unwrap()
        .rate_limits();
        assert_eq!(set.per_credential, None);
        assert_eq!(set.anonymous.unwrap().to_string(), "5/s");
        for (key, bad) in [
            ("PARTWAY_RATE_LIMIT", "600"),
            ("PARTWAY_RATE_LIMIT", "0/m"),
            ("PARTWAY_RATE_LIMIT_ANON", "10/d"),
        ] {
            let err = Config::load_from(env(&[(key, bad)]))
                .unwrap_err()
                .to_string();
            let name = key.trim_start_matches("PARTWAY_").to_lowercase();
            assert!(err.contains(&name), "{key}={bad}: {err}");
        }
    }

    #[test]
    fn rate_limits_come_from_the_toml_file_too() {
        let dir = tempfile_dir("rate-toml");
        let path = dir.join("partway.toml");
        std::fs::write(&path, "rate_limit = \"120/s\"\nrate_limit_anon = \"off\"\n").unwrap();
        let limits = Config::load_from(env(&[("PARTWAY_CONFIG", path.to_str().unwrap())]))
            .unwrap()
            .rate_limits();
        assert_eq!(limits.per_credential.unwrap().to_string(), "120/s");
        assert_eq!(limits.anonymous, None);
        // The environment overrides the file.
        let limits = Config::load_from(env(&[
            ("PARTWAY_CONFIG", path.to_str().unwrap()),
            ("PARTWAY_RATE_LIMIT", "7/h"),
        ]))
        .unwrap()
        .rate_limits();
        assert_eq!(limits.per_credential.unwrap().to_string(), "7/h");
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("partway-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
