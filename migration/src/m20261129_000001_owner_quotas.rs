//! Per-owner quota overrides (DESIGN §7): two nullable columns on `owners`.
//! NULL is "the server default", -1 "unlimited", anything else the limit.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Owners {
    Table,
    MaxActiveUploads,
    MaxActiveBytes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [Owners::MaxActiveUploads, Owners::MaxActiveBytes] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Owners::Table)
                        .add_column(ColumnDef::new(column).big_integer().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Owners::MaxActiveBytes, Owners::MaxActiveUploads] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Owners::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
