//! Owners and API keys. Keys are stored as their SHA-256 and looked up by it.
use std::collections::HashMap;

use chrono::Utc;
use partway_entity::{api_key, owner};
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};
use uuid::Uuid;

use super::Store;

impl Store {
    /// The unrevoked key with this hash, with its owner's id and name.
    pub async fn key_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(api_key::Model, owner::Model)>, DbErr> {
        let Some(key) = api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hash))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if key.revoked_at.is_some() {
            return Ok(None);
        }
        let owner = owner::Entity::find_by_id(key.owner_id)
            .one(&self.db)
            .await?;
        Ok(owner.map(|o| (key, o)))
    }

    /// The owner named `name`, created when new.
    pub async fn ensure_owner(&self, name: &str) -> Result<owner::Model, DbErr> {
        if let Some(found) = owner::Entity::find()
            .filter(owner::Column::Name.eq(name))
            .one(&self.db)
            .await?
        {
            return Ok(found);
        }
        owner::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(name.to_string()),
            created_at: Set(Utc::now()),
            max_active_uploads: Set(None),
            max_active_bytes: Set(None),
        }
        .insert(&self.db)
        .await
    }

    pub async fn insert_key(
        &self,
        owner: Uuid,
        hash: String,
        prefix: String,
    ) -> Result<api_key::Model, DbErr> {
        api_key::ActiveModel {
            id: Set(Uuid::new_v4()),
            owner_id: Set(owner),
            key_hash: Set(hash),
            prefix: Set(prefix),
            created_at: Set(Utc::now()),
            revoked_at: Set(None),
        }
        .insert(&self.db)
        .await
    }

    /// Keys with their owner's name, oldest first.
    pub async fn keys(&self) -> Result<Vec<(api_key::Model, String)>, DbErr> {
        let owners: HashMap<Uuid, String> = owner::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|o| (o.id, o.name))
            .collect();
        let keys = api_key::Entity::find()
            .order_by_asc(api_key::Column::CreatedAt)
            .all(&self.db)
            .await?;
        Ok(keys
            .into_iter()
            .map(|k| {
                let name = owners.get(&k.owner_id).cloned().unwrap_or_default();
                (k, name)
            })
            .collect())
    }

    /// Includes revoked keys (they never match a lookup).
    pub async fn key_with_hash(&self, hash: &str) -> Result<Option<api_key::Model>, DbErr> {
        api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hash))
            .one(&self.db)
            .await
    }

    /// False when there is no key with this id.
    pub async fn revoke_key(&self, id: Uuid) -> Result<bool, DbErr> {
        let result = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(Some(Utc::now())))
            .filter(api_key::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Revokes every unrevoked key of the owner named `owner_name` except the one whose
    /// hash is `keep_hash`; how many it revoked.
    pub async fn revoke_owner_keys_except(
        &self,
        owner_name: &str,
        keep_hash: Option<&str>,
    ) -> Result<u64, DbErr> {
        let Some(owner) = owner::Entity::find()
            .filter(owner::Column::Name.eq(owner_name))
            .one(&self.db)
            .await?
        else {
            return Ok(0);
        };
        let mut update = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(Some(Utc::now())))
            .filter(api_key::Column::OwnerId.eq(owner.id))
            .filter(api_key::Column::RevokedAt.is_null());
        if let Some(keep) = keep_hash {
            update = update.filter(api_key::Column::KeyHash.ne(keep));
        }
        Ok(update.exec(&self.db).await?.rows_affected)
    }
}
