use sea_orm::entity::prelude::*;

/// A unit of slow work, written in the same transaction as the upload change that
/// asks for it (the outbox). The embedded queue runs these rows directly; the
/// distributed relay publishes them and stamps `published_at`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub upload_id: Uuid,
    /// `init`, `resume`, `complete`, `abort`, `expire`.
    pub kind: String,
    /// Kind-specific input (e.g. the parts a client sent to complete). Never secrets.
    pub payload: Json,
    /// `pending`, `running`, `done`, `failed`.
    pub state: String,
    pub attempts: i32,
    pub run_after: DateTimeUtc,
    /// A running job whose lease passed is taken again (its worker died).
    pub leased_until: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub published_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
