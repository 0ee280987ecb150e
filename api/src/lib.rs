//! partway's HTTP front door (poem + poem-openapi).
mod body;
mod documents;
pub mod error;
pub mod models;
pub mod rate_limit;
mod routes;
pub mod slow;

use std::{net::SocketAddr, sync::Arc};

use partway_core::App;
use poem::{
    endpoint::make_sync,
    http::Method,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    middleware::{Cors, Tracing},
    web::WithContentType,
    Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Route,
};
use poem_openapi::OpenApiService;

pub use routes::UploadApi;

/// Binds the HTTP listener and returns it with the address it got (port 0 picks one).
/// Every connection must send each request's headers within `header_read_timeout`
/// (`slow::HeaderDeadline`).
pub async fn bind(
    addr: SocketAddr,
    header_read_timeout: std::time::Duration,
) -> std::io::Result<(slow::HeaderDeadlineAcceptor<TcpAcceptor>, SocketAddr)> {
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(addr);
    Ok((
        slow::HeaderDeadlineAcceptor::new(acceptor, header_read_timeout),
        bound,
    ))
}

/// Large enough for a 10,000-part complete body.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub fn openapi_service() -> OpenApiService<UploadApi, ()> {
    OpenApiService::new(UploadApi, "partway", env!("CARGO_PKG_VERSION"))
        .description("Resumable multipart uploads to S3-compatible storage. Clients PUT part bytes straight to storage through presigned URLs.")
}

/// The spec as served at `/openapi.yaml` and committed as `openapi.yaml`; described by
/// the route types alone, so no running service is needed.
pub fn openapi_yaml() -> String {
    openapi_service().spec_yaml()
}

/// Counts every request by route (the OpenAPI operation id) and status.
async fn record_request<E: Endpoint<Output = poem::Response>>(
    next: Arc<E>,
    req: poem::Request,
) -> poem::Result<poem::Response> {
    let started = std::time::Instant::now();
    let response = next.call(req).await?;
    if let Some(m) = partway_core::metrics::metrics() {
        let route = response
            .data::<poem_openapi::OperationId>()
            .map_or("other", |id| id.0);
        m.http_requests
            .with_label_values(&[route, response.status().as_str()])
            .inc();
        m.http_duration
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}

/// The whole HTTP app: API, docs, spec, health; every error in the envelope; the API
/// routes under the app's rate limits (`rate_limit.rs`).
pub fn app(
    app: Arc<App>,
    cors_origins: &[String],
    body_read_timeout: std::time::Duration,
) -> impl Endpoint {
    let metrics_app = app.clone();
    let api = openapi_service();
    let spec = api.spec_yaml();
    let docs = api.swagger_ui();
    let route = Route::new()
        .nest("/docs", docs)
        .at(
            "/metrics",
            poem::endpoint::make(move |_| {
                let app = metrics_app.clone();
                async move {
                    app.render_metrics()
                        .await
                        .with_content_type("text/plain; version=0.0.4")
                        .into_response()
                }
            }),
        )
        .at(
            "/openapi.yaml",
            make_sync(move |_| {
                WithContentType::into_response(spec.clone().with_content_type("application/yaml"))
            }),
        )
        .nest("/", api);
    let cors = if cors_origins.is_empty() {
        None
    } else {
        let mut cors = Cors::new()
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::OPTIONS])
            .allow_headers([
                "x-api-key",
                "authorization",
                "content-type",
                "idempotency-key",
            ])
            // So browser clients can read when to retry.
            .expose_headers([
                "retry-after",
                "ratelimit-limit",
                "ratelimit-remaining",
                "ratelimit-reset",
            ])
            .max_age(600);
        if !cors_origins.iter().any(|o| o == "*") {
            cors = cors.allow_origins(cors_origins.iter().map(String::as_str));
        }
        Some(cors)
    };
    route
        // Inside CORS: preflights are not counted, and a 429 carries the CORS headers.
        .around(rate_limit::limit_requests)
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .data(app)
        .data(body::BodyReadTimeout(body_read_timeout))
        .with(Tracing)
        .catch_all_error(|err| async move { error::to_envelope(err) })
        .map_to_response()
        .around(record_request)
        .into_endpoint()
}
