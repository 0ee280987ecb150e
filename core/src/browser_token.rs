//! Browser tokens (DESIGN §5): short-lived credentials an application's backend (holding
//! an API key) mints for its page. A token is `pwb_` + 256 random bits, shown once and
//! stored as its SHA-256 (the same fast, constant-time-compared lookup as API keys,
//! through the same 30-second cache). Stored rather than signed: revocation and
//! `maxUploads` need a row anyway, and a row lets every replica agree on both.
use std::collections::BTreeMap;

use base64::Engine;
use chrono::Utc;
use partway_entity::browser_token;
use rand::RngCore;
use sea_orm::ActiveValue::Set;
use uuid::Uuid;

use crate::{
    auth::Caller,
    crypto::hash_api_key,
    domain::{
        browser::BROWSER_TOKEN_PREFIX, BrowserScope, ErrorCode, TokenLimits, ValidationError,
    },
    store::Store,
    usecases::{App, AppError},
};

/// A new browser token: 256 random bits, base64url, after `pwb_`.
pub fn generate_browser_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{BROWSER_TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What a stored token allows.
pub fn scope_of(token: &browser_token::Model) -> BrowserScope {
    BrowserScope {
        token_id: token.id,
        expires_at: token.expires_at,
        max_file_size: token.max_file_size.and_then(|n| u64::try_from(n).ok()),
        allowed_content_types: token
            .allowed_content_types
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default(),
        max_uploads: token.max_uploads.and_then(|n| u64::try_from(n).ok()),
        metadata: token
            .metadata
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default(),
    }
}

/// Mints a token for `owner_id`; returns its row and the token, which is never stored
/// nor shown again.
pub async fn create(
    store: &Store,
    owner_id: Uuid,
    limits: &TokenLimits,
) -> Result<(browser_token::Model, String), CreateError> {
    let expires_in = limits.validate()?;
    let token = generate_browser_token();
    let now = Utc::now();
    let row = browser_token::ActiveModel {
        id: Set(Uuid::new_v4()),
        owner_id: Set(owner_id),
        token_hash: Set(hash_api_key(&token)),
        prefix: Set(token.chars().take(BROWSER_TOKEN_PREFIX.len() + 6).collect()),
        label: Set(limits.label.clone()),
        max_file_size: Set(limits
            .max_file_size
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))),
        allowed_content_types: Set(limits
            .allowed_content_types
            .as_ref()
            .map(|t| serde_json::json!(t))),
        max_uploads: Set(limits
            .max_uploads
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))),
        metadata: Set(limits.metadata.as_ref().map(|m| serde_json::json!(m))),
        uploads_created: Set(0),
        created_at: Set(now),
        expires_at: Set(now + chrono::Duration::seconds(expires_in as i64)),
        revoked_at: Set(None),
    };
    Ok((store.insert_browser_token(row).await?, token))
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

impl From<CreateError> for AppError {
    fn from(e: CreateError) -> AppError {
        match e {
            CreateError::Invalid(v) => v.into(),
            CreateError::Db(db) => db.into(),
        }
    }
}

/// Mints a token for the owner named `owner_name` (created when new): `partway tokens
/// create` for scripts, and the all-in-one service's development token.
pub async fn create_for_owner(
    store: &Store,
    owner_name: &str,
    limits: &TokenLimits,
) -> Result<(browser_token::Model, String), CreateError> {
    crate::domain::validate_owner_name(owner_name)?;
    let owner = store.ensure_owner(owner_name).await?;
    create(store, owner.id, limits).await
}

fn api_key_only(caller: &Caller) -> Result<(), AppError> {
    if caller.browser.is_some() {
        return Err(AppError::client(
            ErrorCode::Forbidden,
            "browser tokens cannot manage browser tokens; use an API key",
        ));
    }
    Ok(())
}

impl App {
    /// `POST /api/v1/browser-tokens`: an API key mints a token for its owner.
    pub async fn create_browser_token(
        &self,
        caller: &Caller,
        limits: &TokenLimits,
    ) -> Result<(browser_token::Model, String), AppError> {
        api_key_only(caller)?;
        Ok(create(&self.store, caller.owner_id, limits).await?)
    }

    /// The owner's live tokens (never their secret), newest first.
    pub async fn list_browser_tokens(
        &self,
        caller: &Caller,
    ) -> Result<Vec<browser_token::Model>, AppError> {
        api_key_only(caller)?;
        Ok(self.store.live_browser_tokens(caller.owner_id).await?)
    }

    /// Revokes one of the owner's tokens: 404 `NOT_FOUND` for any other id.
    pub async fn revoke_browser_token(&self, caller: &Caller, id: Uuid) -> Result<(), AppError> {
        api_key_only(caller)?;
        if let Some(hash) = self.store.revoke_browser_token(caller.owner_id, id).await? {
            // This process refuses it at once; other replicas within the cache's 30 s.
            self.keys.forget(&hash);
            Ok(())
        } else {
            Err(AppError::client(
                ErrorCode::NotFound,
                "this owner has no browser token with that id",
            ))
        }
    }
}

/// A token's metadata and content types as the API shows them.
pub fn shown_limits(
    token: &browser_token::Model,
) -> (Option<Vec<String>>, Option<BTreeMap<String, String>>) {
    let scope = scope_of(token);
    (
        token
            .allowed_content_types
            .as_ref()
            .map(|_| scope.allowed_content_types),
        token.metadata.as_ref().map(|_| scope.metadata),
    )
}
