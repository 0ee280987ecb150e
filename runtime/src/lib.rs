//! Wiring shared by partway's binaries: configuration → database, storage targets,
//! master key, cache and queue → an [`App`], run by a [`Node`] in the roles a binary
//! has (API, worker, outbox relay, sweeper). The all-in-one `partway` and the
//! distributed `partway-api` / `partway-worker` are each a `Node` with other roles.
use std::{collections::HashMap, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use partway_core::{
    config::{Config, LogFormat},
    crypto::MasterKey,
    domain::Provider,
    outbound::{host_of, OutboundPolicy, SystemResolver},
    ports::{JobQueue, ProgressCache},
    storage::{S3Factory, StorageCredentials, StorageRegistry, StorageTarget},
    store::Store,
    usecases::{Settings, StreamLimits},
    App,
};
use partway_migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use serde::{Deserialize, Serialize};

pub mod distributed;
pub mod events;
mod node;

pub use node::{Node, Roles};

/// Bucket of the embedded S3 endpoint.
pub const EMBEDDED_BUCKET: &str = "partway";
/// Owner of the embedded mode's development key.
pub const DEV_OWNER: &str = "dev";
/// How long shutdown waits for in-flight requests and jobs.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(String),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(String),
    #[error("embedded S3 endpoint: {0}")]
    EmbeddedS3(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The database from config: PostgreSQL (or any sea-orm URL) when set, else SQLite in
/// the data dir, in WAL mode with a busy timeout so `partway keys` works beside a
/// running service.
pub async fn connect_database(config: &Config) -> Result<DatabaseConnection, StartupError> {
    let url = match &config.database_url {
        Some(url) => url.expose().to_string(),
        None => {
            ensure_dir(&config.data_dir)?;
            let file = config.data_dir.join("partway.db");
            private_database_file(&file)?;
            format!("sqlite://{}?mode=rwc", file.display())
        }
    };
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .max_connections(16)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    // The error text of a failed connect can contain the URL; keep only its kind.
    Database::connect(options)
        .await
        .map_err(|e| StartupError::Database(redact_url_error(&e.to_string())))
}

fn redact_url_error(message: &str) -> String {
    message
        .split_whitespace()
        .map(|w| if w.contains("://") { "<url>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), StartupError> {
    Migrator::up(db, None)
        .await
        .map_err(|e| StartupError::Database(format!("migration failed: {e}")))
}

/// The data directory, private to the service's user (DESIGN §7): created 0700; one
/// found open to others (made by an earlier version) is closed, with everything in it
/// (directories 0700, files 0600).
pub fn ensure_dir(path: &Path) -> Result<(), StartupError> {
    private_dir(path).map_err(|source| StartupError::DataDir {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(unix)]
fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    if std::fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
        close_to_others(path)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Takes group and other permissions away from `path` and everything below it
/// (symbolic links are left alone: their targets are not ours).
#[cfg(unix)]
fn close_to_others(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            close_to_others(&entry?.path())?;
        }
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// Files the all-in-one service (and the libraries it runs: SQLite, the embedded S3
/// endpoint's s3s-fs) creates from now on are its user's only: umask 0077. Set once at
/// its start; the modes partway chooses itself are explicit as well.
pub fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates SQLite's database file 0600 before SQLite does, so its `-wal` and `-shm`
/// files (which SQLite creates with the database file's mode) are private too.
fn private_database_file(path: &Path) -> Result<(), StartupError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|source| StartupError::DataDir {
            path: path.display().to_string(),
            source,
        })
}

/// Reads a value kept in the data dir, creating it on first start (0600).
pub fn kept_in_data_dir(
    dir: &Path,
    name: &str,
    create: impl FnOnce() -> String,
) -> Result<String, StartupError> {
    let path = dir.join(name);
    let io = |source| StartupError::DataDir {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        _ => {
            let value = create();
            write_private(&path, &value).map_err(io)?;
            Ok(value)
        }
    }
}

/// Replaces a value kept in the data dir (0600).
pub fn replace_in_data_dir(dir: &Path, name: &str, value: &str) -> Result<(), StartupError> {
    let path = dir.join(name);
    write_private(&path, value).map_err(|source| StartupError::DataDir {
        path: path.display().to_string(),
        source,
    })
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")
}

#[derive(Serialize, Deserialize)]
pub struct EmbeddedS3Keys {
    pub access_key: String,
    pub secret_key: String,
}

/// Server-side storage per provider, from config (plus the embedded endpoint's).
pub fn server_targets(
    config: &Config,
    embedded: Option<(&str, &EmbeddedS3Keys)>,
) -> Result<HashMap<Provider, StorageTarget>, StartupError> {
    let mut targets = HashMap::new();
    if let Some((endpoint, keys)) = embedded {
        targets.insert(
            Provider::S3,
            StorageTarget {
                provider: Provider::S3,
                bucket: EMBEDDED_BUCKET.into(),
                region: "us-east-1".into(),
                endpoint: Some(endpoint.to_string()),
                public_endpoint: None,
                force_path_style: true,
                credentials: StorageCredentials {
                    access_key_id: keys.access_key.clone(),
                    secret_access_key: keys.secret_key.clone(),
                },
            },
        );
    } else if let Some(bucket) = &config.s3_bucket {
        let (Some(access), Some(secret)) = (&config.s3_access_key_id, &config.s3_secret_access_key)
        else {
            return Err(StartupError::Config(
                "PARTWAY_S3_BUCKET needs PARTWAY_S3_ACCESS_KEY_ID and PARTWAY_S3_SECRET_ACCESS_KEY"
                    .into(),
            ));
        };
        let endpoint = config
            .s3_endpoint
            .clone()
            .map(|e| e.trim_end_matches('/').to_string());
        targets.insert(
            Provider::S3,
            StorageTarget {
                provider: Provider::S3,
                bucket: bucket.clone(),
                region: config
                    .s3_region
                    .clone()
                    .unwrap_or_else(|| "us-east-1".into()),
                force_path_style: config.s3_force_path_style.unwrap_or(endpoint.is_some()),
                endpoint,
                public_endpoint: config
                    .s3_public_endpoint
                    .clone()
                    .map(|e| e.trim_end_matches('/').to_string()),
                credentials: StorageCredentials {
                    access_key_id: access.expose().to_string(),
                    secret_access_key: secret.expose().to_string(),
                },
            },
        );
    } else if config.s3_endpoint.is_some() {
        return Err(StartupError::Config(
            "PARTWAY_S3_ENDPOINT needs PARTWAY_S3_BUCKET".into(),
        ));
    }
    if let (Some(account), Some(bucket), Some(access), Some(secret)) = (
        &config.r2_account_id,
        &config.r2_bucket,
        &config.r2_access_key_id,
        &config.r2_secret_access_key,
    ) {
        targets.insert(
            Provider::R2,
            StorageTarget::r2(
                account,
                bucket.clone(),
                StorageCredentials {
                    access_key_id: access.expose().to_string(),
                    secret_access_key: secret.expose().to_string(),
                },
            ),
        );
    }
    Ok(targets)
}

/// The master key from config; without one, `generate_in` (the embedded data dir)
/// keeps a generated key, and the distributed binaries refuse to start.
pub fn master_key(config: &Config, generate_in: Option<&Path>) -> Result<MasterKey, StartupError> {
    match (&config.master_key, generate_in) {
        (Some(secret), _) => MasterKey::parse(secret.expose()).map_err(|e| StartupError::Config(format!("PARTWAY_MASTER_KEY: {e}"))),
        (None, Some(dir)) => {
            let hex = kept_in_data_dir(dir, "master.key", || MasterKey::generate().to_hex())?;
            MasterKey::parse(&hex).map_err(|e| StartupError::Config(format!("master.key in the data dir: {e}")))
        }
        (None, None) => Err(StartupError::Config(
            "PARTWAY_MASTER_KEY is required (32 bytes as hex or base64), e.g. `openssl rand -hex 32`".into(),
        )),
    }
}

/// The default provider: the configured one, else whichever the server has storage for.
pub fn default_provider(
    config: &Config,
    targets: &HashMap<Provider, StorageTarget>,
) -> Result<Provider, StartupError> {
    match &config.default_provider {
        Some(p) => p
            .parse()
            .map_err(|_| StartupError::Config("PARTWAY_DEFAULT_PROVIDER must be S3 or R2".into())),
        None if !targets.contains_key(&Provider::S3) && targets.contains_key(&Provider::R2) => {
            Ok(Provider::R2)
        }
        None => Ok(Provider::S3),
    }
}

/// Logs to stderr: pretty for people, JSON (with span fields) for production.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,s3s=off,sqlx=warn,aws=warn,hyper=warn,lapin=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The use cases wired to the chosen adapters: S3 storage for the configured targets.
pub fn build_app(
    config: &Config,
    db: DatabaseConnection,
    targets: HashMap<Provider, StorageTarget>,
    master_key: MasterKey,
    cache: Arc<dyn ProgressCache>,
    queue: Arc<dyn JobQueue>,
) -> Result<App, StartupError> {
    let settings = Settings {
        upload_ttl: config.upload_ttl,
        url_ttl: config.url_ttl,
        download_url_ttl: config.download_url_ttl,
        key_prefix: config.key_prefix.clone(),
        default_provider: default_provider(config, &targets)?,
        quota: config.quota(),
        streams: StreamLimits {
            per_owner: config.max_event_streams,
            max_age: config.event_stream_max_age,
            recheck: config.event_stream_recheck,
        },
    };
    let storage = StorageRegistry::new(targets.clone(), Arc::new(S3Factory::default()))
        .with_outbound(outbound_policy(config, &targets)?);
    Ok(App::new(
        Store::new(db),
        Arc::new(storage),
        cache,
        queue,
        master_key,
        settings,
    )
    .with_event_settings(
        config
            .event_settings()
            .map_err(|e| StartupError::Config(e.to_string()))?,
    ))
}

/// The outbound guard over client-supplied endpoints (DESIGN §7): the configured mode
/// and exceptions, plus the endpoints of the operator's own storage (the embedded
/// endpoint included), which are trusted as they are, host and port.
pub fn outbound_policy(
    config: &Config,
    targets: &HashMap<Provider, StorageTarget>,
) -> Result<OutboundPolicy, StartupError> {
    let mut allowed = config
        .allowed_endpoints()
        .map_err(|e| StartupError::Config(e.to_string()))?;
    for endpoint in targets.values().filter_map(|t| t.endpoint.as_deref()) {
        if let Ok((host, port)) = host_of(endpoint) {
            allowed.allow_host(&host, Some(port));
        }
    }
    Ok(OutboundPolicy::new(
        allowed,
        config.outbound,
        Arc::new(SystemResolver),
    ))
}

/// `scheme://host:port` of a connection URL: what logs may show (no user, password,
/// path or query).
pub fn endpoint_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if scheme.is_empty() {
        host.to_string()
    } else {
        format!("{scheme}://{host}")
    }
}

/// A binary's exit: success, or its one-line error on stderr and a failure code.
pub fn exit_with<E: std::fmt::Display>(
    binary: &str,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{binary}: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_of;

    #[test]
    fn endpoints_never_carry_credentials() {
        assert_eq!(
            endpoint_of("postgres://u:secret@db:5432/partway?sslmode=require"),
            "postgres://db:5432"
        );
        assert_eq!(
            endpoint_of("amqp://guest:p%40ss@mq:5672/%2f"),
            "amqp://mq:5672"
        );
        assert_eq!(endpoint_of("redis://:pw@cache:6379"), "redis://cache:6379");
        assert_eq!(endpoint_of("http://minio:9000"), "http://minio:9000");
        assert!(!endpoint_of("sqlite:///data/partway.db?mode=rwc").contains("mode"));
    }
}
