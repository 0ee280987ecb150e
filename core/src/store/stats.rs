//! The counts behind the metrics gauges.
use partway_entity::{
    job::{self, JobKind, JobState},
    upload,
};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::Store;
use crate::domain::UploadStatus;

impl Store {
    pub async fn uploads_by_status(&self) -> Result<Vec<(UploadStatus, i64)>, DbErr> {
        upload::Entity::find()
            .select_only()
            .column(upload::Column::Status)
            .column_as(upload::Column::Id.count(), "n")
            .group_by(upload::Column::Status)
            .into_tuple()
            .all(&self.db)
            .await
    }

    /// Jobs not finished yet (pending or running), by kind.
    pub async fn unfinished_jobs_by_kind(&self) -> Result<Vec<(JobKind, i64)>, DbErr> {
        job::Entity::find()
            .select_only()
            .column(job::Column::Kind)
            .column_as(job::Column::Id.count(), "n")
            .filter(job::Column::State.is_in([JobState::Pending, JobState::Running]))
            .group_by(job::Column::Kind)
            .into_tuple()
            .all(&self.db)
            .await
    }
}
