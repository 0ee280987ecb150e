//! serde and poem-openapi must read and write the same JSON: the client uses serde, the
//! server poem-openapi's `ToJSON` (and the spec comes from the `Object` derive).
use poem_openapi::types::ToJSON;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

use super::*;

/// A status document as the server sent it (`GET /upload/multipart/{token}`, completed).
const SENT_STATUS: &str = r#"{"completedAt":"2026-11-29T05:37:37.584Z","contentType":"application/octet-stream","createdAt":"2026-11-29T05:37:37.399Z","downloadUrl":"http://127.0.0.1:44037/partway/uploads/dev/298b0211-82dd-4d2a-9105-63a5f1f2c6bf/f.bin?x-id=GetObject&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=PWZERAT4JUTDWFIJAF%2F20261129%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261129T053737Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=5202ba228ed36ac3717802da9c0d0970e592f475aeda3505dd819a0b8d06cd7d","expiresAt":"2026-12-06T05:37:37.399Z","fileKey":"uploads/dev/298b0211-82dd-4d2a-9105-63a5f1f2c6bf/f.bin","fileSize":7000000,"filename":"f.bin","metadata":{"fingerprint":"a678569df04ac9f493950e1a37351c9e"},"partSize":5242880,"progress":{"bytesPercentage":100.0,"percentage":100.0,"total":2,"totalBytes":7000000,"uploaded":2,"uploadedBytes":7000000},"provider":"S3","resumeToken":"mpu_298b0211-82dd-4d2a-9105-63a5f1f2c6bf","status":"completed","success":true,"totalParts":2,"updatedAt":"2026-11-29T05:37:37.584Z","url":"http://127.0.0.1:44037/partway/uploads/dev/298b0211-82dd-4d2a-9105-63a5f1f2c6bf/f.bin","urlsReady":2}"#;

/// A 200 answer of `POST /upload/multipart/init?wait=10`, as the server sent it.
const SENT_INIT: &str = r#"{"expiresAt":"2026-12-06T05:37:32.955Z","expiresIn":604800,"fileKey":"uploads/dev/428e6316-e808-43a9-a36c-aea27104110f/a.bin","fileSize":12582912,"partSize":5242880,"partUrls":[{"end":5242879,"expiresAt":"2026-12-06T05:37:33.073Z","partNumber":1,"size":5242880,"start":0,"url":"http://127.0.0.1:44037/partway/uploads/dev/428e6316-e808-43a9-a36c-aea27104110f/a.bin?x-id=UploadPart&partNumber=1&uploadId=a8feec17-3cae-4908-b10e-32dff50e676f&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=PWZERAT4JUTDWFIJAF%2F20261129%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261129T053733Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=7c02c6a5c261b8dd8df10e1bdf18a25c0730805a41979fd14a438432473cc64b"},{"end":10485759,"expiresAt":"2026-12-06T05:37:33.073Z","partNumber":2,"size":5242880,"start":5242880,"url":"http://127.0.0.1:44037/partway/uploads/dev/428e6316-e808-43a9-a36c-aea27104110f/a.bin?x-id=UploadPart&partNumber=2&uploadId=a8feec17-3cae-4908-b10e-32dff50e676f&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=PWZERAT4JUTDWFIJAF%2F20261129%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261129T053733Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=f1bf7a2b4733d315ba9729d8d30b58e3e12e9986c5f10288abe0b5d9bdc1a253"},{"end":12582911,"expiresAt":"2026-12-06T05:37:33.073Z","partNumber":3,"size":2097152,"start":10485760,"url":"http://127.0.0.1:44037/partway/uploads/dev/428e6316-e808-43a9-a36c-aea27104110f/a.bin?x-id=UploadPart&partNumber=3&uploadId=a8feec17-3cae-4908-b10e-32dff50e676f&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=PWZERAT4JUTDWFIJAF%2F20261129%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261129T053733Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=f830fcb10f7e7cf675f56e83c9c354964c63f05b8591ec41cef489d58d9c7363"}],"resumeToken":"mpu_428e6316-e808-43a9-a36c-aea27104110f","status":"active","success":true,"totalParts":3,"uploadId":"a8feec17-3cae-4908-b10e-32dff50e676f"}"#;

/// serde writes what poem-openapi writes, and reads that back to the same document.
fn agree<T: Serialize + DeserializeOwned + ToJSON>(doc: &T) {
    let poem = doc.to_json().expect("poem-openapi writes the document");
    let serde = serde_json::to_value(doc).expect("serde writes the document");
    assert_eq!(serde, poem, "serde and poem-openapi disagree");
    let back: T = serde_json::from_value(poem.clone()).expect("serde reads poem-openapi's JSON");
    assert_eq!(
        back.to_json(),
        Some(poem),
        "the document changed on a round trip"
    );
}

fn progress() -> ProgressDoc {
    ProgressDoc {
        uploaded: 1,
        total: Some(3),
        percentage: Some(100.0 / 3.0),
        uploaded_bytes: 5_242_880,
        total_bytes: Some(12_582_912),
        bytes_percentage: Some(41.666666666666664),
    }
}

fn part(n: u32) -> PartDoc {
    PartDoc {
        part_number: n,
        url: std::sync::Arc::new(format!(
            "http://127.0.0.1:9000/partway/a.bin?partNumber={n}&uploadId=u"
        )),
        size: 5_242_880,
        start: (n as u64 - 1) * 5_242_880,
        end: n as u64 * 5_242_880 - 1,
        expires_at: "2026-12-06T05:37:33.073Z".into(),
    }
}

fn status(finished: bool) -> StatusDoc {
    StatusDoc {
        success: true,
        resume_token: "mpu_428e6316-e808-43a9-a36c-aea27104110f".into(),
        status: if finished { "completed" } else { "active" }.into(),
        filename: "a.bin".into(),
        content_type: "application/octet-stream".into(),
        file_size: Some(12_582_912),
        part_size: Some(5_242_880),
        total_parts: Some(3),
        file_key: "uploads/dev/428e6316-e808-43a9-a36c-aea27104110f/a.bin".into(),
        provider: "S3".into(),
        metadata: [("k".to_string(), "v".to_string())].into(),
        progress: progress(),
        urls_ready: 3,
        created_at: "2026-11-29T05:37:32.955Z".into(),
        updated_at: "2026-11-29T05:37:33.065Z".into(),
        expires_at: "2026-12-06T05:37:32.955Z".into(),
        completed_at: finished.then(|| "2026-11-29T05:37:37.584Z".into()),
        url: finished.then(|| "http://127.0.0.1:9000/partway/a.bin".into()),
        download_url: finished.then(|| "http://127.0.0.1:9000/partway/a.bin?x-id=GetObject".into()),
        last_error: finished.then(|| LastErrorDoc {
            code: "INVALID_PARTS".into(),
            message: "storage rejected part 2".into(),
        }),
    }
}

#[test]
fn a_status_document_the_server_sent_parses() {
    let doc: StatusDoc = serde_json::from_str(SENT_STATUS).expect("serde reads it");
    assert_eq!(doc.upload_status(), Some(UploadStatus::Completed));
    assert_eq!(doc.file_size, Some(7_000_000));
    assert_eq!(doc.progress.bytes_percentage, Some(100.0));
    assert_eq!(
        doc.metadata["fingerprint"],
        "a678569df04ac9f493950e1a37351c9e"
    );
    assert!(doc.completed_at.is_some() && doc.download_url.is_some());
    assert!(doc.last_error.is_none());
    // Nothing the server sent was dropped or changed on the way.
    let sent: Value = serde_json::from_str(SENT_STATUS).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), sent);
    assert_eq!(doc.to_json(), Some(sent));
}

#[test]
fn an_init_answer_the_server_sent_parses() {
    let init: InitResult = serde_json::from_str(SENT_INIT).expect("serde reads it");
    assert_eq!(init.status, "active");
    assert_eq!(init.total_parts, 3);
    let numbers: Vec<u32> = init.part_urls.iter().map(|p| p.part_number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(init.part_urls[2].end, init.file_size - 1);
    let sent: Value = serde_json::from_str(SENT_INIT).unwrap();
    assert_eq!(serde_json::to_value(&init).unwrap(), sent);
}

#[test]
fn serde_writes_every_response_as_poem_openapi_does() {
    agree(&progress());
    agree(&LastErrorDoc {
        code: "INVALID_PARTS".into(),
        message: "storage rejected part 2".into(),
    });
    agree(&status(true));
    agree(&status(false));
    agree(&part(1));
    agree(&InitResult {
        success: true,
        resume_token: "mpu_428e6316-e808-43a9-a36c-aea27104110f".into(),
        upload_id: "a8feec17-3cae-4908-b10e-32dff50e676f".into(),
        file_key: "uploads/dev/a.bin".into(),
        part_urls: vec![part(1), part(2)],
        total_parts: 2,
        part_size: 5_242_880,
        file_size: 10_000_000,
        expires_in: 604_800,
        expires_at: "2026-12-06T05:37:32.955Z".into(),
        status: "active".into(),
    });
    agree(&UploadedPartDoc {
        part_number: 1,
        etag: "\"5d41402abc4b2a76b9719d911017c592\"".into(),
        size: 5_242_880,
    });
    agree(&ResumeResult {
        success: true,
        resume_token: "mpu_428e6316-e808-43a9-a36c-aea27104110f".into(),
        upload_id: "a8feec17-3cae-4908-b10e-32dff50e676f".into(),
        file_key: "uploads/dev/a.bin".into(),
        filename: "a.bin".into(),
        total_parts: 3,
        part_size: 5_242_880,
        uploaded_parts: vec![UploadedPartDoc {
            part_number: 1,
            etag: "\"e1\"".into(),
            size: 5_242_880,
        }],
        remaining_parts: vec![part(2), part(3)],
        progress: progress(),
    });
    agree(&CompleteResult {
        success: true,
        resume_token: "mpu_428e6316-e808-43a9-a36c-aea27104110f".into(),
        status: "completed".into(),
        url: "http://127.0.0.1:9000/partway/a.bin".into(),
        download_url: "http://127.0.0.1:9000/partway/a.bin?x-id=GetObject".into(),
        file_key: "uploads/dev/a.bin".into(),
        filename: "a.bin".into(),
        file_size: 12_582_912,
        etag: "\"0c78aef83f66abc1fa1e8477f296d394-3\"".into(),
        location: "http://127.0.0.1:9000/partway/a.bin".into(),
        provider: "S3".into(),
        bucket: "partway".into(),
        total_parts: 3,
    });
    agree(&AbortResult {
        success: true,
        resume_token: "mpu_428e6316-e808-43a9-a36c-aea27104110f".into(),
        status: "aborted".into(),
    });
    for next_after in [Some(1000), None] {
        agree(&PartsPage {
            success: true,
            parts: vec![part(1)],
            next_after,
        });
    }
    agree(&ProgressResult {
        success: true,
        progress: progress(),
    });
    for next_cursor in [Some("c2".to_string()), None] {
        agree(&UploadList {
            success: true,
            uploads: vec![status(true), status(false)],
            next_cursor,
        });
    }
    agree(&HealthDoc {
        status: "ready".into(),
    });
    agree(&ErrorBody {
        success: false,
        error: "UPLOAD_NOT_FOUND".into(),
        message: "no upload with this resume token".into(),
    });
}

#[test]
fn absent_fields_stay_absent() {
    let doc = serde_json::to_value(status(false)).unwrap();
    for key in ["completedAt", "url", "downloadUrl", "lastError"] {
        assert!(doc.get(key).is_none(), "{key} is written: {doc}");
    }
    // The last page says so with a null.
    let page = PartsPage {
        success: true,
        parts: vec![],
        next_after: None,
    };
    assert_eq!(
        serde_json::to_value(page).unwrap()["nextAfter"],
        Value::Null
    );
    // A request body carries only what is set.
    let init = InitRequest {
        filename: "a.bin".into(),
        file_size: 10,
        content_type: "application/octet-stream".into(),
        part_size: Some(5_242_880),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(init).unwrap(),
        json!({"filename": "a.bin", "fileSize": 10, "contentType": "application/octet-stream", "partSize": 5_242_880})
    );
}
