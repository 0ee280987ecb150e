//! The request and response documents of the HTTP contract live in `partway-protocol`
//! (re-exported here); this module turns requests into the core's inputs and the
//! core's views into documents, and says which code a bad request field gets.
use partway_core::{
    browser_token::shown_limits,
    domain::{ByoCredentials, ErrorCode, TokenLimits},
    usecases::{InitInput, PartView},
};
use partway_entity::browser_token;

use crate::body::ContractBody;

pub use partway_protocol::dto::*;

pub use partway_core::usecases::status::{progress_doc, rfc3339};

impl ContractBody for InitRequest {
    fn missing_code(_field: &str) -> ErrorCode {
        ErrorCode::MissingRequiredFields
    }
    fn invalid_code(field: &str) -> ErrorCode {
        match field {
            "filename" => ErrorCode::InvalidFilename,
            "fileSize" => ErrorCode::InvalidFileSize,
            "partSize" => ErrorCode::InvalidPartSize,
            "metadata" => ErrorCode::InvalidMetadata,
            "provider" => ErrorCode::InvalidProvider,
            f if f.starts_with("s3") => ErrorCode::MissingS3Credentials,
            f if f.starts_with("r2") => ErrorCode::MissingR2Credentials,
            _ => ErrorCode::InvalidParameter,
        }
    }
}

pub fn init_input(req: InitRequest) -> InitInput {
    InitInput {
        filename: req.filename,
        file_size: req.file_size,
        content_type: req.content_type,
        provider: req.provider,
        part_size: req.part_size,
        metadata: req.metadata.unwrap_or_default(),
        credentials: ByoCredentials {
            s3_access_key: req.s3_access_key,
            s3_secret_key: req.s3_secret_key,
            s3_bucket: req.s3_bucket,
            s3_region: req.s3_region,
            s3_endpoint: req.s3_endpoint,
            r2_access_key: req.r2_access_key,
            r2_secret_key: req.r2_secret_key,
            r2_account_id: req.r2_account_id,
            r2_bucket: req.r2_bucket,
        },
        sizing: None,
    }
}

impl ContractBody for TokenRequest {
    fn missing_code(_field: &str) -> ErrorCode {
        ErrorCode::MissingResumeToken
    }
    fn invalid_code(_field: &str) -> ErrorCode {
        ErrorCode::MissingResumeToken
    }
}

impl ContractBody for CompleteRequest {
    fn missing_code(field: &str) -> ErrorCode {
        match field {
            "resumeToken" => ErrorCode::MissingResumeToken,
            _ => ErrorCode::InvalidParts,
        }
    }
    fn invalid_code(field: &str) -> ErrorCode {
        match field {
            "resumeToken" => ErrorCode::MissingResumeToken,
            _ => ErrorCode::InvalidParts,
        }
    }
}

impl ContractBody for PartReport {
    fn missing_code(_field: &str) -> ErrorCode {
        ErrorCode::InvalidParts
    }
    fn invalid_code(_field: &str) -> ErrorCode {
        ErrorCode::InvalidParts
    }
}

pub fn part_doc(p: PartView) -> PartDoc {
    PartDoc {
        part_number: p.part_number,
        url: p.url,
        size: p.size,
        start: p.start,
        end: p.end,
        expires_at: rfc3339(p.expires_at),
    }
}

impl ContractBody for BrowserTokenRequest {
    fn missing_code(_field: &str) -> ErrorCode {
        ErrorCode::InvalidParameter
    }
    fn invalid_code(field: &str) -> ErrorCode {
        match field {
            "maxFileSize" => ErrorCode::InvalidFileSize,
            "allowedContentTypes" => ErrorCode::InvalidContentType,
            "metadata" => ErrorCode::InvalidMetadata,
            _ => ErrorCode::InvalidParameter,
        }
    }
}

pub fn token_limits(req: BrowserTokenRequest) -> TokenLimits {
    TokenLimits {
        expires_in: req.expires_in,
        max_file_size: req.max_file_size,
        allowed_content_types: req.allowed_content_types,
        max_uploads: req.max_uploads,
        metadata: req.metadata,
        label: req.label,
    }
}

fn non_negative(n: Option<i64>) -> Option<u64> {
    n.and_then(|n| u64::try_from(n).ok())
}

pub fn browser_token_doc(token: &browser_token::Model) -> BrowserTokenDoc {
    let (allowed_content_types, metadata) = shown_limits(token);
    BrowserTokenDoc {
        id: token.id.to_string(),
        prefix: token.prefix.clone(),
        created_at: rfc3339(token.created_at),
        expires_at: rfc3339(token.expires_at),
        uploads_created: u64::try_from(token.uploads_created).unwrap_or(0),
        label: token.label.clone(),
        max_file_size: non_negative(token.max_file_size),
        allowed_content_types,
        max_uploads: non_negative(token.max_uploads),
        metadata,
    }
}

pub fn browser_token_created(token: &browser_token::Model, secret: String) -> BrowserTokenCreated {
    let doc = browser_token_doc(token);
    BrowserTokenCreated {
        success: true,
        id: doc.id,
        token: secret,
        expires_at: doc.expires_at,
        expires_in: u64::try_from((token.expires_at - token.created_at).num_seconds()).unwrap_or(0),
        label: doc.label,
        max_file_size: doc.max_file_size,
        allowed_content_types: doc.allowed_content_types,
        max_uploads: doc.max_uploads,
        metadata: doc.metadata,
    }
}
