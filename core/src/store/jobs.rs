//! Job rows: the outbox written with the change that asks for the work, the
//! lease-based claim that lets any number of workers share them, their outcomes, and
//! the relay's batches (the distributed mode publishes rows to RabbitMQ, which only
//! carries their ids).
use std::time::Duration;

use chrono::{DateTime, Utc};
use partway_entity::job::{self, JobKind, JobState};
use sea_orm::{
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::Store;

/// Attempts before a job is given up and its upload shows the error.
pub const MAX_ATTEMPTS: i32 = 8;
/// A published job still pending this long after it was due is published again.
const REPUBLISH_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// A fresh job row, to insert with the upload change that asks for it.
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
fn claimable(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(job::Column::State.eq(JobState::Pending))
                .add(job::Column::RunAfter.lte(now)),
        )
        .add(
            Condition::all()
                .add(job::Column::State.eq(JobState::Running))
                .add(job::Column::LeasedUntil.lt(now)),
        )
}

/// The job as `job` claimed it: an outcome is written only while that claim holds, so
/// writing it again (after a lost reply) changes nothing, and a worker whose lease lapsed
/// and was taken over cannot overwrite the new holder's run.
fn held_by(job: &job::Model) -> Condition {
    Condition::all()
        .add(job::Column::Id.eq(job.id))
        .add(job::Column::State.eq(JobState::Running))
        .add(job::Column::Attempts.eq(job.attempts))
}

fn no_lease() -> Expr {
    Expr::value(Option::<DateTime<Utc>>::None)
}

impl Store {
    /// Takes one job if it is due (pending, or running with a lapsed lease). A
    /// conditional update, so two workers never both get it.
    /// With `take_over`, a running job is taken even though its lease has not lapsed:
    /// the queue redelivered it, so the worker that held it is gone.
    pub async fn claim_job(
        &self,
        job_id: Uuid,
        take_over: bool,
        lease: Duration,
    ) -> Result<Option<job::Model>, DbErr> {
        let now = Utc::now();
        let lease_end = now + chrono::Duration::from_std(lease).unwrap_or_default();
        // One statement: a claim whose row could not be read back (the database went away
        // between two statements) would hold the job, unseen, until its lease lapsed.
        let mut claimed = job::Entity::update_many()
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
            .exec_with_returning(&self.db)
            .await?;
        Ok(claimed.pop())
    }

    /// Ids of jobs that are due now, oldest first.
    pub async fn due_jobs(&self, limit: u64) -> Result<Vec<Uuid>, DbErr> {
        job::Entity::find()
            .select_only()
            .column(job::Column::Id)
            .filter(claimable(Utc::now()))
            .order_by_asc(job::Column::RunAfter)
            .limit(limit)
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await
    }

    /// Extends the lease of a job this claim still holds; false when it is no longer held
    /// (the lease lapsed and another worker took the job).
    pub async fn extend_lease(&self, job: &job::Model, lease: Duration) -> Result<bool, DbErr> {
        let lease_end = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
        let updated = job::Entity::update_many()
            .col_expr(job::Column::LeasedUntil, Expr::value(Some(lease_end)))
            .filter(held_by(job))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// Records a job's end (`done` or `failed`) and releases its lease.
    pub async fn finish_job(
        &self,
        job: &job::Model,
        state: JobState,
        error: Option<String>,
    ) -> Result<(), DbErr> {
        job::Entity::update_many()
            .col_expr(job::Column::State, Expr::value(state))
            .col_expr(job::Column::LeasedUntil, no_lease())
            .col_expr(job::Column::LastError, Expr::value(error))
            .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(held_by(job))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Makes the job pending again, due after `delay`.
    pub async fn retry_job_later(
        &self,
        job: &job::Model,
        delay: Duration,
        error: String,
    ) -> Result<(), DbErr> {
        let run_after = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        job::Entity::update_many()
            .col_expr(job::Column::State, Expr::value(JobState::Pending))
            .col_expr(job::Column::RunAfter, Expr::value(run_after))
            .col_expr(job::Column::LeasedUntil, no_lease())
            .col_expr(job::Column::LastError, Expr::value(Some(error)))
            .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(held_by(job))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Makes the job pending again, due after `delay`, giving back the attempt its
    /// claim counted (it waited; it did not try).
    pub async fn defer_job(&self, job: &job::Model, delay: Duration) -> Result<(), DbErr> {
        let run_after = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        job::Entity::update_many()
            .col_expr(job::Column::State, Expr::value(JobState::Pending))
            .col_expr(job::Column::RunAfter, Expr::value(run_after))
            .col_expr(job::Column::LeasedUntil, no_lease())
            .col_expr(
                job::Column::Attempts,
                Expr::col(job::Column::Attempts).sub(1),
            )
            .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(held_by(job))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Makes every job a dead process held claimable again (embedded mode: one process).
    pub async fn release_all_leases(&self) -> Result<u64, DbErr> {
        let result = job::Entity::update_many()
            .col_expr(job::Column::State, Expr::value(JobState::Pending))
            .col_expr(job::Column::LeasedUntil, no_lease())
            .filter(job::Column::State.eq(JobState::Running))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// The most recent job of a kind for an upload (to wait on work already queued).
    pub async fn latest_job(&self, upload_id: Uuid, kind: JobKind) -> Result<Option<Uuid>, DbErr> {
        Ok(job::Entity::find()
            .filter(job::Column::UploadId.eq(upload_id))
            .filter(job::Column::Kind.eq(kind))
            .order_by_desc(job::Column::CreatedAt)
            .one(&self.db)
            .await?
            .map(|j| j.id))
    }

    /// Where a job is; None when there is no such job.
    pub async fn job_state(&self, job_id: Uuid) -> Result<Option<JobState>, DbErr> {
        job::Entity::find_by_id(job_id)
            .select_only()
            .column(job::Column::State)
            .into_tuple::<JobState>()
            .one(&self.db)
            .await
    }

    /// Takes a batch of jobs to publish: unpublished pending ones, and published ones
    /// that look lost. On PostgreSQL the rows stay locked (`FOR UPDATE SKIP LOCKED`)
    /// until the batch is committed, so relays on many replicas share the work.
    pub async fn outbox_batch(&self, limit: u64) -> Result<OutboxBatch, DbErr> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let lost = now - REPUBLISH_AFTER;
        let pending = || Condition::all().add(job::Column::State.eq(JobState::Pending));
        let due = Condition::any()
            .add(pending().add(job::Column::PublishedAt.is_null()))
            .add(
                pending()
                    .add(job::Column::RunAfter.lt(lost))
                    .add(job::Column::PublishedAt.lt(lost)),
            )
            .add(
                Condition::all()
                    .add(job::Column::State.eq(JobState::Running))
                    .add(job::Column::LeasedUntil.lt(now))
                    .add(job::Column::PublishedAt.lt(lost)),
            );
        let mut query = job::Entity::find()
            .filter(due)
            .order_by_asc(job::Column::CreatedAt)
            .limit(limit);
        if txn.get_database_backend() == DbBackend::Postgres {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let jobs = query
            .all(&txn)
            .await?
            .into_iter()
            .map(|row| (row.id, row.kind))
            .collect();
        Ok(OutboxBatch { txn, jobs })
    }
}

/// Jobs taken for publishing; [`OutboxBatch::commit`] stamps the ones that were.
pub struct OutboxBatch {
    txn: DatabaseTransaction,
    jobs: Vec<(Uuid, JobKind)>,
}

impl OutboxBatch {
    pub fn jobs(&self) -> &[(Uuid, JobKind)] {
        &self.jobs
    }

    /// Marks `published` as published and releases the batch.
    pub async fn commit(self, published: &[Uuid]) -> Result<(), DbErr> {
        if !published.is_empty() {
            job::Entity::update_many()
                .col_expr(job::Column::PublishedAt, Expr::value(Some(Utc::now())))
                .filter(job::Column::Id.is_in(published.iter().copied()))
                .exec(&self.txn)
                .await?;
        }
        self.txn.commit().await
    }
}

#[cfg(test)]
mod tests {
    use partway_entity::job::JobState;

    use crate::{
        domain::MIB,
        jobs::LEASE,
        testing::{init_input, TestApp},
    };

    #[tokio::test]
    async fn an_outcome_is_written_only_under_the_claim_that_ran_the_job() {
        let t = TestApp::new().await;
        let input = init_input("claimed.bin", 6 * MIB);
        let accepted = t.app.init(&t.caller, input, None).await.unwrap();
        let id = accepted.job_id.unwrap();
        let store = t.app.store();
        let first = store
            .claim_job(id, false, LEASE)
            .await
            .unwrap()
            .expect("claimed");
        assert_eq!((first.state, first.attempts), (JobState::Running, 1));
        assert!(
            store.claim_job(id, false, LEASE).await.unwrap().is_none(),
            "leased"
        );
        // The queue redelivers it: the first holder is presumed dead.
        let second = store
            .claim_job(id, true, LEASE)
            .await
            .unwrap()
            .expect("taken over");
        assert_eq!(second.attempts, 2);

        // The first holder's late outcome changes nothing; the second's is recorded, and
        // recording it again (a reply lost) changes nothing either.
        store
            .finish_job(&first, JobState::Failed, Some("late".into()))
            .await
            .unwrap();
        assert_eq!(store.job_state(id).await.unwrap(), Some(JobState::Running));
        store
            .finish_job(&second, JobState::Done, None)
            .await
            .unwrap();
        assert_eq!(store.job_state(id).await.unwrap(), Some(JobState::Done));
        store
            .retry_job_later(&second, std::time::Duration::ZERO, "again".into())
            .await
            .unwrap();
        assert_eq!(store.job_state(id).await.unwrap(), Some(JobState::Done));
    }
}
