//! [`DirectJson`]: a JSON answer serialized by serde straight from its document.
//!
//! poem-openapi's `Json<T>` answers through `ToJSON`, which first builds a
//! `serde_json::Value` tree: for init's 10,000 part URLs that is a second copy of
//! every URL and some 60,000 small allocations before the body is even written
//! (issue 11: peak memory under large answers). The documents derive serde too, and
//! `protocol`'s tests check both serializations agree, so the large answers skip the
//! tree. The published schema is `Json<T>`'s.
use poem::{error::ResponseError, http::header, IntoResponse, Response};
use poem_openapi::{
    payload::{Json, Payload},
    registry::{MetaResponses, MetaSchemaRef, Registry},
    types::{ToJSON, Type},
    ApiResponse,
};
use serde::Serialize;

pub struct DirectJson<T>(pub T);

impl<T: Type> Payload for DirectJson<T> {
    const CONTENT_TYPE: &'static str = Json::<T>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        Json::<T>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for DirectJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => Response::builder()
                .header(header::CONTENT_TYPE, Self::CONTENT_TYPE_HEADER)
                .body(body),
            // The documents are plain strings and numbers: this cannot happen, but an
            // answer must never panic.
            Err(e) => {
                tracing::error!("cannot serialize an answer: {e}");
                crate::error::ApiError::new(
                    partway_core::domain::ErrorCode::InternalError,
                    "the answer could not be written",
                )
                .as_response()
            }
        }
    }
}

impl<T> DirectJson<T> {
    const CONTENT_TYPE_HEADER: &'static str = "application/json; charset=utf-8";
}

impl<T: ToJSON + Serialize + Send> ApiResponse for DirectJson<T> {
    fn meta() -> MetaResponses {
        Json::<T>::meta()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use partway_protocol::dto::{InitResult, PartDoc};

    use super::*;

    #[tokio::test]
    async fn the_answer_is_what_poem_openapi_would_have_written() {
        let doc = InitResult {
            success: true,
            resume_token: "mpu_6f1c0a52-1d7e-4b7a-9a53-0d2b6f1e8c11".into(),
            upload_id: "2~abc+def/ghi=".into(),
            file_key: "uploads/é \"quoted\" name.bin".into(),
            part_urls: (1..=3)
                .map(|n| PartDoc {
                    part_number: n,
                    url: format!("http://127.0.0.1:9000/b/k?partNumber={n}&X-Amz-Signature=ab%2F"),
                    size: 5 << 20,
                    start: u64::from(n - 1) * (5 << 20),
                    end: u64::from(n) * (5 << 20) - 1,
                    expires_at: "2026-12-06T10:00:00Z".into(),
                })
                .collect(),
            total_parts: 3,
            part_size: 5 << 20,
            file_size: 15 << 20,
            expires_in: 604_800,
            expires_at: "2026-12-06T10:00:00Z".into(),
            status: "active".into(),
        };
        let poem_value = doc.to_json().expect("a JSON value");
        let response = DirectJson(doc).into_response();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        let body = response.into_body().into_vec().await.expect("body");
        let direct: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(direct, poem_value);
    }
}
