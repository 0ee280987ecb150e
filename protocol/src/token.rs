//! Resume tokens: `mpu_<uuid v4>` (DESIGN §2).
//!
//! Parsing is strict (one canonical spelling only) so a token maps to exactly one
//! database row and lookalike strings cannot be used to probe; callers answer any
//! `None` with `UPLOAD_NOT_FOUND`.

use std::fmt;

use uuid::{Uuid, Variant, Version};

const PREFIX: &str = "mpu_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResumeToken(Uuid);

impl ResumeToken {
    /// What [`ResumeToken::parse`] accepts, as a JSON Schema pattern (openapi.yaml
    /// declares it; a test checks that both agree).
    pub const PATTERN: &'static str =
        "^mpu_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$";

    /// A fresh token; v4 gives 122 random bits, so tokens are unguessable.
    pub fn new_random() -> ResumeToken {
        ResumeToken(Uuid::new_v4())
    }

    /// Accepts only `mpu_` followed by a lowercase hyphenated v4 uuid.
    pub fn parse(s: &str) -> Option<ResumeToken> {
        let rest = s.strip_prefix(PREFIX)?;
        // Uuid::parse_str also takes braced, urn and unhyphenated forms; the length
        // check plus the round-trip comparison leave only the canonical one.
        if rest.len() != 36 {
            return None;
        }
        let uuid = Uuid::parse_str(rest).ok()?;
        let token = ResumeToken::from_uuid(uuid)?;
        let mut buf = Uuid::encode_buffer();
        if uuid.hyphenated().encode_lower(&mut buf) != rest {
            return None;
        }
        Some(token)
    }

    /// Wraps a uuid read back from storage (e.g. a database column); `None` unless
    /// it is an RFC 4122 v4 uuid, the only kind this service issues.
    pub fn from_uuid(uuid: Uuid) -> Option<ResumeToken> {
        (uuid.get_version() == Some(Version::Random) && uuid.get_variant() == Variant::RFC4122)
            .then_some(ResumeToken(uuid))
    }

    /// The token of an upload row: its id, which this service created with
    /// [`ResumeToken::new_random`], is used as it is.
    pub fn of_row(id: Uuid) -> ResumeToken {
        ResumeToken(id)
    }

    pub fn uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.0.hyphenated())
    }
}

impl serde::Serialize for ResumeToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ResumeToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ResumeToken::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("invalid resume token: expected mpu_<uuid v4>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "0b6f7a7e-3c1d-4e2f-9a8b-1c2d3e4f5a6b";

    #[test]
    fn random_round_trips() {
        for _ in 0..100 {
            let t = ResumeToken::new_random();
            let s = t.to_string();
            assert!(s.starts_with("mpu_"));
            assert_eq!(s.len(), 40);
            assert_eq!(ResumeToken::parse(&s), Some(t));
            assert_eq!(t.uuid().get_version(), Some(Version::Random));
        }
        assert_ne!(ResumeToken::new_random(), ResumeToken::new_random());
    }

    #[test]
    fn parses_canonical_v4() {
        let t = ResumeToken::parse(&format!("mpu_{V4}")).expect("valid");
        assert_eq!(t.uuid().to_string(), V4);
        assert_eq!(t.to_string(), format!("mpu_{V4}"));
    }

    #[test]
    fn rejects_everything_else() {
        let cases = [
            String::new(),
            "mpu_".to_owned(),
            V4.to_owned(),                        // missing prefix
            format!("MPU_{V4}"),                  // prefix case
            format!("mpu-{V4}"),                  // wrong separator
            format!("mpu_{}", V4.to_uppercase()), // uppercase
            format!("mpu_{V4}x"),                 // trailing char
            format!("mpu_{V4} "),                 // trailing space
            format!(" mpu_{V4}"),                 // leading space
            format!("xmpu_{V4}"),                 // leading char
            format!("mpu_{V4}\n"),
            format!("mpu_{}", V4.replace('-', "")), // simple form
            format!("mpu_{{{V4}}}"),                // braced
            format!("mpu_urn:uuid:{V4}"),           // urn
            format!("mpu_{}", &V4[..35]),           // truncated
            "mpu_6ba7b810-9dad-11d1-80b4-00c04fd430c8".to_owned(), // v1
            "mpu_017f22e2-79b0-7cc3-98c4-dc0c0c07398f".to_owned(), // v7
            "mpu_00000000-0000-0000-0000-000000000000".to_owned(), // nil
            "mpu_0b6f7a7e-3c1d-4e2f-ca8b-1c2d3e4f5a6b".to_owned(), // v4 bits, wrong variant
            "mpu_0b6f7a7e-3c1d-4e2f-9a8b-1c2d3e4f5a6g".to_owned(), // non-hex
            "mpu_0b6f7a7e3-c1d-4e2f-9a8b-1c2d3e4f5a6b".to_owned(), // hyphen moved
        ];
        for c in &cases {
            assert_eq!(ResumeToken::parse(c), None, "{c:?}");
        }
    }

    #[test]
    fn from_uuid_only_v4() {
        let v4 = Uuid::parse_str(V4).expect("uuid");
        assert!(ResumeToken::from_uuid(v4).is_some());
        let v1 = Uuid::parse_str("6ba7b810-9dad-11d1-80b4-00c04fd430c8").expect("uuid");
        assert!(ResumeToken::from_uuid(v1).is_none());
        assert!(ResumeToken::from_uuid(Uuid::nil()).is_none());
    }

    #[test]
    fn serde_as_string() {
        let t = ResumeToken::parse(&format!("mpu_{V4}")).expect("valid");
        let json = serde_json::to_string(&t).expect("serialize");
        assert_eq!(json, format!("\"mpu_{V4}\""));
        assert_eq!(serde_json::from_str::<ResumeToken>(&json).ok(), Some(t));
        let owned: serde_json::Value = serde_json::Value::String(format!("mpu_{V4}"));
        assert_eq!(serde_json::from_value::<ResumeToken>(owned).ok(), Some(t));
        assert!(serde_json::from_str::<ResumeToken>(&format!("\"{V4}\"")).is_err());
        assert!(serde_json::from_str::<ResumeToken>("42").is_err());
    }
}
