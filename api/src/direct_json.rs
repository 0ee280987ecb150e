//! [`DirectJson`]: a JSON answer serialized by serde straight from its document.
//!
//! poem-openapi's `Json<T>` answers through `ToJSON`, which first builds a
//! `serde_json::Value` tree: for init's 10,000 part URLs that is a second copy of
//! every URL and some 60,000 small allocations before the body is even written
//! (issue 11: peak memory under large answers). The documents derive serde too, and
//! `protocol`'s tests check both serializations agree, so the large answers skip the
//! tree. The published schema is `Json<T>`'s.
use partway_core::memory;
use partway_protocol::dto::{InitResult, PartDoc, ResumeResult};
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

/// About how many bytes an answer's JSON takes, so its buffer is allocated once: a
/// buffer grown by doubling past 13 MB holds 8 + 16 MB while it copies.
pub trait JsonSize {
    fn json_size(&self) -> usize;
}

/// A part's fields and punctuation beside its URL, with room for the widest numbers.
const PART_DOC_OVERHEAD: usize = 192;
/// The fields around the part list, beside the texts counted separately.
const ANSWER_OVERHEAD: usize = 1024;

fn parts_json_size(parts: &[PartDoc]) -> usize {
    parts.iter().map(|p| p.url.len() + PART_DOC_OVERHEAD).sum()
}

impl JsonSize for InitResult {
    fn json_size(&self) -> usize {
        ANSWER_OVERHEAD
            + 2 * self.file_key.len()
            + self.upload_id.len()
            + parts_json_size(&self.part_urls)
    }
}

impl JsonSize for ResumeResult {
    fn json_size(&self) -> usize {
        ANSWER_OVERHEAD
            + 2 * (self.file_key.len() + self.filename.len())
            + self.upload_id.len()
            + self
                .uploaded_parts
                .iter()
                .map(|p| p.etag.len() + 96)
                .sum::<usize>()
            + parts_json_size(&self.remaining_parts)
    }
}

impl<T: Serialize + JsonSize + Send> IntoResponse for DirectJson<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(self.0.json_size());
        let written = serde_json::to_writer(&mut body, &self.0);
        drop(self.0);
        if body.len() >= memory::LARGE_ANSWER {
            memory::release_free_memory();
        }
        match written {
            Ok(()) => Response::builder()
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

impl<T: ToJSON + Serialize + JsonSize + Send> ApiResponse for DirectJson<T> {
    fn meta() -> MetaResponses {
        Json::<T>::meta()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// A document's JSON text, answered as it is: the status route keeps the text in the
/// progress cache and answers polls with it, without parsing it back into a document
/// and writing it out again. The published schema is `Json<T>`'s.
pub struct JsonText<T> {
    text: String,
    document: std::marker::PhantomData<fn() -> T>,
}

impl<T: ToJSON> JsonText<T> {
    /// The text of `doc`, as `Json<T>` would write it.
    pub fn of(doc: &T) -> Self {
        Self::trusted(doc.to_json_string())
    }

    /// Text written earlier by [`JsonText::of`] for a `T` (a cached answer).
    pub fn trusted(text: String) -> Self {
        Self {
            text,
            document: std::marker::PhantomData,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<T: Send> IntoResponse for JsonText<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .header(header::CONTENT_TYPE, DirectJson::<T>::CONTENT_TYPE_HEADER)
            .body(self.text)
    }
}

impl<T: ToJSON + Send> ApiResponse for JsonText<T> {
    fn meta() -> MetaResponses {
        Json::<T>::meta()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn init_doc() -> InitResult {
        InitResult {
            success: true,
            resume_token: "mpu_6f1c0a52-1d7e-4b7a-9a53-0d2b6f1e8c11".into(),
            upload_id: "2~abc+def/ghi=".into(),
            file_key: "uploads/é \"quoted\" name.bin".into(),
            part_urls: (1..=3)
                .map(|n| PartDoc {
                    part_number: n,
                    url: Arc::new(format!(
                        "http://127.0.0.1:9000/b/k?partNumber={n}&X-Amz-Signature=ab%2F"
                    )),
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
        }
    }

    #[tokio::test]
    async fn the_answer_is_what_poem_openapi_would_have_written() {
        let doc = init_doc();
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

    #[tokio::test]
    async fn a_cached_text_is_answered_as_json_would_have_answered_its_document() {
        let doc = init_doc();
        let cached = JsonText::of(&doc).as_str().to_string();
        let response = JsonText::<InitResult>::trusted(cached).into_response();
        let expected = Json(init_doc()).into_response();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            expected.headers()[header::CONTENT_TYPE]
        );
        let body = response.into_body().into_vec().await.expect("body");
        let want = expected.into_body().into_vec().await.expect("body");
        assert_eq!(body, want);
    }

    #[test]
    fn the_buffer_is_sized_for_the_whole_answer() {
        let mut doc = init_doc();
        doc.file_key = "uploads/".to_string() + &"é\"".repeat(127);
        doc.part_urls[0].part_number = 10_000;
        doc.part_urls[0].start = u64::MAX;
        doc.part_urls[0].end = u64::MAX;
        doc.part_urls[0].size = u64::MAX;
        let written = serde_json::to_vec(&doc).expect("JSON").len();
        assert!(
            doc.json_size() >= written,
            "{} < {written}",
            doc.json_size()
        );
    }
}
