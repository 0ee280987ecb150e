//! Statements of size-unknown uploads (DESIGN §5, the Uppy routes): the size fixed at
//! complete, and the form-POST uploads the checker heads.
use chrono::Utc;
use partway_entity::upload::{self, UploadSizing};
use sea_orm::{
    sea_query::Expr, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::Store;
use crate::domain::UploadStatus;

impl Store {
    /// Fixes a size-unknown upload's size (at complete, before storage completes it),
    /// while it is `completing` (or `active`: a form-POST upload storage holds).
    pub async fn set_final_size(
        &self,
        id: Uuid,
        file_size: u64,
        part_size: u64,
        total_parts: u32,
    ) -> Result<bool, DbErr> {
        let done = upload::Entity::update_many()
            .col_expr(upload::Column::FileSize, Expr::value(file_size as i64))
            .col_expr(upload::Column::PartSize, Expr::value(part_size as i64))
            .col_expr(upload::Column::TotalParts, Expr::value(total_parts as i32))
            .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(upload::Column::Id.eq(id))
            .filter(upload::Column::Sizing.is_not_null())
            .filter(upload::Column::Status.is_in([UploadStatus::Completing, UploadStatus::Active]))
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Form-POST uploads waiting for their object (active, not past their time),
    /// oldest first, at most `limit`.
    pub async fn posted_uploads_to_check(&self, limit: u64) -> Result<Vec<upload::Model>, DbErr> {
        upload::Entity::find()
            .filter(upload::Column::Sizing.eq(UploadSizing::Post))
            .filter(upload::Column::Status.eq(UploadStatus::Active))
            .filter(upload::Column::ExpiresAt.gt(Utc::now()))
            .order_by_asc(upload::Column::CreatedAt)
            .limit(limit)
            .all(&self.db)
            .await
    }
}
