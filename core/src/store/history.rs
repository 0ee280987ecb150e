//! What is kept, and for how long: rows that only record the past (finished jobs,
//! settled webhook deliveries and their attempts, events nothing still owes, forgotten
//! `Idempotency-Key`s) are deleted once older than the retention, a batch per table per
//! sweep, so the tables do not grow with every upload ever made. Uploads themselves are
//! kept.
use chrono::{DateTime, Utc};
use partway_entity::{
    event, idempotency_key,
    job::{self, JobState},
    webhook_attempt, webhook_delivery,
};
use sea_orm::{sea_query::Query, ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter};

use super::{events::PENDING, idempotency::WINDOW, Store};

/// Rows deleted per table per sweep: a sweep stays short; the next one goes on.
const PRUNE_BATCH: u64 = 5000;

/// Rows deleted by one [`Store::prune_history`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub events: u64,
    pub idempotency_keys: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.jobs + self.deliveries + self.attempts + self.events + self.idempotency_keys
    }
}

impl Store {
    /// Deletes history older than `before`. Work still owed is never touched: pending
    /// and running jobs, pending deliveries, their attempts, and the events they carry.
    pub async fn prune_history(&self, before: DateTime<Utc>) -> Result<Pruned, DbErr> {
        let finished_jobs = Query::select()
            .column(job::Column::Id)
            .from(job::Entity)
            .cond_where(
                Condition::all()
                    .add(job::Column::State.is_in([JobState::Done, JobState::Failed]))
                    .add(job::Column::UpdatedAt.lt(before)),
            )
            .limit(PRUNE_BATCH)
            .to_owned();
        let jobs = job::Entity::delete_many()
            .filter(job::Column::Id.in_subquery(finished_jobs))
            .exec(&self.db)
            .await?
            .rows_affected;

        // The attempts of a delivery still being retried are its story so far: kept.
        let retrying = Query::select()
            .column(webhook_delivery::Column::Id)
            .from(webhook_delivery::Entity)
            .cond_where(webhook_delivery::Column::State.eq(PENDING))
            .to_owned();
        let old_attempts = Query::select()
            .column(webhook_attempt::Column::Id)
            .from(webhook_attempt::Entity)
            .cond_where(
                Condition::all()
                    .add(webhook_attempt::Column::AttemptedAt.lt(before))
                    .add(webhook_attempt::Column::DeliveryId.not_in_subquery(retrying)),
            )
            .limit(PRUNE_BATCH)
            .to_owned();
        let attempts = webhook_attempt::Entity::delete_many()
            .filter(webhook_attempt::Column::Id.in_subquery(old_attempts))
            .exec(&self.db)
            .await?
            .rows_affected;

        let settled_deliveries = Query::select()
            .column(webhook_delivery::Column::Id)
            .from(webhook_delivery::Entity)
            .cond_where(
                Condition::all()
                    .add(webhook_delivery::Column::State.ne(PENDING))
                    .add(webhook_delivery::Column::FinishedAt.lt(before)),
            )
            .limit(PRUNE_BATCH)
            .to_owned();
        let deliveries = webhook_delivery::Entity::delete_many()
            .filter(webhook_delivery::Column::Id.in_subquery(settled_deliveries))
            .exec(&self.db)
            .await?
            .rows_affected;

        // An event still owed to an endpoint stays, whatever its age.
        let owed = Query::select()
            .column(webhook_delivery::Column::EventId)
            .from(webhook_delivery::Entity)
            .cond_where(webhook_delivery::Column::State.eq(PENDING))
            .to_owned();
        let old_events = Query::select()
            .column(event::Column::Id)
            .from(event::Entity)
            .cond_where(
                Condition::all()
                    .add(event::Column::CreatedAt.lt(before))
                    .add(event::Column::Id.not_in_subquery(owed)),
            )
            .limit(PRUNE_BATCH)
            .to_owned();
        let events = event::Entity::delete_many()
            .filter(event::Column::Id.in_subquery(old_events))
            .exec(&self.db)
            .await?
            .rows_affected;

        // A key older than its window is already ignored (and deleted when looked up).
        let idempotency_keys = idempotency_key::Entity::delete_many()
            .filter(idempotency_key::Column::CreatedAt.lt(Utc::now() - WINDOW))
            .exec(&self.db)
            .await?
            .rows_affected;

        Ok(Pruned {
            jobs,
            deliveries,
            attempts,
            events,
            idempotency_keys,
        })
    }
}
