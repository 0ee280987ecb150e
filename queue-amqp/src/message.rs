//! The payload: [`JobMessage`] (JSON, camelCase), parsing a delivery body into one, and the
//! AMQP properties and headers it travels with ([`PARK_REASON_HEADER`], [`RETRIES_HEADER`]).

use lapin::{
    types::{AMQPValue, FieldTable},
    BasicProperties,
};
use serde::{Deserialize, Serialize};

use crate::topology::KINDS;

/// Header carrying the reason of a parked message (a string).
pub const PARK_REASON_HEADER: &str = "x-partway-park-reason";
/// Header carrying how many times a message went through a delay tier (an integer).
pub const RETRIES_HEADER: &str = "x-partway-retries";

/// The only payload this transport carries: a job id and its kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobMessage {
    pub job_id: uuid::Uuid,
    pub kind: String,
}

impl JobMessage {
    pub fn new(job_id: uuid::Uuid, kind: impl Into<String>) -> Self {
        Self {
            job_id,
            kind: kind.into(),
        }
    }
}

pub(crate) fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

pub(crate) fn header_u32(properties: &BasicProperties, name: &str) -> Option<u32> {
    let headers = properties.headers().as_ref()?;
    let value = headers.inner().get(name)?;
    let n: i128 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => (*v).into(),
        AMQPValue::Timestamp(v) => (*v).into(),
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// The string value of a header (for [`PARK_REASON_HEADER`]); `None` when absent or not a string.
pub fn header_str(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

pub(crate) fn message_properties(message_id: Option<&str>, headers: FieldTable) -> BasicProperties {
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(headers);
    if let Some(id) = message_id {
        props = props.with_message_id(id.into());
    }
    props
}

/// Parses a delivery body into a job message, or explains why it is malformed.
pub(crate) fn parse_message(body: &[u8]) -> Result<JobMessage, String> {
    let message: JobMessage =
        serde_json::from_slice(body).map_err(|e| format!("malformed job message: {e}"))?;
    if !KINDS.contains(&message.kind.as_str()) {
        return Err(format!(
            "malformed job message: unknown kind {:?}",
            message.kind
        ));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_message_json_is_camel_case_and_nothing_else() {
        let id = uuid::Uuid::nil();
        let json = serde_json::to_value(JobMessage::new(id, "init")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"jobId": "00000000-0000-0000-0000-000000000000", "kind": "init"})
        );
    }

    #[test]
    fn malformed_messages_are_detected() {
        assert!(parse_message(b"not json").is_err());
        assert!(parse_message(
            br#"{"jobId":"00000000-0000-0000-0000-000000000000","kind":"nope"}"#
        )
        .is_err());
        assert!(parse_message(
            br#"{"jobId":"00000000-0000-0000-0000-000000000000","kind":"abort"}"#
        )
        .is_ok());
    }
}
