//! Events for applications (DESIGN §6): the event outbox, webhook endpoints, their
//! deliveries (one per event and endpoint) and every attempt at one.
//!
//! - `events`: written in the transaction of the status change that causes them; `seq`
//!   orders one upload's events; `published_at` is stamped when the relay published the
//!   event to the AMQP exchange.
//! - `webhooks`: an owner's endpoints; the secret sealed with the master key.
//! - `webhook_deliveries`: an event owed to an endpoint (`pending`, `delivered`,
//!   `failed`); the job that carries it out is an ordinary job row (`kind = webhook`).
//! - `webhook_attempts`: what each attempt got (status or error, duration, next retry).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Owners {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    OwnerId,
    UploadId,
    Seq,
    EventType,
    Body,
    CreatedAt,
    PublishedAt,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    OwnerId,
    Url,
    Events,
    Description,
    SecretSealed,
    CreatedAt,
    DisabledAt,
    DisabledReason,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    WebhookId,
    EventId,
    UploadId,
    Seq,
    EventType,
    State,
    Attempts,
    LastStatus,
    LastError,
    NextAttemptAt,
    CreatedAt,
    FirstAttemptAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    DeliveryId,
    WebhookId,
    EventId,
    EventType,
    Attempt,
    StatusCode,
    Error,
    DurationMs,
    NextRetryAt,
    AttemptedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(pk_uuid(Events::Id))
                    .col(uuid(Events::OwnerId))
                    .col(uuid(Events::UploadId))
                    .col(integer(Events::Seq))
                    .col(string(Events::EventType))
                    .col(text(Events::Body))
                    .col(timestamp_with_time_zone(Events::CreatedAt))
                    .col(timestamp_with_time_zone_null(Events::PublishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_upload_seq")
                    .table(Events::Table)
                    .col(Events::UploadId)
                    .col(Events::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_published")
                    .table(Events::Table)
                    .col(Events::PublishedAt)
                    .col(Events::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .if_not_exists()
                    .col(pk_uuid(Webhooks::Id))
                    .col(uuid(Webhooks::OwnerId))
                    .col(text(Webhooks::Url))
                    .col(json(Webhooks::Events))
                    .col(string_null(Webhooks::Description))
                    .col(blob(Webhooks::SecretSealed))
                    .col(timestamp_with_time_zone(Webhooks::CreatedAt))
                    .col(timestamp_with_time_zone_null(Webhooks::DisabledAt))
                    .col(string_null(Webhooks::DisabledReason))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Webhooks::Table, Webhooks::OwnerId)
                            .to(Owners::Table, Owners::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhooks_owner")
                    .table(Webhooks::Table)
                    .col(Webhooks::OwnerId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .if_not_exists()
                    .col(pk_uuid(WebhookDeliveries::Id))
                    .col(uuid(WebhookDeliveries::WebhookId))
                    .col(uuid(WebhookDeliveries::EventId))
                    .col(uuid(WebhookDeliveries::UploadId))
                    .col(integer(WebhookDeliveries::Seq))
                    .col(string(WebhookDeliveries::EventType))
                    .col(string(WebhookDeliveries::State))
                    .col(integer(WebhookDeliveries::Attempts).default(0))
                    .col(integer_null(WebhookDeliveries::LastStatus))
                    .col(text_null(WebhookDeliveries::LastError))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::NextAttemptAt,
                    ))
                    .col(timestamp_with_time_zone(WebhookDeliveries::CreatedAt))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::FirstAttemptAt,
                    ))
                    .col(timestamp_with_time_zone_null(WebhookDeliveries::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_order")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::WebhookId)
                    .col(WebhookDeliveries::UploadId)
                    .col(WebhookDeliveries::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_state")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::State)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .if_not_exists()
                    .col(pk_uuid(WebhookAttempts::Id))
                    .col(uuid(WebhookAttempts::DeliveryId))
                    .col(uuid(WebhookAttempts::WebhookId))
                    .col(uuid(WebhookAttempts::EventId))
                    .col(string(WebhookAttempts::EventType))
                    .col(integer(WebhookAttempts::Attempt))
                    .col(integer_null(WebhookAttempts::StatusCode))
                    .col(text_null(WebhookAttempts::Error))
                    .col(big_integer(WebhookAttempts::DurationMs))
                    .col(timestamp_with_time_zone_null(WebhookAttempts::NextRetryAt))
                    .col(timestamp_with_time_zone(WebhookAttempts::AttemptedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_attempts_webhook")
                    .table(WebhookAttempts::Table)
                    .col(WebhookAttempts::WebhookId)
                    .col(WebhookAttempts::AttemptedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookAttempts::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            Webhooks::Table.into_iden(),
            Events::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
