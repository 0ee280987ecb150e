//! Which storage an upload uses: the server's for its provider, or the bucket the
//! client brought, whose credentials are sealed with the master key at init and
//! opened for every later step.
use partway_entity::upload;

use super::{App, AppError};
use crate::{
    crypto::CredentialBinding,
    domain::{ErrorCode, Provider, StorageChoice},
    ports::SharedStorage,
    storage::{r2_endpoint, StorageCredentials, StorageTarget},
};

/// Where a new upload goes, and the credentials the client brought (serialized), to be
/// sealed for the upload's row once its id is known ([`credential_binding`]).
pub(super) struct ResolvedTarget {
    pub target: StorageTarget,
    pub plain_credentials: Option<Vec<u8>>,
}

/// What an upload's sealed credentials are bound to (DESIGN §7): the columns of its row
/// that say whose they are and where they may be used.
pub fn credential_binding(upload: &upload::Model) -> CredentialBinding<'_> {
    CredentialBinding {
        owner_id: upload.owner_id,
        upload_id: upload.id,
        provider: upload.provider.as_str(),
        bucket: &upload.bucket,
        region: upload.region.as_deref(),
        endpoint: upload.endpoint.as_deref(),
    }
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
                plain_credentials: Some(plain),
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
                    plain_credentials: None,
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
                let plain = self
                    .master_key
                    .open(sealed, &credential_binding(upload))
                    .map_err(|_| {
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

impl App {
    /// Re-seals credentials stored before they were bound to their upload (`v1`) into
    /// the current format, bound to the row that holds them; run by every process at
    /// start, before it serves or runs jobs, so nothing opens a `v1` value otherwise.
    /// Concurrent processes are safe: each row is replaced only if it still holds the
    /// value read. Returns how many rows it re-sealed; a value that does not open is
    /// left as it is (logged) and that upload's storage steps fail.
    pub async fn reseal_legacy_credentials(&self) -> Result<u64, AppError> {
        let mut resealed = 0;
        for row in self.store.uploads_with_legacy_credentials().await? {
            let Some(old) = row.credentials_sealed.as_deref() else {
                continue;
            };
            match self.master_key.open_legacy(old) {
                Ok(plain) => {
                    let new = self.master_key.seal(&plain, &credential_binding(&row));
                    if self
                        .store
                        .replace_sealed_credentials(row.id, old, &new)
                        .await?
                    {
                        resealed += 1;
                    }
                }
                Err(_) => tracing::warn!(
                    upload = %super::token_of(&row),
                    "stored credentials cannot be opened with this master key; left as they are"
                ),
            }
        }
        if resealed > 0 {
            tracing::info!(resealed, "credentials re-sealed, bound to their uploads");
        }
        Ok(resealed)
    }
}

/// What a master key rotation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Re-sealed under the new key.
    pub resealed: u64,
    /// Already under the new key (an earlier, interrupted run).
    pub already: u64,
    /// Opened with neither key: left as they are.
    pub unreadable: u64,
}

/// `partway keys rotate-master`: re-seals every upload's credentials from `old` to `new`
/// (bound to their row as always; `v1` values too). Run with the services stopped, so
/// nothing seals with the old key meanwhile. Safe to run again after an interruption:
/// rows already under `new` are counted, not touched; each row is replaced only if it
/// still holds the value read.
pub async fn rotate_master_key(
    store: &crate::store::Store,
    old: &crate::crypto::MasterKey,
    new: &crate::crypto::MasterKey,
) -> Result<Rotation, AppError> {
    let mut rotation = Rotation::default();
    for row in store.uploads_with_credentials().await? {
        let Some(sealed) = row.credentials_sealed.as_deref() else {
            continue;
        };
        let binding = credential_binding(&row);
        if new.open(sealed, &binding).is_ok() {
            rotation.already += 1;
            continue;
        }
        let plain = match old.open(sealed, &binding) {
            Ok(plain) => plain,
            Err(_) if !crate::crypto::MasterKey::is_current(sealed) => {
                match old.open_legacy(sealed) {
                    Ok(plain) => plain,
                    Err(_) => {
                        rotation.unreadable += 1;
                        continue;
                    }
                }
            }
            Err(_) => {
                rotation.unreadable += 1;
                continue;
            }
        };
        let resealed = new.seal(&plain, &binding);
        if store
            .replace_sealed_credentials(row.id, sealed, &resealed)
            .await?
        {
            rotation.resealed += 1;
        }
    }
    // Webhook signing secrets (DESIGN §6) are sealed with the same master key.
    for row in store.all_webhooks().await? {
        let sealed = row.secret_sealed.as_slice();
        if new
            .open_webhook_secret(sealed, row.owner_id, row.id)
            .is_ok()
        {
            rotation.already += 1;
            continue;
        }
        let Ok(plain) = old.open_webhook_secret(sealed, row.owner_id, row.id) else {
            rotation.unreadable += 1;
            continue;
        };
        let resealed = new.seal_webhook_secret(&plain, row.owner_id, row.id);
        if store
            .replace_webhook_secret(row.id, sealed, &resealed)
            .await?
        {
            rotation.resealed += 1;
        }
    }
    Ok(rotation)
}

#[cfg(test)]
mod tests {
    //! The outbound guard at init and at connect. No test here sends anything anywhere
    //! but loopback: refused targets are refused before any connection, and the one
    //! connection that is attempted goes to a loopback address.
    use std::{net::IpAddr, sync::Arc};

    use crate::{
        domain::{ByoCredentials, ErrorCode, UploadStatus, MIB},
        outbound::{AllowList, OutboundMode, OutboundPolicy, StaticResolver},
        ports::JobRun,
        storage::S3Factory,
        testing::TestApp,
        usecases::{AppError, InitInput},
    };

    const SECRET: &str = "byo-secret-never-shown";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn byo_s3(endpoint: Option<&str>) -> InitInput {
        InitInput {
            filename: "a.bin".into(),
            file_size: 12 * MIB,
            content_type: "application/octet-stream".into(),
            provider: Some("S3".into()),
            part_size: None,
            metadata: Default::default(),
            credentials: ByoCredentials {
                s3_access_key: Some("AKIABYO".into()),
                s3_secret_key: Some(SECRET.into()),
                s3_bucket: Some("theirs".into()),
                s3_endpoint: endpoint.map(str::to_string),
                ..Default::default()
            },
            sizing: None,
        }
    }

    fn byo_r2() -> InitInput {
        InitInput {
            provider: Some("R2".into()),
            credentials: ByoCredentials {
                r2_access_key: Some("AKIABYO".into()),
                r2_secret_key: Some(SECRET.into()),
                r2_account_id: Some("abc123".into()),
                r2_bucket: Some("theirs".into()),
                ..Default::default()
            },
            sizing: None,
            ..byo_s3(None)
        }
    }

    fn policy(allowed: &str, mode: OutboundMode, resolver: StaticResolver) -> OutboundPolicy {
        OutboundPolicy::new(AllowList::parse(allowed).unwrap(), mode, Arc::new(resolver))
    }

    /// A refusal: INVALID_ENDPOINT, a message without credentials, and nothing stored.
    async fn assert_refused(t: &TestApp, input: InitInput) -> String {
        let what = format!("{:?}", input.credentials.s3_endpoint);
        let err = t.app.init(&t.caller, input, None).await.unwrap_err();
        let AppError::Client { code, message } = err else {
            panic!("{what}: {err:?}");
        };
        assert_eq!(code, ErrorCode::InvalidEndpoint, "{what}: {message}");
        assert!(
            !message.contains(SECRET) && !message.contains("AKIABYO"),
            "{message}"
        );
        assert!(
            t.app.due_jobs(10).await.unwrap().is_empty(),
            "{what}: a job was stored"
        );
        message
    }

    #[tokio::test]
    async fn forbidden_endpoints_are_refused_at_init_before_anything_is_stored() {
        let resolver = StaticResolver::new()
            .with("metadata.test", vec![vec![ip("169.254.169.254")]])
            .with("localhost", vec![vec![ip("127.0.0.1"), ip("::1")]])
            .with("half.test", vec![vec![ip("93.184.216.34"), ip("10.0.0.1")]]);
        let t = TestApp::with(policy("", OutboundMode::Guarded, resolver), None).await;
        for endpoint in [
            "http://127.0.0.1:5432",
            "http://[::1]:1",
            "http://localhost:9",
            "http://metadata.test/latest/meta-data/",
            "http://half.test",
            "http://[::ffff:127.0.0.1]:9000",
            "http://unknown.test",
            "http://AKIABYO:secret@example.test",
        ] {
            assert_refused(&t, byo_s3(Some(endpoint))).await;
        }
        let message = assert_refused(&t, byo_s3(Some("http://metadata.test"))).await;
        assert!(message.contains("link-local"), "{message}");
    }

    #[tokio::test]
    async fn allowed_and_public_endpoints_pass_and_server_storage_is_never_checked() {
        let resolver = StaticResolver::new()
            .with("public.test", vec![vec![ip("93.184.216.34")]])
            .with("minio.test", vec![vec![ip("10.0.0.9")]]);
        let t = TestApp::with(
            policy(
                "127.0.0.1:9000, minio.test",
                OutboundMode::Guarded,
                resolver,
            ),
            None,
        )
        .await;
        for endpoint in [
            "https://public.test",
            "http://127.0.0.1:9000",
            "http://minio.test:9000",
        ] {
            let accepted = t.app.init(&t.caller, byo_s3(Some(endpoint)), None).await;
            assert!(accepted.is_ok(), "{endpoint}: {accepted:?}");
        }
        // Public AWS without an endpoint is fine in guarded mode; the server's own
        // target (http://storage.invalid) is trusted as configured.
        assert!(t.app.init(&t.caller, byo_s3(None), None).await.is_ok());
        let (_, upload) = t.active_upload(12 * MIB, 5 * MIB).await;
        assert_eq!(upload.status, UploadStatus::Active);
    }

    #[tokio::test]
    async fn allowlist_mode_refuses_everything_unlisted_even_public_aws_and_r2() {
        let resolver = StaticResolver::new().with("public.test", vec![vec![ip("93.184.216.34")]]);
        let t = TestApp::with(
            policy("127.0.0.1:9000", OutboundMode::Allowlist, resolver),
            None,
        )
        .await;
        assert_refused(&t, byo_s3(None)).await;
        assert_refused(&t, byo_r2()).await;
        assert_refused(&t, byo_s3(Some("https://public.test"))).await;
        assert_refused(&t, byo_s3(Some("http://127.0.0.1:9001"))).await;
        assert!(t
            .app
            .init(&t.caller, byo_s3(Some("http://127.0.0.1:9000")), None)
            .await
            .is_ok());
        let (_, upload) = t.active_upload(12 * MIB, 5 * MIB).await;
        assert_eq!(
            upload.status,
            UploadStatus::Active,
            "server storage is trusted"
        );
    }

    /// DNS rebinding: the name resolves to an allowed loopback address when init checks
    /// it, then to a forbidden one (also loopback, so nothing could leave the machine
    /// even if the guard failed). The job's connection resolves through the guard and
    /// is refused: the upload fails without retries.
    #[tokio::test]
    async fn an_answer_that_changes_after_init_is_refused_at_connect() {
        let resolver = Arc::new(StaticResolver::new().with(
            "rebind.test",
            vec![vec![ip("127.0.0.1")], vec![ip("127.0.0.2")]],
        ));
        let outbound = OutboundPolicy::new(
            AllowList::parse("127.0.0.1/32").unwrap(),
            OutboundMode::Guarded,
            resolver.clone(),
        );
        let t = TestApp::with(outbound, Some(Arc::new(S3Factory::default()))).await;
        let accepted = t
            .app
            .init(&t.caller, byo_s3(Some("http://rebind.test:9")), None)
            .await
            .expect("127.0.0.1 is allowed at init");
        let run = t
            .app
            .process_job(accepted.job_id.unwrap(), false)
            .await
            .unwrap();
        let JobRun::GaveUp(reason) = run else {
            panic!("expected the job to give up: {run:?}");
        };
        assert!(reason.contains("outbound guard"), "{reason}");
        let failed = t.app.reload(accepted.upload.id).await.unwrap();
        assert_eq!(failed.status, UploadStatus::Failed);
        let lookups = resolver.lookups();
        assert!(
            lookups.len() >= 2,
            "checked at init and at connect: {lookups:?}"
        );
        assert!(
            lookups.iter().all(|name| name == "rebind.test"),
            "{lookups:?}"
        );
    }

    /// DESIGN §7: sealed credentials open only in the row they were sealed for; moved
    /// to another upload's row, or with the row's bucket changed, they do not.
    #[tokio::test]
    async fn sealed_credentials_moved_to_another_row_do_not_open() {
        use partway_entity::upload;
        use sea_orm::{ActiveModelTrait, ActiveValue::Set};
        let t = TestApp::with(
            policy(
                "127.0.0.1:9000",
                OutboundMode::Allowlist,
                StaticResolver::new(),
            ),
            None,
        )
        .await;
        let victim = t
            .app
            .init(&t.caller, byo_s3(Some("http://127.0.0.1:9000")), None)
            .await
            .unwrap()
            .upload;
        let mine = t
            .app
            .init(&t.caller, byo_s3(Some("http://127.0.0.1:9000")), None)
            .await
            .unwrap()
            .upload;
        let sealed = victim.credentials_sealed.clone().unwrap();
        assert!(sealed.starts_with(b"v2:"));
        assert!(t.app.storage_for(&victim).is_ok());
        assert!(t.app.storage_for(&mine).is_ok());

        // A database writer moves the victim's credentials into another row.
        let mut moved: upload::ActiveModel = mine.clone().into();
        moved.credentials_sealed = Set(Some(sealed.clone()));
        let moved = moved.update(t.app.store().connection()).await.unwrap();
        let err = t.app.storage_for(&moved).err().expect("must not open");
        assert!(matches!(err, AppError::Internal(_)), "{err:?}");
        assert!(!err.to_string().contains(SECRET), "{err}");
        // Or points the victim's own row at another bucket.
        let mut rebucketed = victim.clone();
        rebucketed.bucket = "attackers".into();
        assert!(t.app.storage_for(&rebucketed).is_err());
        let mut redirected = victim.clone();
        redirected.endpoint = Some("http://127.0.0.1:9001".into());
        assert!(t.app.storage_for(&redirected).is_err());
    }

    /// Rows sealed before bindings existed (`v1`) are re-sealed, bound to their row;
    /// until then they do not open, and a second run finds nothing to do.
    #[tokio::test]
    async fn legacy_sealed_credentials_are_resealed_bound_to_their_row() {
        use partway_entity::upload;
        use sea_orm::{ActiveModelTrait, ActiveValue::Set};
        let t = TestApp::with(
            policy(
                "127.0.0.1:9000",
                OutboundMode::Allowlist,
                StaticResolver::new(),
            ),
            None,
        )
        .await;
        let row = t
            .app
            .init(&t.caller, byo_s3(Some("http://127.0.0.1:9000")), None)
            .await
            .unwrap()
            .upload;
        let plain = serde_json::to_vec(&crate::storage::StorageCredentials {
            access_key_id: "AKIABYO".into(),
            secret_access_key: SECRET.into(),
        })
        .unwrap();
        let mut legacy: upload::ActiveModel = row.clone().into();
        legacy.credentials_sealed = Set(Some(t.app.master_key.seal_legacy(&plain)));
        let legacy = legacy.update(t.app.store().connection()).await.unwrap();
        assert!(
            t.app.storage_for(&legacy).is_err(),
            "v1 is never opened on read"
        );

        assert_eq!(t.app.reseal_legacy_credentials().await.unwrap(), 1);
        let resealed = t.app.reload(row.id).await.unwrap();
        assert!(resealed
            .credentials_sealed
            .as_deref()
            .unwrap()
            .starts_with(b"v2:"));
        assert!(t.app.storage_for(&resealed).is_ok());
        assert_eq!(t.app.reseal_legacy_credentials().await.unwrap(), 0);
    }

    /// `partway keys rotate-master`: every row moves to the new key (`v1` rows too), a
    /// second run finds them there, and the old key opens none of them.
    #[tokio::test]
    async fn rotating_the_master_key_reseals_every_row_once() {
        use partway_entity::upload;
        use sea_orm::{ActiveModelTrait, ActiveValue::Set};
        let t = TestApp::with(
            policy(
                "127.0.0.1:9000",
                OutboundMode::Allowlist,
                StaticResolver::new(),
            ),
            None,
        )
        .await;
        let byo = || byo_s3(Some("http://127.0.0.1:9000"));
        let current = t.app.init(&t.caller, byo(), None).await.unwrap().upload;
        let legacy = t.app.init(&t.caller, byo(), None).await.unwrap().upload;
        let plain = t
            .app
            .master_key
            .open(
                current.credentials_sealed.as_deref().unwrap(),
                &super::credential_binding(&current),
            )
            .unwrap();
        let mut old_style: upload::ActiveModel = legacy.clone().into();
        old_style.credentials_sealed = Set(Some(t.app.master_key.seal_legacy(&plain)));
        old_style.update(t.app.store().connection()).await.unwrap();

        let new = crate::crypto::MasterKey::generate();
        let store = t.app.store();
        let done = super::rotate_master_key(store, &t.app.master_key, &new)
            .await
            .unwrap();
        assert_eq!(
            done,
            super::Rotation {
                resealed: 2,
                ..Default::default()
            }
        );
        for id in [current.id, legacy.id] {
            let row = t.app.reload(id).await.unwrap();
            let sealed = row.credentials_sealed.as_deref().unwrap();
            let binding = super::credential_binding(&row);
            assert_eq!(new.open(sealed, &binding).unwrap(), plain);
            assert!(t.app.master_key.open(sealed, &binding).is_err());
        }
        let again = super::rotate_master_key(store, &t.app.master_key, &new)
            .await
            .unwrap();
        assert_eq!(
            again,
            super::Rotation {
                already: 2,
                ..Default::default()
            }
        );
    }
}
