//! Which storage an upload uses: the server's for its provider, or the bucket the
//! client brought, whose credentials are sealed with the master key at init and
//! opened for every later step.
use partway_entity::upload;

use super::{App, AppError};
use crate::{
    domain::{ErrorCode, Provider, StorageChoice},
    ports::SharedStorage,
    storage::{r2_endpoint, StorageCredentials, StorageTarget},
};

/// Where a new upload goes, and its credentials sealed when the client brought them.
pub(super) struct ResolvedTarget {
    pub target: StorageTarget,
    pub sealed_credentials: Option<Vec<u8>>,
}

impl App {
    /// A target the client brought is checked by the outbound guard first (DESIGN §7):
    /// its endpoint, or, without one (public AWS S3), whether the mode allows that.
    pub(super) async fn resolve_target(
        &self,
        choice: StorageChoice,
    ) -> Result<ResolvedTarget, AppError> {
        let outbound = self.storage.outbound();
        match &choice {
            StorageChoice::Server(_) => {}
            StorageChoice::ByoS3 {
                endpoint: Some(endpoint),
                ..
            } => outbound.check(endpoint).await?,
            StorageChoice::ByoS3 { endpoint: None, .. } => outbound.check_without_endpoint()?,
            StorageChoice::ByoR2 { account_id, .. } => {
                // R2's own endpoint: public, but in allowlist mode only if listed.
                outbound.check(&r2_endpoint(account_id)).await?
            }
        }
        let byo = |target: StorageTarget| -> Result<ResolvedTarget, AppError> {
            let plain = serde_json::to_vec(&target.credentials)
                .map_err(|e| AppError::Internal(e.to_string()))?;
            Ok(ResolvedTarget {
                sealed_credentials: Some(self.master_key.seal(&plain)),
                target,
            })
        };
        match choice {
            StorageChoice::Server(provider) => {
                let target = self
                    .storage
                    .server_target(provider)
                    .cloned()
                    .ok_or_else(|| {
                        let (code, what) = match provider {
                            Provider::S3 => (
                                ErrorCode::MissingS3Credentials,
                                "s3AccessKey, s3SecretKey and s3Bucket",
                            ),
                            Provider::R2 => (
                                ErrorCode::MissingR2Credentials,
                                "r2AccessKey, r2SecretKey, r2AccountId and r2Bucket",
                            ),
                        };
                        AppError::client(
                            code,
                            format!(
                                "this server has no {provider} storage configured: send {what}"
                            ),
                        )
                    })?;
                Ok(ResolvedTarget {
                    target,
                    sealed_credentials: None,
                })
            }
            StorageChoice::ByoS3 {
                access_key,
                secret_key,
                bucket,
                region,
                endpoint,
            } => byo(StorageTarget::with_credentials(
                Provider::S3,
                bucket,
                region,
                endpoint,
                StorageCredentials {
                    access_key_id: access_key,
                    secret_access_key: secret_key,
                },
            )),
            StorageChoice::ByoR2 {
                access_key,
                secret_key,
                account_id,
                bucket,
            } => byo(StorageTarget::r2(
                &account_id,
                bucket,
                StorageCredentials {
                    access_key_id: access_key,
                    secret_access_key: secret_key,
                },
            )),
        }
    }

    /// The storage an upload uses: the credentials it was created with, always.
    pub fn storage_for(&self, upload: &upload::Model) -> Result<SharedStorage, AppError> {
        let provider = upload.provider;
        let target = match &upload.credentials_sealed {
            Some(sealed) => {
                let plain = self.master_key.open(sealed).map_err(|_| {
                    AppError::Internal(format!(
                        "credentials of upload {} cannot be opened",
                        upload.id
                    ))
                })?;
                let credentials: StorageCredentials =
                    serde_json::from_slice(&plain).map_err(|_| {
                        AppError::Internal(format!(
                            "credentials of upload {} are malformed",
                            upload.id
                        ))
                    })?;
                // Rebuilt as at init, so the client cache finds the same client.
                StorageTarget::with_credentials(
                    provider,
                    upload.bucket.clone(),
                    upload.region.clone().unwrap_or_else(|| "us-east-1".into()),
                    upload.endpoint.clone(),
                    credentials,
                )
            }
            None => {
                let mut target =
                    self.storage
                        .server_target(provider)
                        .cloned()
                        .ok_or_else(|| {
                            AppError::Unavailable(format!(
                                "server storage for {provider} is not configured"
                            ))
                        })?;
                target.bucket = upload.bucket.clone();
                target
            }
        };
        Ok(match upload.credentials_sealed {
            Some(_) => self.storage.client_storage(&target),
            None => self.storage.storage(&target),
        })
    }
}
