//! Events for applications (DESIGN §6): the event outbox, webhook endpoints, their
//! deliveries and attempts.
//!
//! [`emit_on`] runs inside the transaction of the status change that causes the event
//! (called by `uploads::transition_on`): the event row, one delivery per subscribed
//! endpoint and the `webhook` job that carries each out are committed with the change
//! or not at all, so a crash can delay an event but never lose or invent one.
use chrono::{DateTime, Utc};
use partway_entity::{event, job::JobKind, upload, webhook, webhook_attempt, webhook_delivery};
use sea_orm::{
    sea_query::{Expr, LockBehavior, LockType},
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::{jobs::new_job, Store};
use crate::events::{event_body, status_document, EventType};

/// Delivery states.
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// Writes the event `event_type` of upload `upload_id` (its document as the row is now,
/// in this transaction), a delivery and a job for every endpoint of the owner that
/// subscribed to it.
pub(super) async fn emit_on(
    db: &impl ConnectionTrait,
    upload_id: Uuid,
    event_type: EventType,
) -> Result<(), DbErr> {
    let Some(row) = upload::Entity::find_by_id(upload_id).one(db).await? else {
        return Ok(());
    };
    let last: Option<i32> = event::Entity::find()
        .select_only()
        .column_as(event::Column::Seq.max(), "seq")
        .filter(event::Column::UploadId.eq(upload_id))
        .into_tuple::<Option<i32>>()
        .one(db)
        .await?
        .flatten();
    let seq = last.unwrap_or(0) + 1;
    let now = Utc::now();
    let id = Uuid::new_v4();
    let data = serde_json::to_value(status_document(&row, now)).unwrap_or_default();
    let body = event_body(id, event_type.as_str(), now, data);
    event::ActiveModel {
        id: Set(id),
        owner_id: Set(row.owner_id),
        upload_id: Set(upload_id),
        seq: Set(seq),
        event_type: Set(event_type.as_str().to_string()),
        body: Set(body),
        created_at: Set(now),
        published_at: Set(None),
    }
    .insert(db)
    .await?;
    let endpoints = webhook::Entity::find()
        .filter(webhook::Column::OwnerId.eq(row.owner_id))
        .filter(webhook::Column::DisabledAt.is_null())
        .all(db)
        .await?;
    for endpoint in endpoints.iter().filter(|w| subscribed(w, event_type)) {
        let delivery_id = Uuid::new_v4();
        webhook_delivery::ActiveModel {
            id: Set(delivery_id),
            webhook_id: Set(endpoint.id),
            event_id: Set(id),
            upload_id: Set(upload_id),
            seq: Set(seq),
            event_type: Set(event_type.as_str().to_string()),
            state: Set(PENDING.to_string()),
            attempts: Set(0),
            last_status: Set(None),
            last_error: Set(None),
            next_attempt_at: Set(Some(now)),
            created_at: Set(now),
            first_attempt_at: Set(None),
            finished_at: Set(None),
        }
        .insert(db)
        .await?;
        new_job(
            upload_id,
            JobKind::Webhook,
            serde_json::json!({ "delivery": delivery_id }),
        )
        .insert(db)
        .await?;
    }
    Ok(())
}

/// Whether an endpoint asked for this type of event.
fn subscribed(endpoint: &webhook::Model, event_type: EventType) -> bool {
    endpoint.events.as_array().is_some_and(|types| {
        types
            .iter()
            .any(|t| t.as_str() == Some(event_type.as_str()))
    })
}

/// What an attempt at a delivery got.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub attempted_at: DateTime<Utc>,
    /// `Some` when it will be tried again then; else the delivery is over (`state`).
    pub next_retry_at: Option<DateTime<Utc>>,
    pub state: &'static str,
}

impl Store {
    // --- endpoints

    pub async fn insert_webhook(&self, row: webhook::ActiveModel) -> Result<webhook::Model, DbErr> {
        row.insert(&self.db).await
    }

    /// The owner's endpoints, oldest first.
    pub async fn webhooks_of(&self, owner: Uuid) -> Result<Vec<webhook::Model>, DbErr> {
        webhook::Entity::find()
            .filter(webhook::Column::OwnerId.eq(owner))
            .order_by_asc(webhook::Column::CreatedAt)
            .order_by_asc(webhook::Column::Id)
            .all(&self.db)
            .await
    }

    /// Every endpoint of every owner (`partway webhooks list`).
    pub async fn all_webhooks(&self) -> Result<Vec<webhook::Model>, DbErr> {
        webhook::Entity::find()
            .order_by_asc(webhook::Column::CreatedAt)
            .all(&self.db)
            .await
    }

    /// Deletes an endpoint whoever owns it (`partway webhooks delete`).
    pub async fn delete_webhook_any_owner(&self, id: Uuid) -> Result<bool, DbErr> {
        match self.webhook(id).await? {
            Some(row) => self.delete_webhook(row.owner_id, id).await,
            None => Ok(false),
        }
    }

    pub async fn webhook(&self, id: Uuid) -> Result<Option<webhook::Model>, DbErr> {
        webhook::Entity::find_by_id(id).one(&self.db).await
    }

    /// The endpoint if `owner` owns it (another owner's is simply not found).
    pub async fn owned_webhook(
        &self,
        owner: Uuid,
        id: Uuid,
    ) -> Result<Option<webhook::Model>, DbErr> {
        webhook::Entity::find_by_id(id)
            .filter(webhook::Column::OwnerId.eq(owner))
            .one(&self.db)
            .await
    }

    /// Deletes an owner's endpoint with its deliveries and attempts; false when there
    /// was none. Jobs still queued for it find no delivery and end.
    pub async fn delete_webhook(&self, owner: Uuid, id: Uuid) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        let deleted = webhook::Entity::delete_many()
            .filter(webhook::Column::Id.eq(id))
            .filter(webhook::Column::OwnerId.eq(owner))
            .exec(&txn)
            .await?;
        if deleted.rows_affected == 1 {
            webhook_delivery::Entity::delete_many()
                .filter(webhook_delivery::Column::WebhookId.eq(id))
                .exec(&txn)
                .await?;
            webhook_attempt::Entity::delete_many()
                .filter(webhook_attempt::Column::WebhookId.eq(id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(deleted.rows_affected == 1)
    }

    /// Replaces an endpoint's sealed secret if it is still `old` (a master key rotation).
    pub async fn replace_webhook_secret(
        &self,
        id: Uuid,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, DbErr> {
        let result = webhook::Entity::update_many()
            .col_expr(webhook::Column::SecretSealed, Expr::value(new.to_vec()))
            .filter(webhook::Column::Id.eq(id))
            .filter(webhook::Column::SecretSealed.eq(old.to_vec()))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// The endpoint answered 410 Gone: nothing more goes to it.
    pub async fn disable_webhook(&self, id: Uuid, reason: &str) -> Result<(), DbErr> {
        webhook::Entity::update_many()
            .col_expr(webhook::Column::DisabledAt, Expr::value(Some(Utc::now())))
            .col_expr(
                webhook::Column::DisabledReason,
                Expr::value(Some(reason.to_string())),
            )
            .filter(webhook::Column::Id.eq(id))
            .filter(webhook::Column::DisabledAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // --- deliveries

    pub async fn delivery(&self, id: Uuid) -> Result<Option<webhook_delivery::Model>, DbErr> {
        webhook_delivery::Entity::find_by_id(id).one(&self.db).await
    }

    pub async fn event(&self, id: Uuid) -> Result<Option<event::Model>, DbErr> {
        event::Entity::find_by_id(id).one(&self.db).await
    }

    /// The earliest still-pending delivery of an earlier event of the same upload to the
    /// same endpoint (per endpoint, one upload's events go out in order), if any.
    pub async fn earlier_pending_delivery(
        &self,
        delivery: &webhook_delivery::Model,
    ) -> Result<Option<webhook_delivery::Model>, DbErr> {
        webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::WebhookId.eq(delivery.webhook_id))
            .filter(webhook_delivery::Column::UploadId.eq(delivery.upload_id))
            .filter(webhook_delivery::Column::Seq.lt(delivery.seq))
            .filter(webhook_delivery::Column::State.eq(PENDING))
            .order_by_asc(webhook_delivery::Column::Seq)
            .one(&self.db)
            .await
    }

    /// Records an attempt and where the delivery is now, in one transaction.
    pub async fn record_attempt(
        &self,
        delivery: &webhook_delivery::Model,
        record: &AttemptRecord,
    ) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        webhook_attempt::ActiveModel {
            id: Set(Uuid::new_v4()),
            delivery_id: Set(delivery.id),
            webhook_id: Set(delivery.webhook_id),
            event_id: Set(delivery.event_id),
            event_type: Set(delivery.event_type.clone()),
            attempt: Set(record.attempt),
            status_code: Set(record.status_code),
            error: Set(record.error.clone()),
            duration_ms: Set(record.duration_ms),
            next_retry_at: Set(record.next_retry_at),
            attempted_at: Set(record.attempted_at),
        }
        .insert(&txn)
        .await?;
        let finished = (record.state != PENDING).then_some(record.attempted_at);
        let mut update = webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::State,
                Expr::value(record.state.to_string()),
            )
            .col_expr(
                webhook_delivery::Column::Attempts,
                Expr::value(record.attempt),
            )
            .col_expr(
                webhook_delivery::Column::LastStatus,
                Expr::value(record.status_code),
            )
            .col_expr(
                webhook_delivery::Column::LastError,
                Expr::value(record.error.clone()),
            )
            .col_expr(
                webhook_delivery::Column::NextAttemptAt,
                Expr::value(record.next_retry_at),
            )
            .col_expr(webhook_delivery::Column::FinishedAt, Expr::value(finished));
        if delivery.first_attempt_at.is_none() {
            update = update.col_expr(
                webhook_delivery::Column::FirstAttemptAt,
                Expr::value(Some(record.attempted_at)),
            );
        }
        update
            .filter(webhook_delivery::Column::Id.eq(delivery.id))
            .exec(&txn)
            .await?;
        txn.commit().await
    }

    /// Ends a delivery without an attempt (its endpoint was disabled or deleted).
    pub async fn abandon_delivery(&self, id: Uuid, reason: &str) -> Result<(), DbErr> {
        webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::State, Expr::value(FAILED))
            .col_expr(
                webhook_delivery::Column::LastError,
                Expr::value(Some(reason.to_string())),
            )
            .col_expr(
                webhook_delivery::Column::NextAttemptAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                webhook_delivery::Column::FinishedAt,
                Expr::value(Some(Utc::now())),
            )
            .filter(webhook_delivery::Column::Id.eq(id))
            .filter(webhook_delivery::Column::State.eq(PENDING))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// An endpoint's most recent attempts, newest first (test pings included).
    pub async fn attempts_of(
        &self,
        webhook_id: Uuid,
        limit: u64,
    ) -> Result<Vec<webhook_attempt::Model>, DbErr> {
        webhook_attempt::Entity::find()
            .filter(webhook_attempt::Column::WebhookId.eq(webhook_id))
            .order_by_desc(webhook_attempt::Column::AttemptedAt)
            .order_by_desc(webhook_attempt::Column::Attempt)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// A test ping's attempt (no event row, no delivery).
    pub async fn record_test_attempt(
        &self,
        row: webhook_attempt::ActiveModel,
    ) -> Result<(), DbErr> {
        row.insert(&self.db).await.map(drop)
    }

    /// Deliveries not over yet (the undelivered gauge).
    pub async fn undelivered_count(&self) -> Result<u64, DbErr> {
        webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::State.eq(PENDING))
            .count(&self.db)
            .await
    }

    /// An upload's events in order (tests, tooling).
    pub async fn events_of(&self, upload_id: Uuid) -> Result<Vec<event::Model>, DbErr> {
        event::Entity::find()
            .filter(event::Column::UploadId.eq(upload_id))
            .order_by_asc(event::Column::Seq)
            .all(&self.db)
            .await
    }

    // --- the AMQP relay

    /// Takes a batch of events not yet published to the event exchange, oldest first.
    /// On PostgreSQL the rows stay locked (`FOR UPDATE SKIP LOCKED`) until the batch is
    /// committed, so relays on many replicas share the work.
    pub async fn event_outbox_batch(&self, limit: u64) -> Result<EventBatch, DbErr> {
        let txn = self.db.begin().await?;
        let mut query = event::Entity::find()
            .filter(event::Column::PublishedAt.is_null())
            .order_by_asc(event::Column::CreatedAt)
            .order_by_asc(event::Column::Seq)
            .limit(limit);
        if txn.get_database_backend() == DbBackend::Postgres {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let events = query.all(&txn).await?;
        Ok(EventBatch { txn, events })
    }
}

/// Events taken for publishing; [`EventBatch::commit`] stamps the ones that were.
pub struct EventBatch {
    txn: DatabaseTransaction,
    events: Vec<event::Model>,
}

impl EventBatch {
    pub fn events(&self) -> &[event::Model] {
        &self.events
    }

    pub async fn commit(self, published: &[Uuid]) -> Result<(), DbErr> {
        if !published.is_empty() {
            event::Entity::update_many()
                .col_expr(event::Column::PublishedAt, Expr::value(Some(Utc::now())))
                .filter(event::Column::Id.is_in(published.iter().copied()))
                .exec(&self.txn)
                .await?;
        }
        self.txn.commit().await
    }
}
