//! Request rate limits (DESIGN §7) around every route but the probes, metrics and
//! docs: a request is counted against its credential when it presents a valid one
//! (resolved through the same cached lookup the routes authenticate with), otherwise
//! against the connection's remote address. Forwarded-for headers are not trusted:
//! behind a reverse proxy every anonymous request shares the proxy's budget.
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use partway_core::domain::RateDecision;
use partway_core::App;
use poem::{
    web::headers::{authorization::Bearer, Authorization, HeaderMapExt},
    Request, Response,
};

use crate::error;

/// Never limited: liveness and readiness probes, metrics scrapes, the spec and docs.
pub fn is_exempt(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/openapi.yaml" | "/docs"
    ) || path.starts_with("/docs/")
}

/// The credential a request presents, read as the routes read it: `x-api-key`, else
/// `Authorization: Bearer`, else (the event stream's EventSource) `?access_token=`.
fn presented_key(req: &Request) -> Option<String> {
    // Uppy 6.x carries its browser token in the path: `/uppy/{token}/s3/…`.
    if let Some(token) = req
        .uri()
        .path()
        .strip_prefix("/uppy/")
        .and_then(|rest| rest.split('/').next())
        .filter(|t| partway_core::domain::browser::is_browser_token(t))
    {
        return Some(token.to_owned());
    }
    if let Some(key) = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.to_owned());
    }
    if let Some(auth) = req.headers().typed_get::<Authorization<Bearer>>() {
        return Some(auth.token().to_owned());
    }
    req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "access_token")
            .map(|(_, value)| value.to_owned())
    })
}

/// The client's address: the TCP peer (unspecified when the listener has none, e.g.
/// a test transport; all such requests then share one budget).
fn client_address(req: &Request) -> IpAddr {
    req.remote_addr()
        .as_socket_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

/// Whether a request may go on: `Err` is the 429 to answer; `Ok(Some(decision))` the
/// decision whose `RateLimit-*` headers the answer carries; `Ok(None)` when the path is
/// exempt, limits are off, the subject has no limit or the limiter failed open.
pub async fn admit(req: &Request) -> Result<Option<RateDecision>, Response> {
    let Some(app) = req
        .data::<Arc<App>>()
        .filter(|app| !app.rate_limiter().is_off() && !is_exempt(req.uri().path()))
    else {
        return Ok(None);
    };
    let key = presented_key(req);
    let subject = app.rate_subject(key.as_deref(), client_address(req)).await;
    match app.rate_limiter().admit(&subject).await {
        Some(decision) if !decision.allowed => {
            tracing::debug!(subject = subject.kind(), "rate limited");
            Err(error::rate_limited(&decision))
        }
        decision => Ok(decision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_metrics_and_docs_are_exempt_and_the_api_is_not() {
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.yaml",
            "/docs",
            "/docs/index.css",
        ] {
            assert!(is_exempt(path), "{path}");
        }
        for path in [
            "/api/v1/upload/multipart/init",
            "/api/v1/uploads",
            "/docsx",
            "/healthz/x",
            "/",
        ] {
            assert!(!is_exempt(path), "{path}");
        }
    }

    #[test]
    fn the_key_is_read_from_either_header() {
        let req = Request::builder().header("x-api-key", "pw_a").finish();
        assert_eq!(presented_key(&req).as_deref(), Some("pw_a"));
        let req = Request::builder()
            .header("authorization", "Bearer pw_b")
            .finish();
        assert_eq!(presented_key(&req).as_deref(), Some("pw_b"));
        let req = Request::builder()
            .header("authorization", "Basic cHc6Yg==")
            .finish();
        assert_eq!(presented_key(&req), None);
        let req = Request::builder()
            .uri(
                "/api/v1/upload/multipart/mpu_x/events?a=1&access_token=pwb_c"
                    .parse()
                    .unwrap(),
            )
            .finish();
        assert_eq!(presented_key(&req).as_deref(), Some("pwb_c"));
    }
}
