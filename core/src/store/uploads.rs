//! Upload rows. Status changes go through [`Store::transition`] only: a conditional
//! update (`… WHERE status IN (from)`), so two processes racing on one upload never
//! both win, and the `from` lists come from the status machine.
use chrono::{DateTime, Utc};
use partway_entity::{job, upload};
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::{browser_tokens, events, idempotency, owners, parts, Store};
use crate::{
    domain::{last_error_message, ErrorCode, Quota, UploadStatus, ValidationError},
    events::EventType,
    ports::StoredPart,
};

/// What a transition does to `last_error`. Only a code is given: the message stored
/// with it is the code's fixed text (`domain::last_error_message`), never a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ErrorPatch {
    #[default]
    Keep,
    Clear,
    Set(ErrorCode),
}

/// Columns a transition writes besides `status` and `updated_at`.
#[derive(Debug, Clone, Default)]
pub struct UploadPatch {
    pub last_error: ErrorPatch,
    /// Storage completed the object: its ETag and location.
    pub completed: Option<(String, String)>,
}

impl UploadPatch {
    pub fn clear_error() -> UploadPatch {
        UploadPatch {
            last_error: ErrorPatch::Clear,
            ..UploadPatch::default()
        }
    }

    pub fn error(code: ErrorCode) -> UploadPatch {
        UploadPatch {
            last_error: ErrorPatch::Set(code),
            ..UploadPatch::default()
        }
    }
}

/// Which of an owner's uploads a list shows.
#[derive(Debug, Clone, Default)]
pub struct UploadFilter {
    /// The status as shown: active/paused uploads past their expiry count as expired.
    pub status: Option<UploadStatus>,
    /// One metadata entry, matched exactly. The key follows the metadata key rules
    /// (`[A-Za-z0-9_-]`), so it is safe inside a JSON path.
    pub metadata: Option<(String, String)>,
    /// Only uploads listed after this one (newest first): `(created_at, id)`.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Only uploads made with this browser token (a token's caller sees no others).
    pub browser_token: Option<Uuid>,
}

/// How an insert with an idempotency key ended.
pub enum Created {
    Inserted(Box<upload::Model>),
    /// A concurrent request with the same key won the race.
    KeyTaken,
    /// The owner's quota has no room for it; nothing was written.
    QuotaExceeded(ValidationError),
}

fn error_columns(patch: &ErrorPatch) -> Option<(Option<String>, Option<String>)> {
    match patch {
        ErrorPatch::Keep => None,
        ErrorPatch::Clear => Some((None, None)),
        ErrorPatch::Set(code) => Some((
            Some(code.as_str().to_string()),
            Some(last_error_message(*code).to_string()),
        )),
    }
}

/// The compare-and-set behind every status change; true when this call made it.
async fn transition_on(
    db: &impl ConnectionTrait,
    id: Uuid,
    from: &[UploadStatus],
    to: UploadStatus,
    patch: &UploadPatch,
) -> Result<bool, DbErr> {
    let now = Utc::now();
    let mut update = upload::Entity::update_many()
        .col_expr(upload::Column::Status, Expr::value(to))
        .col_expr(upload::Column::UpdatedAt, Expr::value(now));
    if let Some((code, message)) = error_columns(&patch.last_error) {
        update = update
            .col_expr(upload::Column::LastErrorCode, Expr::value(code))
            .col_expr(upload::Column::LastErrorMessage, Expr::value(message));
    }
    if let Some((etag, location)) = &patch.completed {
        update = update
            .col_expr(upload::Column::Etag, Expr::value(Some(etag.clone())))
            .col_expr(
                upload::Column::Location,
                Expr::value(Some(location.clone())),
            )
            .col_expr(upload::Column::CompletedAt, Expr::value(Some(now)))
            // A completed upload holds every part.
            .col_expr(
                upload::Column::UploadedParts,
                Expr::col(upload::Column::TotalParts),
            )
            .col_expr(
                upload::Column::UploadedBytes,
                Expr::col(upload::Column::FileSize),
            );
    }
    let moved = update
        .filter(upload::Column::Id.eq(id))
        .filter(upload::Column::Status.is_in(from.iter().copied()))
        .exec(db)
        .await?;
    let moved = moved.rows_affected == 1;
    // The event it causes, in the same transaction (callers with an event open one).
    if let (true, Some(event)) = (moved, EventType::of_transition(from, to)) {
        events::emit_on(db, id, event).await?;
    }
    Ok(moved)
}

async fn set_last_error_on(
    db: &impl ConnectionTrait,
    id: Uuid,
    code: ErrorCode,
) -> Result<(), DbErr> {
    upload::Entity::update_many()
        .col_expr(
            upload::Column::LastErrorCode,
            Expr::value(Some(code.as_str().to_string())),
        )
        .col_expr(
            upload::Column::LastErrorMessage,
            Expr::value(Some(last_error_message(code).to_string())),
        )
        .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(upload::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

impl Store {
    pub async fn upload(&self, id: Uuid) -> Result<Option<upload::Model>, DbErr> {
        upload::Entity::find_by_id(id).one(&self.db).await
    }

    /// The upload if `owner` owns it (and, with `browser_token`, that token made it):
    /// another owner's or another token's upload is simply not found.
    pub async fn owned_upload(
        &self,
        owner: Uuid,
        browser_token: Option<Uuid>,
        id: Uuid,
    ) -> Result<Option<upload::Model>, DbErr> {
        let mut query = upload::Entity::find_by_id(id).filter(upload::Column::OwnerId.eq(owner));
        if let Some(token) = browser_token {
            query = query.filter(upload::Column::BrowserTokenId.eq(token));
        }
        query.one(&self.db).await
    }

    /// Writes a new upload and its init job (and the idempotency key, when given) in
    /// one transaction, when the owner's quota (`quota`, or their overrides) has room.
    /// The transaction first takes the owner's lock ([`owners::lock_owner`]), so the
    /// count and the insert of concurrent inits never interleave: no overshoot. An
    /// upload made with a browser token also takes one of the token's `maxUploads`
    /// ([`browser_tokens::take_upload_slot`]), given back if anything else refuses it.
    pub async fn create_upload(
        &self,
        upload: upload::ActiveModel,
        job: job::ActiveModel,
        idempotency: Option<(Uuid, &str, &str)>,
        quota: Quota,
    ) -> Result<Created, DbErr> {
        let owner_id = *upload.owner_id.as_ref();
        let file_size = u64::try_from(*upload.file_size.as_ref()).unwrap_or(0);
        let txn = self.db.begin().await?;
        let own = owners::lock_owner(&txn, owner_id)
            .await?
            .map(|o| owners::quota_override(&o))
            .unwrap_or_default();
        let quota = quota.for_owner(own);
        if !quota.is_unlimited() {
            let held = owners::usage(&txn, owner_id).await?;
            if let Err(refused) = quota.admit(held, file_size) {
                txn.rollback().await?;
                return Ok(Created::QuotaExceeded(refused));
            }
        }
        if let Some(token) = upload.browser_token_id.as_ref() {
            if !browser_tokens::take_upload_slot(&txn, *token).await? {
                txn.rollback().await?;
                return Ok(Created::QuotaExceeded(ValidationError::new(
                    ErrorCode::QuotaExceeded,
                    "this browser token has made all the uploads it may (its maxUploads)",
                )));
            }
        }
        let inserted = upload.insert(&txn).await?;
        job.insert(&txn).await?;
        if let Some((owner, scope, key)) = idempotency {
            if idempotency::remember(&txn, owner, scope, key, inserted.id)
                .await
                .is_err()
            {
                txn.rollback().await?;
                return Ok(Created::KeyTaken);
            }
        }
        txn.commit().await?;
        Ok(Created::Inserted(Box::new(inserted)))
    }

    /// Moves the upload from one of `from` to `to`, writing `patch` with it; false
    /// when it was not in any of `from` (someone else moved it).
    pub async fn transition(
        &self,
        id: Uuid,
        from: &[UploadStatus],
        to: UploadStatus,
        patch: UploadPatch,
    ) -> Result<bool, DbErr> {
        if EventType::of_transition(from, to).is_none() {
            return transition_on(&self.db, id, from, to, &patch).await;
        }
        // The change and the event it causes commit together.
        let txn = self.db.begin().await?;
        let moved = transition_on(&txn, id, from, to, &patch).await?;
        txn.commit().await?;
        Ok(moved)
    }

    /// A transition that queues a job, atomically (the outbox): the job exists exactly
    /// when the status changed. Clears `last_error`.
    pub async fn transition_with_job(
        &self,
        id: Uuid,
        from: &[UploadStatus],
        to: UploadStatus,
        job: job::ActiveModel,
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        if !transition_on(&txn, id, from, to, &UploadPatch::clear_error()).await? {
            txn.rollback().await?;
            return Ok(false);
        }
        job.insert(&txn).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Storage completed the object: record it (and, when the job listed them,
    /// storage's parts as the part rows).
    pub async fn mark_completed(
        &self,
        id: Uuid,
        etag: &str,
        location: &str,
        listed: Option<&[StoredPart]>,
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        if let Some(listed) = listed {
            parts::replace_parts(&txn, id, listed).await?;
        }
        let patch = UploadPatch {
            last_error: ErrorPatch::Clear,
            completed: Some((etag.to_string(), location.to_string())),
        };
        let moved = transition_on(
            &txn,
            id,
            &UploadStatus::Completed.sources(),
            UploadStatus::Completed,
            &patch,
        )
        .await?;
        txn.commit().await?;
        Ok(moved)
    }

    /// Moves the upload from `from` to `failed` (if it is still there) and records why
    /// (the code; its text is the fixed one).
    pub async fn fail_upload(
        &self,
        id: Uuid,
        from: UploadStatus,
        code: ErrorCode,
    ) -> Result<(), DbErr> {
        // One transaction: the status, the error and the `upload.failed` event (whose
        // document shows the error) commit together.
        let txn = self.db.begin().await?;
        let moved = transition_on(
            &txn,
            id,
            &[from],
            UploadStatus::Failed,
            &UploadPatch::error(code),
        )
        .await?;
        if !moved {
            set_last_error_on(&txn, id, code).await?;
        }
        txn.commit().await
    }

    /// Uploads whose sealed credentials are not in the current format (`v1`, from
    /// before they were bound to their upload).
    pub async fn uploads_with_legacy_credentials(&self) -> Result<Vec<upload::Model>, DbErr> {
        let prefix = crate::crypto::SEALED_PREFIX;
        // The first bytes of the blob against the prefix, in each database's own words.
        let legacy = match self.db.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => Expr::cust_with_values(
                "substr(credentials_sealed, 1, 3) <> $1",
                [sea_orm::Value::Bytes(Some(prefix.to_vec()))],
            ),
            _ => Expr::cust_with_values(
                "substr(credentials_sealed, 1, 3) <> ?",
                [sea_orm::Value::Bytes(Some(prefix.to_vec()))],
            ),
        };
        upload::Entity::find()
            .filter(upload::Column::CredentialsSealed.is_not_null())
            .filter(legacy)
            .all(&self.db)
            .await
    }

    /// Uploads holding sealed credentials (a master key rotation re-seals them all).
    pub async fn uploads_with_credentials(&self) -> Result<Vec<upload::Model>, DbErr> {
        upload::Entity::find()
            .filter(upload::Column::CredentialsSealed.is_not_null())
            .all(&self.db)
            .await
    }

    /// Replaces an upload's sealed credentials if they are still `old`; true when it did.
    pub async fn replace_sealed_credentials(
        &self,
        id: Uuid,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, DbErr> {
        let result = upload::Entity::update_many()
            .col_expr(
                upload::Column::CredentialsSealed,
                Expr::value(Some(new.to_vec())),
            )
            .filter(upload::Column::Id.eq(id))
            .filter(upload::Column::CredentialsSealed.eq(old.to_vec()))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Records an error (its code; the text is the fixed one) on the upload without
    /// changing its status.
    pub async fn set_last_error(&self, id: Uuid, code: ErrorCode) -> Result<(), DbErr> {
        set_last_error_on(&self.db, id, code).await
    }

    /// Stores storage's multipart UploadId, unless one is already stored or the upload
    /// left `initiating` meanwhile; true when this call stored it.
    pub async fn set_storage_upload_id(
        &self,
        id: Uuid,
        storage_upload_id: &str,
    ) -> Result<bool, DbErr> {
        let stored = upload::Entity::update_many()
            .col_expr(
                upload::Column::StorageUploadId,
                Expr::value(Some(storage_upload_id.to_string())),
            )
            .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(upload::Column::Id.eq(id))
            .filter(upload::Column::StorageUploadId.is_null())
            .filter(upload::Column::Status.eq(UploadStatus::Initiating))
            .exec(&self.db)
            .await?;
        Ok(stored.rows_affected == 1)
    }

    pub async fn set_urls_ready(&self, id: Uuid, ready: u32) -> Result<(), DbErr> {
        upload::Entity::update_many()
            .col_expr(upload::Column::UrlsReady, Expr::value(ready as i32))
            .filter(upload::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The owner's uploads matching `filter`, newest first, at most `limit`.
    pub async fn list_uploads(
        &self,
        owner: Uuid,
        filter: &UploadFilter,
        limit: u64,
    ) -> Result<Vec<upload::Model>, DbErr> {
        let mut query = upload::Entity::find().filter(upload::Column::OwnerId.eq(owner));
        if let Some(token) = filter.browser_token {
            query = query.filter(upload::Column::BrowserTokenId.eq(token));
        }
        if let Some((key, value)) = &filter.metadata {
            query = query.filter(match self.db.get_database_backend() {
                sea_orm::DbBackend::Postgres => Expr::cust_with_values(
                    r#""metadata" ->> $1 = $2"#,
                    [key.clone(), value.clone()],
                ),
                _ => Expr::cust_with_values(
                    r#"json_extract("metadata", ?) = ?"#,
                    [format!("$.\"{key}\""), value.clone()],
                ),
            });
        }
        if let Some(status) = filter.status {
            let now = Utc::now();
            let live = [UploadStatus::Active, UploadStatus::Paused];
            query = match status {
                UploadStatus::Active | UploadStatus::Paused => query
                    .filter(upload::Column::Status.eq(status))
                    .filter(upload::Column::ExpiresAt.gt(now)),
                UploadStatus::Expired => query.filter(
                    Condition::any().add(upload::Column::Status.eq(status)).add(
                        Condition::all()
                            .add(upload::Column::Status.is_in(live))
                            .add(upload::Column::ExpiresAt.lte(now)),
                    ),
                ),
                _ => query.filter(upload::Column::Status.eq(status)),
            };
        }
        if let Some((created_at, id)) = filter.after {
            query = query.filter(
                Condition::any()
                    .add(upload::Column::CreatedAt.lt(created_at))
                    .add(
                        Condition::all()
                            .add(upload::Column::CreatedAt.eq(created_at))
                            .add(upload::Column::Id.lt(id)),
                    ),
            );
        }
        query
            .order_by_desc(upload::Column::CreatedAt)
            .order_by_desc(upload::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// Active or paused uploads whose time ran out (at most `limit`).
    pub async fn expired_uploads(&self, limit: u64) -> Result<Vec<Uuid>, DbErr> {
        upload::Entity::find()
            .select_only()
            .column(upload::Column::Id)
            .filter(upload::Column::ExpiresAt.lte(Utc::now()))
            .filter(upload::Column::Status.is_in(UploadStatus::Expired.sources()))
            .limit(limit)
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await
    }
}

#[cfg(test)]
mod tests {
    use partway_entity::upload;
    use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};

    use crate::{
        domain::{UploadStatus, MIB},
        store::UploadPatch,
        testing::TestApp,
        AppError,
    };

    #[tokio::test]
    async fn transitions_happen_once_and_only_from_their_sources() {
        let t = TestApp::new().await;
        let (_, upload) = t.active_upload(12 * MIB, 5 * MIB).await;
        let store = t.app.store();
        let to = UploadStatus::Paused;
        assert!(store
            .transition(upload.id, &to.sources(), to, UploadPatch::default())
            .await
            .unwrap());
        assert!(!store
            .transition(upload.id, &to.sources(), to, UploadPatch::default())
            .await
            .unwrap());
        let to = UploadStatus::Completed;
        assert!(!store
            .transition(upload.id, &to.sources(), to, UploadPatch::default())
            .await
            .unwrap());
        assert_eq!(
            t.app.reload(upload.id).await.unwrap().status,
            UploadStatus::Paused
        );
    }

    #[tokio::test]
    async fn an_unknown_stored_status_is_an_error_not_a_guess() {
        let t = TestApp::new().await;
        let (_, upload) = t.active_upload(12 * MIB, 5 * MIB).await;
        upload::Entity::update_many()
            .col_expr(upload::Column::Status, Expr::cust("'bogus'"))
            .filter(upload::Column::Id.eq(upload.id))
            .exec(t.app.store().connection())
            .await
            .unwrap();
        let err = t.app.reload(upload.id).await.unwrap_err();
        assert!(matches!(err, AppError::Internal(_)), "{err:?}");
    }
}
