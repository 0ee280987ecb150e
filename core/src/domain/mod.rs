//! Pure domain rules of partway (DESIGN §2): part planning, input validation (client
//! input parsed into typed values at the edge), progress arithmetic and URL pages,
//! plus the contract's vocabulary (error codes, the upload status machine, providers,
//! resume tokens) re-exported from `partway-protocol`.
//!
//! Kept free of I/O so the API, the worker and the tests share one definition of
//! every rule and can exercise it without a database, queue or storage.

pub mod browser;
pub mod download;
pub mod input;
pub mod last_error;
pub mod plan;
pub mod progress;
pub mod quota;
pub mod rate_limit;
pub mod uppy;
pub mod url_pages;
pub mod validate;

pub use browser::{BrowserScope, TokenLimits};
pub use download::attachment_disposition;
pub use input::*;
pub use last_error::{last_error_message, shown_last_error};
pub use partway_protocol::{
    ErrorCode, Provider, ResumeToken, UploadStatus, ValidationError, R2_MAX_OBJECT_SIZE,
    S3_MAX_OBJECT_SIZE,
};
pub use plan::*;
pub use progress::*;
pub use quota::{OwnerLimit, Quota, QuotaOverride, Usage};
pub use rate_limit::{
    RateDecision, RateLimit, RateLimits, RatePeriod, RateSubject, RESERVATION_LIFETIME,
};
pub use url_pages::*;
pub use validate::*;
