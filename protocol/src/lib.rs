//! partway's HTTP contract as types (DESIGN §3): the error codes, the upload statuses
//! and their machine, providers, resume tokens, and the request and response documents
//! ([`dto`]). Shared by the server, the client and the tests so that none of them spells
//! the contract by hand.
pub mod dto;
mod error;
pub mod pattern;
mod provider;
mod size;
mod status;
mod token;
pub mod webhooks;

pub use error::{ErrorCode, ValidationError};
pub use provider::{Provider, R2_MAX_OBJECT_SIZE, S3_MAX_OBJECT_SIZE};
pub use size::parse_size;
pub use status::UploadStatus;
pub use token::ResumeToken;
