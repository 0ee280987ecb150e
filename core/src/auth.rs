//! API keys: created once and shown once, stored as SHA-256, looked up by hash and
//! cached briefly (a revoked key stops working within `CACHE_TTL`).
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::Utc;
use partway_entity::{api_key, owner};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::{
    crypto::{api_key_display_prefix, constant_time_eq, generate_api_key, hash_api_key},
    domain::{validate_owner_name, ValidationError},
};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner_id: Uuid,
    pub owner_name: String,
}

const CACHE_TTL: Duration = Duration::from_secs(30);
const MAX_CACHED_KEYS: usize = 10_000;

#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Instant, Option<Caller>)>>,
}

impl KeyCache {
    /// Resolves a presented key; None when unknown or revoked.
    pub async fn resolve(
        &self,
        db: &DatabaseConnection,
        presented: &str,
    ) -> Result<Option<Caller>, DbErr> {
        let hash = hash_api_key(presented);
        if let Some((at, caller)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
        {
            if at.elapsed() < CACHE_TTL {
                return Ok(caller.clone());
            }
        }
        let caller = lookup(db, &hash).await?;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_KEYS {
            entries.clear();
        }
        entries.insert(hash, (Instant::now(), caller.clone()));
        Ok(caller)
    }
}

async fn lookup(db: &DatabaseConnection, hash: &str) -> Result<Option<Caller>, DbErr> {
    let Some(key) = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if key.revoked_at.is_some() || !constant_time_eq(&key.key_hash, hash) {
        return Ok(None);
    }
    let owner = owner::Entity::find_by_id(key.owner_id).one(db).await?;
    Ok(owner.map(|o| Caller {
        owner_id: o.id,
        owner_name: o.name,
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum KeyAdminError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("no API key with id {0}")]
    UnknownKey(Uuid),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

pub async fn ensure_owner(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<owner::Model, KeyAdminError> {
    validate_owner_name(name)?;
    if let Some(found) = owner::Entity::find()
        .filter(owner::Column::Name.eq(name))
        .one(db)
        .await?
    {
        return Ok(found);
    }
    let created = owner::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(name.to_string()),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(created)
}

/// Creates a key for `owner_name` (creating the owner when new); returns the key,
/// which is never stored nor shown again.
pub async fn create_key(
    db: &impl ConnectionTrait,
    owner_name: &str,
) -> Result<(api_key::Model, String), KeyAdminError> {
    let key = generate_api_key();
    let model = insert_key(db, owner_name, &key).await?;
    Ok((model, key))
}

/// Registers a key chosen elsewhere (the embedded mode's development key); a no-op
/// when it is already registered.
pub async fn register_key(
    db: &impl ConnectionTrait,
    owner_name: &str,
    key: &str,
) -> Result<api_key::Model, KeyAdminError> {
    let hash = hash_api_key(key);
    if let Some(found) = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(&hash))
        .one(db)
        .await?
    {
        return Ok(found);
    }
    insert_key(db, owner_name, key).await
}

async fn insert_key(
    db: &impl ConnectionTrait,
    owner_name: &str,
    key: &str,
) -> Result<api_key::Model, KeyAdminError> {
    let owner = ensure_owner(db, owner_name).await?;
    let model = api_key::ActiveModel {
        id: Set(Uuid::new_v4()),
        owner_id: Set(owner.id),
        key_hash: Set(hash_api_key(key)),
        prefix: Set(api_key_display_prefix(key)),
        created_at: Set(Utc::now()),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(model)
}

/// Keys with their owner's name, oldest first.
pub async fn list_keys(
    db: &impl ConnectionTrait,
) -> Result<Vec<(api_key::Model, String)>, KeyAdminError> {
    let owners: HashMap<Uuid, String> = owner::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|o| (o.id, o.name))
        .collect();
    let keys = api_key::Entity::find()
        .order_by_asc(api_key::Column::CreatedAt)
        .all(db)
        .await?;
    Ok(keys
        .into_iter()
        .map(|k| {
            let name = owners.get(&k.owner_id).cloned().unwrap_or_default();
            (k, name)
        })
        .collect())
}

pub async fn revoke_key(db: &impl ConnectionTrait, id: Uuid) -> Result<(), KeyAdminError> {
    let result = api_key::Entity::update_many()
        .col_expr(
            api_key::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(Some(Utc::now())),
        )
        .filter(api_key::Column::Id.eq(id))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(KeyAdminError::UnknownKey(id));
    }
    Ok(())
}
