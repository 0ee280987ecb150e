//! Browser tokens (DESIGN §5): stored as their SHA-256 like API keys; revoked rows are
//! kept. The count behind `maxUploads` is a column updated under a condition inside
//! the init's transaction ([`take_upload_slot`]), so it holds across API replicas.
use chrono::Utc;
use partway_entity::{browser_token, owner};
use sea_orm::{
    sea_query::{Expr, ExprTrait},
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use super::Store;

/// Counts one more upload made with the token, unless it already made `max_uploads`;
/// false when it has no room. One conditional update: two replicas cannot both take
/// the last slot.
pub(super) async fn take_upload_slot(
    db: &impl ConnectionTrait,
    token_id: Uuid,
) -> Result<bool, DbErr> {
    let taken = browser_token::Entity::update_many()
        .col_expr(
            browser_token::Column::UploadsCreated,
            Expr::col(browser_token::Column::UploadsCreated).add(1),
        )
        .filter(browser_token::Column::Id.eq(token_id))
        .filter(
            Condition::any()
                .add(browser_token::Column::MaxUploads.is_null())
                .add(
                    Expr::col(browser_token::Column::UploadsCreated)
                        .lt(Expr::col(browser_token::Column::MaxUploads)),
                ),
        )
        .exec(db)
        .await?;
    Ok(taken.rows_affected == 1)
}

impl Store {
    /// The token with this hash (revoked ones included: they answer "revoked"), with
    /// its owner.
    pub async fn browser_token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(browser_token::Model, owner::Model)>, DbErr> {
        let Some(token) = browser_token::Entity::find()
            .filter(browser_token::Column::TokenHash.eq(hash))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let owner = owner::Entity::find_by_id(token.owner_id)
            .one(&self.db)
            .await?;
        Ok(owner.map(|o| (token, o)))
    }

    pub async fn insert_browser_token(
        &self,
        token: browser_token::ActiveModel,
    ) -> Result<browser_token::Model, DbErr> {
        token.insert(&self.db).await
    }

    /// The owner's tokens that are neither revoked nor expired, newest first.
    pub async fn live_browser_tokens(
        &self,
        owner: Uuid,
    ) -> Result<Vec<browser_token::Model>, DbErr> {
        browser_token::Entity::find()
            .filter(browser_token::Column::OwnerId.eq(owner))
            .filter(browser_token::Column::RevokedAt.is_null())
            .filter(browser_token::Column::ExpiresAt.gt(Utc::now()))
            .order_by_desc(browser_token::Column::CreatedAt)
            .all(&self.db)
            .await
    }

    /// Revokes the owner's token `id` (the row is kept); its hash, or None when the
    /// owner has no such token. Revoking a revoked token keeps its first revocation time.
    pub async fn revoke_browser_token(
        &self,
        owner: Uuid,
        id: Uuid,
    ) -> Result<Option<String>, DbErr> {
        let Some(token) = browser_token::Entity::find_by_id(id)
            .filter(browser_token::Column::OwnerId.eq(owner))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if token.revoked_at.is_none() {
            browser_token::Entity::update_many()
                .col_expr(
                    browser_token::Column::RevokedAt,
                    Expr::value(Some(Utc::now())),
                )
                .filter(browser_token::Column::Id.eq(id))
                .filter(browser_token::Column::RevokedAt.is_null())
                .exec(&self.db)
                .await?;
        }
        Ok(Some(token.token_hash))
    }
}
