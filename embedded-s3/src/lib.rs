//! Embedded S3-compatible endpoint for partway's all-in-one mode.
//!
//! Serves path-style S3 (`http://127.0.0.1:PORT/bucket/key`) over local disk,
//! verifying AWS SigV4 (header-signed and presigned-query requests) against one
//! access/secret key pair; a presigned request carrying `x-amz-*` headers it
//! did not sign is refused before s3s sees it (`presigned.rs`). Bucket and
//! most object operations are delegated to `s3s-fs`; multipart uploads, and
//! GetObject/HeadObject, are implemented in this crate so that they behave
//! like S3 (ETags, ordered and paginated ListParts, validation before
//! CompleteMultipartUpload changes anything, keys up to 1024 bytes) and
//! survive restarts: their state lives under `<root>/.multipart/`, completed
//! objects' ETags and attributes under `<root>/.objects/` (`layout.rs`). CORS
//! is answered so that browsers can PUT parts to presigned URLs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), partway_embedded_s3::EmbeddedS3Error> {
//! use partway_embedded_s3::{EmbeddedS3, EmbeddedS3Config};
//! let s3 = EmbeddedS3::start(EmbeddedS3Config {
//!     bind: "127.0.0.1:0".parse().unwrap(),
//!     root: "/var/lib/partway/s3".into(),
//!     access_key: "partway".into(),
//!     secret_key: "change-me".into(),
//!     buckets: vec!["uploads".into()],
//! })
//! .await?;
//! println!("S3 endpoint at {}", s3.endpoint_url());
//! s3.shutdown().await;
//! # Ok(()) }
//! ```

mod backend;
mod cors;
mod layout;
mod multipart;
mod presigned;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::backend::Backend;
use crate::cors::CorsService;
use crate::multipart::MultipartStore;

/// How long [`EmbeddedS3::shutdown`] lets in-flight requests run.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Configuration of the embedded endpoint.
#[derive(Clone)]
pub struct EmbeddedS3Config {
    /// Address to listen on; port 0 picks a free port (see [`EmbeddedS3::local_addr`]).
    pub bind: SocketAddr,
    /// Storage directory; created if missing. Buckets are its subdirectories.
    pub root: PathBuf,
    /// The one access key accepted.
    pub access_key: String,
    /// Its secret key (never logged).
    pub secret_key: String,
    /// Buckets to create at start if they do not exist.
    pub buckets: Vec<String>,
}

impl fmt::Debug for EmbeddedS3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedS3Config")
            .field("bind", &self.bind)
            .field("root", &self.root)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("buckets", &self.buckets)
            .finish()
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedS3Error {
    #[error("invalid embedded S3 configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid bucket name {0:?}")]
    InvalidBucketName(String),
    #[error("cannot prepare storage at {path}: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the s3s-fs backend at {path}: {message}")]
    Backend { path: PathBuf, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running endpoint. Dropping it also stops the server (in the background);
/// prefer [`EmbeddedS3::shutdown`] to wait for it.
pub struct EmbeddedS3 {
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for EmbeddedS3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedS3")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl EmbeddedS3 {
    /// Binds (port 0 allowed), creates root and the buckets, serves in a tokio task.
    pub async fn start(config: EmbeddedS3Config) -> Result<EmbeddedS3, EmbeddedS3Error> {
        if config.access_key.is_empty() {
            return Err(EmbeddedS3Error::InvalidConfig("access_key is empty".into()));
        }
        if config.secret_key.is_empty() {
            return Err(EmbeddedS3Error::InvalidConfig("secret_key is empty".into()));
        }
        if let Some(bad) = config
            .buckets
            .iter()
            .find(|b| !s3s::path::check_bucket_name(b))
        {
            return Err(EmbeddedS3Error::InvalidBucketName(bad.clone()));
        }

        let root_arg = config.root.clone();
        let buckets = config.buckets.clone();
        let (root, store) = tokio::task::spawn_blocking(move || prepare_root(root_arg, &buckets))
            .await
            .map_err(|e| EmbeddedS3Error::Storage {
                path: config.root.clone(),
                source: std::io::Error::other(e),
            })??;

        let fs = s3s_fs::FileSystem::new(&root).map_err(|e| EmbeddedS3Error::Backend {
            path: root.clone(),
            message: format!("{e:?}"),
        })?;
        let backend = Backend::new(fs, store, &root);
        let service = {
            let mut builder = S3ServiceBuilder::new(backend);
            builder.set_auth(SimpleAuth::from_single(
                config.access_key.clone(),
                config.secret_key.clone(),
            ));
            CorsService::new(builder.build())
        };

        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| EmbeddedS3Error::Bind {
                    addr: config.bind,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| EmbeddedS3Error::Bind {
                addr: config.bind,
                source,
            })?;

        let (shutdown_tx, shutdown_rx) = watch::channel(None);
        let task = tokio::spawn(serve(listener, service, shutdown_rx));
        info!(
            addr = %local_addr,
            root = %root.display(),
            access_key = %config.access_key,
            buckets = ?config.buckets,
            "embedded S3 endpoint listening"
        );
        Ok(EmbeddedS3 {
            local_addr,
            shutdown_tx,
            task,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Base URL for S3 clients (path-style), e.g. `http://127.0.0.1:9000`.
    /// A wildcard bind address is reported as the loopback address.
    pub fn endpoint_url(&self) -> String {
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.local_addr.port()))
    }

    /// Stops accepting, lets in-flight requests finish (at most
    /// [`DEFAULT_SHUTDOWN_GRACE`]), returns.
    pub async fn shutdown(self) {
        self.shutdown_with_grace(DEFAULT_SHUTDOWN_GRACE).await;
    }

    /// Like [`EmbeddedS3::shutdown`] with a chosen grace period; connections
    /// still busy after it are dropped.
    pub async fn shutdown_with_grace(self, grace: Duration) {
        let _ = self.shutdown_tx.send(Some(grace));
        if let Err(e) = self.task.await {
            warn!(error = %e, "embedded S3 server task failed");
        }
        debug!(addr = %self.local_addr, "embedded S3 endpoint stopped");
    }
}

/// Creates root, the multipart area and the buckets; returns the canonical root.
fn prepare_root(
    root: PathBuf,
    buckets: &[String],
) -> Result<(PathBuf, MultipartStore), EmbeddedS3Error> {
    let storage_err = |path: &PathBuf| {
        let path = path.clone();
        move |source| EmbeddedS3Error::Storage { path, source }
    };
    std::fs::create_dir_all(&root).map_err(storage_err(&root))?;
    let root = root.canonicalize().map_err(storage_err(&root))?;
    for bucket in buckets {
        let dir = root.join(bucket);
        std::fs::create_dir_all(&dir).map_err(storage_err(&dir))?;
    }
    let store = MultipartStore::open(&root).map_err(storage_err(&root))?;
    Ok((root, store))
}

async fn serve(
    listener: TcpListener,
    service: CorsService,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();

    let grace = loop {
        tokio::select! {
            changed = shutdown.changed() => {
                // Err: the EmbeddedS3 handle was dropped.
                let requested = changed.ok().and_then(|()| *shutdown.borrow());
                break requested.unwrap_or(DEFAULT_SHUTDOWN_GRACE);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    debug!(%peer, "connection accepted");
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service.clone())
                        .into_owned();
                    let conn = graceful.watch(conn);
                    connections.spawn(async move {
                        if let Err(e) = conn.await {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // e.g. out of file descriptors: back off instead of spinning
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };

    drop(listener);
    debug!(
        in_flight = graceful.count(),
        "embedded S3 endpoint shutting down"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            ?grace,
            "embedded S3 endpoint: requests still running after the grace period; dropping them"
        );
    }
    connections.shutdown().await;
}
