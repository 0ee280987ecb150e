use std::{
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation},
    presigning::PresigningConfig,
    Client,
};
use partway_core::presign::BatchPresigner;
use proptest::prelude::*;

fn sdk_client(
    access: &str,
    secret: &str,
    token: Option<&str>,
    region: &str,
    endpoint: Option<&str>,
    path_style: bool,
) -> Client {
    let credentials = Credentials::new(access, secret, token.map(str::to_string), None, "t");
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials)
        .force_path_style(path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn sdk_url(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    part: u32,
    expires_in: Duration,
    now: SystemTime,
) -> String {
    let config = PresigningConfig::builder()
        .start_time(now)
        .expires_in(expires_in)
        .build()
        .unwrap();
    let fut = client
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(part as i32)
        .presigned(config);
    runtime().block_on(fut).unwrap().uri().to_string()
}

// 2023-11-14T22:13:20Z
const NOW_SECS: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// (endpoint, force_path_style)
const ENDPOINTS: [(Option<&str>, bool); 8] = [
    (Some("http://127.0.0.1:9000"), true),
    (Some("http://127.0.0.1:9000"), false),
    (None, false),
    (None, true),
    (Some("http://localhost:9000"), false),
    (Some("https://minio.example.com"), false),
    (Some("https://r2.example.com:8443/base/"), true),
    (Some("http://minio:80"), false),
];

fn bucket() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9][a-z0-9-]{1,30}[a-z0-9]",
        1 => "[a-z0-9]{3,8}(\\.[a-z0-9]{3,8}){1,2}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9 üé日本+%~!*'()=&?#;:@$,._-]{0,8}", 1..5)
        .prop_map(|segments| segments.join("/"))
        .prop_filter("the SDK rejects blank keys", |k| !k.trim().is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_the_sdk(
        bucket in bucket(),
        key in key(),
        upload_id in "[A-Za-z0-9+/=._-]{1,100}",
        parts in prop::collection::vec(1u32..=10_000, 1..4),
        expires in 1u64..=604_800,
        endpoint in 0..ENDPOINTS.len(),
        region in prop::sample::select(vec!["us-east-1", "eu-west-1", "ap-southeast-2"]),
        access in "[A-Z0-9]{16,20}",
        secret in "[A-Za-z0-9+/]{40}",
        token in prop::option::of("[A-Za-z0-9+/=]{16,64}"),
    ) {
        let (endpoint, path_style) = ENDPOINTS[endpoint];
        let now = at(NOW_SECS);
        let expires_in = Duration::from_secs(expires);
        let presigner = BatchPresigner::new(
            access.clone(), secret.clone(), token.clone(), region, endpoint, &bucket, path_style,
        );
        let ours = presigner.presign_upload_parts(&key, &upload_id, &parts, expires_in, now);
        let client = sdk_client(&access, &secret, token.as_deref(), region, endpoint, path_style);
        prop_assert_eq!(ours.len(), parts.len());
        for (url, &part) in ours.iter().zip(&parts) {
            let expected = sdk_url(&client, &bucket, &key, &upload_id, part, expires_in, now);
            prop_assert_eq!(url, &expected);
        }
    }
}

#[test]
fn rederives_the_key_across_utc_midnight() {
    // 2023-11-14T23:59:59Z and two seconds later.
    let before = at(1_700_006_399);
    let after = at(1_700_006_401);
    let presigner = BatchPresigner::new(
        "AKID",
        "SECRET",
        Some("token".into()),
        "eu-west-1",
        None,
        "bucket",
        false,
    );
    let client = sdk_client("AKID", "SECRET", Some("token"), "eu-west-1", None, false);
    let expires_in = Duration::from_secs(3600);
    let a = presigner
        .presign_upload_parts("k", "u", &[1], expires_in, before)
        .remove(0);
    let b = presigner
        .presign_upload_parts("k", "u", &[1], expires_in, after)
        .remove(0);
    assert!(a.contains("X-Amz-Credential=AKID%2F20231114%2F"), "{a}");
    assert!(b.contains("X-Amz-Credential=AKID%2F20231115%2F"), "{b}");
    assert_eq!(
        a,
        sdk_url(&client, "bucket", "k", "u", 1, expires_in, before)
    );
    assert_eq!(
        b,
        sdk_url(&client, "bucket", "k", "u", 1, expires_in, after)
    );
}

#[test]
fn credentials_change_the_signature() {
    let now = at(NOW_SECS);
    let expires_in = Duration::from_secs(60);
    let sign = |access: &str, secret: &str, token: Option<&str>| {
        let url = BatchPresigner::new(
            access,
            secret,
            token.map(str::to_string),
            "us-east-1",
            Some("http://127.0.0.1:9000"),
            "bucket",
            true,
        )
        .presign_upload_parts("k", "u", &[1], expires_in, now)
        .remove(0);
        let client = sdk_client(
            access,
            secret,
            token,
            "us-east-1",
            Some("http://127.0.0.1:9000"),
            true,
        );
        assert_eq!(
            url,
            sdk_url(&client, "bucket", "k", "u", 1, expires_in, now)
        );
        url.split("X-Amz-Signature=").nth(1).unwrap()[..64].to_string()
    };
    let base = sign("AKID", "SECRET", None);
    assert_ne!(base, sign("AKID", "SECRET2", None));
    assert_ne!(base, sign("AKID2", "SECRET", None));
    assert_ne!(base, sign("AKID", "SECRET", Some("token")));
}
