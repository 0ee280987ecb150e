//! `partway-api`: the HTTP API and the outbox relay of the distributed mode. Any
//! number of replicas; jobs run in `partway-worker` processes.
use std::process::ExitCode;

use partway_core::config::Config;
use partway_runtime::{exit_with, init_logging, Node, Roles};

#[tokio::main]
async fn main() -> ExitCode {
    partway_core::memory::tune_allocator();
    exit_with("partway-api", run().await)
}

async fn run() -> anyhow::Result<()> {
    let config = Config::load()?;
    init_logging(config.log_format);
    let node = Node::distributed(config, Roles::API).await?;
    if let Some(addr) = node.http_addr() {
        // On stdout, so scripts (and tests using port 0) learn the address.
        println!("partway-api listening on http://{addr}");
        tracing::info!(%addr, "partway-api listening");
    }
    node.run_until_signal().await;
    Ok(())
}
