//! The all-in-one partway service: [`Application::build`] starts a `partway_runtime`
//! node with every role (API, job runner, sweeper, relay when RabbitMQ is configured),
//! the embedded S3 endpoint unless storage is configured, and a development API key;
//! it binds `config.bind` (port 0 in tests) and serves until shut down.
use partway_core::config::Config;
use partway_runtime::Node;
pub use partway_runtime::{
    connect_database, migrate, StartupError, DEV_OWNER, EMBEDDED_BUCKET, SHUTDOWN_GRACE,
};
use sea_orm::DatabaseConnection;

pub struct Application {
    node: Node,
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        Ok(Application {
            node: Node::all_in_one(config).await?,
        })
    }

    pub fn base_url(&self) -> String {
        // The all-in-one node always serves the API.
        let addr = self
            .node
            .http_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        format!("http://{addr}")
    }

    /// The development key (owner `dev`): configured or generated into the data dir.
    pub fn dev_api_key(&self) -> &str {
        self.node.dev_api_key().unwrap_or_default()
    }

    pub fn embedded_s3_endpoint(&self) -> Option<String> {
        self.node.embedded_s3_endpoint()
    }

    /// The database (tests inspect rows through it).
    pub fn db(&self) -> &DatabaseConnection {
        self.node.db()
    }

    /// Stops taking requests and jobs, lets in-flight work finish (bounded), stops.
    pub async fn shutdown(self) {
        self.node.shutdown().await
    }
}

/// The OpenAPI spec, generated from the code (no database needed to describe it).
pub fn openapi_yaml() -> String {
    partway_api::openapi_yaml()
}
