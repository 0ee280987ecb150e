use sea_orm::entity::prelude::*;

/// A tenant: every API key and upload belongs to exactly one owner.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "owners")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    pub created_at: DateTimeUtc,
    /// Quota overrides: NULL is the server default, -1 unlimited, else the limit.
    pub max_active_uploads: Option<i64>,
    pub max_active_bytes: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
