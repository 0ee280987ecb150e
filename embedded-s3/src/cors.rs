//! CORS in front of the s3s service, so that browsers can PUT parts to
//! presigned URLs and read the ETag of the response.
//!
//! * `OPTIONS` (preflight) is answered here, without authentication.
//! * Presigned requests carrying `x-amz-*` headers they did not sign are
//!   refused here, before s3s (see `presigned.rs`).
//! * Every other response gets `Access-Control-Allow-Origin: *` and
//!   `Access-Control-Expose-Headers: ETag, Location` (a form POST's answer carries
//!   both, as S3's does).

use futures::future::BoxFuture;
use http::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS,
};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use s3s::service::S3Service;
use s3s::{Body, HttpError};
use tracing::debug;

const ALLOW_METHODS: &str = "GET, PUT, HEAD, POST, DELETE";
const EXPOSE_HEADERS: &str = "ETag, Location";
const MAX_AGE_SECS: &str = "3600";
const DEFAULT_ALLOW_HEADERS: &str =
    "authorization, content-type, content-md5, x-amz-content-sha256, x-amz-date";

#[derive(Clone)]
pub(crate) struct CorsService {
    inner: S3Service,
}

impl CorsService {
    pub fn new(inner: S3Service) -> Self {
        Self { inner }
    }
}

fn add_cors_headers(headers: &mut HeaderMap) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
}

fn preflight<B>(req: &Request<B>) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    add_cors_headers(headers);
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    let allow_headers = req
        .headers()
        .get(ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_ALLOW_HEADERS));
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    headers.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE_SECS),
    );
    resp
}

impl hyper::service::Service<Request<Incoming>> for CorsService {
    type Response = Response<Body>;
    type Error = HttpError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        debug!(method = %req.method(), path = %req.uri().path(), "request");
        if req.method() == Method::OPTIONS {
            let resp = preflight(&req);
            return Box::pin(async move { Ok(resp) });
        }
        if let Some(header) = crate::presigned::unsigned_amz_header(req.uri(), req.headers()) {
            debug!(%header, "presigned request with an unsigned x-amz-* header refused");
            let mut resp = crate::presigned::access_denied(header);
            add_cors_headers(resp.headers_mut());
            return Box::pin(async move { Ok(resp) });
        }
        let fut = hyper::service::Service::call(&self.inner, req);
        Box::pin(async move {
            let mut resp = fut.await?;
            add_cors_headers(resp.headers_mut());
            debug!(status = %resp.status(), "response");
            Ok(resp)
        })
    }
}
