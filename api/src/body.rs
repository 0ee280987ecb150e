//! `ContractJson<T>`: a JSON request body whose schema comes from `T`'s `Object`
//! derive (so openapi.yaml marks required fields required) but which is parsed by
//! serde, so each failure maps to the contract's code for the field at fault.
use partway_core::domain::ErrorCode;
use poem::{Request, RequestBody};
use poem_openapi::{
    payload::{ParsePayload, Payload},
    registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry},
    types::Type,
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
};
use serde::de::DeserializeOwned;
use std::time::Duration;

use crate::{error::ApiError, MAX_BODY_BYTES};

/// Which code a bad field of this body gets.
pub trait ContractBody: DeserializeOwned + Type + Send {
    /// The code for a missing required field.
    fn missing_code(field: &str) -> ErrorCode;
    /// The code for a field of the wrong type or range.
    fn invalid_code(field: &str) -> ErrorCode;
}

pub struct ContractJson<T>(pub T);

/// How long a client may take to send a JSON body (`PARTWAY_BODY_READ_TIMEOUT`),
/// attached to every request by [`crate::app`].
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

/// When no [`BodyReadTimeout`] is attached (the config's default).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A 408 in the envelope's shape, with `Connection: close`. `error::to_envelope`
/// passes a 408 through as it is.
fn request_timeout(deadline: Duration) -> poem::Error {
    let mut response = crate::error::envelope(
        ErrorCode::InvalidJson,
        &format!(
            "the body was not received within {}s",
            deadline.as_secs_f64()
        ),
    );
    response.set_status(poem::http::StatusCode::REQUEST_TIMEOUT);
    response.headers_mut().insert(
        poem::http::header::CONNECTION,
        poem::http::HeaderValue::from_static("close"),
    );
    poem::Error::from_response(response)
}

impl<T: ContractBody> Payload for ContractJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        matches!(content_type.parse::<mime::Mime>(), Ok(m) if m.type_() == "application"
            && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json")))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ContractBody> ParsePayload for ContractJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let too_large = || {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body may be at most {MAX_BODY_BYTES} bytes"),
            )
        };
        let declared = request
            .header(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
            return Err(too_large().into());
        }
        // Slow clients (DESIGN §7): poem 3.1 exposes neither hyper's header-read
        // timeout nor a body deadline, and its `idle_timeout` only fires when no byte
        // arrives at all, so a client trickling its body would hold the request open
        // for ever. The deadline is enforced here, where every JSON body is read: past
        // `PARTWAY_BODY_READ_TIMEOUT` the read is dropped and the answer is 408; hyper
        // then closes the connection because the body was not read to its end.
        let deadline = request
            .data::<BodyReadTimeout>()
            .map_or(DEFAULT_BODY_READ_TIMEOUT, |t| t.0);
        let read = body.take()?.into_bytes_limit(MAX_BODY_BYTES);
        let Ok(read) = tokio::time::timeout(deadline, read).await else {
            return Err(request_timeout(deadline));
        };
        let data = match read {
            Ok(data) => data,
            Err(poem::error::ReadBodyError::PayloadTooLarge) => return Err(too_large().into()),
            Err(e) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidJson,
                    format!("the body could not be read: {e}"),
                )
                .into())
            }
        };
        parse_body::<T>(&data).map(ContractJson).map_err(Into::into)
    }
}

pub fn parse_body<T: ContractBody>(data: &[u8]) -> Result<T, ApiError> {
    // serde would take an array as a struct's tuple form; the contract wants an object.
    if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(data) {
                Err(e) => ApiError::new(
                    ErrorCode::InvalidJson,
                    format!("the body is not valid JSON: {e}"),
                ),
                Ok(_) => ApiError::new(ErrorCode::InvalidJson, "the body must be a JSON object"),
            },
        );
    }
    let mut de = serde_json::Deserializer::from_slice(data);
    let parsed = serde_path_to_error::deserialize::<_, T>(&mut de);
    if parsed.is_ok() {
        if let Err(trailing) = de.end() {
            return Err(ApiError::new(
                ErrorCode::InvalidJson,
                format!("the body is not valid JSON: {trailing}"),
            ));
        }
    }
    match parsed {
        Ok(value) => Ok(value),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                return Err(ApiError::new(
                    ErrorCode::InvalidJson,
                    format!("the body is not valid JSON: {inner}"),
                ));
            }
            let text = inner.to_string();
            if let Some(field) = text
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                let at = if path == "." || path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
                return Err(ApiError::new(
                    T::missing_code(field),
                    format!("{at} is required"),
                ));
            }
            if path == "." || path.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidJson,
                    "the body must be a JSON object",
                ));
            }
            let top = path
                .split(['.', '['])
                .next()
                .unwrap_or_default()
                .to_string();
            let detail = text.split(" at line").next().unwrap_or(&text).to_string();
            Err(ApiError::new(
                T::invalid_code(&top),
                format!("{path}: {detail}"),
            ))
        }
    }
}

impl<'a, T: ContractBody> ApiExtractor<'a> for ContractJson<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(ct) if <Self as Payload>::check_content_type(ct) => {
                <Self as ParsePayload>::from_request(request, body).await
            }
            _ => Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Content-Type must be application/json",
            )
            .into()),
        }
    }
}
