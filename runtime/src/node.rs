//! A running partway process: the [`App`] plus the tasks of the roles it has, started
//! in one place and stopped by one shutdown. `partway` (all-in-one), `partway-api` and
//! `partway-worker` differ only in their [`Roles`] and in what is embedded.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use partway_api::MetricsExposure;
use partway_core::{
    auth,
    config::{Config, DevKey},
    crypto::generate_api_key,
    queue::EmbeddedQueue,
    App,
};
use partway_embedded_s3::{EmbeddedS3, EmbeddedS3Config};
use poem::Server;
use sea_orm::DatabaseConnection;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    build_app, connect_database,
    distributed::{cache_from, connect_amqp, run_amqp_worker, run_outbox_relay, AmqpJobQueue},
    endpoint_of, ensure_dir, kept_in_data_dir, master_key, migrate, private_umask,
    replace_in_data_dir, server_targets, shutdown_signal, EmbeddedS3Keys, StartupError, DEV_OWNER,
    EMBEDDED_BUCKET, SHUTDOWN_GRACE,
};

/// What a process does besides holding the [`App`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Serve the HTTP API (and apply migrations first).
    pub api: bool,
    /// Run jobs: from RabbitMQ, or from the job rows in the embedded mode.
    pub worker: bool,
    /// Publish outbox rows to RabbitMQ (distributed transport only).
    pub relay: bool,
    /// Expire uploads that ran out of time.
    pub sweeper: bool,
}

impl Roles {
    /// `partway`: everything in one process.
    pub const ALL_IN_ONE: Roles = Roles {
        api: true,
        worker: true,
        relay: true,
        sweeper: true,
    };
    /// `partway-api`: any number of replicas; jobs run elsewhere.
    pub const API: Roles = Roles {
        api: true,
        worker: false,
        relay: true,
        sweeper: false,
    };
    /// `partway-worker`: it relays the jobs its sweeper queues, not on an API's tick.
    pub const WORKER: Roles = Roles {
        api: false,
        worker: true,
        relay: true,
        sweeper: true,
    };
}

/// How jobs travel from the use cases to the workers.
enum Transport {
    /// The job rows are the queue; an in-process runner takes them.
    Embedded(EmbeddedQueue),
    /// An outbox relay publishes them to RabbitMQ.
    Amqp(AmqpJobQueue),
}

pub struct Node {
    app: Arc<App>,
    http_addr: Option<SocketAddr>,
    dev_api_key: Option<String>,
    embedded_s3: Option<EmbeddedS3>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// The all-in-one service: SQLite in the data dir unless a database is configured,
    /// the embedded S3 endpoint unless storage is configured, RabbitMQ and Redis when
    /// their URLs are set, a development API key; binds `config.bind` (port 0 picks one).
    pub async fn all_in_one(config: Config) -> Result<Node, StartupError> {
        // DESIGN §7: the data dir 0700 and every file in it 0600, also those SQLite and
        // the embedded endpoint create (their modes are not ours to pass).
        private_umask();
        ensure_dir(&config.data_dir)?;
        let db = connect_database(&config).await?;
        migrate(&db).await?;
        let embedded_s3 = if config.uses_embedded_s3() {
            Some(start_embedded_s3(&config).await?)
        } else {
            None
        };
        let targets = server_targets(
            &config,
            embedded_s3
                .as_ref()
                .map(|(server, keys)| (server.endpoint_url(), keys))
                .as_ref()
                .map(|(endpoint, keys)| (endpoint.as_str(), *keys)),
        )?;
        let master_key = master_key(&config, Some(&config.data_dir))?;
        let store = partway_core::store::Store::new(db.clone());
        let dev_api_key = dev_key(&config, &store).await?;
        // A URL switches that part from in-process to real: RabbitMQ for the queue.
        let transport = match &config.amqp_url {
            Some(url) => Transport::Amqp(AmqpJobQueue::new(
                connect_amqp(url.expose(), &config.amqp_prefix).await?,
            )),
            None => Transport::Embedded(EmbeddedQueue::new()),
        };
        let mut node = Node::start(
            &config,
            db,
            targets,
            master_key,
            transport,
            Roles::ALL_IN_ONE,
        )
        .await?;
        node.dev_api_key = dev_api_key;
        node.embedded_s3 = embedded_s3.map(|(server, _)| server);
        if let Some(addr) = node.http_addr {
            info!(%addr, "partway is listening");
        }
        Ok(node)
    }

    /// A process of the distributed mode: PostgreSQL (or any configured database), the
    /// configured storage, RabbitMQ and Redis. Nothing embedded.
    pub async fn distributed(config: Config, roles: Roles) -> Result<Node, StartupError> {
        let amqp_url = config.amqp_url.as_ref().ok_or_else(|| {
            StartupError::Config(
                "PARTWAY_AMQP_URL is required (or run `partway` for the all-in-one service)".into(),
            )
        })?;
        if config.database_url.is_none() {
            warn!("PARTWAY_DATABASE_URL is not set: using SQLite in the data dir, which other hosts cannot share");
        }
        let targets = server_targets(&config, None)?;
        if targets.is_empty() {
            return Err(StartupError::Config(
                "no storage configured: set PARTWAY_S3_BUCKET (+ keys, + PARTWAY_S3_ENDPOINT for MinIO) or the PARTWAY_R2_* variables".into(),
            ));
        }
        let master_key = master_key(&config, None)?;
        info!(
            database = %config.database_url.as_ref().map_or_else(|| "sqlite (data dir)".to_string(), |u| endpoint_of(u.expose())),
            queue = %endpoint_of(amqp_url.expose()),
            cache = %config.redis_url.as_ref().map_or_else(|| "in-process".to_string(), |u| endpoint_of(u.expose())),
            storage = %config.s3_endpoint.as_deref().map_or_else(|| "AWS / R2 endpoints".to_string(), endpoint_of),
            "connecting"
        );
        let db = connect_database(&config).await?;
        let transport = Transport::Amqp(AmqpJobQueue::new(
            connect_amqp(amqp_url.expose(), &config.amqp_prefix).await?,
        ));
        if roles.api {
            migrate(&db).await?;
        }
        Node::start(&config, db, targets, master_key, transport, roles).await
    }

    async fn start(
        config: &Config,
        db: DatabaseConnection,
        targets: std::collections::HashMap<
            partway_core::domain::Provider,
            partway_core::storage::StorageTarget,
        >,
        master_key: partway_core::crypto::MasterKey,
        transport: Transport,
        roles: Roles,
    ) -> Result<Node, StartupError> {
        let queue: Arc<dyn partway_core::ports::JobQueue> = match &transport {
            Transport::Embedded(queue) => Arc::new(queue.clone()),
            Transport::Amqp(queue) => Arc::new(queue.clone()),
        };
        let (cache, limiter) = cache_from(config).await;
        let app = Arc::new(
            build_app(config, db, targets, master_key, cache, queue)?.with_rate_limiter(
                partway_core::rate_limit::RequestLimiter::new(config.rate_limits(), limiter),
            ),
        );
        // DESIGN §7: credentials sealed before they were bound to their upload are
        // re-sealed before anything here opens them.
        app.reseal_legacy_credentials()
            .await
            .map_err(|e| StartupError::Database(format!("re-sealing credentials: {e}")))?;
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = Vec::new();
        if roles.sweeper {
            tasks.push(tokio::spawn(partway_worker::run_sweeper(
                app.clone(),
                config.sweep_interval,
                config.history_retention,
                stop.clone(),
            )));
        }
        match &transport {
            Transport::Amqp(queue) => {
                if roles.relay {
                    tasks.push(tokio::spawn(run_outbox_relay(
                        app.clone(),
                        queue.clone(),
                        stop.clone(),
                    )));
                }
                if roles.worker {
                    tasks.push(tokio::spawn(run_amqp_worker(
                        app.clone(),
                        queue.amqp().clone(),
                        config.worker_concurrency,
                        stop.clone(),
                        SHUTDOWN_GRACE,
                    )));
                }
            }
            Transport::Embedded(queue) if roles.worker => {
                tasks.push(tokio::spawn(partway_worker::run_embedded_queue(
                    app.clone(),
                    queue.waker(),
                    stop.clone(),
                    SHUTDOWN_GRACE,
                )));
            }
            Transport::Embedded(_) => {}
        }
        let mut http_addr = None;
        if roles.api {
            let limits = partway_api::slow::ConnectionLimits {
                header_read_timeout: config.header_read_timeout,
                max_connections: config.max_connections,
            };
            let (acceptor, addr) =
                partway_api::bind(config.bind, limits)
                    .await
                    .map_err(|source| StartupError::Bind {
                        addr: config.bind,
                        source,
                    })?;
            let metrics = if config.metrics_bind.is_some() {
                MetricsExposure::OwnListener
            } else {
                MetricsExposure::LoopbackOnMain
            };
            let endpoint = partway_api::app(
                app.clone(),
                &config.cors_origins(),
                config.body_read_timeout,
                metrics,
            );
            let server = Server::new_with_acceptor(acceptor);
            tasks.push(tokio::spawn(serve(
                server,
                endpoint,
                stop.clone(),
                Some(SHUTDOWN_GRACE),
            )));
            http_addr = Some(addr);
        }
        if let Some(bind) = config.metrics_bind {
            // Its own address (API and worker alike), so it can stay off the public one.
            let endpoint =
                poem::Route::new().at("/metrics", partway_api::metrics_endpoint(app.clone()));
            let server = Server::new(poem::listener::TcpListener::bind(bind));
            tasks.push(tokio::spawn(serve(server, endpoint, stop.clone(), None)));
            info!(%bind, "metrics at /metrics");
        }
        Ok(Node {
            app,
            http_addr,
            dev_api_key: None,
            embedded_s3: None,
            shutdown,
            tasks,
        })
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The database connection (admin commands and tests that inspect rows).
    pub fn db(&self) -> &DatabaseConnection {
        self.app.store().connection()
    }

    /// Where the API listens, when this node serves it.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The all-in-one service's development key (owner `dev`); None when switched off.
    pub fn dev_api_key(&self) -> Option<&str> {
        self.dev_api_key.as_deref()
    }

    pub fn embedded_s3_endpoint(&self) -> Option<String> {
        self.embedded_s3.as_ref().map(EmbeddedS3::endpoint_url)
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        info!("stopping: finishing in-flight requests and jobs");
        self.shutdown().await;
    }

    /// Stops taking requests and jobs, lets in-flight work finish (each task bounded by
    /// [`SHUTDOWN_GRACE`]; an unfinished job's lease lapses and it runs again), stops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(s3) = self.embedded_s3 {
            s3.shutdown().await;
        }
        self.app.store().close().await;
    }
}

/// Serves `endpoint` until the node stops, letting requests finish for `grace`.
async fn serve<L, A, E>(
    server: Server<L, A>,
    endpoint: E,
    mut stop: watch::Receiver<bool>,
    grace: Option<Duration>,
) where
    L: poem::listener::Listener + 'static,
    L::Acceptor: 'static,
    A: poem::listener::Acceptor + 'static,
    E: poem::IntoEndpoint,
    E::Endpoint: 'static,
{
    let signal = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = server
        .run_with_graceful_shutdown(endpoint, signal, grace)
        .await
    {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

/// The development key (DESIGN §7): `PARTWAY_DEV_API_KEY`, or generated into the data
/// dir, or none (`off`). Every other key of its owner is revoked, so a changed key ends
/// the earlier one. A generated key an operator revoked is replaced by a new one; a
/// configured key that was revoked is a startup error.
async fn dev_key(
    config: &Config,
    store: &partway_core::store::Store,
) -> Result<Option<String>, StartupError> {
    let key = match config.dev_key() {
        DevKey::Off => None,
        DevKey::Given(key) => Some(key.to_string()),
        DevKey::Generated => Some(kept_in_data_dir(
            &config.data_dir,
            "dev-api-key",
            generate_api_key,
        )?),
    };
    let revoked = match auth::set_dev_key(store, DEV_OWNER, key.as_deref()).await {
        Err(auth::KeyAdminError::RevokedDevKey) if config.dev_key() == DevKey::Generated => {
            let fresh = generate_api_key();
            replace_in_data_dir(&config.data_dir, "dev-api-key", &fresh)?;
            info!("the development key in the data dir was revoked: generated a new one");
            let revoked = auth::set_dev_key(store, DEV_OWNER, Some(&fresh))
                .await
                .map_err(|e| StartupError::Database(e.to_string()))?;
            return log_revoked(revoked, Some(fresh));
        }
        Err(auth::KeyAdminError::RevokedDevKey) => {
            return Err(StartupError::Config(
                "PARTWAY_DEV_API_KEY names a key that was revoked: choose another (or `off`)"
                    .into(),
            ))
        }
        Err(e) => return Err(StartupError::Database(e.to_string())),
        Ok(revoked) => revoked,
    };
    log_revoked(revoked, key)
}

fn log_revoked(revoked: u64, key: Option<String>) -> Result<Option<String>, StartupError> {
    if revoked > 0 {
        info!(revoked, "earlier development keys revoked");
    }
    Ok(key)
}

/// The embedded S3 endpoint on the data dir, with access keys kept there.
async fn start_embedded_s3(config: &Config) -> Result<(EmbeddedS3, EmbeddedS3Keys), StartupError> {
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
    Ok((server, keys))
}
