//! Time to presign 10,000 `UploadPart` URLs: the batch presigner vs the SDK's
//! per-part `.presigned()`. Run with
//! `cargo run --release -p partway-core --example presign_speed`.
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation},
    presigning::PresigningConfig,
};
use partway_core::presign::BatchPresigner;

const PARTS: u32 = 10_000;
const ENDPOINT: &str = "http://127.0.0.1:9000";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (key, upload_id) = ("uploads/some file ü.bin", "2~abc+def/ghi=");
    let parts: Vec<u32> = (1..=PARTS).collect();
    let expires_in = Duration::from_secs(3600);
    let now = SystemTime::now();

    let presigner = BatchPresigner::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        "us-east-1",
        Some(ENDPOINT),
        "bucket",
        true,
    );
    let mut best_batch = Duration::MAX;
    let mut batch = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        batch = presigner.presign_upload_parts(key, upload_id, &parts, expires_in, now);
        best_batch = best_batch.min(start.elapsed());
    }

    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "bench",
        ))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .endpoint_url(ENDPOINT)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let start = Instant::now();
    let mut sdk = Vec::with_capacity(parts.len());
    for &number in &parts {
        let presigning = PresigningConfig::builder()
            .start_time(now)
            .expires_in(expires_in)
            .build()
            .expect("valid expiry");
        let presigned = client
            .upload_part()
            .bucket("bucket")
            .key(key)
            .upload_id(upload_id)
            .part_number(number as i32)
            .presigned(presigning)
            .await
            .expect("presigned");
        sdk.push(presigned.uri().to_string());
    }
    let sdk_time = start.elapsed();

    assert_eq!(batch, sdk, "batch URLs differ from the SDK's");
    println!("{PARTS} URLs: batch presigner {best_batch:?} (best of 5), SDK loop {sdk_time:?}");
}
