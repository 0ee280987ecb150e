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

    /// The development key (owner `dev`): configured or generated into the data dir;
    /// empty when switched off (`PARTWAY_DEV_API_KEY=off`).
    pub fn dev_api_key(&self) -> &str {
        self.node.dev_api_key().unwrap_or_default()
    }

    /// Where the API listens.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.node.http_addr()
    }

    pub fn embedded_s3_endpoint(&self) -> Option<String> {
        self.node.embedded_s3_endpoint()
    }

    /// Mints the development browser token of the `Upload:` line (owner `dev`, 24 hours):
    /// the only browser token partway ever prints (DESIGN §5).
    pub async fn dev_browser_token(&self) -> anyhow::Result<String> {
        let store = partway_core::store::Store::new(self.db().clone());
        let limits = partway_core::domain::TokenLimits {
            expires_in: Some(partway_core::domain::browser::MAX_EXPIRES_IN),
            label: Some("development (printed at start)".into()),
            ..Default::default()
        };
        let (_, token) =
            partway_core::browser_token::create_for_owner(&store, DEV_OWNER, &limits).await?;
        Ok(token)
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

/// What `partway` prints about the development key at start (DESIGN §7): the key itself
/// only when the API listens on loopback, where only this machine can use it; otherwise
/// where to find one. `data_dir` is where a generated key is kept.
pub fn dev_key_lines(
    api: std::net::SocketAddr,
    key: Option<&str>,
    data_dir: &std::path::Path,
) -> Vec<String> {
    let how = "or create a key with `partway keys create --owner NAME`";
    match key {
        None => vec![format!(
            "  Dev key:   off (PARTWAY_DEV_API_KEY=off); {}",
            how.trim_start_matches("or ")
        )],
        Some(key) if api.ip().is_loopback() => vec![
            format!("  Dev key:   {key}"),
            String::new(),
            format!("  curl -H 'x-api-key: {key}' http://{api}/api/v1/uploads"),
        ],
        Some(_) => vec![format!(
            "  Dev key:   not printed (the API listens on {api}, beyond loopback): it is \
             PARTWAY_DEV_API_KEY or the file {}, {how}",
            data_dir.join("dev-api-key").display()
        )],
    }
}

/// `partway keys rotate-master` (DESIGN §7): re-seals every stored bring-your-own
/// credential from the current master key (`PARTWAY_MASTER_KEY`, or the data dir's
/// `master.key`) to `new_key`, then, when the key was the data dir's, writes the new one
/// there. Run with the service stopped. True in the answer: `master.key` was replaced.
pub async fn rotate_master_key(
    config: &Config,
    store: &partway_core::store::Store,
    new_key: &str,
) -> anyhow::Result<(partway_core::usecases::Rotation, bool)> {
    let in_data_dir = config.master_key.is_none();
    let old =
        partway_runtime::master_key(config, in_data_dir.then_some(config.data_dir.as_path()))?;
    let new = partway_core::crypto::MasterKey::parse(new_key)
        .map_err(|e| anyhow::anyhow!("the new master key: {e}"))?;
    let done = partway_core::usecases::rotate_master_key(store, &old, &new).await?;
    if in_data_dir {
        partway_runtime::replace_in_data_dir(&config.data_dir, "master.key", &new.to_hex())?;
    }
    Ok((done, in_data_dir))
}

/// The OpenAPI spec, generated from the code (no database needed to describe it).
pub fn openapi_yaml() -> String {
    partway_api::openapi_yaml()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_key_is_printed_only_on_loopback() {
        let key = "pwk_0123456789abcdef0123456789abcdef";
        let dir = std::path::Path::new("/srv/partway");
        for bind in ["127.0.0.1:8080", "[::1]:8080"] {
            let lines = dev_key_lines(bind.parse().unwrap(), Some(key), dir).join("\n");
            assert!(lines.contains(key), "{lines}");
        }
        for bind in ["0.0.0.0:8080", "192.0.2.10:8080", "[::]:8080"] {
            let lines = dev_key_lines(bind.parse().unwrap(), Some(key), dir).join("\n");
            assert!(!lines.contains(key), "{lines}");
            assert!(lines.contains("/srv/partway/dev-api-key"), "{lines}");
            assert!(lines.contains("partway keys create"), "{lines}");
        }
        let off = dev_key_lines("127.0.0.1:8080".parse().unwrap(), None, dir).join("\n");
        assert!(
            off.contains("off") && off.contains("partway keys create"),
            "{off}"
        );
    }
}
