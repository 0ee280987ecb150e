//! What the published contract says beyond what poem-openapi's derives can: the links
//! from init to the operations that take its `resumeToken` (stateful clients and
//! fuzzers follow them), `nullable` on optional request fields (serde reads `null` as
//! absent), each event of the events stream (OpenAPI 3.0 describes one event where
//! poem-openapi writes an array), the `pattern` of every string checked by a compiled
//! [`partway_protocol::pattern`] (a custom validator does not reach the spec), and the
//! `Allow` header of every 405 (RFC 9110), taken from the spec.
use partway_protocol::pattern::{self, Pattern, SchemaPlace};
use poem::{
    http::{header, HeaderValue, StatusCode},
    Response,
};
use serde_yaml::{Mapping, Value};

/// The request bodies whose optional fields accept `null` as "absent".
const REQUEST_SCHEMAS: [&str; 6] = [
    "InitRequest",
    "TokenRequest",
    "CompleteRequest",
    "PartReport",
    "BrowserTokenRequest",
    "WebhookRequest",
];

/// The routes' parameters checked by a compiled pattern: (path, method, name, pattern).
const PARAMETER_PATTERNS: [(&str, &str, &str, &Pattern); 8] = [
    (
        "/api/v1/upload/multipart/init",
        "post",
        "Idempotency-Key",
        &pattern::IDEMPOTENCY_KEY,
    ),
    (
        "/api/v1/upload/multipart/complete",
        "post",
        "Idempotency-Key",
        &pattern::IDEMPOTENCY_KEY,
    ),
    (
        "/api/v1/uploads",
        "get",
        "metadata",
        &pattern::METADATA_FILTER,
    ),
    ("/api/v1/uploads", "get", "cursor", &pattern::CURSOR),
    (
        "/api/v1/browser-tokens/{id}",
        "delete",
        "id",
        &pattern::UUID,
    ),
    ("/api/v1/webhooks/{id}", "delete", "id", &pattern::UUID),
    (
        "/api/v1/webhooks/{id}/deliveries",
        "get",
        "id",
        &pattern::UUID,
    ),
    ("/api/v1/webhooks/{id}/test", "post", "id", &pattern::UUID),
];

/// Sets `pattern` where poem-openapi's derive would have put it: after the numeric
/// and length keywords, before the array and object ones (and before `nullable`,
/// which is added later).
fn set_pattern(schema: &mut Value, pattern: &Pattern) -> bool {
    let Value::Mapping(map) = schema else {
        return false;
    };
    const AFTER: [&str; 6] = [
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "nullable",
    ];
    let entries = std::mem::take(map);
    let mut placed = false;
    for (k, v) in entries {
        if !placed && k.as_str().is_some_and(|k| AFTER.contains(&k)) {
            map.insert(key("pattern"), key(pattern.source));
            placed = true;
        }
        map.insert(k, v);
    }
    if !placed {
        map.insert(key("pattern"), key(pattern.source));
    }
    true
}

/// Writes every compiled pattern into the spec; panics (at start, and in the spec's
/// tests) when a place it names is not in the spec.
fn add_patterns(doc: &mut Value) {
    for (schema, property, place, pattern) in pattern::SCHEMA_PATTERNS {
        let prop = doc
            .get_mut("components")
            .and_then(|c| c.get_mut("schemas"))
            .and_then(|s| s.get_mut(*schema))
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*property));
        let target = match (prop, place) {
            (Some(prop), SchemaPlace::Property) => Some(prop),
            (Some(prop), SchemaPlace::Items) => prop.get_mut("items"),
            (None, _) => None,
        };
        assert!(
            target.is_some_and(|t| set_pattern(t, pattern)),
            "the spec has {schema}.{property}"
        );
    }
    for (path, method, name, pattern) in PARAMETER_PATTERNS {
        let schema = doc
            .get_mut("paths")
            .and_then(|p| p.get_mut(path))
            .and_then(|p| p.get_mut(method))
            .and_then(|o| o.get_mut("parameters"))
            .and_then(Value::as_sequence_mut)
            .and_then(|params| {
                params
                    .iter_mut()
                    .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            })
            .and_then(|p| p.get_mut("schema"));
        assert!(
            schema.is_some_and(|s| set_pattern(s, pattern)),
            "the spec has {method} {path} {name}"
        );
    }
}

/// Operations that take an upload's resume token, with where it goes.
const TOKEN_LINKS: [(&str, &str, Where); 6] = [
    ("GetStatus", "status", Where::Path),
    ("ListParts", "listParts", Where::Path),
    ("Complete", "complete", Where::BodyQueued),
    ("Abort", "abort", Where::Body),
    ("Pause", "pause", Where::Body),
    ("Resume", "resume", Where::Body),
];

#[derive(Clone, Copy)]
enum Where {
    Path,
    Body,
    /// In the body, with `wait=0`: the complete is queued and the status document
    /// answers (parts are PUT to storage, not to this API, so a link cannot wait for a
    /// complete that storage would accept).
    BodyQueued,
}

fn key(s: &str) -> Value {
    Value::String(s.to_string())
}

fn link(operation_id: &str, at: Where) -> Value {
    let token = key("$response.body#/resumeToken");
    let mut link = Mapping::new();
    link.insert(key("operationId"), key(operation_id));
    match at {
        Where::Path => {
            let mut params = Mapping::new();
            params.insert(key("resumeToken"), token);
            link.insert(key("parameters"), Value::Mapping(params));
        }
        Where::Body | Where::BodyQueued => {
            if matches!(at, Where::BodyQueued) {
                let mut params = Mapping::new();
                params.insert(key("query.wait"), Value::Number(0.into()));
                link.insert(key("parameters"), Value::Mapping(params));
            }
            let mut body = Mapping::new();
            body.insert(key("resumeToken"), token);
            link.insert(key("requestBody"), Value::Mapping(body));
            // The body is exactly this (a complete without `parts` uses what storage
            // holds); tools that merge a link's body into a generated one must not.
            let mut ext = Mapping::new();
            ext.insert(key("merge_body"), Value::Bool(false));
            link.insert(key("x-schemathesis"), Value::Mapping(ext));
        }
    }
    link.insert(
        key("description"),
        key("The upload this answer describes, by its resume token."),
    );
    Value::Mapping(link)
}

/// One server-sent event: `data` is a status document as JSON.
fn event_schema() -> Value {
    serde_yaml::from_str(
        r##"
type: object
required: [data]
properties:
  event:
    type: string
  id:
    type: string
  retry:
    type: integer
    minimum: 0
  data:
    type: string
    description: The status document (StatusDoc) as JSON.
    contentMediaType: application/json
    contentSchema:
      $ref: '#/components/schemas/StatusDoc'
"##,
    )
    .expect("a literal schema")
}

/// Answer fields that are always present but null while an upload's size is unknown
/// (DESIGN §5: uploads made through the Uppy routes, until complete).
const NULLABLE_ANSWER_FIELDS: [(&str, &[&str]); 2] = [
    ("StatusDoc", &["fileSize", "partSize", "totalParts"]),
    (
        "ProgressDoc",
        &["total", "percentage", "totalBytes", "bytesPercentage"],
    ),
];

/// The spec poem-openapi generated, completed.
pub fn complete(yaml: &str) -> String {
    let mut doc: Value = serde_yaml::from_str(yaml).expect("poem-openapi's spec is YAML");
    add_patterns(&mut doc);
    if let Some(schemas) = doc.get_mut("components").and_then(|c| c.get_mut("schemas")) {
        for (name, fields) in NULLABLE_ANSWER_FIELDS {
            let Some(Value::Mapping(schema)) = schemas.get_mut(name) else {
                continue;
            };
            if let Some(Value::Sequence(required)) = schema.get_mut("required") {
                for field in fields {
                    let field = Value::String((*field).to_string());
                    if !required.contains(&field) {
                        required.push(field);
                    }
                }
            }
            if let Some(Value::Mapping(props)) = schema.get_mut("properties") {
                for field in fields {
                    if let Some(Value::Mapping(prop)) = props.get_mut(*field) {
                        prop.insert(key("nullable"), Value::Bool(true));
                    }
                }
            }
        }
        for name in REQUEST_SCHEMAS {
            let Some(schema) = schemas.get_mut(name) else {
                continue;
            };
            let required: Vec<Value> = schema
                .get("required")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            if let Some(Value::Mapping(props)) = schema.get_mut("properties") {
                for (field, prop) in props.iter_mut() {
                    if !required.contains(field) {
                        if let Value::Mapping(prop) = prop {
                            prop.insert(key("nullable"), Value::Bool(true));
                        }
                    }
                }
            }
        }
    }
    if let Some(Value::Mapping(content)) = doc
        .get_mut("paths")
        .and_then(|p| p.get_mut("/api/v1/upload/multipart/{resumeToken}/events"))
        .and_then(|p| p.get_mut("get"))
        .and_then(|p| p.get_mut("responses"))
        .and_then(|r| r.get_mut("200"))
        .and_then(|r| r.get_mut("content"))
    {
        if let Some(Value::Mapping(media)) = content.get_mut("text/event-stream") {
            media.insert(key("schema"), event_schema());
        }
    }
    if let Some(responses) = doc
        .get_mut("paths")
        .and_then(|p| p.get_mut("/api/v1/upload/multipart/init"))
        .and_then(|p| p.get_mut("post"))
        .and_then(|p| p.get_mut("responses"))
    {
        for status in ["200", "202"] {
            if let Some(Value::Mapping(response)) = responses.get_mut(status) {
                let mut links = Mapping::new();
                for (name, operation, at) in TOKEN_LINKS {
                    links.insert(key(name), link(operation, at));
                }
                response.insert(key("links"), Value::Mapping(links));
            }
        }
    }
    serde_yaml::to_string(&doc).expect("a YAML value serializes")
}

/// Which methods each path of the spec has, to answer `Allow` on a 405.
pub struct AllowedMethods(Vec<(Vec<Segment>, String)>);

enum Segment {
    Literal(String),
    Param,
}

impl AllowedMethods {
    pub fn from_spec(yaml: &str) -> AllowedMethods {
        let doc: Value = serde_yaml::from_str(yaml).expect("the spec is YAML");
        let mut routes = Vec::new();
        if let Some(Value::Mapping(paths)) = doc.get("paths") {
            for (path, item) in paths {
                let (Some(path), Value::Mapping(item)) = (path.as_str(), item) else {
                    continue;
                };
                let mut methods: Vec<String> = item
                    .keys()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_uppercase)
                    .collect();
                // poem answers HEAD wherever there is a GET.
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".into());
                }
                let segments = path
                    .split('/')
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Param
                        } else {
                            Segment::Literal(s.to_string())
                        }
                    })
                    .collect();
                routes.push((segments, methods.join(", ")));
            }
        }
        AllowedMethods(routes)
    }

    /// The `Allow` value for a request path; None when no route has that path.
    pub fn for_path(&self, path: &str) -> Option<&str> {
        let parts: Vec<&str> = path.split('/').collect();
        // Like the router: a literal segment wins over a parameter.
        self.0
            .iter()
            .filter(|(segments, _)| {
                segments.len() == parts.len()
                    && segments.iter().zip(&parts).all(|(s, p)| match s {
                        Segment::Literal(l) => l == p,
                        Segment::Param => !p.is_empty(),
                    })
            })
            .max_by_key(|(segments, _)| {
                segments
                    .iter()
                    .filter(|s| matches!(s, Segment::Literal(_)))
                    .count()
            })
            .map(|(_, allow)| allow.as_str())
    }
}

impl AllowedMethods {
    /// Adds `Allow` to a 405 (RFC 9110 §15.5.6) for a request to `path`.
    pub fn add_allow(&self, path: &str, response: &mut Response) {
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            if let Some(value) = self
                .for_path(path)
                .and_then(|a| HeaderValue::from_str(a).ok())
            {
                response.headers_mut().insert(header::ALLOW, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use partway_core::domain::{
        IdempotencyKey, PageLimit, PartState, ResumeToken, UploadStatus, Wait, MAX_PARTS,
        MAX_PART_SIZE, MIN_PART_SIZE, S3_MAX_OBJECT_SIZE,
    };

    fn spec() -> Value {
        serde_yaml::from_str(&crate::openapi_yaml()).unwrap()
    }

    /// The schema of a parameter of an operation.
    fn param<'a>(spec: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
        spec["paths"][path][method]["parameters"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .map(|p| &p["schema"])
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
    }

    /// Follows a `$ref` to a component schema.
    fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => {
                &spec["components"]["schemas"][r.trim_start_matches("#/components/schemas/")]
            }
            None => schema,
        }
    }

    fn num(v: &Value) -> u64 {
        v.as_f64().unwrap_or_else(|| panic!("{v:?} is no number")) as u64
    }

    fn strings(v: &Value) -> Vec<&str> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }

    const INIT: &str = "/api/v1/upload/multipart/init";
    const STATUS: &str = "/api/v1/upload/multipart/{resumeToken}";
    const PARTS: &str = "/api/v1/upload/multipart/{resumeToken}/parts";
    const PART: &str = "/api/v1/upload/multipart/{resumeToken}/parts/{partNumber}";
    const LIST: &str = "/api/v1/uploads";

    #[test]
    fn spec_bounds_are_the_domain_rules() {
        let spec = spec();
        for path in [
            INIT,
            "/api/v1/upload/multipart/resume",
            "/api/v1/upload/multipart/complete",
            "/api/v1/upload/multipart/abort",
        ] {
            let wait = param(&spec, path, "post", "wait");
            assert_eq!(
                (num(&wait["minimum"]), num(&wait["maximum"])),
                (0, u64::from(Wait::MAX_SECONDS)),
                "{path}"
            );
        }
        for (path, default_ok) in [(PARTS, true), (LIST, true)] {
            let limit = param(&spec, path, "get", "limit");
            assert_eq!(
                (num(&limit["minimum"]), num(&limit["maximum"])),
                (1, u64::from(PageLimit::MAX))
            );
            assert!(default_ok && PageLimit::parse(Some(PageLimit::MAX), 50).is_ok());
            assert!(PageLimit::parse(Some(PageLimit::MAX + 1), 50).is_err());
            assert!(PageLimit::parse(Some(0), 50).is_err());
        }
        let part = param(&spec, PART, "put", "partNumber");
        assert_eq!(
            (num(&part["minimum"]), num(&part["maximum"])),
            (1, u64::from(MAX_PARTS))
        );
        let complete_part =
            &spec["components"]["schemas"]["CompletePart"]["properties"]["partNumber"];
        assert_eq!(num(&complete_part["maximum"]), u64::from(MAX_PARTS));

        let init = &spec["components"]["schemas"]["InitRequest"]["properties"];
        assert_eq!(num(&init["partSize"]["minimum"]), MIN_PART_SIZE);
        assert_eq!(num(&init["partSize"]["maximum"]), MAX_PART_SIZE);
        assert_eq!(num(&init["fileSize"]["maximum"]), S3_MAX_OBJECT_SIZE);

        let states = strings(&resolve(&spec, param(&spec, PARTS, "get", "state"))["enum"]);
        assert_eq!(states, PartState::NAMES);
        for s in &states {
            assert!(PartState::parse(Some(s)).is_ok());
        }
        let statuses = strings(&resolve(&spec, param(&spec, LIST, "get", "status"))["enum"]);
        assert_eq!(
            statuses,
            UploadStatus::all()
                .map(UploadStatus::as_str)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            param(&spec, LIST, "get", "cursor")["pattern"].as_str(),
            Some(partway_core::usecases::list::CURSOR_PATTERN)
        );

        for path in [INIT, "/api/v1/upload/multipart/complete"] {
            let key = param(&spec, path, "post", "Idempotency-Key");
            assert_eq!(
                key["pattern"].as_str(),
                Some(IdempotencyKey::HEADER_PATTERN)
            );
            assert_eq!(num(&key["maxLength"]), IdempotencyKey::MAX_LEN as u64);
        }
        for path in [STATUS, PARTS, PART] {
            let method = if path == PART { "put" } else { "get" };
            let token = param(&spec, path, method, "resumeToken");
            assert_eq!(
                token["pattern"].as_str(),
                Some(ResumeToken::PATTERN),
                "{path}"
            );
        }
        for schema in ["TokenRequest", "CompleteRequest"] {
            let token = &spec["components"]["schemas"][schema]["properties"]["resumeToken"];
            assert_eq!(
                token["pattern"].as_str(),
                Some(ResumeToken::PATTERN),
                "{schema}"
            );
        }
    }

    #[test]
    fn patterns_accept_what_the_parsers_accept() {
        let token = regex::Regex::new(ResumeToken::PATTERN).unwrap();
        for _ in 0..200 {
            assert!(token.is_match(&ResumeToken::new_random().to_string()));
        }
        for s in [
            "mpu_6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "mpu_0b6f7a7e-3c1d-4e2f-ca8b-1c2d3e4f5a6b",
            "mpu_0B6F7A7E-3C1D-4E2F-9A8B-1C2D3E4F5A6B",
            "0b6f7a7e-3c1d-4e2f-9a8b-1c2d3e4f5a6b",
        ] {
            assert!(!token.is_match(s), "{s}");
            assert!(ResumeToken::parse(s).is_none(), "{s}");
        }
        let key = regex::Regex::new(IdempotencyKey::HEADER_PATTERN).unwrap();
        for (k, ok) in [
            ("k-1", true),
            ("a b", true),
            ("a b \t", true),
            ("~", true),
            (" a", false),
            ("", false),
            ("a\tb", false),
            ("\u{e9}", false),
        ] {
            assert_eq!(key.is_match(k), ok, "{k:?}");
            // What the pattern admits, the parser admits (after HTTP's trimming).
            if ok {
                assert!(
                    IdempotencyKey::parse(Some(k.to_string()))
                        .unwrap()
                        .is_some(),
                    "{k:?}"
                );
            }
        }
    }

    #[test]
    fn init_links_to_the_token_operations_and_optional_request_fields_are_nullable() {
        let spec = spec();
        for status in ["200", "202"] {
            let links = &spec["paths"][INIT]["post"]["responses"][status]["links"];
            for (name, operation, _) in TOKEN_LINKS {
                assert_eq!(links[name]["operationId"].as_str(), Some(operation));
            }
        }
        let init = &spec["components"]["schemas"]["InitRequest"]["properties"];
        assert_eq!(init["provider"]["nullable"].as_bool(), Some(true));
        assert!(init["filename"].get("nullable").is_none());
        let next = &spec["components"]["schemas"]["UploadList"];
        assert!(!strings(&next["required"]).contains(&"nextCursor"));
    }

    #[test]
    fn the_browser_token_request_states_the_domain_rules() {
        use partway_core::domain::browser::{
            valid_content_type_pattern, CONTENT_TYPE_PATTERN, MAX_CONTENT_TYPES, MAX_EXPIRES_IN,
            MAX_LABEL_LEN, MAX_MAX_UPLOADS, MIN_EXPIRES_IN,
        };
        let spec = spec();
        let props = &spec["components"]["schemas"]["BrowserTokenRequest"]["properties"];
        assert_eq!(num(&props["expiresIn"]["minimum"]), MIN_EXPIRES_IN);
        assert_eq!(num(&props["expiresIn"]["maximum"]), MAX_EXPIRES_IN);
        assert_eq!(num(&props["maxUploads"]["maximum"]), MAX_MAX_UPLOADS);
        assert_eq!(num(&props["maxFileSize"]["maximum"]), S3_MAX_OBJECT_SIZE);
        assert_eq!(num(&props["label"]["maxLength"]), MAX_LABEL_LEN as u64);
        let types = &props["allowedContentTypes"];
        assert_eq!(num(&types["maxItems"]), MAX_CONTENT_TYPES as u64);
        assert_eq!(
            types["items"]["pattern"].as_str(),
            Some(CONTENT_TYPE_PATTERN)
        );
        assert_eq!(props["label"]["nullable"].as_bool(), Some(true));
        let re = regex::Regex::new(CONTENT_TYPE_PATTERN).unwrap();
        for p in [
            "image/*",
            "application/pdf",
            "a/b",
            "x-y/z.w+json",
            "*/*",
            "image/",
            "/png",
            "image/png/x",
            "im age/png",
            "image/**",
            "video/mp4;x=1",
        ] {
            assert_eq!(valid_content_type_pattern(p), re.is_match(p), "{p}");
        }
    }

    #[test]
    fn allow_per_path() {
        let allow = AllowedMethods::from_spec(&crate::openapi_yaml());
        assert_eq!(
            allow.for_path("/api/v1/upload/multipart/init"),
            Some("POST")
        );
        assert_eq!(
            allow.for_path("/api/v1/upload/multipart/mpu_x/parts/3"),
            Some("PUT")
        );
        assert_eq!(allow.for_path("/healthz"), Some("GET, HEAD"));
        assert_eq!(allow.for_path("/api/v1/nope"), None);
    }
}
