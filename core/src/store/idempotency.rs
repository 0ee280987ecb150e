//! Remembered `Idempotency-Key`s: a repeat with the same key and owner within the
//! window answers with the upload the first request created.
use chrono::Utc;
use partway_entity::idempotency_key;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use uuid::Uuid;

use super::Store;

/// How long a key is remembered.
pub const WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Inside the transaction that creates the upload; fails when the key is taken.
pub(super) async fn remember(
    db: &impl ConnectionTrait,
    owner: Uuid,
    scope: &str,
    key: &str,
    upload_id: Uuid,
) -> Result<(), DbErr> {
    idempotency_key::ActiveModel {
        owner_id: Set(owner),
        scope: Set(scope.to_string()),
        key: Set(key.to_string()),
        upload_id: Set(upload_id),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(())
}

impl Store {
    /// The upload a key created within the window; an older key is forgotten.
    pub async fn idempotent_upload(
        &self,
        owner: Uuid,
        scope: &str,
        key: &str,
    ) -> Result<Option<Uuid>, DbErr> {
        let id = (owner, scope.to_string(), key.to_string());
        let Some(found) = idempotency_key::Entity::find_by_id(id.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if Utc::now() - found.created_at > WINDOW {
            idempotency_key::Entity::delete_by_id(id)
                .exec(&self.db)
                .await?;
            return Ok(None);
        }
        Ok(Some(found.upload_id))
    }
}
