//! Issue 11 (DESIGN §7, at rest and in answers) over the real service: `lastError`
//! texts, download URLs, sealed credentials, data-dir modes and the development key.
use crate::common::*;
use partway_core::domain::{last_error_message, ErrorCode};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::json;

/// Issue 11 item 3: `lastError` and a `?wait` error carry the code's fixed text; a row
/// an earlier version wrote with a raw reason shows the fixed text too.
#[tokio::test]
async fn last_error_is_a_fixed_text_per_code() {
    let app = TestApp::spawn().await;
    let file = test_bytes(FILE_SIZE, 11);
    let init = app.init("gap.bin", FILE_SIZE).await;
    let token = init["resumeToken"].as_str().unwrap();
    let first = init["partUrls"][0].clone();
    app.put_part(first["url"].as_str().unwrap(), slice(&file, &first))
        .await;
    let (status, body) = app
        .post(
            "/api/v1/upload/multipart/complete?wait=30",
            json!({"resumeToken": token}),
        )
        .await;
    let fixed = last_error_message(ErrorCode::IncompleteParts);
    assert_error(status, &body, 400, "INCOMPLETE_PARTS");
    assert_eq!(body["message"], json!(fixed));

    // A row with a raw reason (as versions before issue 11 stored them); changed
    // before the status is read, so no cached document hides it.
    let id = partway_core::domain::ResumeToken::parse(token).unwrap().uuid();
    let row = partway_entity::upload::Entity::find_by_id(id)
        .one(app.app.db())
        .await
        .unwrap()
        .unwrap();
    let mut legacy: partway_entity::upload::ActiveModel = row.into();
    legacy.last_error_code = Set(Some("SERVICE_UNAVAILABLE".into()));
    legacy.last_error_message = Set(Some(
        "storage refused to complete: AccessDenied: bucket at 10.9.8.7".into(),
    ));
    legacy.update(app.app.db()).await.unwrap();
    let (_, doc) = app.get(&format!("/api/v1/upload/multipart/{token}")).await;
    assert_eq!(
        doc["lastError"],
        json!({"code": "SERVICE_UNAVAILABLE", "message": last_error_message(ErrorCode::ServiceUnavailable)})
    );
    app.app.shutdown().await;
}
