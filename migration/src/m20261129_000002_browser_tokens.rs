//! Browser tokens (DESIGN §5): short-lived credentials scoped to the uploads they
//! create. Stored as their SHA-256 like API keys; `uploads_created` counts the inits
//! made with a token in the database, so `max_uploads` holds across API replicas.
//! `uploads.browser_token_id` names the token an upload was made with (NULL: an API key).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Owners {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum BrowserTokens {
    Table,
    Id,
    OwnerId,
    TokenHash,
    Prefix,
    Label,
    MaxFileSize,
    AllowedContentTypes,
    MaxUploads,
    Metadata,
    UploadsCreated,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Uploads {
    Table,
    BrowserTokenId,
}

const UPLOADS_INDEX: &str = "idx_uploads_browser_token";
const OWNER_INDEX: &str = "idx_browser_tokens_owner";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BrowserTokens::Table)
                    .if_not_exists()
                    .col(pk_uuid(BrowserTokens::Id))
                    .col(uuid(BrowserTokens::OwnerId))
                    .col(string_uniq(BrowserTokens::TokenHash))
                    .col(string(BrowserTokens::Prefix))
                    .col(string_null(BrowserTokens::Label))
                    .col(big_integer_null(BrowserTokens::MaxFileSize))
                    .col(json_null(BrowserTokens::AllowedContentTypes))
                    .col(big_integer_null(BrowserTokens::MaxUploads))
                    .col(json_null(BrowserTokens::Metadata))
                    .col(big_integer(BrowserTokens::UploadsCreated).default(0))
                    .col(timestamp_with_time_zone(BrowserTokens::CreatedAt))
                    .col(timestamp_with_time_zone(BrowserTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(BrowserTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(BrowserTokens::Table, BrowserTokens::OwnerId)
                            .to(Owners::Table, Owners::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(OWNER_INDEX)
                    .table(BrowserTokens::Table)
                    .col(BrowserTokens::OwnerId)
                    .col(BrowserTokens::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Uploads::Table)
                    .add_column(ColumnDef::new(Uploads::BrowserTokenId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(UPLOADS_INDEX)
                    .table(Uploads::Table)
                    .col(Uploads::BrowserTokenId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(UPLOADS_INDEX)
                    .table(Uploads::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Uploads::Table)
                    .drop_column(Uploads::BrowserTokenId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(BrowserTokens::Table).to_owned())
            .await
    }
}
