//! API keys: created once and shown once, stored as SHA-256, looked up by hash and
//! cached briefly (a revoked key stops working within `CACHE_TTL`).
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use partway_entity::api_key;
use sea_orm::DbErr;
use uuid::Uuid;

use crate::{
    crypto::{api_key_display_prefix, constant_time_eq, generate_api_key, hash_api_key},
    domain::{validate_owner_name, ValidationError},
    store::Store,
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
    pub async fn resolve(&self, store: &Store, presented: &str) -> Result<Option<Caller>, DbErr> {
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
        self.refresh(store, hash).await
    }

    /// Looks the key up in the store, past the cache, and caches the answer: an open
    /// event stream checks this way, so a revocation ends it (and then fails new
    /// requests here) without waiting for the cache.
    pub async fn recheck(&self, store: &Store, presented: &str) -> Result<Option<Caller>, DbErr> {
        self.refresh(store, hash_api_key(presented)).await
    }

    async fn refresh(&self, store: &Store, hash: String) -> Result<Option<Caller>, DbErr> {
        let caller = lookup(store, &hash).await?;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_KEYS {
            entries.clear();
        }
        entries.insert(hash, (Instant::now(), caller.clone()));
        Ok(caller)
    }
}

async fn lookup(store: &Store, hash: &str) -> Result<Option<Caller>, DbErr> {
    Ok(store
        .key_by_hash(hash)
        .await?
        .filter(|(key, _)| constant_time_eq(&key.key_hash, hash))
        .map(|(_, owner)| Caller {
            owner_id: owner.id,
            owner_name: owner.name,
        }))
}

#[derive(Debug, thiserror::Error)]
pub enum KeyAdminError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("no API key with id {0}")]
    UnknownKey(Uuid),
    #[error("this development key was revoked; choose another")]
    RevokedDevKey,
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Creates a key for `owner_name` (creating the owner when new); returns the key,
/// which is never stored nor shown again.
pub async fn create_key(
    store: &Store,
    owner_name: &str,
) -> Result<(api_key::Model, String), KeyAdminError> {
    let key = generate_api_key();
    let model = insert_key(store, owner_name, &key).await?;
    Ok((model, key))
}

/// Registers a key chosen elsewhere (the embedded mode's development key); a no-op
/// when it is already registered.
pub async fn register_key(
    store: &Store,
    owner_name: &str,
    key: &str,
) -> Result<api_key::Model, KeyAdminError> {
    match store.key_with_hash(&hash_api_key(key)).await? {
        Some(found) => Ok(found),
        None => insert_key(store, owner_name, key).await,
    }
}

/// Makes `key` the development key of `owner_name` (or, with None, leaves it none):
/// registers it and revokes every other key of that owner, so a changed or switched-off
/// `PARTWAY_DEV_API_KEY` ends the earlier one. The owner belongs to the development key.
/// A key that was revoked stays revoked ([`KeyAdminError::RevokedDevKey`]). Returns how
/// many earlier keys it revoked.
pub async fn set_dev_key(
    store: &Store,
    owner_name: &str,
    key: Option<&str>,
) -> Result<u64, KeyAdminError> {
    let keep = match key {
        Some(key) => {
            let hash = hash_api_key(key);
            match store.key_with_hash(&hash).await? {
                Some(found) if found.revoked_at.is_some() => {
                    return Err(KeyAdminError::RevokedDevKey)
                }
                Some(_) => {}
                None => {
                    insert_key(store, owner_name, key).await?;
                }
            }
            Some(hash)
        }
        None => None,
    };
    Ok(store
        .revoke_owner_keys_except(owner_name, keep.as_deref())
        .await?)
}

async fn insert_key(
    store: &Store,
    owner_name: &str,
    key: &str,
) -> Result<api_key::Model, KeyAdminError> {
    validate_owner_name(owner_name)?;
    let owner = store.ensure_owner(owner_name).await?;
    Ok(store
        .insert_key(owner.id, hash_api_key(key), api_key_display_prefix(key))
        .await?)
}

/// Keys with their owner's name, oldest first.
pub async fn list_keys(store: &Store) -> Result<Vec<(api_key::Model, String)>, KeyAdminError> {
    Ok(store.keys().await?)
}

pub async fn revoke_key(store: &Store, id: Uuid) -> Result<(), KeyAdminError> {
    if store.revoke_key(id).await? {
        Ok(())
    } else {
        Err(KeyAdminError::UnknownKey(id))
    }
}
