//! Who is calling: an API key (header or bearer) resolved to its owner; and whose rate
//! limit a request counts against.
use std::net::IpAddr;

use super::{App, AppError};
use crate::{
    auth::{Caller, Credential},
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
        credential_caller(self.keys.resolve(&self.store, key).await?)
    }
}

impl App {
    /// Whose budget a request is taken from (DESIGN §7): its credential when it
    /// presents a valid one (by the key's hash, through the same cached lookup as
    /// [`App::authenticate`]), otherwise its client address. A credential that cannot be
    /// checked (the database is down) counts as none: the route answers 503 anyway.
    pub async fn rate_subject(&self, presented: Option<&str>, address: IpAddr) -> RateSubject {
        if let Some(key) = presented.map(str::trim).filter(|k| !k.is_empty()) {
            let hash = hash_api_key(key);
            if let Ok(Credential::Valid(_)) =
                self.keys.resolve_hashed(&self.store, key, &hash).await
            {
                return RateSubject::Credential(hash);
            }
        }
        RateSubject::address(address)
    }
}

/// The caller of a valid credential; 401 `UNAUTHORIZED` otherwise, saying `expired` or
/// `revoked` for a browser token that is (DESIGN §5).
pub(crate) fn credential_caller(credential: Credential) -> Result<Caller, AppError> {
    match credential {
        Credential::Valid(caller) => Ok(caller),
        Credential::Unknown => Err(AppError::client(
            ErrorCode::Unauthorized,
            "the API key is not valid",
        )),
        Credential::Expired => Err(AppError::client(
            ErrorCode::Unauthorized,
            "the browser token has expired; ask the application for a new one",
        )),
        Credential::Revoked => Err(AppError::client(
            ErrorCode::Unauthorized,
            "the browser token was revoked; ask the application for a new one",
        )),
    }
}
