//! End-to-end tests of the embedded S3 endpoint with the real aws-sdk-s3
//! client and plain HTTP (reqwest) for presigned URLs and CORS.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt as _;
use partway_embedded_s3::{EmbeddedS3, EmbeddedS3Config, EmbeddedS3Error};

use common::*;

// ---- presigned UploadPart and auth ----------------------------------------

#[tokio::test]
async fn presigned_plain_put_stores_part_and_returns_md5_etag() {
    let t = TestServer::start().await;
    let key = "videos/a.bin";
    let id = create_upload(&t.client, key).await;
    let url = presigned_part_url(&t.client, key, &id, 1, presign_for(600)).await;

    let data = bytes(1000, 7);
    let resp = plain_put(&url, data.clone()).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, quoted(&md5_hex(&data)));

    let parts = list_parts(&t.client, key, &id).await;
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].part_number, Some(1));
    assert_eq!(parts[0].e_tag.as_deref(), Some(etag.as_str()));
    assert_eq!(parts[0].size, Some(1000));
    assert!(parts[0].last_modified.is_some());
}

#[tokio::test]
async fn uploading_the_same_part_number_again_replaces_the_part() {
    let t = TestServer::start().await;
    let key = "replace.bin";
    let id = create_upload(&t.client, key).await;
    let first = upload_part(&t.client, key, &id, 3, bytes(10, 1)).await;
    let second_data = bytes(20, 2);
    let second = upload_part(&t.client, key, &id, 3, second_data.clone()).await;
    assert_ne!(first, second);
    assert_eq!(second, quoted(&md5_hex(&second_data)));

    let parts = list_parts(&t.client, key, &id).await;
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].e_tag.as_deref(), Some(second.as_str()));
    assert_eq!(parts[0].size, Some(20));
}

fn tamper_signature(url: &str) -> String {
    let start = url.find("X-Amz-Signature=").expect("signature in URL") + "X-Amz-Signature=".len();
    let mut chars: Vec<char> = url.chars().collect();
    chars[start] = if chars[start] == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn presigned_put_with_tampered_signature_is_refused_and_stores_nothing() {
    let t = TestServer::start().await;
    let key = "tampered.bin";
    let id = create_upload(&t.client, key).await;
    let url = presigned_part_url(&t.client, key, &id, 1, presign_for(600)).await;

    let resp = plain_put(&tamper_signature(&url), bytes(100, 3)).await;
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("SignatureDoesNotMatch") || body.contains("AccessDenied"),
        "{body}"
    );

    assert!(list_parts(&t.client, key, &id).await.is_empty());
}

#[tokio::test]
async fn presigned_put_signed_with_wrong_secret_is_refused() {
    let t = TestServer::start().await;
    let key = "wrong-secret.bin";
    let id = create_upload(&t.client, key).await;
    let forger = client_with(&t.s3.endpoint_url(), ACCESS_KEY, "not-the-secret");
    let url = presigned_part_url(&forger, key, &id, 1, presign_for(600)).await;

    let resp = plain_put(&url, bytes(100, 4)).await;
    assert_eq!(resp.status(), 403);
    assert!(list_parts(&t.client, key, &id).await.is_empty());
}

/// Whoever holds a presigned URL must not change what it does with headers
/// the signature does not cover (`x-amz-copy-source` would make it an
/// UploadPartCopy): S3 answers 403 AccessDenied, and nothing is stored.
#[tokio::test]
async fn presigned_put_with_unsigned_amz_headers_is_refused_and_the_same_url_works_without() {
    let t = TestServer::start().await;
    let key = "unsigned-header.bin";
    let id = create_upload(&t.client, key).await;
    let url = presigned_part_url(&t.client, key, &id, 1, presign_for(600)).await;

    for (name, value) in [
        ("x-amz-copy-source", format!("{BUCKET}/{key}")),
        ("x-amz-foo", "bar".to_owned()),
        ("X-Amz-Meta-Added", "1".to_owned()),
    ] {
        let resp = reqwest::Client::new()
            .put(&url)
            .header(name, value)
            .body(bytes(100, 6))
            .send()
            .await
            .expect("PUT reaches the server");
        assert_eq!(resp.status(), 403, "{name}");
        let body = resp.text().await.unwrap();
        assert!(body.contains("<Code>AccessDenied</Code>"), "{name}: {body}");
        assert!(list_parts(&t.client, key, &id).await.is_empty(), "{name}");
    }

    let data = bytes(100, 6);
    let resp = plain_put(&url, data.clone()).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let parts = list_parts(&t.client, key, &id).await;
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parts[0].e_tag.as_deref(),
        Some(quoted(&md5_hex(&data)).as_str())
    );
}

#[tokio::test]
async fn expired_presigned_put_is_refused() {
    let t = TestServer::start().await;
    let key = "expired.bin";
    let id = create_upload(&t.client, key).await;
    let expired = PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(3600))
        .expires_in(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = presigned_part_url(&t.client, key, &id, 1, expired).await;

    let resp = plain_put(&url, bytes(100, 5)).await;
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(body.contains("AccessDenied"), "{body}");
    assert!(list_parts(&t.client, key, &id).await.is_empty());
}

#[tokio::test]
async fn anonymous_requests_are_refused() {
    let t = TestServer::start().await;
    let key = "anon.bin";
    let id = create_upload(&t.client, key).await;
    let http = reqwest::Client::new();

    let put = plain_put(
        &t.url(&format!("/{BUCKET}/{key}?partNumber=1&uploadId={id}")),
        bytes(10, 6),
    )
    .await;
    assert_eq!(put.status(), 403);
    let get = http
        .get(t.url(&format!("/{BUCKET}?uploads")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 403);
    let list = http
        .get(t.url(&format!("/{BUCKET}/{key}?uploadId={id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 403);

    assert!(list_parts(&t.client, key, &id).await.is_empty());
}

#[tokio::test]
async fn upload_part_to_unknown_upload_id_is_no_such_upload() {
    let t = TestServer::start().await;
    for id in ["00000000-0000-4000-8000-000000000000", "not-an-upload-id"] {
        let err = t
            .client
            .upload_part()
            .bucket(BUCKET)
            .key("k")
            .upload_id(id)
            .part_number(1)
            .body(ByteStream::from(vec![1u8, 2, 3]))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            code_of(&err).as_deref(),
            Some("NoSuchUpload"),
            "{id}: {err:?}"
        );
    }
    // An upload of another key is not this key's upload.
    let id = create_upload(&t.client, "other").await;
    let err = t
        .client
        .list_parts()
        .bucket(BUCKET)
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).as_deref(), Some("NoSuchUpload"));
}

#[tokio::test]
async fn upload_part_with_mismatching_content_md5_or_checksum_is_bad_digest_and_not_stored() {
    use base64::Engine as _;
    use md5::Digest as _;
    let t = TestServer::start().await;
    let key = "digest.bin";
    let id = create_upload(&t.client, key).await;
    let wrong_md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(b"other"));
    let err = t
        .client
        .upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .part_number(1)
        .content_md5(wrong_md5)
        .body(ByteStream::from(bytes(100, 1)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).as_deref(), Some("BadDigest"), "{err:?}");

    let err = t
        .client
        .upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .part_number(1)
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from(bytes(100, 1)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).as_deref(), Some("BadDigest"), "{err:?}");

    assert!(list_parts(&t.client, key, &id).await.is_empty());
    // No temp files are left behind either.
    let upload_dir = t.dir.path().join(".multipart").join(&id);
    let leftovers: Vec<_> = std::fs::read_dir(&upload_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "upload.json")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---- ListParts -------------------------------------------------------------

#[tokio::test]
async fn list_parts_paginates_1005_parts_at_1000_sorted_with_etags() {
    let t = TestServer::start().await;
    let key = "many.bin";
    let id = create_upload(&t.client, key).await;

    // Upload in scrambled order, 16 at a time.
    let numbers: Vec<i32> = (1..=1005).map(|i| (i * 7) % 1005 + 1).collect();
    let mut uploads = futures::stream::iter(numbers)
        .map(|n| {
            let client = t.client.clone();
            let id = id.clone();
            async move { (n, upload_part(&client, key, &id, n, vec![n as u8]).await) }
        })
        .buffer_unordered(16);
    let mut etags = std::collections::BTreeMap::new();
    while let Some((n, etag)) = uploads.next().await {
        etags.insert(n, etag);
    }
    assert_eq!(etags.len(), 1005);

    let first = list_parts_page(&t.client, key, &id, None).await;
    assert_eq!(first.is_truncated, Some(true));
    assert_eq!(first.max_parts, Some(1000));
    let first_parts = first.parts.unwrap_or_default();
    assert_eq!(first_parts.len(), 1000);
    let numbers: Vec<i32> = first_parts.iter().map(|p| p.part_number.unwrap()).collect();
    assert_eq!(numbers, (1..=1000).collect::<Vec<_>>());
    for p in &first_parts {
        let n = p.part_number.unwrap();
        assert_eq!(p.e_tag.as_ref(), Some(&etags[&n]));
        assert_eq!(
            p.e_tag.as_deref(),
            Some(quoted(&md5_hex(&[n as u8])).as_str())
        );
        assert_eq!(p.size, Some(1));
    }
    assert_eq!(first.next_part_number_marker.as_deref(), Some("1000"));

    let second = list_parts_page(&t.client, key, &id, Some(1000)).await;
    assert_eq!(second.is_truncated, Some(false));
    let second_numbers: Vec<i32> = second
        .parts
        .unwrap_or_default()
        .iter()
        .map(|p| p.part_number.unwrap())
        .collect();
    assert_eq!(second_numbers, vec![1001, 1002, 1003, 1004, 1005]);

    // MaxParts is honoured below the cap.
    let small = t
        .client
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .max_parts(2)
        .part_number_marker("10")
        .send()
        .await
        .unwrap();
    let nums: Vec<i32> = small
        .parts()
        .iter()
        .map(|p| p.part_number.unwrap())
        .collect();
    assert_eq!(nums, vec![11, 12]);
    assert_eq!(small.is_truncated, Some(true));
    assert_eq!(small.next_part_number_marker.as_deref(), Some("12"));
}

// ---- CompleteMultipartUpload -------------------------------------------------

/// Keys as long as partway makes them (a 255-byte non-ASCII filename under
/// `prefix/owner/uuid/`), up to S3's 1024 bytes: complete, then GetObject,
/// ranged GetObject and HeadObject answer the multipart ETag and attributes.
#[tokio::test]
async fn long_keys_complete_and_read_back_with_their_etag_and_attributes() {
    let t = TestServer::start().await;
    let filename = format!("{}.bin", "ü".repeat(125)); // 254 bytes
    let segment = format!("{}é", "s".repeat(253)); // 255 bytes
    for key in [
        format!("uploads/owner/0b9d4c8e-6a0c-4f0e-9a57-2f7c5f3c2a10/{filename}"),
        format!("x/{segment}/{segment}/{segment}/{}", "k".repeat(254)),
    ] {
        assert!(key.len() <= 1024);
        assert!(key.split('/').all(|s| s.len() <= 255));
        let id = t
            .client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(&key)
            .content_type("application/x-test")
            .send()
            .await
            .unwrap()
            .upload_id
            .unwrap();
        let p1 = bytes(5 * MIB, 21);
        let p2 = bytes(777, 22);
        let e1 = upload_part(&t.client, &key, &id, 1, p1.clone()).await;
        let e2 = upload_part(&t.client, &key, &id, 2, p2.clone()).await;
        let done = complete(&t.client, &key, &id, &[(1, &e1), (2, &e2)])
            .await
            .unwrap_or_else(|e| panic!("complete of a {}-byte key: {e:?}", key.len()));
        let expected_etag = multipart_etag(&[&p1, &p2]);
        assert_eq!(done.e_tag.as_deref(), Some(expected_etag.as_str()));

        let (data, out) = get_object_bytes(&t.client, &key).await;
        assert!(data == [p1.as_slice(), p2.as_slice()].concat());
        assert_eq!(out.e_tag.as_deref(), Some(expected_etag.as_str()));
        assert_eq!(out.content_type.as_deref(), Some("application/x-test"));

        let head = t
            .client
            .head_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.e_tag.as_deref(), Some(expected_etag.as_str()));
        assert_eq!(head.content_length, Some((p1.len() + p2.len()) as i64));

        let mut ranged = t
            .client
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .range("bytes=5242870-5242889")
            .send()
            .await
            .unwrap();
        assert_eq!(
            ranged.content_range.as_deref(),
            Some(format!("bytes 5242870-5242889/{}", p1.len() + p2.len()).as_str())
        );
        let body = std::mem::take(&mut ranged.body)
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert!(body.as_ref() == &[&p1[5242870..], &p2[..10]].concat()[..]);
    }
}

/// A key with a segment longer than a file name can be is refused at
/// CreateMultipartUpload, not after the parts were uploaded.
#[tokio::test]
async fn keys_with_a_segment_over_255_bytes_are_refused_up_front() {
    let t = TestServer::start().await;
    let err = t
        .client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(format!("p/{}", "k".repeat(256)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).as_deref(), Some("KeyTooLongError"));
}

#[tokio::test]
async fn complete_with_wrong_etag_is_invalid_part_and_keeps_upload_then_right_etags_complete() {
    let t = TestServer::start().await;
    let key = "movies/final.mp4";
    let id = t
        .client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .content_type("video/mp4")
        .metadata("origin", "partway-test")
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();

    let p1 = bytes(5 * MIB, 11);
    let p2 = bytes(1234, 12);
    let e1 = upload_part(&t.client, key, &id, 1, p1.clone()).await;
    let e2 = upload_part(&t.client, key, &id, 2, p2.clone()).await;

    let wrong = quoted(&md5_hex(b"something else"));
    let err = complete(&t.client, key, &id, &[(1, &e1), (2, &wrong)])
        .await
        .unwrap_err();
    assert_eq!(err, (Some("InvalidPart".into()), Some(400)));
    // A part number never uploaded is InvalidPart too.
    let err = complete(&t.client, key, &id, &[(1, &e1), (3, &e2)])
        .await
        .unwrap_err();
    assert_eq!(err.0.as_deref(), Some("InvalidPart"));

    // Nothing changed.
    let parts = list_parts(&t.client, key, &id).await;
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].e_tag.as_deref(), Some(e1.as_str()));
    assert_eq!(parts[1].e_tag.as_deref(), Some(e2.as_str()));
    let head = t.client.head_object().bucket(BUCKET).key(key).send().await;
    assert!(head.is_err(), "no object before a successful complete");

    // ETags without quotes are accepted.
    let e1_bare = e1.trim_matches('"').to_owned();
    let done = complete(&t.client, key, &id, &[(1, &e1_bare), (2, &e2)])
        .await
        .unwrap();
    let expected_etag = multipart_etag(&[&p1, &p2]);
    assert_eq!(done.e_tag.as_deref(), Some(expected_etag.as_str()));

    let (data, out) = get_object_bytes(&t.client, key).await;
    assert_eq!(data.len(), p1.len() + p2.len());
    assert!(
        data == [p1.as_slice(), p2.as_slice()].concat(),
        "object is the concatenation"
    );
    assert_eq!(out.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(out.e_tag.as_deref(), Some(expected_etag.as_str()));
    assert_eq!(
        out.metadata
            .as_ref()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("partway-test")
    );

    let head = t
        .client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length, Some((p1.len() + p2.len()) as i64));
    assert_eq!(head.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(head.e_tag.as_deref(), Some(expected_etag.as_str()));

    // Range reads of the assembled object go through s3s-fs.
    let mut ranged = t
        .client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .range(format!("bytes={}-{}", 5 * MIB - 2, 5 * MIB + 1))
        .send()
        .await
        .unwrap();
    let body = std::mem::take(&mut ranged.body)
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(
        body.as_ref(),
        &[p1[5 * MIB - 2], p1[5 * MIB - 1], p2[0], p2[1]]
    );

    // The upload is gone: completing again, listing or uploading say NoSuchUpload.
    let err = complete(&t.client, key, &id, &[(1, &e1), (2, &e2)])
        .await
        .unwrap_err();
    assert_eq!(err.0.as_deref(), Some("NoSuchUpload"));
    let err = t
        .client
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).as_deref(), Some("NoSuchUpload"));
}

#[tokio::test]
async fn complete_with_small_non_last_part_is_entity_too_small_and_keeps_upload() {
    let t = TestServer::start().await;
    let key = "small.bin";
    let id = create_upload(&t.client, key).await;
    let e1 = upload_part(&t.client, key, &id, 1, bytes(MIB, 1)).await;
    let e2 = upload_part(&t.client, key, &id, 2, bytes(10, 2)).await;

    let err = complete(&t.client, key, &id, &[(1, &e1), (2, &e2)])
        .await
        .unwrap_err();
    assert_eq!(err, (Some("EntityTooSmall".into()), Some(400)));

    let parts = list_parts(&t.client, key, &id).await;
    assert_eq!(parts.len(), 2);
    assert!(t
        .client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .is_err());

    // A single small part is fine (it is the last one).
    let done = complete(&t.client, key, &id, &[(2, &e2)]).await.unwrap();
    assert_eq!(
        done.e_tag.as_deref(),
        Some(multipart_etag(&[&bytes(10, 2)]).as_str())
    );
    let (data, _) = get_object_bytes(&t.client, key).await;
    assert_eq!(data, bytes(10, 2));
}

#[tokio::test]
async fn complete_with_parts_out_of_order_or_repeated_is_invalid_part_order() {
    let t = TestServer::start().await;
    let key = "order.bin";
    let id = create_upload(&t.client, key).await;
    let e1 = upload_part(&t.client, key, &id, 1, bytes(10, 1)).await;
    let e2 = upload_part(&t.client, key, &id, 2, bytes(10, 2)).await;

    let err = complete(&t.client, key, &id, &[(2, &e2), (1, &e1)])
        .await
        .unwrap_err();
    assert_eq!(err, (Some("InvalidPartOrder".into()), Some(400)));
    let err = complete(&t.client, key, &id, &[(1, &e1), (1, &e1)])
        .await
        .unwrap_err();
    assert_eq!(err.0.as_deref(), Some("InvalidPartOrder"));
    let err = complete(&t.client, key, &id, &[]).await.unwrap_err();
    assert_eq!(err.1, Some(400), "an empty part list is refused: {err:?}");

    assert_eq!(list_parts(&t.client, key, &id).await.len(), 2);
}

// ---- AbortMultipartUpload ------------------------------------------------------

#[tokio::test]
async fn aborted_upload_answers_no_such_upload_to_upload_part_list_parts_and_complete() {
    let t = TestServer::start().await;
    let key = "aborted.bin";
    let id = create_upload(&t.client, key).await;
    let e1 = upload_part(&t.client, key, &id, 1, bytes(10, 1)).await;

    t.client
        .abort_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .unwrap();

    let err = t
        .client
        .upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .part_number(2)
        .body(ByteStream::from(vec![0u8; 10]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).as_deref(), Some("NoSuchUpload"));

    let err = t
        .client
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).as_deref(), Some("NoSuchUpload"));

    let err = complete(&t.client, key, &id, &[(1, &e1)])
        .await
        .unwrap_err();
    assert_eq!(err, (Some("NoSuchUpload".into()), Some(404)));

    let err = t
        .client
        .abort_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).as_deref(), Some("NoSuchUpload"));

    // A presigned URL made before the abort is refused as well.
    let url = presigned_part_url(&t.client, key, &id, 3, presign_for(600)).await;
    let resp = plain_put(&url, bytes(10, 3)).await;
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("NoSuchUpload"));
}

#[tokio::test]
async fn list_multipart_uploads_shows_uploads_in_progress() {
    let t = TestServer::start().await;
    let a = create_upload(&t.client, "list/a").await;
    let b = create_upload(&t.client, "list/b").await;
    let _other = create_upload(&t.client, "elsewhere/c").await;

    let out = t
        .client
        .list_multipart_uploads()
        .bucket(BUCKET)
        .prefix("list/")
        .send()
        .await
        .unwrap();
    let found: Vec<(String, String)> = out
        .uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap().to_owned(),
                u.upload_id().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![("list/a".to_owned(), a), ("list/b".to_owned(), b)]
    );
}

// ---- restart -------------------------------------------------------------

#[tokio::test]
async fn multipart_upload_survives_restart_on_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let key = "resume/me.bin";
    let p1 = bytes(5 * MIB, 21);
    let p2 = bytes(99, 22);

    let s3 = start_at(dir.path()).await;
    let c = client(&s3);
    let id = create_upload(&c, key).await;
    let e1 = upload_part(&c, key, &id, 1, p1.clone()).await;
    s3.shutdown().await;

    let s3 = start_at(dir.path()).await;
    let c = client(&s3);
    let parts = list_parts(&c, key, &id).await;
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].e_tag.as_deref(), Some(e1.as_str()));
    assert_eq!(parts[0].size, Some(5 * MIB as i64));

    let e2 = upload_part(&c, key, &id, 2, p2.clone()).await;
    let done = complete(&c, key, &id, &[(1, &e1), (2, &e2)]).await.unwrap();
    assert_eq!(
        done.e_tag.as_deref(),
        Some(multipart_etag(&[&p1, &p2]).as_str())
    );
    let (data, _) = get_object_bytes(&c, key).await;
    assert!(data == [p1, p2].concat());
    s3.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_part_upload_finish() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let dir = tempfile::tempdir().unwrap();
    let key = "in-flight.bin";
    let s3 = start_at(dir.path()).await;
    let addr = s3.local_addr();
    let c = client(&s3);
    let id = create_upload(&c, key).await;
    let url = presigned_part_url(&c, key, &id, 1, presign_for(600)).await;
    let path_and_query = &url[url.find(&format!("/{BUCKET}/")).unwrap()..];
    let data = bytes(4096, 8);

    // Send the headers only and wait for "100 Continue": the server is now
    // inside UploadPart, reading the body.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        data.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 256];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "server closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf)
    );

    // Start the shutdown and wait until the listener is closed.
    let mut shutdown = Box::pin(s3.shutdown());
    assert!(futures::poll!(&mut shutdown).is_pending());
    tokio::time::timeout(Duration::from_secs(10), async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("listener closes after shutdown starts");

    // The in-flight request still completes.
    conn.write_all(&data).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response))
        .await
        .expect("response arrives")
        .unwrap();
    let response = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(
        response.contains(&format!("etag: \"{}\"", md5_hex(&data))),
        "{response}"
    );
    shutdown.await;

    let s3 = start_at(dir.path()).await;
    let parts = list_parts(&client(&s3), key, &id).await;
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].size, Some(4096));
    s3.shutdown().await;
}

// ---- CORS ------------------------------------------------------------------

#[tokio::test]
async fn cors_preflight_is_answered_without_auth() {
    let t = TestServer::start().await;
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            t.url(&format!("/{BUCKET}/some/key?partNumber=1&uploadId=x")),
        )
        .header("Origin", "http://app.example")
        .header("Access-Control-Request-Method", "PUT")
        .header(
            "Access-Control-Request-Headers",
            "content-type,x-amz-checksum-crc32",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    let origin = h["access-control-allow-origin"].to_str().unwrap();
    assert!(origin == "*" || origin == "http://app.example", "{origin}");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "PUT", "HEAD", "POST", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert_eq!(
        h["access-control-allow-headers"].to_str().unwrap(),
        "content-type,x-amz-checksum-crc32"
    );
    assert!(h.contains_key("access-control-max-age"));
}

#[tokio::test]
async fn put_responses_allow_origin_and_expose_etag() {
    let t = TestServer::start().await;
    let key = "cors.bin";
    let id = create_upload(&t.client, key).await;
    let url = presigned_part_url(&t.client, key, &id, 1, presign_for(600)).await;

    let resp = reqwest::Client::new()
        .put(&url)
        .header("Origin", "http://app.example")
        .body(bytes(10, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("access-control-allow-origin"));
    let expose = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        expose
            .split(',')
            .any(|h| h.trim().eq_ignore_ascii_case("etag")),
        "{expose}"
    );

    // Errors carry them too, so a browser can see the status.
    let resp = plain_put(&tamper_signature(&url), bytes(10, 1)).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().contains_key("access-control-allow-origin"));
}

// ---- delegated object operations ----------------------------------------------

#[tokio::test]
async fn object_operations_are_served_from_disk() {
    let t = TestServer::start().await;
    t.client.head_bucket().bucket(BUCKET).send().await.unwrap();
    let data = bytes(300, 9);
    let put = t
        .client
        .put_object()
        .bucket(BUCKET)
        .key("dir/plain.txt")
        .content_type("text/plain")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(put.e_tag.as_deref(), Some(quoted(&md5_hex(&data)).as_str()));

    let (got, out) = get_object_bytes(&t.client, "dir/plain.txt").await;
    assert_eq!(got, data);
    assert_eq!(out.content_type.as_deref(), Some("text/plain"));

    let listed = t
        .client
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["dir/plain.txt"]);

    t.client
        .delete_object()
        .bucket(BUCKET)
        .key("dir/plain.txt")
        .send()
        .await
        .unwrap();
    let err = t
        .client
        .head_object()
        .bucket(BUCKET)
        .key("dir/plain.txt")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));

    let err = t
        .client
        .put_object()
        .bucket("no-such-bucket")
        .key("x")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).as_deref(), Some("NoSuchBucket"));
}

// ---- start-up errors -------------------------------------------------------------

#[tokio::test]
async fn start_reports_bad_configuration_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad_bucket = EmbeddedS3Config {
        buckets: vec!["Not_A_Bucket".into()],
        ..config(dir.path())
    };
    assert!(matches!(
        EmbeddedS3::start(bad_bucket).await,
        Err(EmbeddedS3Error::InvalidBucketName(_))
    ));

    let no_secret = EmbeddedS3Config {
        secret_key: String::new(),
        ..config(dir.path())
    };
    assert!(matches!(
        EmbeddedS3::start(no_secret).await,
        Err(EmbeddedS3Error::InvalidConfig(_))
    ));

    let running = start_at(dir.path()).await;
    let taken = EmbeddedS3Config {
        bind: running.local_addr(),
        ..config(dir.path())
    };
    assert!(matches!(
        EmbeddedS3::start(taken).await,
        Err(EmbeddedS3Error::Bind { .. })
    ));
    assert!(running.endpoint_url().starts_with("http://127.0.0.1:"));
    running.shutdown().await;

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let root_is_file = EmbeddedS3Config {
        root: file,
        ..config(dir.path())
    };
    assert!(matches!(
        EmbeddedS3::start(root_is_file).await,
        Err(EmbeddedS3Error::Storage { .. })
    ));
}
