//! A presigned S3 POST policy (SigV4) for small files sent by a browser form POST
//! (DESIGN §5, Uppy's `/s3/params`). Pure: the fields a form posts before the file.
//!
//! The policy's conditions: the bucket, the exact key, the exact `Content-Type`, a
//! `content-length-range` (0 to the token's `maxFileSize` or the provider's single-PUT
//! limit), and the `x-amz-*` fields the form carries (S3 and s3s require a condition
//! for every field the form posts, `policy`, `x-amz-signature` and `file` excepted).
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What one POST policy allows.
#[derive(Debug, Clone)]
pub struct PostPolicyRequest<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    /// Temporary credentials' session token (sent as `x-amz-security-token`).
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub content_type: &'a str,
    /// Largest accepted body, in bytes.
    pub max_size: u64,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The form fields, in the order they are posted (before `file`).
pub fn post_policy_fields(req: &PostPolicyRequest<'_>) -> Vec<(String, String)> {
    let date = req.now.format("%Y%m%d").to_string();
    let amz_date = req.now.format("%Y%m%dT%H%M%SZ").to_string();
    let credential = format!(
        "{}/{date}/{}/s3/aws4_request",
        req.access_key_id, req.region
    );
    let mut conditions = vec![
        serde_json::json!({"bucket": req.bucket}),
        serde_json::json!(["eq", "$key", req.key]),
        serde_json::json!(["eq", "$Content-Type", req.content_type]),
        serde_json::json!(["content-length-range", 0, req.max_size]),
        serde_json::json!({"x-amz-algorithm": "AWS4-HMAC-SHA256"}),
        serde_json::json!({"x-amz-credential": credential}),
        serde_json::json!({"x-amz-date": amz_date}),
    ];
    if let Some(token) = req.session_token {
        conditions.push(serde_json::json!({"x-amz-security-token": token}));
    }
    let policy = serde_json::json!({
        "expiration": req.expires_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "conditions": conditions,
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
    let signature = policy_signature(req.secret_access_key, &date, req.region, &encoded);
    let mut fields = vec![
        ("bucket".to_string(), req.bucket.to_string()),
        ("key".to_string(), req.key.to_string()),
        ("Content-Type".to_string(), req.content_type.to_string()),
        (
            "x-amz-algorithm".to_string(),
            "AWS4-HMAC-SHA256".to_string(),
        ),
        ("x-amz-credential".to_string(), credential),
        ("x-amz-date".to_string(), amz_date),
    ];
    if let Some(token) = req.session_token {
        fields.push(("x-amz-security-token".to_string(), token.to_string()));
    }
    fields.push(("policy".to_string(), encoded));
    fields.push(("x-amz-signature".to_string(), signature));
    fields
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4 over a base64 policy: the signing key of `date` (`YYYYMMDD`), `region` and
/// `s3`, HMAC'd with the policy text; hex.
pub fn policy_signature(secret: &str, date: &str, region: &str, policy_b64: &str) -> String {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, policy_b64.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// AWS's worked example ("Example: Browser-Based Upload using HTTP POST (Using AWS
    /// Signature Version 4)", S3 API reference): its policy, base64 and signature.
    const AWS_POLICY_B64: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
    const AWS_SIGNATURE: &str = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e";
    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn signs_aws_documented_example() {
        assert_eq!(
            policy_signature(AWS_SECRET, "20151229", "us-east-1", AWS_POLICY_B64),
            AWS_SIGNATURE
        );
    }

    #[test]
    fn fields_carry_every_condition_and_a_matching_signature() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
        let req = PostPolicyRequest {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: AWS_SECRET,
            session_token: None,
            region: "eu-west-1",
            bucket: "b",
            key: "uploads/o/x/a.txt",
            content_type: "text/plain",
            max_size: 1000,
            now,
            expires_at: now + chrono::Duration::hours(1),
        };
        let fields = post_policy_fields(&req);
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(
            get("x-amz-credential"),
            "AKIAIOSFODNN7EXAMPLE/20261207/eu-west-1/s3/aws4_request"
        );
        assert_eq!(get("x-amz-date"), "20261207T100000Z");
        let policy: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(get("policy"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(policy["expiration"], "2026-12-07T11:00:00.000Z");
        let conditions = policy["conditions"].as_array().unwrap();
        assert!(conditions.contains(&serde_json::json!(["eq", "$key", "uploads/o/x/a.txt"])));
        assert!(conditions.contains(&serde_json::json!(["eq", "$Content-Type", "text/plain"])));
        assert!(conditions.contains(&serde_json::json!(["content-length-range", 0, 1000])));
        assert!(conditions.contains(&serde_json::json!({"bucket": "b"})));
        assert_eq!(
            get("x-amz-signature"),
            policy_signature(AWS_SECRET, "20261207", "eu-west-1", &get("policy"))
        );
        assert!(!fields.iter().any(|(_, v)| v.contains(AWS_SECRET)));
    }
}
