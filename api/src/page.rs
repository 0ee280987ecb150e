//! `GET /upload`: partway's own upload page (DESIGN §5), its HTML, CSS and JS compiled into
//! the binary (no CDN, no build step, works offline). It is outside the OpenAPI contract.
//!
//! Its policy: scripts and styles from this origin only (no inline script), requests only
//! to this API and to the storage endpoint presigned URLs point at, no framing, no referrer
//! (the token lives in the URL fragment, which is never sent, and no request carries the
//! page's address either).
use poem::{
    endpoint::make_sync,
    http::{header, HeaderValue},
    Endpoint, EndpointExt, IntoResponse, Response, Route,
};

const HTML: &str = include_str!("page/upload.html");
const CSS: &str = include_str!("page/upload.css");
const JS: &str = include_str!("page/upload.js");

/// The page's Content-Security-Policy, given the storage origins its part PUTs go to.
pub fn csp(storage_origins: &[String]) -> String {
    let mut connect = vec!["'self'".to_string()];
    connect.extend(storage_origins.iter().cloned());
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src {}; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        connect.join(" ")
    )
}

fn asset(body: &'static str, content_type: &'static str, csp: HeaderValue) -> Response {
    let mut response = body.with_content_type(content_type).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The page and its two assets, under `/upload`.
pub fn routes(storage_origins: &[String]) -> impl Endpoint<Output = Response> {
    let policy = HeaderValue::from_str(&csp(storage_origins))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    let (p1, p2, p3) = (policy.clone(), policy.clone(), policy);
    Route::new()
        .at(
            "/",
            make_sync(move |_| asset(HTML, "text/html; charset=utf-8", p1.clone())).get_only(),
        )
        .at(
            "/app.css",
            make_sync(move |_| asset(CSS, "text/css; charset=utf-8", p2.clone())).get_only(),
        )
        .at(
            "/app.js",
            make_sync(move |_| asset(JS, "text/javascript; charset=utf-8", p3.clone())).get_only(),
        )
        .map_to_response()
}

trait GetOnly: Endpoint + Sized {
    fn get_only(self) -> poem::RouteMethod;
}

impl<E: Endpoint + 'static> GetOnly for E {
    fn get_only(self) -> poem::RouteMethod {
        poem::RouteMethod::new().get(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_this_origin_and_storage_only_and_no_inline_script() {
        let policy = csp(&["http://127.0.0.1:9000".into()]);
        assert!(
            policy.contains("connect-src 'self' http://127.0.0.1:9000;"),
            "{policy}"
        );
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_labels_its_controls() {
        assert!(!HTML.contains("<script>"), "inline script");
        assert!(!HTML.contains("style="), "inline style");
        assert!(!HTML.contains("<style"), "inline style");
        assert!(HTML.contains(r#"<script type="module" src="/upload/app.js"></script>"#));
        assert!(HTML.contains(r#"<label id="drop" class="drop" for="file-input">"#));
        assert!(HTML.contains(r#"<label for="token-input">"#));
        assert!(!JS.contains("eval("), "no eval under script-src 'self'");
    }
}
