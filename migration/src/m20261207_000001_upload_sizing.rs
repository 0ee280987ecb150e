//! Uploads whose size is unknown until complete (DESIGN §5, Uppy compatibility): one
//! nullable column on `uploads`. NULL: the size was declared at init (every upload
//! before this); `multipart`: a size-unknown multipart upload (Companion's
//! `/s3/multipart`); `post`: one object sent with a presigned POST policy
//! (`/s3/params`). `file_size`, `part_size` and `total_parts` hold 0 until complete.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Uploads {
    Table,
    Sizing,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Uploads::Table)
                    .add_column(ColumnDef::new(Uploads::Sizing).string().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Uploads::Table)
                    .drop_column(Uploads::Sizing)
                    .to_owned(),
            )
            .await
    }
}
