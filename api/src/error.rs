//! The one place where failures become HTTP: every error, including the framework's
//! own (bad JSON, wrong content type, unknown route, oversize body, bad query
//! value), leaves as `{"success": false, "error": CODE, "message": …}`.
use partway_core::{
    domain::{ErrorCode, RateDecision, ValidationError},
    AppError,
};
use partway_protocol::dto::ErrorBody;
use poem::{
    error::ResponseError,
    http::{header, StatusCode},
    Response,
};
use poem_openapi::{
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
    ApiResponse,
};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::new(e.code, e.message)
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::Client { code, message } => ApiError::new(code, message),
            AppError::Unavailable(detail) => {
                tracing::warn!(%detail, "dependency unavailable");
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "a service partway depends on is unavailable; retry shortly",
                )
            }
            AppError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ApiError::new(ErrorCode::InternalError, "internal error")
            }
        }
    }
}

pub fn envelope(code: ErrorCode, message: &str) -> Response {
    let body = serde_json::json!({"success": false, "error": code.as_str(), "message": message});
    Response::builder()
        .status(
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        )
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body.to_string())
}

/// The `RateLimit-*` headers (IETF draft `draft-ietf-httpapi-ratelimit-headers`), on
/// every answer of a limited route: the limit's N, what could still be sent at once,
/// and the seconds until the whole burst is back.
pub fn set_rate_limit_headers(response: &mut Response, decision: &RateDecision) {
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", decision.limit.into());
    headers.insert("ratelimit-remaining", decision.remaining.into());
    headers.insert("ratelimit-reset", decision.reset_secs().into());
}

/// Over the limit: 429 `RATE_LIMITED` in the envelope, `Retry-After` in whole seconds
/// (rounded up) and the `RateLimit-*` headers.
pub fn rate_limited(decision: &RateDecision) -> Response {
    let retry_after = decision.retry_after_secs();
    let mut response = envelope(
        ErrorCode::RateLimited,
        &format!("too many requests; retry in {retry_after} s"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after.into());
    set_rate_limit_headers(&mut response, decision);
    response
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn as_response(&self) -> Response {
        envelope(self.code, &self.message)
    }
}

/// Documents the error statuses of every operation.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let statuses: [(u16, &str); 10] = [
            (400, "Invalid input (see `error` for the code)"),
            (401, "Missing or invalid API key"),
            (404, "Unknown upload or route"),
            (
                409,
                "The upload's state or its parts plan does not allow this",
            ),
            (410, "The upload expired"),
            (413, "Body too large"),
            (415, "Content-Type must be application/json"),
            (
                429,
                "`RATE_LIMITED`: over the credential's (or, without a valid credential, the client address's) request rate limit; retry after `Retry-After` seconds",
            ),
            (500, "Internal error (no details are exposed)"),
            (
                503,
                "A dependency (database, queue, storage) is unavailable",
            ),
        ];
        MetaResponses {
            responses: statuses
                .into_iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: ErrorBody::schema_ref(),
                    }],
                    headers: if status == 429 {
                        rate_limit_headers()
                    } else {
                        vec![]
                    },
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorBody::register(registry);
    }
}

/// The message for a parameter the spec's validators refused: the domain's wording
/// where a bare pattern would not help.
fn param_message(name: &str, reason: &str) -> String {
    match name {
        "metadata" => "metadata must be key:value, e.g. metadata=fingerprint:3f2a9c (key: A-Z, a-z, 0-9, '_', '-'; value: printable ASCII)".into(),
        "cursor" => "cursor is not one this server issued".into(),
        "Idempotency-Key" => "Idempotency-Key must be 1 to 255 printable ASCII characters, not starting with a space".into(),
        _ => format!("parameter `{name}` is not valid: {reason}"),
    }
}

fn rate_limit_headers() -> Vec<MetaHeader> {
    [
        (
            "Retry-After",
            "Seconds until a request can pass (rounded up)",
        ),
        (
            "RateLimit-Limit",
            "Requests allowed at once, and per period",
        ),
        (
            "RateLimit-Remaining",
            "Requests that could still be made at once (0)",
        ),
        (
            "RateLimit-Reset",
            "Seconds until the whole limit is available again",
        ),
    ]
    .into_iter()
    .map(|(name, description)| MetaHeader {
        name: name.into(),
        description: Some(description.into()),
        required: true,
        deprecated: false,
        schema: u64::schema_ref(),
    })
    .collect()
}

/// Maps any error reaching the top of the app to the envelope.
pub fn to_envelope(err: poem::Error) -> Response {
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return api.as_response();
    }
    let status = err.status();
    if status == StatusCode::REQUEST_TIMEOUT {
        // A body read past its deadline (`body.rs`), already in the envelope.
        return err.into_response();
    }
    // A malformed resume token in a path fails its typed parameter's parse
    // (`params.rs`); poem-openapi names the error after the token's place in the path
    // (`param0`), so it is known by its message.
    let bad_resume_token = err
        .downcast_ref::<poem_openapi::error::ParsePathError>()
        .is_some_and(|e| e.reason.contains(crate::params::NOT_A_RESUME_TOKEN));
    let (code, message): (ErrorCode, String) = if bad_resume_token {
        // Like a well-formed token that names nothing (protocol::token): no probing.
        (ErrorCode::UploadNotFound, "no such upload".into())
    } else if let Some(e) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
        (
            ErrorCode::InvalidParameter,
            param_message(e.name, &e.reason),
        )
    } else if err.is::<poem_openapi::error::ParsePathError>() {
        (
            ErrorCode::InvalidParameter,
            "partNumber must be a whole number from 1 to 10000".into(),
        )
    } else if err.is::<poem_openapi::error::AuthorizationError>() {
        (
            ErrorCode::Unauthorized,
            "an API key is required (x-api-key header or Authorization: Bearer)".into(),
        )
    } else if err.is::<poem_openapi::error::ContentTypeError>() {
        (
            ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/json".into(),
        )
    } else {
        match status {
            StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such route".into()),
            StatusCode::METHOD_NOT_ALLOWED => (
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route".into(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => {
                (ErrorCode::PayloadTooLarge, "request body too large".into())
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                ErrorCode::UnsupportedMediaType,
                "Content-Type must be application/json".into(),
            ),
            StatusCode::UNAUTHORIZED => (ErrorCode::Unauthorized, "an API key is required".into()),
            StatusCode::SERVICE_UNAVAILABLE => {
                (ErrorCode::ServiceUnavailable, "service unavailable".into())
            }
            s if s.is_client_error() => (ErrorCode::InvalidParameter, err.to_string()),
            _ => {
                tracing::error!(error = %err, "unhandled error");
                (ErrorCode::InternalError, "internal error".into())
            }
        }
    };
    envelope(code, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let text = response.into_body().into_string().await.expect("body");
        (status, serde_json::from_str(&text).expect("json"))
    }

    #[tokio::test]
    async fn use_case_errors_keep_their_code_and_hide_internals() {
        let client = ApiError::from(AppError::client(ErrorCode::UploadExpired, "expired"));
        assert_eq!(
            body_of(client.as_response()).await,
            (
                410,
                serde_json::json!({"success": false, "error": "UPLOAD_EXPIRED", "message": "expired"})
            )
        );
        let internal = ApiError::from(AppError::Internal(
            "database: relation \"uploads\" at db.internal:5432".into(),
        ));
        let (status, body) = body_of(internal.as_response()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (500, Some("INTERNAL_ERROR"))
        );
        assert!(!body.to_string().contains("db.internal"), "{body}");
        let down = ApiError::from(AppError::Unavailable("storage: 10.0.0.7 refused".into()));
        let (status, body) = body_of(down.as_response()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("SERVICE_UNAVAILABLE"))
        );
        assert!(!body.to_string().contains("10.0.0.7"), "{body}");
    }

    #[tokio::test]
    async fn framework_errors_become_envelopes() {
        let (status, body) =
            body_of(to_envelope(poem::Error::from_status(StatusCode::NOT_FOUND))).await;
        assert_eq!((status, body["error"].as_str()), (404, Some("NOT_FOUND")));
        let (status, body) = body_of(to_envelope(poem::Error::from_status(
            StatusCode::METHOD_NOT_ALLOWED,
        )))
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (405, Some("METHOD_NOT_ALLOWED"))
        );
        let (status, body) = body_of(to_envelope(poem::Error::from_status(
            StatusCode::BAD_GATEWAY,
        )))
        .await;
        assert_eq!(
            (status, body["error"].as_str(), body["message"].as_str()),
            (500, Some("INTERNAL_ERROR"), Some("internal error"))
        );
        let validation = ValidationError::new(ErrorCode::InvalidParameter, "limit must be …");
        let (status, body) = body_of(ApiError::from(validation).as_response()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("INVALID_PARAMETER"))
        );
    }

    #[tokio::test]
    async fn rate_limited_is_a_429_envelope_with_whole_second_headers() {
        let decision = RateDecision {
            allowed: false,
            limit: 10,
            remaining: 0,
            reset: std::time::Duration::from_millis(9_100),
            retry_after: std::time::Duration::from_millis(1_200),
        };
        let response = rate_limited(&decision);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("retry-after").as_deref(), Some("2"));
        assert_eq!(header("ratelimit-limit").as_deref(), Some("10"));
        assert_eq!(header("ratelimit-remaining").as_deref(), Some("0"));
        assert_eq!(header("ratelimit-reset").as_deref(), Some("10"));
        let (status, body) = body_of(response).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (429, Some("RATE_LIMITED"))
        );
        assert_eq!(body["success"], serde_json::json!(false));
    }
}
