use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Owners {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    OwnerId,
    KeyHash,
    Prefix,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Uploads {
    Table,
    Id,
    OwnerId,
    Provider,
    Bucket,
    Region,
    Endpoint,
    FileKey,
    StorageUploadId,
    Filename,
    ContentType,
    FileSize,
    PartSize,
    TotalParts,
    Status,
    UrlsReady,
    UploadedParts,
    UploadedBytes,
    Metadata,
    CredentialsSealed,
    LastErrorCode,
    LastErrorMessage,
    Etag,
    Location,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum UploadParts {
    Table,
    UploadId,
    PartNumber,
    Etag,
    Size,
    UploadedAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    UploadId,
    Kind,
    Payload,
    State,
    Attempts,
    RunAfter,
    LeasedUntil,
    LastError,
    PublishedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    OwnerId,
    Scope,
    Key,
    UploadId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Owners::Table)
                    .if_not_exists()
                    .col(pk_uuid(Owners::Id))
                    .col(string_uniq(Owners::Name))
                    .col(timestamp_with_time_zone(Owners::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .if_not_exists()
                    .col(pk_uuid(ApiKeys::Id))
                    .col(uuid(ApiKeys::OwnerId))
                    .col(string_uniq(ApiKeys::KeyHash))
                    .col(string(ApiKeys::Prefix))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::OwnerId)
                            .to(Owners::Table, Owners::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Uploads::Table)
                    .if_not_exists()
                    .col(pk_uuid(Uploads::Id))
                    .col(uuid(Uploads::OwnerId))
                    .col(string(Uploads::Provider))
                    .col(string(Uploads::Bucket))
                    .col(string_null(Uploads::Region))
                    .col(string_null(Uploads::Endpoint))
                    .col(text(Uploads::FileKey))
                    .col(text_null(Uploads::StorageUploadId))
                    .col(text(Uploads::Filename))
                    .col(string(Uploads::ContentType))
                    .col(big_integer(Uploads::FileSize))
                    .col(big_integer(Uploads::PartSize))
                    .col(integer(Uploads::TotalParts))
                    .col(string(Uploads::Status))
                    .col(integer(Uploads::UrlsReady).default(0))
                    .col(integer(Uploads::UploadedParts).default(0))
                    .col(big_integer(Uploads::UploadedBytes).default(0))
                    .col(json(Uploads::Metadata))
                    .col(blob_null(Uploads::CredentialsSealed))
                    .col(string_null(Uploads::LastErrorCode))
                    .col(text_null(Uploads::LastErrorMessage))
                    .col(string_null(Uploads::Etag))
                    .col(text_null(Uploads::Location))
                    .col(timestamp_with_time_zone(Uploads::CreatedAt))
                    .col(timestamp_with_time_zone(Uploads::UpdatedAt))
                    .col(timestamp_with_time_zone(Uploads::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Uploads::CompletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Uploads::Table, Uploads::OwnerId)
                            .to(Owners::Table, Owners::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Listing an owner's uploads (newest first, optionally by status).
        manager
            .create_index(
                Index::create()
                    .name("idx_uploads_owner_status_created")
                    .table(Uploads::Table)
                    .col(Uploads::OwnerId)
                    .col(Uploads::Status)
                    .col(Uploads::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_uploads_owner_created")
                    .table(Uploads::Table)
                    .col(Uploads::OwnerId)
                    .col(Uploads::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // The expiry sweeper.
        manager
            .create_index(
                Index::create()
                    .name("idx_uploads_expires_at")
                    .table(Uploads::Table)
                    .col(Uploads::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UploadParts::Table)
                    .if_not_exists()
                    .col(uuid(UploadParts::UploadId))
                    .col(integer(UploadParts::PartNumber))
                    .col(string(UploadParts::Etag))
                    .col(big_integer(UploadParts::Size))
                    .col(timestamp_with_time_zone(UploadParts::UploadedAt))
                    .primary_key(
                        Index::create()
                            .col(UploadParts::UploadId)
                            .col(UploadParts::PartNumber),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(UploadParts::Table, UploadParts::UploadId)
                            .to(Uploads::Table, Uploads::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(pk_uuid(Jobs::Id))
                    .col(uuid(Jobs::UploadId))
                    .col(string(Jobs::Kind))
                    .col(json(Jobs::Payload))
                    .col(string(Jobs::State))
                    .col(integer(Jobs::Attempts).default(0))
                    .col(timestamp_with_time_zone(Jobs::RunAfter))
                    .col(timestamp_with_time_zone_null(Jobs::LeasedUntil))
                    .col(text_null(Jobs::LastError))
                    .col(timestamp_with_time_zone_null(Jobs::PublishedAt))
                    .col(timestamp_with_time_zone(Jobs::CreatedAt))
                    .col(timestamp_with_time_zone(Jobs::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Jobs::Table, Jobs::UploadId)
                            .to(Uploads::Table, Uploads::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Picking due work: state + run_after.
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_state_run_after")
                    .table(Jobs::Table)
                    .col(Jobs::State)
                    .col(Jobs::RunAfter)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_upload")
                    .table(Jobs::Table)
                    .col(Jobs::UploadId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    .col(uuid(IdempotencyKeys::OwnerId))
                    .col(string(IdempotencyKeys::Scope))
                    .col(string(IdempotencyKeys::Key))
                    .col(uuid(IdempotencyKeys::UploadId))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::OwnerId)
                            .col(IdempotencyKeys::Scope)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            Jobs::Table.into_iden(),
            UploadParts::Table.into_iden(),
            Uploads::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Owners::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
