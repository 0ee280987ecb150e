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
use sea_orm::{
    sea_query::{Query, SelectStatement},
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
};

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

/// Deletes at most [`PRUNE_BATCH`] rows of `E` matching `which`, by their `id` column.
async fn delete_batch<E: EntityTrait>(
    db: &impl ConnectionTrait,
    id: E::Column,
    which: Condition,
) -> Result<u64, DbErr> {
    let ids = Query::select()
        .column(id)
        .from(E::default())
        .cond_where(which)
        .limit(PRUNE_BATCH)
        .to_owned();
    Ok(E::delete_many()
        .filter(id.in_subquery(ids))
        .exec(db)
        .await?
        .rows_affected)
}

/// The deliveries still being retried: their attempts and events are kept.
fn pending_deliveries(column: webhook_delivery::Column) -> SelectStatement {
    Query::select()
        .column(column)
        .from(webhook_delivery::Entity)
        .cond_where(webhook_delivery::Column::State.eq(PENDING))
        .to_owned()
}

impl Store {
    /// Deletes history older than `before`. Work still owed is never touched: pending
    /// and running jobs, pending deliveries, their attempts, and the events they carry.
    pub async fn prune_history(&self, before: DateTime<Utc>) -> Result<Pruned, DbErr> {
        let jobs = delete_batch::<job::Entity>(
            &self.db,
            job::Column::Id,
            Condition::all()
                .add(job::Column::State.is_in([JobState::Done, JobState::Failed]))
                .add(job::Column::UpdatedAt.lt(before)),
        )
        .await?;
        let attempts = delete_batch::<webhook_attempt::Entity>(
            &self.db,
            webhook_attempt::Column::Id,
            Condition::all()
                .add(webhook_attempt::Column::AttemptedAt.lt(before))
                .add(
                    webhook_attempt::Column::DeliveryId
                        .not_in_subquery(pending_deliveries(webhook_delivery::Column::Id)),
                ),
        )
        .await?;
        let deliveries = delete_batch::<webhook_delivery::Entity>(
            &self.db,
            webhook_delivery::Column::Id,
            Condition::all()
                .add(webhook_delivery::Column::State.ne(PENDING))
                .add(webhook_delivery::Column::FinishedAt.lt(before)),
        )
        .await?;
        let events = delete_batch::<event::Entity>(
            &self.db,
            event::Column::Id,
            Condition::all()
                .add(event::Column::CreatedAt.lt(before))
                .add(
                    event::Column::Id
                        .not_in_subquery(pending_deliveries(webhook_delivery::Column::EventId)),
                ),
        )
        .await?;
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
