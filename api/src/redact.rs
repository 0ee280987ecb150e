//! Request logging without credentials (DESIGN §5): poem's `Tracing` logs the whole
//! request URI, and the event stream takes a browser token as `?access_token=`. These
//! write the same span and lines with every `access_token` value replaced.
use std::time::Instant;

use poem::{Request, Response};

/// Query parameters whose values are credentials.
const SECRET_PARAMS: [&str; 1] = ["access_token"];

/// The URI as logged: path and query, with credential values as `[redacted]`.
pub fn redacted_uri(uri: &poem::http::Uri) -> String {
    // Uppy 6.x's base path carries a browser token: `/uppy/{token}/s3/…`.
    let path = match uri.path().strip_prefix("/uppy/") {
        Some(rest) if !rest.starts_with("s3/") && rest != "s3" => {
            let tail = rest.split_once('/').map_or("", |(_, t)| t);
            std::borrow::Cow::Owned(format!("/uppy/[redacted]/{tail}"))
        }
        _ => std::borrow::Cow::Borrowed(uri.path()),
    };
    let path = path.as_ref();
    let Some(query) = uri.query() else {
        return path.to_string();
    };
    let query = query
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            if SECRET_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                format!("{name}=[redacted]")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{path}?{query}")
}

/// The span of one request, in place of poem's `Tracing` (`crate::edge` runs the request
/// in it).
pub fn request_span(req: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        remote_addr = %req.remote_addr(),
        version = ?req.version(),
        method = %req.method(),
        uri = %redacted_uri(req.original_uri()),
    )
}

/// The line poem's `Tracing` writes when a request ends.
pub fn log_outcome(outcome: &poem::Result<Response>, started: Instant) {
    match outcome {
        Ok(resp) => {
            tracing::info!(status = %resp.status(), duration = ?started.elapsed(), "response")
        }
        Err(err) => {
            tracing::info!(status = %err.status(), duration = ?started.elapsed(), "error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uppy_path_tokens_never_reach_the_log_line() {
        let uri: poem::http::Uri = "/uppy/pwb_secret/s3/multipart/mpu_x/1?key=k"
            .parse()
            .unwrap();
        assert_eq!(
            redacted_uri(&uri),
            "/uppy/[redacted]/s3/multipart/mpu_x/1?key=k"
        );
        let uri: poem::http::Uri = "/uppy/s3/multipart".parse().unwrap();
        assert_eq!(redacted_uri(&uri), "/uppy/s3/multipart");
    }

    #[test]
    fn access_tokens_never_reach_the_log_line() {
        let uri: poem::http::Uri =
            "/api/v1/upload/multipart/mpu_x/events?a=1&access_token=pwb_secret&Access_Token=pwb_2"
                .parse()
                .unwrap();
        let shown = redacted_uri(&uri);
        assert!(!shown.contains("pwb_"), "{shown}");
        assert_eq!(
            shown,
            "/api/v1/upload/multipart/mpu_x/events?a=1&access_token=[redacted]&Access_Token=[redacted]"
        );
        let plain: poem::http::Uri = "/upload".parse().unwrap();
        assert_eq!(redacted_uri(&plain), "/upload");
    }
}
