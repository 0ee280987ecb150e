//! Start an upload: validate, fix the object key, write the row and its init job in
//! one transaction. The job creates the storage upload and presigns the part URLs.
use std::collections::BTreeMap;

use chrono::Utc;
use partway_entity::upload;
use sea_orm::ActiveValue::Set;
use tracing::{info, instrument};

use super::{Accepted, App, AppError};
use crate::{
    auth::Caller,
    domain::{
        object_key, validate_filename, validate_metadata, ByoCredentials, ErrorCode,
        IdempotencyKey, PartPlan, Provider, ResumeToken, StorageChoice, UploadStatus,
        ValidationError,
    },
    jobs::JobKind,
    store::{jobs::new_job, uploads::Created},
};

const IDEMPOTENCY_SCOPE: &str = "init";

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
}

impl App {
    #[instrument(skip_all, fields(owner = %caller.owner_name))]
    pub async fn init(
        &self,
        caller: &Caller,
        input: InitInput,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Accepted, AppError> {
        if input.filename.trim().is_empty() || input.content_type.trim().is_empty() {
            return Err(AppError::client(
                ErrorCode::MissingRequiredFields,
                "filename, fileSize and contentType are required",
            ));
        }
        let provider = match input.provider.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => p.parse::<Provider>()?,
            _ => self.settings.default_provider,
        };
        validate_filename(&input.filename)?;
        if input.content_type.len() > 255 || input.content_type.chars().any(|c| c.is_control()) {
            return Err(AppError::client(
                ErrorCode::InvalidParameter,
                "contentType must be a media type of at most 255 characters",
            ));
        }
        validate_metadata(&input.metadata)?;
        let plan = PartPlan::new(input.file_size, input.part_size, provider.max_object_size())
            .map_err(ValidationError::from)?;
        let choice = StorageChoice::parse(provider, &input.credentials)?;
        let byo = !matches!(choice, StorageChoice::Server(_));
        let resolved = self.resolve_target(choice).await?;

        if let Some(existing) = self.idempotent(caller, idempotency.as_ref()).await? {
            return Ok(existing);
        }

        let token = ResumeToken::new_random();
        let now = Utc::now();
        let expires_at = now
            + chrono::Duration::from_std(self.settings.upload_ttl)
                .unwrap_or(chrono::Duration::days(7));
        let target = resolved.target;
        let row = upload::ActiveModel {
            id: Set(token.uuid()),
            owner_id: Set(caller.owner_id),
            provider: Set(provider),
            bucket: Set(target.bucket.clone()),
            region: Set(Some(target.region.clone())),
            endpoint: Set(if byo { target.endpoint.clone() } else { None }),
            file_key: Set(object_key(
                &self.settings.key_prefix,
                &caller.owner_name,
                &token,
                &input.filename,
            )),
            storage_upload_id: Set(None),
            filename: Set(input.filename),
            content_type: Set(input.content_type),
            file_size: Set(plan.file_size() as i64),
            part_size: Set(plan.part_size() as i64),
            total_parts: Set(plan.total_parts() as i32),
            status: Set(UploadStatus::Initiating),
            urls_ready: Set(0),
            uploaded_parts: Set(0),
            uploaded_bytes: Set(0),
            metadata: Set(serde_json::to_value(&input.metadata).unwrap_or_default()),
            credentials_sealed: Set(resolved.sealed_credentials),
            last_error_code: Set(None),
            last_error_message: Set(None),
            etag: Set(None),
            location: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            expires_at: Set(expires_at),
            completed_at: Set(None),
        };
        let job = new_job(token.uuid(), JobKind::Init, serde_json::Value::Null);
        let job_id = *job.id.as_ref();
        let remembered = idempotency
            .as_ref()
            .map(|key| (caller.owner_id, IDEMPOTENCY_SCOPE, key.as_str()));
        let inserted = match self.store.create_upload(row, job, remembered).await? {
            Created::Inserted(inserted) => *inserted,
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
        info!(upload = %token, parts = plan.total_parts(), file_size = plan.file_size(), "upload initiated");
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
            .idempotent_upload(caller.owner_id, IDEMPOTENCY_SCOPE, key.as_str())
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
