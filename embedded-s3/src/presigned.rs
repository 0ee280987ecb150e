//! Presigned (query-signed) requests may carry only the `x-amz-*` headers
//! they signed.
//!
//! s3s verifies a presigned request's signature over the headers listed in
//! `X-Amz-SignedHeaders` and ignores every other header, but then reads
//! `x-amz-*` headers (e.g. `x-amz-copy-source`, which turns UploadPart into
//! UploadPartCopy) as if they were part of the signed request. Whoever holds a
//! presigned URL could thus change what it does. S3 refuses such requests with
//! 403 `AccessDenied` ("There were headers present in the request which were
//! not signed"); so do we, before the request reaches s3s. Header-signed
//! requests (`Authorization`) sign their `x-amz-*` headers and are left to s3s.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode, Uri};
use s3s::Body;

const SIGNATURE_PARAM: &str = "X-Amz-Signature";
const SIGNED_HEADERS_PARAM: &str = "X-Amz-SignedHeaders";

/// The first `x-amz-*` header of a presigned request that its signature does
/// not cover, if any. `None` for requests that are not presigned.
pub(crate) fn unsigned_amz_header<'h>(uri: &Uri, headers: &'h HeaderMap) -> Option<&'h str> {
    let query = uri.query()?;
    let mut presigned = false;
    let mut signed: Vec<String> = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        // Parameter names are case-sensitive in SigV4; compare without case
        // anyway so that a near-miss spelling cannot slip a request past this
        // check while s3s still treats it as presigned.
        if name.eq_ignore_ascii_case(SIGNATURE_PARAM) {
            presigned = true;
        } else if name.eq_ignore_ascii_case(SIGNED_HEADERS_PARAM) {
            signed.extend(
                percent_decode(value)
                    .split(';')
                    .map(|h| h.trim().to_ascii_lowercase()),
            );
        }
    }
    if !presigned {
        return None;
    }
    // HeaderName is always lower-case.
    headers
        .keys()
        .map(http::HeaderName::as_str)
        .find(|name| name.starts_with("x-amz-") && !signed.iter().any(|s| s == name))
}

/// S3's answer to a presigned request with unsigned `x-amz-*` headers.
pub(crate) fn access_denied(header: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
         <Message>There were headers present in the request which were not signed</Message>\
         <HeadersNotSigned>{}</HeadersNotSigned></Error>",
        xml_escape(header)
    );
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    resp
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `%XX` decoding (and `+` as space, as form decoding does); invalid escapes
/// are kept as they are. Lossy on invalid UTF-8: only names and header lists
/// are decoded here, which are ASCII when valid.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for n in names {
            h.insert(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        h
    }

    const PRESIGNED: &str = "/b/k?partNumber=1&uploadId=u&X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-SignedHeaders=host%3Bx-amz-meta-a&X-Amz-Signature=00";

    #[test]
    fn unsigned_amz_headers_of_presigned_requests_are_found() {
        let uri: Uri = PRESIGNED.parse().unwrap();
        assert_eq!(
            unsigned_amz_header(&uri, &headers(&["host", "x-amz-copy-source"])),
            Some("x-amz-copy-source")
        );
        assert_eq!(
            unsigned_amz_header(&uri, &headers(&["X-Amz-Foo"])),
            Some("x-amz-foo")
        );
        // signed ones, and headers that are not x-amz-*, pass
        assert_eq!(
            unsigned_amz_header(&uri, &headers(&["host", "x-amz-meta-a", "content-type"])),
            None
        );
    }

    #[test]
    fn requests_without_a_query_signature_are_not_checked() {
        let uri: Uri = "/b/k?partNumber=1&uploadId=u".parse().unwrap();
        assert_eq!(unsigned_amz_header(&uri, &headers(&["x-amz-date"])), None);
        let uri: Uri = "/b/k".parse().unwrap();
        assert_eq!(unsigned_amz_header(&uri, &headers(&["x-amz-date"])), None);
    }

    #[test]
    fn a_presigned_request_without_signed_headers_may_carry_no_amz_header() {
        let uri: Uri = "/b/k?X-Amz-Signature=00".parse().unwrap();
        assert_eq!(
            unsigned_amz_header(&uri, &headers(&["x-amz-content-sha256"])),
            Some("x-amz-content-sha256")
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("host%3bx-amz-a"), "host;x-amz-a");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
