//! Start an upload: validate, fix the object key, write the row and its init job in
//! one transaction. The job creates the storage upload and presigns the part URLs.
use std::collections::BTreeMap;

use chrono::Utc;
use partway_entity::upload::{self, UploadSizing};
use sea_orm::ActiveValue::Set;
use tracing::{info, instrument};

use super::{Accepted, App, AppError};
use crate::{
    auth::Caller,
    crypto::CredentialBinding,
    domain::{
        object_key, printable_not_blank, validate_filename, validate_metadata, ByoCredentials,
        ErrorCode, IdempotencyKey, PartPlan, Provider, ResumeToken, StorageChoice, UploadStatus,
        ValidationError,
    },
    jobs::JobKind,
    store::{jobs::new_job, uploads::Created},
};

const IDEMPOTENCY_SCOPE: &str = "init";

/// Where an init's `Idempotency-Key` is remembered: the owner's API keys share one
/// scope, each browser token has its own (a token never gets another's upload back).
fn idempotency_scope(caller: &Caller) -> String {
    match caller.browser_token_id() {
        Some(token) => format!("{IDEMPOTENCY_SCOPE}:{}", token.simple()),
        None => IDEMPOTENCY_SCOPE.to_string(),
    }
}

/// An init request as the client sent it.
#[derive(Debug, Clone)]
pub struct InitInput {
    pub filename: String,
    pub file_size: u64,
    pub content_type: String,
    pub provider: Option<String>,
    pub part_size: Option<u64>,
    pub metadata: BTreeMap<String, String>,
    pub credentials: ByoCredentials,
    /// Some: the size is unknown until complete (the Uppy routes, DESIGN §5);
    /// `file_size` and `part_size` are ignored.
    pub sizing: Option<UploadSizing>,
}

impl App {
    #[instrument(skip_all, fields(owner = %caller.owner_name))]
    pub async fn init(
        &self,
        caller: &Caller,
        input: InitInput,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Accepted, AppError> {
        let mut input = input;
        if let Some(scope) = &caller.browser {
            // Before any other check (DESIGN §5): a page never brings storage keys.
            if input.credentials.any_sent() {
                return Err(AppError::client(
                    ErrorCode::Forbidden,
                    "a browser token cannot send storage credentials",
                ));
            }
            scope.admit(input.file_size, &input.content_type)?;
            input.metadata = scope.merge_metadata(std::mem::take(&mut input.metadata))?;
        }
        if input.filename.trim().is_empty() || input.content_type.trim().is_empty() {
            return Err(AppError::client(
                ErrorCode::MissingRequiredFields,
                "filename, fileSize and contentType are required",
            ));
        }
        // Exactly `S3`/`R2` in either case, or empty (the spec's pattern says the same).
        let provider = match input.provider.as_deref() {
            Some(p) if !p.is_empty() => p.parse::<Provider>()?,
            _ => self.settings.default_provider,
        };
        validate_filename(&input.filename)?;
        // It becomes the object's Content-Type header at storage.
        if input.content_type.len() > 255 || !printable_not_blank(&input.content_type) {
            return Err(AppError::client(
                ErrorCode::InvalidParameter,
                "contentType must be a media type of at most 255 printable ASCII characters",
            ));
        }
        validate_metadata(&input.metadata)?;
        // A size-unknown upload has no plan until complete: 0 parts of 0 bytes.
        let (file_size, part_size, total_parts) = match input.sizing {
            None => {
                let plan =
                    PartPlan::new(input.file_size, input.part_size, provider.max_object_size())
                        .map_err(ValidationError::from)?;
                (plan.file_size(), plan.part_size(), plan.total_parts())
            }
            Some(_) => (0, 0, 0),
        };
        let choice = StorageChoice::parse(provider, &input.credentials)?;
        let byo = !matches!(choice, StorageChoice::Server(_));
        let resolved = self.resolve_target(choice).await?;

        if let Some(existing) = self.idempotent(caller, idempotency.as_ref()).await? {
            return Ok(existing);
        }

        let token = ResumeToken::new_random();
        let now = Utc::now();
        // A form-POST upload lives as long as its policy (DESIGN §5).
        let ttl = match input.sizing {
            Some(UploadSizing::Post) => self.settings.url_ttl,
            _ => self.settings.upload_ttl,
        };
        let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(7));
        let target = resolved.target;
        let endpoint = if byo { target.endpoint.clone() } else { None };
        // Sealed for this row only (DESIGN §7): bound to the columns below.
        let sealed = resolved.plain_credentials.map(|plain| {
            self.master_key.seal(
                &plain,
                &CredentialBinding {
                    owner_id: caller.owner_id,
                    upload_id: token.uuid(),
                    provider: provider.as_str(),
                    bucket: &target.bucket,
                    region: Some(&target.region),
                    endpoint: endpoint.as_deref(),
                },
            )
        });
        let row = upload::ActiveModel {
            id: Set(token.uuid()),
            owner_id: Set(caller.owner_id),
            provider: Set(provider),
            bucket: Set(target.bucket.clone()),
            region: Set(Some(target.region.clone())),
            endpoint: Set(endpoint),
            file_key: Set(object_key(
                &self.settings.key_prefix,
                &caller.owner_name,
                &token,
                &input.filename,
            )),
            storage_upload_id: Set(None),
            filename: Set(input.filename),
            content_type: Set(input.content_type),
            file_size: Set(file_size as i64),
            part_size: Set(part_size as i64),
            total_parts: Set(total_parts as i32),
            status: Set(UploadStatus::Initiating),
            urls_ready: Set(0),
            uploaded_parts: Set(0),
            uploaded_bytes: Set(0),
            metadata: Set(serde_json::to_value(&input.metadata).unwrap_or_default()),
            credentials_sealed: Set(sealed),
            last_error_code: Set(None),
            last_error_message: Set(None),
            etag: Set(None),
            location: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            expires_at: Set(expires_at),
            completed_at: Set(None),
            browser_token_id: Set(caller.browser_token_id()),
            sizing: Set(input.sizing),
        };
        let job = new_job(token.uuid(), JobKind::Init, serde_json::Value::Null);
        let job_id = *job.id.as_ref();
        let scope = idempotency_scope(caller);
        let remembered = idempotency
            .as_ref()
            .map(|key| (caller.owner_id, scope.as_str(), key.as_str()));
        let inserted = match self
            .store
            .create_upload(row, job, remembered, self.settings.quota)
            .await?
        {
            Created::Inserted(inserted) => *inserted,
            Created::QuotaExceeded(refused) => {
                info!(reason = %refused, "init refused by quota");
                return Err(refused.into());
            }
            Created::KeyTaken => {
                // A concurrent request with the same key won the race: answer with its upload.
                return self
                    .idempotent(caller, idempotency.as_ref())
                    .await?
                    .ok_or_else(|| {
                        AppError::Unavailable("could not record the idempotency key".into())
                    });
            }
        };
        info!(upload = %token, parts = total_parts, file_size, sized = input.sizing.is_none(), "upload initiated");
        self.queue.wake().await;
        Ok(Accepted {
            upload: inserted,
            job_id: Some(job_id),
        })
    }

    /// The upload an earlier init with the same key created, if any.
    async fn idempotent(
        &self,
        caller: &Caller,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<Accepted>, AppError> {
        let Some(key) = key else {
            return Ok(None);
        };
        let Some(id) = self
            .store
            .idempotent_upload(caller.owner_id, &idempotency_scope(caller), key.as_str())
            .await?
        else {
            return Ok(None);
        };
        Ok(self.store.upload(id).await?.map(|upload| Accepted {
            upload,
            job_id: None,
        }))
    }
}

#[cfg(test)]
mod quota_tests {
    //! Quotas at init (DESIGN §7): refused with QUOTA_EXCEEDED before anything is
    //! stored, overrides per owner, idempotent repeats admitted, finishing frees room.
    use std::sync::Arc;

    use super::*;
    use crate::{
        domain::{OwnerLimit, Quota, QuotaOverride, MIB},
        testing::TestApp,
    };

    fn input(file_size: u64) -> InitInput {
        InitInput {
            filename: "q.bin".into(),
            file_size,
            content_type: "application/octet-stream".into(),
            provider: None,
            part_size: Some(5 * MIB),
            metadata: Default::default(),
            credentials: Default::default(),
            sizing: None,
        }
    }

    fn uploads(n: u64) -> Quota {
        Quota {
            max_active_uploads: Some(n),
            max_active_bytes: None,
        }
    }

    async fn stored_uploads(t: &TestApp) -> u64 {
        t.app
            .store
            .owner_usage(t.caller.owner_id)
            .await
            .expect("usage")
            .uploads
    }

    fn refused(result: Result<Accepted, AppError>) -> String {
        match result {
            Err(AppError::Client {
                code: ErrorCode::QuotaExceeded,
                message,
            }) => message,
            other => panic!("expected QUOTA_EXCEEDED, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_upload_limit_refuses_the_next_init_and_stores_nothing() {
        let t = TestApp::with_quota(uploads(2)).await;
        for _ in 0..2 {
            t.app.init(&t.caller, input(MIB), None).await.expect("room");
        }
        let message = refused(t.app.init(&t.caller, input(MIB), None).await);
        assert!(message.contains("upload"), "{message}");
        assert!(message.contains("limit is 2"), "{message}");
        assert_eq!(stored_uploads(&t).await, 2);
        assert_eq!(t.run_jobs().await.len(), 2, "no job for the refused init");
    }

    #[tokio::test]
    async fn the_byte_limit_counts_declared_sizes() {
        let t = TestApp::with_quota(Quota {
            max_active_uploads: None,
            max_active_bytes: Some(25 * MIB),
        })
        .await;
        t.app.init(&t.caller, input(20 * MIB), None).await.unwrap();
        let message = refused(t.app.init(&t.caller, input(6 * MIB), None).await);
        assert!(message.contains("bytes"), "{message}");
        assert!(message.contains(&(25 * MIB).to_string()), "{message}");
        t.app
            .init(&t.caller, input(5 * MIB), None)
            .await
            .expect("fits exactly");
    }

    #[tokio::test]
    async fn validation_comes_before_the_quota() {
        let t = TestApp::with_quota(uploads(0)).await;
        let mut bad = input(MIB);
        bad.filename = String::new();
        let err = t.app.init(&t.caller, bad, None).await.unwrap_err();
        assert!(
            matches!(
                err,
                AppError::Client {
                    code: ErrorCode::MissingRequiredFields,
                    ..
                }
            ),
            "{err:?}"
        );
        refused(t.app.init(&t.caller, input(MIB), None).await);
    }

    #[tokio::test]
    async fn an_idempotent_repeat_is_not_refused() {
        let t = TestApp::with_quota(uploads(1)).await;
        let key = IdempotencyKey::parse(Some("quota-repeat".into())).unwrap();
        let first = t
            .app
            .init(&t.caller, input(MIB), key.clone())
            .await
            .unwrap();
        let again = t.app.init(&t.caller, input(MIB), key).await.unwrap();
        assert_eq!(again.upload.id, first.upload.id);
        refused(t.app.init(&t.caller, input(MIB), None).await);
    }

    #[tokio::test]
    async fn completing_and_aborting_free_room_and_failed_holds_it() {
        let t = TestApp::with_quota(uploads(1)).await;
        let (token, upload) = t.active_upload(10 * MIB, 5 * MIB).await;
        refused(t.app.init(&t.caller, input(MIB), None).await);
        t.put_parts(&upload, 1..=2);
        t.app.complete(&t.caller, &token, None).await.unwrap();
        // Completing still counts until storage completed the object.
        refused(t.app.init(&t.caller, input(MIB), None).await);
        t.run_jobs().await;
        assert_eq!(
            t.app.reload(upload.id).await.unwrap().status,
            UploadStatus::Completed
        );
        let (token, upload) = t.active_upload(MIB, 5 * MIB).await;
        refused(t.app.init(&t.caller, input(MIB), None).await);
        // A failed upload still holds its storage: it counts until aborted.
        t.app
            .store
            .transition(
                upload.id,
                &[UploadStatus::Active],
                UploadStatus::Failed,
                Default::default(),
            )
            .await
            .unwrap();
        refused(t.app.init(&t.caller, input(MIB), None).await);
        t.app.abort(&t.caller, &token).await.unwrap();
        t.run_jobs().await;
        t.app
            .init(&t.caller, input(MIB), None)
            .await
            .expect("room again");
    }

    #[tokio::test]
    async fn an_owner_override_replaces_the_default() {
        let t = TestApp::with_quota(uploads(1)).await;
        let name = t.caller.owner_name.clone();
        let set = |uploads| QuotaOverride {
            max_active_uploads: uploads,
            max_active_bytes: OwnerLimit::Default,
        };
        t.app
            .store
            .set_owner_quota(&name, set(OwnerLimit::Max(3)))
            .await
            .unwrap();
        for _ in 0..3 {
            t.app.init(&t.caller, input(MIB), None).await.unwrap();
        }
        refused(t.app.init(&t.caller, input(MIB), None).await);
        t.app
            .store
            .set_owner_quota(&name, set(OwnerLimit::Unlimited))
            .await
            .unwrap();
        t.app.init(&t.caller, input(MIB), None).await.unwrap();
        t.app
            .store
            .set_owner_quota(&name, set(OwnerLimit::Default))
            .await
            .unwrap();
        refused(t.app.init(&t.caller, input(MIB), None).await);
        let owners = t.app.store.owners().await.unwrap();
        let (owner, held) = owners.iter().find(|(o, _)| o.name == name).unwrap();
        assert_eq!(owner.max_active_uploads, None);
        assert_eq!(held.uploads, 4);
    }

    #[tokio::test]
    async fn concurrent_inits_never_overshoot() {
        let t = TestApp::with_quota(uploads(10)).await;
        let app = Arc::clone(&t.app);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let app = Arc::clone(&app);
                let caller = t.caller.clone();
                tokio::spawn(async move { app.init(&caller, input(MIB), None).await })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => {
                    refused(Err(e));
                }
            }
        }
        assert_eq!(ok, 10);
        assert_eq!(stored_uploads(&t).await, 10);
    }
}
