use sea_orm::entity::prelude::*;

/// A browser token (DESIGN §5). Only the SHA-256 of the token is stored; `prefix`
/// (its first characters) tells tokens apart in lists. `uploads_created` counts the
/// inits made with it, in the database, so `max_uploads` holds across API replicas.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "browser_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub prefix: String,
    pub label: Option<String>,
    pub max_file_size: Option<i64>,
    /// A JSON array of media types (`image/*` or exact).
    pub allowed_content_types: Option<Json>,
    pub max_uploads: Option<i64>,
    /// A JSON object of strings merged into every upload made with the token.
    pub metadata: Option<Json>,
    pub uploads_created: i64,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
