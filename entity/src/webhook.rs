use sea_orm::entity::prelude::*;

/// A webhook endpoint of an owner (DESIGN §6). The signing secret is sealed with the
/// master key (bound to this row); it is shown once, at creation.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub url: String,
    /// A JSON array of event types (`upload.completed`, …).
    pub events: Json,
    pub description: Option<String>,
    pub secret_sealed: Vec<u8>,
    pub created_at: DateTimeUtc,
    /// Set when the endpoint answered 410 Gone: nothing more is sent to it.
    pub disabled_at: Option<DateTimeUtc>,
    pub disabled_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
