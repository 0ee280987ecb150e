//! API keys: created once and shown once, stored as SHA-256, looked up by hash and
//! cached briefly (a revoked key stops working within `CACHE_TTL`). Browser tokens
//! (`browser_token.rs`) are resolved through the same cache.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};

use partway_entity::api_key;
use sea_orm::DbErr;
use uuid::Uuid;

use crate::{
    crypto::{api_key_display_prefix, constant_time_eq, generate_api_key, hash_api_key},
    domain::{browser::is_browser_token, validate_owner_name, BrowserScope, ValidationError},
    store::Store,
};

/// Who is calling: an owner, through an API key or a browser token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner_id: Uuid,
    pub owner_name: String,
    /// Set when the credential is a browser token: what it may do. Such a caller sees
    /// only the uploads made with its token.
    pub browser: Option<Arc<BrowserScope>>,
}

impl Caller {
    /// The browser token the caller presented, if it did.
    pub fn browser_token_id(&self) -> Option<Uuid> {
        self.browser.as_ref().map(|b| b.token_id)
    }
}

/// What a presented credential is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Valid(Caller),
    /// Unknown, or an API key that was revoked.
    Unknown,
    /// A browser token past its expiry.
    Expired,
    /// A revoked browser token.
    Revoked,
}

/// What the cache holds for a hash: the caller, and for a browser token when it ends.
#[derive(Debug, Clone)]
enum Entry {
    Unknown,
    Caller { caller: Caller, revoked: bool },
}

impl Entry {
    fn credential(&self, now: DateTime<Utc>) -> Credential {
        match self {
            Entry::Unknown => Credential::Unknown,
            Entry::Caller { revoked: true, .. } => Credential::Revoked,
            Entry::Caller { caller, .. } => match &caller.browser {
                Some(scope) if scope.expires_at <= now => Credential::Expired,
                _ => Credential::Valid(caller.clone()),
            },
        }
    }
}

const CACHE_TTL: Duration = Duration::from_secs(30);
const MAX_CACHED_KEYS: usize = 10_000;

/// API keys and browser tokens by their hash, each answer kept [`CACHE_TTL`] after it
/// was loaded (not after its last use), so a revocation holds within that time on
/// every replica.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Instant, Entry)>>,
}

impl KeyCache {
    /// Resolves a presented key or browser token.
    pub async fn resolve(&self, store: &Store, presented: &str) -> Result<Credential, DbErr> {
        self.resolve_hashed(store, presented, &hash_api_key(presented))
            .await
    }

    /// [`KeyCache::resolve`] with the key's hash already computed (the rate limiter
    /// keeps it as the budget's name).
    pub async fn resolve_hashed(
        &self,
        store: &Store,
        presented: &str,
        hash: &str,
    ) -> Result<Credential, DbErr> {
        if let Some((at, entry)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
        {
            if at.elapsed() < CACHE_TTL {
                return Ok(entry.credential(Utc::now()));
            }
        }
        self.refresh(store, presented, hash.to_owned()).await
    }

    /// Looks the credential up in the store, past the cache, and caches the answer: an
    /// open event stream checks this way, so a revocation ends it (and then fails new
    /// requests here) without waiting for the cache.
    pub async fn recheck(&self, store: &Store, presented: &str) -> Result<Credential, DbErr> {
        self.refresh(store, presented, hash_api_key(presented))
            .await
    }

    /// Drops what is cached for this hash: the next request looks it up again.
    pub fn forget(&self, hash: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash);
    }

    async fn refresh(
        &self,
        store: &Store,
        presented: &str,
        hash: String,
    ) -> Result<Credential, DbErr> {
        let entry = if is_browser_token(presented) {
            lookup_browser_token(store, &hash).await?
        } else {
            lookup(store, &hash).await?
        };
        let credential = entry.credential(Utc::now());
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_KEYS {
            entries.clear();
        }
        entries.insert(hash, (Instant::now(), entry));
        Ok(credential)
    }
}

async fn lookup(store: &Store, hash: &str) -> Result<Entry, DbErr> {
    Ok(store
        .key_by_hash(hash)
        .await?
        .filter(|(key, _)| constant_time_eq(&key.key_hash, hash))
        .map_or(Entry::Unknown, |(_, owner)| Entry::Caller {
            caller: Caller {
                owner_id: owner.id,
                owner_name: owner.name,
                browser: None,
            },
            revoked: false,
        }))
}

async fn lookup_browser_token(store: &Store, hash: &str) -> Result<Entry, DbErr> {
    Ok(store
        .browser_token_by_hash(hash)
        .await?
        .filter(|(token, _)| constant_time_eq(&token.token_hash, hash))
        .map_or(Entry::Unknown, |(token, owner)| Entry::Caller {
            revoked: token.revoked_at.is_some(),
            caller: Caller {
                owner_id: owner.id,
                owner_name: owner.name,
                browser: Some(Arc::new(crate::browser_token::scope_of(&token))),
            },
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
