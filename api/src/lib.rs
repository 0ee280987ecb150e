//! partway's HTTP front door (poem + poem-openapi).
mod body;
pub mod contract;
mod direct_json;
mod documents;
pub mod error;
pub mod models;
pub mod page;
pub(crate) mod params;
pub mod rate_limit;
pub mod redact;
mod routes;
pub mod slow;
mod uppy;
mod webhooks;

use std::{net::SocketAddr, sync::Arc, time::Instant};

use error::ApiError;
use partway_core::{domain::ErrorCode, App};
use poem::{
    endpoint::make_sync,
    http::{header, HeaderValue, Method},
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    middleware::{Cors, SetHeader},
    web::{RemoteAddr, WithContentType},
    Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Route,
};
use poem_openapi::OpenApiService;
use tracing::Instrument;

pub use routes::UploadApi;
pub use webhooks::WebhookApi;

/// Binds the HTTP listener and returns it with the address it got (port 0 picks one).
/// Connections are held to `limits` (`slow.rs`): how many at once, and how long a
/// request's headers may take.
pub async fn bind(
    addr: SocketAddr,
    limits: slow::ConnectionLimits,
) -> std::io::Result<(slow::LimitedAcceptor<TcpAcceptor>, SocketAddr)> {
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(addr);
    Ok((slow::LimitedAcceptor::new(acceptor, limits), bound))
}

/// Large enough for a 10,000-part complete body.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub fn openapi_service() -> OpenApiService<(UploadApi, WebhookApi), ()> {
    OpenApiService::new((UploadApi, WebhookApi), "partway", env!("CARGO_PKG_VERSION"))
        .description("Resumable multipart uploads to S3-compatible storage. Clients PUT part bytes straight to storage through presigned URLs.")
}

/// The spec as served at `/openapi.yaml` and committed as `openapi.yaml`; described by
/// the route types alone, so no running service is needed. What poem-openapi cannot
/// say is added in [`contract::complete`].
pub fn openapi_yaml() -> String {
    contract::complete(&openapi_service().spec_yaml())
}

/// Counts a request by route (the OpenAPI operation id) and status.
fn record_request(response: &poem::Response, started: Instant) {
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
}

/// What [`edge`] gives every request.
struct Edge {
    app: Arc<App>,
    body_read_timeout: body::BodyReadTimeout,
    allow: contract::AllowedMethods,
}

/// Around every request, in one middleware rather than one each (every poem layer
/// boxes the request's future and moves it once more; on the status route that was a
/// tenth of the CPU): the app and the body deadline as request data, the request's
/// span and log lines (`redact.rs`), every error as its envelope (`error.rs`),
/// `nosniff` (every answer is JSON, YAML, plain text or a page: never sniffed), the
/// `Allow` of a 405 (`contract.rs`), and the request metrics.
async fn edge<E: Endpoint<Output = poem::Response>>(
    edge: Arc<Edge>,
    next: Arc<E>,
    mut req: poem::Request,
) -> poem::Result<poem::Response> {
    let started = Instant::now();
    let uri = req.uri().clone();
    req.set_data(edge.app.clone());
    req.set_data(edge.body_read_timeout);
    let span = redact::request_span(&req);
    let mut response = async move {
        let outcome = next.call(req).await;
        redact::log_outcome(&outcome, started);
        outcome.unwrap_or_else(error::to_envelope)
    }
    .instrument(span)
    .await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    edge.allow.add_allow(uri.path(), &mut response);
    record_request(&response, started);
    Ok(response)
}

/// Inside CORS (so preflights are not counted and a refusal carries the CORS
/// headers): the rate limit (`rate_limit.rs`), then browser tokens refused on
/// API-key-only routes; a limited route's answer, errors included, carries the
/// `RateLimit-*` headers.
async fn guard<E: Endpoint<Output = poem::Response>>(
    next: Arc<E>,
    req: poem::Request,
) -> poem::Result<poem::Response> {
    let decision = match rate_limit::admit(&req).await {
        Ok(decision) => decision,
        Err(limited) => return Ok(limited),
    };
    let mut response = match browser_token_refusal(&req) {
        Some(refused) => refused,
        None => next.call(req).await.unwrap_or_else(error::to_envelope),
    };
    if let Some(decision) = &decision {
        error::set_rate_limit_headers(&mut response, decision);
    }
    Ok(response)
}

/// The Swagger UI page is one HTML document with its script and styles inline and the
/// spec embedded: it needs nothing from elsewhere, so its policy allows nothing from
/// elsewhere (no framing, no outside images such as the validator badge, requests
/// only to this origin for "Try it out").
const DOCS_CSP: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn docs_headers() -> SetHeader {
    SetHeader::new()
        .overriding(header::CONTENT_SECURITY_POLICY, DOCS_CSP)
        .overriding(header::X_FRAME_OPTIONS, "DENY")
        .overriding(header::REFERRER_POLICY, "no-referrer")
}

/// Routes only an API key may call (DESIGN §5): a browser token is refused with 403
/// `FORBIDDEN` here, before its body is read or validated.
fn api_key_only(path: &str) -> bool {
    let under = |base: &str| {
        path == base
            || path
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    under("/api/v1/browser-tokens") || under("/api/v1/webhooks")
}

/// A browser token on an API-key-only route: 403 `FORBIDDEN`.
fn browser_token_refusal(req: &poem::Request) -> Option<poem::Response> {
    if !api_key_only(req.uri().path()) {
        return None;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        });
    let key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
    key.or(bearer)
        .is_some_and(|k| partway_core::domain::browser::is_browser_token(k.trim()))
        .then(|| {
            error::envelope(
                ErrorCode::Forbidden,
                "a browser token cannot call this route; use an API key",
            )
        })
}

/// Where an API process serves `/metrics` (DESIGN §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsExposure {
    /// On the API's own listener, to loopback clients only (no `PARTWAY_METRICS_BIND`).
    LoopbackOnMain,
    /// On `PARTWAY_METRICS_BIND` ([`metrics_endpoint`]); not on the API's listener.
    OwnListener,
}

/// `/metrics` in Prometheus text format (the gauges read from the database are
/// cached for a few seconds: `App::render_metrics`).
pub fn metrics_endpoint(app: Arc<App>) -> impl Endpoint<Output = poem::Response> {
    poem::endpoint::make(move |_| {
        let app = app.clone();
        async move {
            app.render_metrics()
                .await
                .with_content_type("text/plain; version=0.0.4")
                .into_response()
        }
    })
}

/// Whether a request came from this machine (IPv4, IPv6 or IPv4-mapped loopback).
/// A client behind a proxy on this machine counts as local: put `/metrics` on its own
/// bind when a proxy fronts the API.
fn is_loopback_client(remote: &RemoteAddr) -> bool {
    remote
        .as_socket_addr()
        .is_some_and(|a| a.ip().to_canonical().is_loopback())
}

/// The whole HTTP app: API, docs, spec, health; every error in the envelope; the API
/// routes under the app's rate limits (`rate_limit.rs`).
pub fn app(
    app: Arc<App>,
    cors_origins: &[String],
    body_read_timeout: std::time::Duration,
    metrics: MetricsExposure,
) -> impl Endpoint {
    let metrics_app = app.clone();
    let api = openapi_service();
    let spec = openapi_yaml();
    let allow = contract::AllowedMethods::from_spec(&spec);
    let docs = api.swagger_ui();
    let page = page::routes(&app.storage_origins());
    let route = Route::new()
        .nest("/docs", docs.with(docs_headers()))
        .nest("/upload", page)
        // Companion's S3 routes for Uppy (DESIGN §5); not in the spec.
        .nest("/uppy", uppy::routes());
    let route = match metrics {
        MetricsExposure::LoopbackOnMain => route.at(
            "/metrics",
            metrics_endpoint(metrics_app).before(|req: poem::Request| async move {
                if is_loopback_client(req.remote_addr()) {
                    Ok(req)
                } else {
                    Err(ApiError::new(
                        ErrorCode::Forbidden,
                        "/metrics answers loopback clients only; set PARTWAY_METRICS_BIND to serve it on an address of its own",
                    )
                    .into())
                }
            }),
        ),
        MetricsExposure::OwnListener => route,
    };
    let route = route
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
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                // Uppy's cancel (`DELETE /uppy/…/s3/multipart/{uploadId}`).
                Method::DELETE,
                Method::OPTIONS,
            ])
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
    let edge_data = Arc::new(Edge {
        app,
        body_read_timeout: body::BodyReadTimeout(body_read_timeout),
        allow,
    });
    route
        .around(guard)
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .around(move |next, req| edge(edge_data.clone(), next, req))
        .into_endpoint()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_clients_are_local() {
        for local in [
            "127.0.0.1:5000",
            "127.8.9.10:1",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:80",
        ] {
            let addr: SocketAddr = local.parse().unwrap();
            assert!(
                is_loopback_client(&RemoteAddr(poem::Addr::SocketAddr(addr))),
                "{local}"
            );
        }
        for remote in [
            "10.0.0.1:5000",
            "192.168.1.2:80",
            "[2001:db8::1]:80",
            "[::ffff:10.0.0.1]:80",
            "0.0.0.0:80",
        ] {
            let addr: SocketAddr = remote.parse().unwrap();
            assert!(
                !is_loopback_client(&RemoteAddr(poem::Addr::SocketAddr(addr))),
                "{remote}"
            );
        }
        assert!(
            !is_loopback_client(&RemoteAddr(poem::Addr::Custom("test", "x".into()))),
            "unknown address"
        );
    }
}
