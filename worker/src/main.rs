//! `partway-worker`: consumes jobs from RabbitMQ, sweeps expired uploads and relays
//! the jobs it queues. Run as many as you like; each acks a job only after its effect
//! is committed.
use std::process::ExitCode;

use partway_core::config::Config;
use partway_runtime::{
    distributed::{distributed_services, run_amqp_worker, run_outbox_relay},
    init_logging, shutdown_signal, SHUTDOWN_GRACE,
};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> ExitCode {
    partway_runtime::exit_with("partway-worker", run().await)
}

async fn run() -> Result<(), String> {
    let config = Config::load().map_err(|e| e.to_string())?;
    init_logging(config.log_format);
    let (services, queue) = distributed_services(&config)
        .await
        .map_err(|e| e.to_string())?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let consumer = tokio::spawn(run_amqp_worker(
        services.clone(),
        queue.amqp().clone(),
        config.worker_concurrency,
        shutdown_rx.clone(),
        SHUTDOWN_GRACE,
    ));
    // The sweeper queues expire jobs here: publish them from here too, not on an API's tick.
    let relay = tokio::spawn(run_outbox_relay(
        services.db.clone(),
        queue.clone(),
        shutdown_rx.clone(),
    ));
    let sweeper = tokio::spawn(partway_worker::run_sweeper(
        services.clone(),
        config.sweep_interval,
        shutdown_rx,
    ));
    if let Some(bind) = config.metrics_bind {
        let listener = poem::listener::TcpListener::bind(bind);
        let app = poem::Route::new().at(
            "/metrics",
            poem::endpoint::make_sync(|_| partway_core::metrics::render()),
        );
        let mut stop = shutdown.subscribe();
        tokio::spawn(async move {
            let signal = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = poem::Server::new(listener)
                .run_with_graceful_shutdown(app, signal, None)
                .await
            {
                tracing::warn!(error = %e, "metrics endpoint stopped");
            }
        });
        tracing::info!(%bind, "worker metrics at /metrics");
    }
    println!("partway-worker consuming jobs");
    tracing::info!("partway-worker consuming jobs");
    shutdown_signal().await;
    tracing::info!("partway-worker stopping: finishing in-flight jobs");
    let _ = shutdown.send(true);
    let _ = consumer.await;
    let _ = sweeper.await;
    let _ = relay.await;
    services.db.clone().close().await.ok();
    Ok(())
}
