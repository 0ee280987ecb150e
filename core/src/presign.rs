//! Batch SigV4 query presigning for `UploadPart`: derives the signing key once per
//! batch and then costs one SHA-256 and one HMAC per URL, instead of a full SDK
//! request pipeline per part. The URLs are byte-identical to what aws-sdk-s3's
//! `.upload_part()...presigned(..)` produces for the same client configuration
//! (checked by `core/tests/presign_oracle.rs`).
use std::{
    fmt,
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "s3";

/// Presigns `UploadPart` URLs for one bucket and one set of credentials.
#[derive(Clone)]
pub struct BatchPresigner {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    region: String,
    /// `scheme://authority` exactly as it appears in the URL (bucket prefix included
    /// for virtual-host style).
    origin: String,
    /// The value of the signed `host` header: the authority without a default port.
    host: String,
    /// Encoded path before the key, without the trailing `/`: `/bucket` or ``.
    path_prefix: String,
}

impl fmt::Debug for BatchPresigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchPresigner")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("origin", &self.origin)
            .field("path_prefix", &self.path_prefix)
            .finish_non_exhaustive()
    }
}

impl BatchPresigner {
    /// `endpoint`: the base URL clients reach storage by (`None`: AWS S3's own
    /// regional endpoint), as it would be given to the SDK's `endpoint_url`.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        region: impl Into<String>,
        endpoint: Option<&str>,
        bucket: &str,
        force_path_style: bool,
    ) -> Self {
        let region = region.into();
        let (scheme, authority, base_path, custom) = match endpoint {
            Some(endpoint) => {
                let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let path = rest[end..].split(['?', '#']).next().unwrap_or("");
                (
                    scheme.to_ascii_lowercase(),
                    rest[..end].to_string(),
                    path.trim_end_matches('/').to_string(),
                    true,
                )
            }
            None => (
                "https".to_string(),
                format!("s3.{region}.{}", dns_suffix(&region)),
                String::new(),
                false,
            ),
        };
        let authority = authority
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, a)| a)
            .to_string();
        let (hostname, port) = split_port(&authority);
        // The SDK's endpoint rules: an IP endpoint keeps DNS-style buckets in the
        // path, but dotted buckets over plain http go into the host even then.
        let virtual_host = !force_path_style
            && if is_virtual_hostable(bucket, false) {
                !(custom && is_ip(hostname))
            } else {
                custom && scheme == "http" && is_virtual_hostable(bucket, true)
            };
        let default_port = matches!(
            (scheme.as_str(), port),
            ("http", Some("80")) | ("https", Some("443"))
        );
        let signed_host = if default_port { hostname } else { &authority };
        let (origin, host, path_prefix) = if virtual_host {
            (
                format!("{scheme}://{bucket}.{authority}"),
                format!("{bucket}.{signed_host}"),
                base_path,
            )
        } else {
            let mut prefix = base_path;
            prefix.push('/');
            encode_into(&mut prefix, bucket, false);
            (
                format!("{scheme}://{authority}"),
                signed_host.to_string(),
                prefix,
            )
        };
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
            region,
            origin,
            host,
            path_prefix,
        }
    }

    /// One presigned `PUT` URL per part number, valid from `now` for `expires_in`
    /// (whole seconds; callers keep it within [`MAX_URL_TTL`](crate::config::MAX_URL_TTL)).
    pub fn presign_upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        part_numbers: &[u32],
        expires_in: Duration,
        now: SystemTime,
    ) -> Vec<String> {
        let time = DateTime::<Utc>::from(now);
        let date = time.format("%Y%m%d").to_string();
        let date_time = time.format("%Y%m%dT%H%M%SZ").to_string();
        let scope = format!("{date}/{}/{SERVICE}/aws4_request", self.region);

        let signing_key = aws_sigv4::sign::v4::generate_signing_key(
            &self.secret_access_key,
            now,
            &self.region,
            SERVICE,
        );
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(signing_key.as_ref())
            .expect("HMAC takes keys of any size");

        let mut path = self.path_prefix.clone();
        path.push('/');
        encode_into(&mut path, key, true);
        let mut credential = String::new();
        encode_into(&mut credential, &self.access_key_id, false);
        credential.push_str("%2F");
        encode_into(&mut credential, &scope, false);
        let mut encoded_upload_id = String::new();
        encode_into(&mut encoded_upload_id, upload_id, false);
        let expires = expires_in.as_secs();
        let mut token = String::new();
        if let Some(session_token) = &self.session_token {
            encode_into(&mut token, session_token, false);
        }

        // The canonical query is sorted by encoded name: `X-Amz-*` < `partNumber` <
        // `uploadId` < `x-id`; only the part number varies between URLs.
        let mut creq_head = format!(
            "PUT\n{path}\nX-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={credential}\
             &X-Amz-Date={date_time}&X-Amz-Expires={expires}"
        );
        if self.session_token.is_some() {
            let _ = write!(creq_head, "&X-Amz-Security-Token={token}");
        }
        creq_head.push_str("&X-Amz-SignedHeaders=host&partNumber=");
        let creq_tail = format!(
            "&uploadId={encoded_upload_id}&x-id=UploadPart\nhost:{}\n\nhost\nUNSIGNED-PAYLOAD",
            self.host
        );
        let mut creq_hasher = Sha256::new();
        creq_hasher.update(creq_head.as_bytes());
        let mut sts_mac = mac;
        sts_mac.update(format!("{ALGORITHM}\n{date_time}\n{scope}\n").as_bytes());

        // The SDK's URL layout: operation query first, then the signing parameters in
        // the signer's order, the session token last.
        let url_head = format!("{}{path}?x-id=UploadPart&partNumber=", self.origin);
        let url_middle = format!(
            "&uploadId={encoded_upload_id}&X-Amz-Algorithm={ALGORITHM}\
             &X-Amz-Credential={credential}&X-Amz-Date={date_time}&X-Amz-Expires={expires}\
             &X-Amz-SignedHeaders=host&X-Amz-Signature="
        );
        let url_tail = if self.session_token.is_some() {
            format!("&X-Amz-Security-Token={token}")
        } else {
            String::new()
        };

        let mut number_buf = itoa_buf();
        let mut hex_buf = [0u8; 64];
        part_numbers
            .iter()
            .map(|&number| {
                let number = format_u32(&mut number_buf, number);
                let mut hasher = creq_hasher.clone();
                hasher.update(number.as_bytes());
                hasher.update(creq_tail.as_bytes());
                let creq_hash = hasher.finalize();
                let mut mac = sts_mac.clone();
                mac.update(hex_lower(&creq_hash, &mut hex_buf).as_bytes());
                let signature = mac.finalize().into_bytes();
                let signature = hex_lower(&signature, &mut hex_buf);

                let mut url = String::with_capacity(
                    url_head.len() + number.len() + url_middle.len() + 64 + url_tail.len(),
                );
                url.push_str(&url_head);
                url.push_str(number);
                url.push_str(&url_middle);
                url.push_str(signature);
                url.push_str(&url_tail);
                url
            })
            .collect()
    }
}

fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// `host[:port]` (IPv6 literals in brackets).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |i| i + 1)
    } else {
        0
    };
    match authority[host_end..].rfind(':') {
        Some(i) => (
            &authority[..host_end + i],
            Some(&authority[host_end + i + 1..]),
        ),
        None => (authority, None),
    }
}

fn is_ip(host: &str) -> bool {
    host.parse::<Ipv4Addr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<Ipv6Addr>().is_ok())
}

/// The SDK's rule for putting a bucket into the host name.
fn is_virtual_hostable(bucket: &str, allow_dots: bool) -> bool {
    let segment_ok = |s: &str| {
        let b = s.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        (3..=63).contains(&b.len())
            && alnum(b[0])
            && alnum(b[b.len() - 1])
            && b.iter().all(|&c| alnum(c) || c == b'-' || c == b'.')
            && !b
                .windows(2)
                .any(|w| matches!(w, [b'.', b'-'] | [b'-', b'.']))
            && s.parse::<Ipv4Addr>().is_err()
    };
    let label_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    };
    if allow_dots {
        bucket.split('.').all(label_ok) && bucket.split('.').all(segment_ok)
    } else {
        label_ok(bucket) && segment_ok(bucket)
    }
}

/// RFC 3986 encoding as the SDK does it: everything but `A-Za-z0-9-._~` (and `/`
/// when `keep_slash`) becomes `%XX`, UTF-8 bytewise, upper-case hex.
fn encode_into(out: &mut String, value: &str, keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

fn hex_lower<'a>(bytes: &[u8], buf: &'a mut [u8; 64]) -> &'a str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, &b) in bytes.iter().take(32).enumerate() {
        buf[2 * i] = HEX[usize::from(b >> 4)];
        buf[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    std::str::from_utf8(&buf[..2 * bytes.len().min(32)]).expect("hex is ASCII")
}

fn itoa_buf() -> [u8; 10] {
    [0; 10]
}

fn format_u32(buf: &mut [u8; 10], mut n: u32) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn known_vector() {
        // Matches aws-sdk-s3 1.157 for the same inputs (see the oracle test).
        let presigner = BatchPresigner::new(
            "AKID",
            "SECRET",
            None,
            "us-east-1",
            Some("http://127.0.0.1:9000"),
            "my-bucket",
            true,
        );
        let urls = presigner.presign_upload_parts(
            "a b/ü+%~//x",
            "id+/=",
            &[7],
            Duration::from_secs(900),
            at(1_700_000_000),
        );
        assert_eq!(
            urls,
            ["http://127.0.0.1:9000/my-bucket/a%20b/%C3%BC%2B%25~//x?x-id=UploadPart&partNumber=7\
              &uploadId=id%2B%2F%3D&X-Amz-Algorithm=AWS4-HMAC-SHA256\
              &X-Amz-Credential=AKID%2F20231114%2Fus-east-1%2Fs3%2Faws4_request\
              &X-Amz-Date=20231114T221320Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
              &X-Amz-Signature=d0d0cd084a1ce9263d49aaeb47097ce5d53fd5bb28245f1f358957f0fd82194c"]
        );
    }

    #[test]
    fn credentials_change_the_signature() {
        let sign = |secret: &str| {
            BatchPresigner::new("AKID", secret, None, "auto", None, "bucket", false)
                .presign_upload_parts("k", "u", &[1], Duration::from_secs(60), at(1_700_000_000))
                .remove(0)
        };
        let (a, b) = (sign("one"), sign("two"));
        assert_ne!(a, b);
        let signature = |u: &str| u.split("X-Amz-Signature=").nth(1).unwrap().to_string();
        assert_ne!(signature(&a), signature(&b));
    }

    #[test]
    fn formats_part_numbers() {
        let mut buf = itoa_buf();
        for n in [0, 1, 9, 10, 10_000, u32::MAX] {
            assert_eq!(format_u32(&mut buf, n), n.to_string());
        }
    }
}
