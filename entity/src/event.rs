use sea_orm::entity::prelude::*;

/// An event for applications (DESIGN §6), written in the transaction of the status
/// change that causes it. `body` is the exact JSON sent (`{id, type, createdAt, data}`),
/// kept as text so every delivery of it carries the same bytes. `seq` numbers one
/// upload's events in the order they happened.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    pub upload_id: Uuid,
    pub seq: i32,
    pub event_type: String,
    #[sea_orm(column_type = "Text")]
    pub body: String,
    pub created_at: DateTimeUtc,
    /// When the relay published it to the AMQP event exchange (confirmed).
    pub published_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
