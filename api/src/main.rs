//! `partway-api`: the HTTP API and the outbox relay of the distributed mode. Any
//! number of replicas; jobs run in `partway-worker` processes.
use std::process::ExitCode;

use partway_core::config::Config;
use partway_runtime::{
    distributed::{distributed_services, run_outbox_relay},
    init_logging, migrate, shutdown_signal, SHUTDOWN_GRACE,
};
use poem::Server;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> ExitCode {
    partway_runtime::exit_with("partway-api", run().await)
}

async fn run() -> Result<(), String> {
    let config = Config::load().map_err(|e| e.to_string())?;
    init_logging(config.log_format);
    let (services, queue) = distributed_services(&config)
        .await
        .map_err(|e| e.to_string())?;
    migrate(&services.db).await.map_err(|e| e.to_string())?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let relay = tokio::spawn(run_outbox_relay(services.db.clone(), queue, shutdown_rx));
    let (acceptor, addr) = partway_api::bind(config.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    // Printed on stdout so scripts (and tests using port 0) learn the address.
    println!("partway-api listening on http://{addr}");
    tracing::info!(%addr, "partway-api listening");
    let app = partway_api::app(services.clone(), &config.cors_origins());
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown_signal(), Some(SHUTDOWN_GRACE))
        .await;
    let _ = shutdown.send(true);
    let _ = relay.await;
    services.db.clone().close().await.ok();
    served.map_err(|e| e.to_string())
}
