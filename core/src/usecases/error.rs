//! Errors of the use cases. Client errors carry a contract code and a message fit to
//! show; the other two are logged in full and shown generically (the API maps them).
use sea_orm::DbErr;

use crate::{
    domain::{ErrorCode, UploadStatus, ValidationError},
    ports::StorageError,
    store::database_unreachable,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    Client { code: ErrorCode, message: String },
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError::Client {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn not_found() -> Self {
        Self::client(
            ErrorCode::UploadNotFound,
            "no upload with this resume token",
        )
    }

    /// Why an upload in `status` cannot do what was asked.
    pub(crate) fn conflict(status: UploadStatus) -> Self {
        match status {
            UploadStatus::Completed => AppError::client(
                ErrorCode::UploadAlreadyCompleted,
                "this upload is already completed",
            ),
            UploadStatus::Aborted | UploadStatus::Aborting => {
                AppError::client(ErrorCode::UploadAborted, "this upload was aborted")
            }
            UploadStatus::Expired => AppError::client(
                ErrorCode::UploadExpired,
                "this upload expired; start a new one",
            ),
            UploadStatus::Initiating => AppError::client(
                ErrorCode::UploadNotReady,
                "the upload is still being created on storage; retry shortly",
            ),
            UploadStatus::Completing => {
                AppError::client(ErrorCode::UploadNotReady, "the upload is being completed")
            }
            UploadStatus::Failed => AppError::client(
                ErrorCode::UploadNotReady,
                "the upload failed (see lastError); abort it and start again",
            ),
            UploadStatus::Active | UploadStatus::Paused => AppError::Internal("no conflict".into()),
        }
    }
}

impl From<ValidationError> for AppError {
    fn from(e: ValidationError) -> Self {
        AppError::client(e.code, e.message)
    }
}

impl From<crate::outbound::OutboundError> for AppError {
    fn from(e: crate::outbound::OutboundError) -> Self {
        AppError::client(ErrorCode::InvalidEndpoint, e.to_string())
    }
}

impl From<DbErr> for AppError {
    fn from(e: DbErr) -> Self {
        if database_unreachable(&e) {
            AppError::Unavailable(format!("database: {e}"))
        } else {
            AppError::Internal(format!("database: {e}"))
        }
    }
}

impl From<StorageError> for AppError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(reason) => {
                AppError::Unavailable(format!("storage: {reason}"))
            }
            other => AppError::Internal(format!("storage: {other}")),
        }
    }
}
