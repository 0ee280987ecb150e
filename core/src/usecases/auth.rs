//! Who is calling: an API key (header or bearer) resolved to its owner.
use super::{App, AppError};
use crate::{auth::Caller, domain::ErrorCode};

impl App {
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Caller, AppError> {
        let key = presented
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                AppError::client(
                    ErrorCode::Unauthorized,
                    "an API key is required (x-api-key header or Authorization: Bearer)",
                )
            })?;
        self.keys
            .resolve(&self.store, key)
            .await?
            .ok_or_else(|| AppError::client(ErrorCode::Unauthorized, "the API key is not valid"))
    }
}
