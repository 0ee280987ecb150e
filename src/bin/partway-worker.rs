//! `partway-worker`: consumes jobs from RabbitMQ, sweeps expired uploads and relays
//! the jobs it queues. Run as many as you like; each acks a job only after its effect
//! is committed.
use std::process::ExitCode;

use partway_core::config::Config;
use partway_runtime::{exit_with, init_logging, Node, Roles};

#[tokio::main]
async fn main() -> ExitCode {
    partway_core::memory::tune_allocator();
    exit_with("partway-worker", run().await)
}

async fn run() -> anyhow::Result<()> {
    let config = Config::load()?;
    init_logging(config.log_format);
    let node = Node::distributed(config, Roles::WORKER).await?;
    println!("partway-worker consuming jobs");
    tracing::info!("partway-worker consuming jobs");
    node.run_until_signal().await;
    Ok(())
}
