//! Path parameters whose form the spec states as a pattern, checked against a regex
//! compiled once.
//!
//! poem-openapi's `validator(pattern = …)` compiles its regex on every check
//! (5.1.16, `validation/pattern.rs`): on the status route, the one polled most, that
//! was a fifth of the CPU (issue 10's row 3). The schema is the same string with the
//! same pattern, so the published contract does not change.
use std::borrow::Cow;

use partway_protocol::pattern::RESUME_TOKEN;
use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromParameter, ParseResult, Type},
};

/// What a malformed token's parse error says (`error.rs` answers it as 404).
pub const NOT_A_RESUME_TOKEN: &str = "not a resume token";

/// An upload's resume token in a path. A malformed one is refused like a token that
/// names nothing (`error.rs`).
pub struct ResumeTokenParam(pub String);

impl Type for ResumeTokenParam {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            pattern: Some(RESUME_TOKEN.source.to_string()),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromParameter for ResumeTokenParam {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        if RESUME_TOKEN.is_match(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(ParseError::custom(NOT_A_RESUME_TOKEN))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_token_matches_the_pattern_or_is_refused() {
        let token = "mpu_6f1c0a52-1d7e-4b7a-9a53-0d2b6f1e8c11";
        let parsed = ResumeTokenParam::parse_from_parameter(token)
            .ok()
            .map(|p| p.0);
        assert_eq!(parsed.as_deref(), Some(token));
        for bad in [
            "",
            "mpu_6F1C0A52-1D7E-4B7A-9A53-0D2B6F1E8C11",
            "mpu_6f1c0a52-1d7e-1b7a-9a53-0d2b6f1e8c11",
            "mpu_6f1c0a52-1d7e-4b7a-9a53-0d2b6f1e8c11 ",
            "6f1c0a52-1d7e-4b7a-9a53-0d2b6f1e8c11",
        ] {
            assert!(
                ResumeTokenParam::parse_from_parameter(bad).is_err(),
                "{bad:?}"
            );
        }
    }
}
