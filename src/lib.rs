//! The all-in-one partway service: `Application::build(config)` wires the database,
//! storage (the embedded S3 endpoint unless one is configured), the queue, the
//! cache, the worker loops and the HTTP server, binds (port 0 in tests) and serves.
use std::{net::SocketAddr, sync::Arc};

use partway_core::{
    auth, config::Config, crypto::generate_api_key, jobs::EmbeddedQueue, ports::JobQueue,
    service::Services,
};
use partway_embedded_s3::{EmbeddedS3, EmbeddedS3Config};
pub use partway_runtime::{
    connect_database, migrate, StartupError, DEV_OWNER, EMBEDDED_BUCKET, SHUTDOWN_GRACE,
};
use partway_runtime::{
    distributed::{cache_from, connect_amqp, run_amqp_worker, run_outbox_relay, AmqpJobQueue},
    ensure_dir, kept_in_data_dir, master_key, server_targets, EmbeddedS3Keys,
};
use poem::Server;
use tokio::{sync::watch, task::JoinHandle};
use tracing::info;

pub struct Application {
    http_addr: SocketAddr,
    dev_api_key: String,
    pub services: Arc<Services>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    embedded_s3: Option<EmbeddedS3>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        ensure_dir(&config.data_dir)?;
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
        let master_key = master_key(&config, Some(&config.data_dir))?;

        let dev_api_key = match &config.dev_api_key {
            Some(key) => key.expose().to_string(),
            None => kept_in_data_dir(&config.data_dir, "dev-api-key", generate_api_key)?,
        };
        auth::register_key(&db, DEV_OWNER, &dev_api_key)
            .await
            .map_err(|e| StartupError::Database(e.to_string()))?;

        // A URL switches that part from in-process to real: RabbitMQ for the queue.
        let (shutdown, shutdown_rx) = watch::channel(false);
        let amqp = match &config.amqp_url {
            Some(url) => Some(AmqpJobQueue::new(
                connect_amqp(url.expose(), &config.amqp_prefix).await?,
            )),
            None => None,
        };
        let embedded_queue = EmbeddedQueue::new();
        let queue: Arc<dyn JobQueue> = match &amqp {
            Some(amqp) => Arc::new(amqp.clone()),
            None => Arc::new(embedded_queue.clone()),
        };
        let cache = cache_from(&config).await;
        let services = Arc::new(partway_runtime::services(
            &config, db, targets, master_key, cache, queue,
        )?);

        let mut workers = vec![tokio::spawn(partway_worker::run_sweeper(
            services.clone(),
            config.sweep_interval,
            shutdown_rx.clone(),
        ))];
        match amqp {
            Some(amqp) => {
                workers.push(tokio::spawn(run_outbox_relay(
                    services.db.clone(),
                    amqp.clone(),
                    shutdown_rx.clone(),
                )));
                workers.push(tokio::spawn(run_amqp_worker(
                    services.clone(),
                    amqp.amqp().clone(),
                    config.worker_concurrency,
                    shutdown_rx.clone(),
                    SHUTDOWN_GRACE,
                )));
            }
            None => workers.push(tokio::spawn(partway_worker::run_embedded_queue(
                services.clone(),
                embedded_queue.waker(),
                shutdown_rx.clone(),
                SHUTDOWN_GRACE,
            ))),
        }

        let (acceptor, http_addr) =
            partway_api::bind(config.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: config.bind,
                    source,
                })?;
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
            dev_api_key,
            services,
            shutdown,
            http,
            workers,
            embedded_s3: embedded_s3.map(|(server, _)| server),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The development key (owner `dev`): configured or generated into the data dir.
    pub fn dev_api_key(&self) -> &str {
        &self.dev_api_key
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
