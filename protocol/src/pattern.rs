//! The patterns the contract states for strings, each checked against a regex compiled
//! once.
//!
//! poem-openapi's `validator(pattern = …)` compiles its regex on every check (5.1.16,
//! `validation/pattern.rs`): a complete of 10,000 parts compiled the ETag pattern
//! 10,000 times, and every poll of the status route compiled the resume token's. The
//! documents and routes use `validator(custom = "…")` with a [`Matches`] instead; a
//! custom validator does not reach the spec, so [`SCHEMA_PATTERNS`] (and the routes'
//! list beside them in `api/`) say where each pattern goes, and `api/src/contract.rs`
//! writes it there: the published contract does not change.
use std::{fmt, sync::LazyLock};

use poem_openapi::validation::Validator;
use regex::Regex;

/// A pattern of the contract: its text (as the spec shows it) and its compiled regex.
pub struct Pattern {
    pub source: &'static str,
    regex: LazyLock<Regex>,
}

impl Pattern {
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

macro_rules! patterns {
    ($($(#[$doc:meta])* $name:ident = $source:literal;)*) => {
        $(
            $(#[$doc])*
            pub static $name: Pattern = Pattern {
                source: $source,
                regex: LazyLock::new(|| Regex::new($source).expect("a valid constant pattern")),
            };
        )*
        /// Every pattern, for the tests.
        pub static ALL: &[&Pattern] = &[$(&$name),*];
    };
}

patterns! {
    /// `mpu_<uuid v4>`, lowercase, as init answers it.
    RESUME_TOKEN = r"^mpu_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$";
    /// A file name: no path separators or control characters.
    FILENAME = r"^[^/\\\u0000-\u001f\u007f-\u009f]+$";
    /// Printable ASCII, not blank.
    CONTENT_TYPE = "^[ -~]*[!-~][ -~]*$";
    /// `S3` or `R2` (either case), or empty.
    PROVIDER = r"^([Ss]3|[Rr]2)?$";
    /// Blank, or an http(s) URL.
    S3_ENDPOINT = r"^(\s*|\s*https?://.*)$";
    /// Something other than white space and `"`.
    ETAG = r#"[^\s"]"#;
    /// An `allowedContentTypes` entry: `type/subtype` or `type/*`.
    ALLOWED_CONTENT_TYPE = r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}/(\*|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62})$";
    /// Printable ASCII.
    LABEL = "^[ -~]*$";
    /// An `Idempotency-Key` header value.
    IDEMPOTENCY_KEY = "^[!-~]([ -~]*[!-~])?[\\t ]*$";
    /// A list's metadata filter, `key:value`.
    METADATA_FILTER = r"^[A-Za-z0-9_-]{1,128}:[ -~]*$";
    /// A list's `nextCursor`.
    CURSOR = r"^[0-9]{1,12}\.[0-9]{9}_[0-9a-f]{32}$";
    /// A webhook's URL: http(s).
    WEBHOOK_URL = r"^\s*[hH][tT][tT][pP][sS]?://.*$";
    /// A UUID, lowercase.
    UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
}

/// The validator: `#[oai(validator(custom = "crate::pattern::Matches(&crate::pattern::ETAG)"))]`.
/// It refuses with the same words as poem-openapi's `pattern` validator.
pub struct Matches(pub &'static Pattern);

impl fmt::Display for Matches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pattern(\"{}\")", self.0.source)
    }
}

impl<T: AsRef<str>> Validator<T> for Matches {
    fn check(&self, value: &T) -> bool {
        self.0.is_match(value.as_ref())
    }
}

/// Where a pattern goes in the spec: a property of a component schema, or the items
/// of an array property.
pub enum SchemaPlace {
    Property,
    Items,
}

/// The request documents' patterns: (schema, property, where, pattern).
pub static SCHEMA_PATTERNS: &[(&str, &str, SchemaPlace, &Pattern)] = &[
    ("InitRequest", "filename", SchemaPlace::Property, &FILENAME),
    (
        "InitRequest",
        "contentType",
        SchemaPlace::Property,
        &CONTENT_TYPE,
    ),
    ("InitRequest", "provider", SchemaPlace::Property, &PROVIDER),
    (
        "InitRequest",
        "s3Endpoint",
        SchemaPlace::Property,
        &S3_ENDPOINT,
    ),
    (
        "TokenRequest",
        "resumeToken",
        SchemaPlace::Property,
        &RESUME_TOKEN,
    ),
    ("CompletePart", "etag", SchemaPlace::Property, &ETAG),
    (
        "CompleteRequest",
        "resumeToken",
        SchemaPlace::Property,
        &RESUME_TOKEN,
    ),
    ("PartReport", "etag", SchemaPlace::Property, &ETAG),
    (
        "BrowserTokenRequest",
        "allowedContentTypes",
        SchemaPlace::Items,
        &ALLOWED_CONTENT_TYPE,
    ),
    (
        "BrowserTokenRequest",
        "label",
        SchemaPlace::Property,
        &LABEL,
    ),
    ("WebhookRequest", "url", SchemaPlace::Property, &WEBHOOK_URL),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles_and_says_what_poem_openapi_says() {
        for pattern in ALL {
            assert!(Regex::new(pattern.source).is_ok(), "{}", pattern.source);
            // Forces the LazyLock: a bad pattern would panic here, not in a request.
            let _ = pattern.is_match("");
        }
        assert_eq!(
            Matches(&ETAG).to_string(),
            poem_openapi::validation::Pattern::new(ETAG.source).to_string()
        );
        assert!(Validator::<String>::check(
            &Matches(&ETAG),
            &"\"abc\"".to_string()
        ));
        assert!(!Validator::<String>::check(
            &Matches(&ETAG),
            &" \"\" ".to_string()
        ));
    }
}
