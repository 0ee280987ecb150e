//! Part rows: what clients reported after their PUTs, replaced by storage's own list
//! whenever a job reads it; and the upload's progress counters kept equal to them.
use chrono::Utc;
use partway_entity::{upload, upload_part};
use sea_orm::{
    sea_query::{Expr, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

use super::Store;
use crate::ports::StoredPart;

impl Store {
    /// Records one part (a repeat replaces it) and recounts the upload's progress.
    pub async fn record_part(&self, upload_id: Uuid, part: &StoredPart) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        upload_part::Entity::insert(upload_part::ActiveModel {
            upload_id: Set(upload_id),
            part_number: Set(part.part_number as i32),
            etag: Set(part.etag.clone()),
            size: Set(part.size as i64),
            uploaded_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([
                upload_part::Column::UploadId,
                upload_part::Column::PartNumber,
            ])
            .update_columns([
                upload_part::Column::Etag,
                upload_part::Column::Size,
                upload_part::Column::UploadedAt,
            ])
            .to_owned(),
        )
        .exec(&txn)
        .await?;
        refresh_counters(&txn, upload_id).await?;
        txn.commit().await
    }

    /// The upload's parts, by number.
    pub async fn uploaded_parts(&self, upload_id: Uuid) -> Result<Vec<StoredPart>, DbErr> {
        Ok(upload_part::Entity::find()
            .filter(upload_part::Column::UploadId.eq(upload_id))
            .order_by_asc(upload_part::Column::PartNumber)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| StoredPart {
                part_number: p.part_number as u32,
                etag: p.etag,
                size: p.size as u64,
            })
            .collect())
    }

    /// Storage listed `listed`: it becomes the part rows, the progress counters and the
    /// count of parts that need no URL, in one transaction.
    pub async fn reconcile_parts(
        &self,
        upload_id: Uuid,
        listed: &[StoredPart],
    ) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        replace_parts(&txn, upload_id, listed).await?;
        refresh_counters(&txn, upload_id).await?;
        upload::Entity::update_many()
            .col_expr(upload::Column::UrlsReady, Expr::value(listed.len() as i32))
            .filter(upload::Column::Id.eq(upload_id))
            .exec(&txn)
            .await?;
        txn.commit().await
    }
}

/// Storage's list is the truth: the part rows become exactly what it holds.
pub(super) async fn replace_parts(
    db: &impl ConnectionTrait,
    upload_id: Uuid,
    parts: &[StoredPart],
) -> Result<(), DbErr> {
    upload_part::Entity::delete_many()
        .filter(upload_part::Column::UploadId.eq(upload_id))
        .exec(db)
        .await?;
    let now = Utc::now();
    for chunk in parts.chunks(1000) {
        let rows = chunk.iter().map(|p| upload_part::ActiveModel {
            upload_id: Set(upload_id),
            part_number: Set(p.part_number as i32),
            etag: Set(p.etag.clone()),
            size: Set(p.size as i64),
            uploaded_at: Set(now),
        });
        upload_part::Entity::insert_many(rows).exec(db).await?;
    }
    Ok(())
}

/// Recounts the upload's stored parts and bytes; summed in the database, since an upload
/// of 10,000 parts reports 10,000 times.
async fn refresh_counters(db: &impl ConnectionTrait, upload_id: Uuid) -> Result<(), DbErr> {
    let (parts, bytes): (i64, i64) = upload_part::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "parts")
        // PostgreSQL sums BIGINT into NUMERIC: cast back.
        .column_as(
            Expr::cust(r#"CAST(COALESCE(SUM("size"), 0) AS BIGINT)"#),
            "bytes",
        )
        .filter(upload_part::Column::UploadId.eq(upload_id))
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or((0, 0));
    upload::Entity::update_many()
        .col_expr(upload::Column::UploadedParts, Expr::value(parts as i32))
        .col_expr(upload::Column::UploadedBytes, Expr::value(bytes))
        .col_expr(upload::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(upload::Column::Id.eq(upload_id))
        .exec(db)
        .await?;
    Ok(())
}
