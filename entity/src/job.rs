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
    pub kind: JobKind,
    /// Kind-specific input (e.g. the parts a client sent to complete). Never secrets.
    pub payload: Json,
    pub state: JobState,
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

/// What a job does; one handler and one RabbitMQ work queue per kind. Stored as its
/// lowercase name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    DeriveActiveEnum,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum JobKind {
    #[sea_orm(string_value = "init")]
    Init,
    #[sea_orm(string_value = "resume")]
    Resume,
    #[sea_orm(string_value = "complete")]
    Complete,
    #[sea_orm(string_value = "abort")]
    Abort,
    #[sea_orm(string_value = "expire")]
    Expire,
    /// Deliver one event to one webhook endpoint (`payload`: the delivery's id).
    #[sea_orm(string_value = "webhook")]
    Webhook,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn all() -> impl Iterator<Item = JobKind> {
        <JobKind as strum::IntoEnumIterator>::iter()
    }
}

/// Where a job is: waiting (`pending`, maybe for a retry), held by a worker under a
/// lease (`running`), or over (`done`, `failed`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumIter, strum::IntoStaticStr, DeriveActiveEnum,
)]
#[strum(serialize_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum JobState {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "done")]
    Done,
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Over: nothing will run it again.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed)
    }
}
