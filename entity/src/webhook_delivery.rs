use sea_orm::entity::prelude::*;

/// An event owed to one webhook endpoint. Written with the event; a `webhook` job
/// carries it out. `state`: `pending`, `delivered` or `failed`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub upload_id: Uuid,
    /// The event's place among its upload's events: deliveries to one endpoint go out
    /// in this order.
    pub seq: i32,
    pub event_type: String,
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    /// When the next attempt is due (none once it is over).
    pub next_attempt_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub first_attempt_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
