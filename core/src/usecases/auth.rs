//! Who is calling: an API key (header or bearer) resolved to its owner; and whose rate
//! limit a request counts against.
use std::net::IpAddr;

use super::{App, AppError};
use crate::{
    auth::Caller,
    crypto::hash_api_key,
    domain::{ErrorCode, RateSubject},
};

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

impl App {
    /// Whose budget a request is taken from (DESIGN §7): its credential when it
    /// presents a valid one (by the key's hash, through the same cached lookup as
    /// [`App::authenticate`]), otherwise its client address. A credential that cannot be
    /// checked (the database is down) counts as none: the route answers 503 anyway.
    pub async fn rate_subject(&self, presented: Option<&str>, address: IpAddr) -> RateSubject {
        if let Some(key) = presented.map(str::trim).filter(|k| !k.is_empty()) {
            if let Ok(Some(_)) = self.keys.resolve(&self.store, key).await {
                return RateSubject::Credential(hash_api_key(key));
            }
        }
        RateSubject::address(address)
    }
}
