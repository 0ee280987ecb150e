//! Job rows: kinds, payloads, and the lease-based claim used by the embedded queue
//! (the database row is the job; RabbitMQ only carries its id in the distributed mode).
use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::Utc;
use partway_entity::job;
use sea_orm::{
    sea_query::{Expr, ExprTrait},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::ports::JobQueue;

pub use partway_entity::job::{JobKind, JobState};

/// Input of a complete job: the parts the client named, or None for "what storage lists".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CompletePayload {
    pub parts: Option<Vec<(u32, String)>>,
}

/// A worker that holds a job longer than this is presumed dead and the job is taken again.
pub const LEASE: Duration = Duration::from_secs(120);
/// Attempts before a job is given up and its upload shows the error.
pub const MAX_ATTEMPTS: i32 = 8;

/// Exponential backoff: 1 s, 2 s, 4 s … capped at 5 minutes.
pub fn backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    Duration::from_secs(std::cmp::Ord::min(2u64.saturating_pow(exp), 300))
}

pub fn new_job(upload_id: Uuid, kind: JobKind, payload: serde_json::Value) -> job::ActiveModel {
    let now = Utc::now();
    job::ActiveModel {
        id: Set(Uuid::new_v4()),
        upload_id: Set(upload_id),
        kind: Set(kind),
        payload: Set(payload),
        state: Set(JobState::Pending),
        attempts: Set(0),
        run_after: Set(now),
        leased_until: Set(None),
        last_error: Set(None),
        published_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Due now: pending and past its backoff, or running under a lease that lapsed.
fn claimable(now: chrono::DateTime<Utc>) -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(
            sea_orm::Condition::all()
                .add(job::Column::State.eq(JobState::Pending))
                .add(job::Column::RunAfter.lte(now)),
        )
        .add(
            sea_orm::Condition::all()
                .add(job::Column::State.eq(JobState::Running))
                .add(job::Column::LeasedUntil.lt(now)),
        )
}

/// Takes one job if it is due (pending, or running with a lapsed lease). A
/// conditional update, so two workers never both get it.
/// With `take_over`, a running job is taken even though its lease has not lapsed:
/// the queue redelivered it, so the worker that held it is gone.
pub async fn claim(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    take_over: bool,
) -> Result<Option<job::Model>, DbErr> {
    let now = Utc::now();
    let lease_end = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
    let updated = job::Entity::update_many()
        .col_expr(job::Column::State, Expr::value(JobState::Running))
        .col_expr(job::Column::LeasedUntil, Expr::value(Some(lease_end)))
        .col_expr(
            job::Column::Attempts,
            Expr::col(job::Column::Attempts).add(1),
        )
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .filter(job::Column::Id.eq(job_id))
        .filter(if take_over {
            claimable(now).add(job::Column::State.eq(JobState::Running))
        } else {
            claimable(now)
        })
        .exec(db)
        .await?;
    if updated.rows_affected != 1 {
        return Ok(None);
    }
    job::Entity::find_by_id(job_id).one(db).await
}

/// Ids of jobs that are due now, oldest first.
pub async fn due_jobs(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<Uuid>, DbErr> {
    let now = Utc::now();
    let rows = job::Entity::find()
        .select_only()
        .column(job::Column::Id)
        .filter(claimable(now))
        .order_by_asc(job::Column::RunAfter)
        .limit(limit)
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    Ok(rows)
}

pub async fn finish(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    state: JobState,
    error: Option<String>,
) -> Result<(), DbErr> {
    job::Entity::update_many()
        .col_expr(job::Column::State, Expr::value(state))
        .col_expr(
            job::Column::LeasedUntil,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(job::Column::LastError, Expr::value(error))
        .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(job::Column::Id.eq(job_id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn retry_later(
    db: &impl ConnectionTrait,
    job: &job::Model,
    error: String,
) -> Result<(), DbErr> {
    let run_after =
        Utc::now() + chrono::Duration::from_std(backoff(job.attempts)).unwrap_or_default();
    job::Entity::update_many()
        .col_expr(job::Column::State, Expr::value(JobState::Pending))
        .col_expr(job::Column::RunAfter, Expr::value(run_after))
        .col_expr(
            job::Column::LeasedUntil,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(job::Column::LastError, Expr::value(Some(error)))
        .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(job::Column::Id.eq(job.id))
        .exec(db)
        .await?;
    Ok(())
}

/// Makes every job a dead process held claimable again (embedded mode: one process).
pub async fn release_all_leases(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let result = job::Entity::update_many()
        .col_expr(job::Column::State, Expr::value(JobState::Pending))
        .col_expr(
            job::Column::LeasedUntil,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .filter(job::Column::State.eq(JobState::Running))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// The embedded queue: job rows are the queue; submitting wakes the in-process runner.
#[derive(Default, Clone)]
pub struct EmbeddedQueue {
    wake: Arc<Notify>,
}

impl EmbeddedQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    async fn submit(&self, _job_ids: &[Uuid]) {
        self.wake.notify_one();
    }

    async fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
