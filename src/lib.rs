//! The all-in-one partway service: `Application::build(config)` wires the database,
//! storage (the embedded S3 endpoint unless one is configured), the queue, the
//! cache, the worker loops and the HTTP server, binds (port 0 in tests) and serves.
use std::{collections::HashMap, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use partway_core::{
    auth::{self, KeyCache},
    cache::InMemoryCache,
    config::Config,
    crypto::{generate_api_key, MasterKey},
    domain::Provider,
    jobs::EmbeddedQueue,
    service::{Services, Settings},
    storage::{StorageCredentials, StorageRegistry, StorageTarget},
};
use partway_embedded_s3::{EmbeddedS3, EmbeddedS3Config};
use partway_migration::{Migrator, MigratorTrait};
use poem::{
    listener::{Acceptor, Listener, TcpListener},
    Server,
};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use serde::{Deserialize, Serialize};
use tokio::{sync::watch, task::JoinHandle};
use tracing::info;

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
            format!(
                "sqlite://{}?mode=rwc",
                config.data_dir.join("partway.db").display()
            )
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

fn ensure_dir(path: &Path) -> Result<(), StartupError> {
    std::fs::create_dir_all(path).map_err(|source| StartupError::DataDir {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a value kept in the data dir, creating it on first start (0600).
fn kept_in_data_dir(
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
struct EmbeddedS3Keys {
    access_key: String,
    secret_key: String,
}

/// Server-side storage per provider, from config (plus the embedded endpoint's).
fn server_targets(
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
            StorageTarget {
                provider: Provider::R2,
                bucket: bucket.clone(),
                region: "auto".into(),
                endpoint: Some(format!("https://{account}.r2.cloudflarestorage.com")),
                public_endpoint: None,
                force_path_style: true,
                credentials: StorageCredentials {
                    access_key_id: access.expose().to_string(),
                    secret_access_key: secret.expose().to_string(),
                },
            },
        );
    }
    Ok(targets)
}

pub struct Application {
    http_addr: SocketAddr,
    dev_api_key: Option<String>,
    pub services: Arc<Services>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    embedded_s3: Option<EmbeddedS3>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        ensure_dir(&config.data_dir)?;
        if config.amqp_url.is_some() || config.redis_url.is_some() {
            tracing::warn!("PARTWAY_AMQP_URL / PARTWAY_REDIS_URL are not used by the all-in-one service yet: using the in-process queue and cache");
        }
        let db = connect_database(&config).await?;
        migrate(&db).await?;

        let embedded_s3 = if config.uses_embedded_s3() {
            let keys_json = kept_in_data_dir(&config.data_dir, "embedded-s3.json", || {
                serde_json::to_string(&EmbeddedS3Keys {
                    access_key: format!("PW{}", &generate_api_key()[4..20]).to_uppercase(),
                    secret_key: generate_api_key()[4..].to_string(),
                })
                .unwrap_or_default()
            })?;
            let keys: EmbeddedS3Keys = serde_json::from_str(&keys_json).map_err(|e| {
                StartupError::Config(format!(
                    "embedded-s3.json in the data dir is malformed: {e}"
                ))
            })?;
            let server = EmbeddedS3::start(EmbeddedS3Config {
                bind: config.embedded_s3_bind,
                root: config.data_dir.join("s3"),
                access_key: keys.access_key.clone(),
                secret_key: keys.secret_key.clone(),
                buckets: vec![EMBEDDED_BUCKET.into()],
            })
            .await
            .map_err(|e| StartupError::EmbeddedS3(e.to_string()))?;
            Some((server, keys))
        } else {
            None
        };
        let targets = server_targets(
            &config,
            embedded_s3
                .as_ref()
                .map(|(server, keys)| (server.endpoint_url(), keys))
                .as_ref()
                .map(|(e, k)| (e.as_str(), *k)),
        )?;
        let default_provider = match &config.default_provider {
            Some(p) => p.parse().map_err(|_| {
                StartupError::Config("PARTWAY_DEFAULT_PROVIDER must be S3 or R2".into())
            })?,
            None if !targets.contains_key(&Provider::S3) && targets.contains_key(&Provider::R2) => {
                Provider::R2
            }
            None => Provider::S3,
        };

        let master_key = match &config.master_key {
            Some(secret) => MasterKey::parse(secret.expose())
                .map_err(|e| StartupError::Config(format!("PARTWAY_MASTER_KEY: {e}")))?,
            None => {
                let hex = kept_in_data_dir(&config.data_dir, "master.key", || {
                    MasterKey::generate().to_hex()
                })?;
                MasterKey::parse(&hex)
                    .map_err(|e| StartupError::Config(format!("master.key in the data dir: {e}")))?
            }
        };

        let dev_api_key = match &config.dev_api_key {
            Some(key) => key.expose().to_string(),
            None => kept_in_data_dir(&config.data_dir, "dev-api-key", generate_api_key)?,
        };
        auth::register_key(&db, DEV_OWNER, &dev_api_key)
            .await
            .map_err(|e| StartupError::Database(e.to_string()))?;

        let queue = EmbeddedQueue::new();
        let services = Arc::new(Services {
            db,
            storage: Arc::new(StorageRegistry::new(targets)),
            cache: Arc::new(InMemoryCache::new()),
            queue: Arc::new(queue.clone()),
            master_key: Some(master_key),
            keys: KeyCache::default(),
            settings: Settings {
                upload_ttl: config.upload_ttl,
                url_ttl: config.url_ttl,
                key_prefix: config.key_prefix.clone(),
                default_provider,
            },
        });

        let (shutdown, shutdown_rx) = watch::channel(false);
        let workers = vec![
            tokio::spawn(partway_worker::run_embedded_queue(
                services.clone(),
                queue.waker(),
                shutdown_rx.clone(),
                SHUTDOWN_GRACE,
            )),
            tokio::spawn(partway_worker::run_sweeper(
                services.clone(),
                config.sweep_interval,
                shutdown_rx.clone(),
            )),
        ];

        let acceptor = TcpListener::bind(config.bind)
            .into_acceptor()
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.bind,
                source,
            })?;
        let http_addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .unwrap_or(config.bind);
        let app = partway_api::app(services.clone(), &config.cors_origins());
        let mut stop = shutdown_rx.clone();
        let http = tokio::spawn(async move {
            let signal = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, signal, Some(SHUTDOWN_GRACE))
                .await
            {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        info!(%http_addr, "partway is listening");
        Ok(Application {
            http_addr,
            dev_api_key: Some(dev_api_key),
            services,
            shutdown,
            http,
            workers,
            embedded_s3: embedded_s3.map(|(server, _)| server),
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn dev_api_key(&self) -> Option<&str> {
        self.dev_api_key.as_deref()
    }

    pub fn embedded_s3_endpoint(&self) -> Option<String> {
        self.embedded_s3.as_ref().map(EmbeddedS3::endpoint_url)
    }

    /// Stops taking requests and jobs, lets in-flight work finish (bounded), stops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.http.await;
        for worker in self.workers {
            let _ = worker.await;
        }
        if let Some(s3) = self.embedded_s3 {
            s3.shutdown().await;
        }
        self.services.db.clone().close().await.ok();
    }
}

/// The OpenAPI spec, generated from the code (no database needed to describe it).
pub fn openapi_yaml() -> String {
    partway_api::openapi_yaml_static()
}
