//! Owners' quota overrides, and the per-owner lock and usage count behind the quota
//! check at init ([`Store::create_upload`]).
use partway_entity::{owner, upload};
use sea_orm::{
    sea_query::Expr, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::Store;
use crate::domain::{quota::ACTIVE_STATUSES, OwnerLimit, QuotaOverride, Usage};

/// `owners.max_active_*`: NULL is the server default, -1 unlimited.
fn limit_from_column(value: Option<i64>) -> OwnerLimit {
    match value {
        None => OwnerLimit::Default,
        Some(n) => u64::try_from(n).map_or(OwnerLimit::Unlimited, OwnerLimit::Max),
    }
}

fn limit_to_column(limit: OwnerLimit) -> Option<i64> {
    match limit {
        OwnerLimit::Default => None,
        OwnerLimit::Unlimited => Some(-1),
        OwnerLimit::Max(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
    }
}

/// An owner's quota overrides as stored.
pub fn quota_override(owner: &owner::Model) -> QuotaOverride {
    QuotaOverride {
        max_active_uploads: limit_from_column(owner.max_active_uploads),
        max_active_bytes: limit_from_column(owner.max_active_bytes),
    }
}

/// Takes the owner's lock for the rest of the transaction and reads the row: on
/// PostgreSQL `SELECT … FOR UPDATE` (concurrent inits of one owner queue here); on
/// SQLite a no-op write, so the transaction holds the database's write lock before
/// it counts (SQLite has one writer at a time).
pub(super) async fn lock_owner(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<owner::Model>, DbErr> {
    let query = owner::Entity::find_by_id(id);
    if db.get_database_backend() == DbBackend::Postgres {
        return query.lock_exclusive().one(db).await;
    }
    owner::Entity::update_many()
        .col_expr(owner::Column::Name, Expr::col(owner::Column::Name))
        .filter(owner::Column::Id.eq(id))
        .exec(db)
        .await?;
    query.one(db).await
}

#[derive(FromQueryResult)]
struct UsageRow {
    uploads: i64,
    bytes: i64,
}

/// The owner's unfinished uploads and their declared bytes.
pub(super) async fn usage(db: &impl ConnectionTrait, owner: Uuid) -> Result<Usage, DbErr> {
    let row = upload::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "uploads")
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(file_size), 0) AS BIGINT)"),
            "bytes",
        )
        .filter(upload::Column::OwnerId.eq(owner))
        .filter(upload::Column::Status.is_in(ACTIVE_STATUSES))
        .into_model::<UsageRow>()
        .one(db)
        .await?;
    Ok(row.map_or(Usage::default(), |r| Usage {
        uploads: u64::try_from(r.uploads).unwrap_or(0),
        bytes: u64::try_from(r.bytes).unwrap_or(0),
    }))
}

impl Store {
    /// Sets an owner's quota overrides (creating the owner when new).
    pub async fn set_owner_quota(
        &self,
        name: &str,
        quota: QuotaOverride,
    ) -> Result<owner::Model, DbErr> {
        let owner = self.ensure_owner(name).await?;
        owner::Entity::update_many()
            .col_expr(
                owner::Column::MaxActiveUploads,
                Expr::value(limit_to_column(quota.max_active_uploads)),
            )
            .col_expr(
                owner::Column::MaxActiveBytes,
                Expr::value(limit_to_column(quota.max_active_bytes)),
            )
            .filter(owner::Column::Id.eq(owner.id))
            .exec(&self.db)
            .await?;
        owner::Entity::find_by_id(owner.id)
            .one(&self.db)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("owner {name}")))
    }

    /// Every owner with what they hold now, by name.
    pub async fn owners(&self) -> Result<Vec<(owner::Model, Usage)>, DbErr> {
        let owners = owner::Entity::find()
            .order_by_asc(owner::Column::Name)
            .all(&self.db)
            .await?;
        let mut out = Vec::with_capacity(owners.len());
        for owner in owners {
            let held = usage(&self.db, owner.id).await?;
            out.push((owner, held));
        }
        Ok(out)
    }

    /// What the owner holds now.
    pub async fn owner_usage(&self, owner: Uuid) -> Result<Usage, DbErr> {
        usage(&self.db, owner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_trip_through_the_column() {
        for limit in [
            OwnerLimit::Default,
            OwnerLimit::Unlimited,
            OwnerLimit::Max(0),
            OwnerLimit::Max(10 << 30),
        ] {
            assert_eq!(limit_from_column(limit_to_column(limit)), limit);
        }
        assert_eq!(limit_from_column(Some(-7)), OwnerLimit::Unlimited);
    }
}
