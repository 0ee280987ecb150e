//! Schema migrations; they run on SQLite (embedded) and PostgreSQL (distributed).
pub use sea_orm_migration::prelude::*;

mod m20261124_000001_initial;
mod m20261129_000001_owner_quotas;
mod m20261129_000002_browser_tokens;
mod m20261207_000001_upload_sizing;
mod m20261207_000010_events;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_initial::Migration),
            Box::new(m20261129_000001_owner_quotas::Migration),
            Box::new(m20261129_000002_browser_tokens::Migration),
            Box::new(m20261207_000001_upload_sizing::Migration),
            Box::new(m20261207_000010_events::Migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, Statement};

    async fn owner_columns(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Vec<String> {
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT name FROM pragma_table_info('owners')",
            ))
            .await
            .expect("table info");
        rows.iter()
            .map(|r| r.try_get::<String>("", "name").expect("name"))
            .collect()
    }

    #[tokio::test]
    async fn every_migration_applies_rolls_back_and_reapplies_on_sqlite() {
        let db = Database::connect("sqlite::memory:").await.expect("sqlite");
        Migrator::up(&db, None).await.expect("up");
        let columns = owner_columns(&db).await;
        assert!(
            columns.contains(&"max_active_uploads".to_string()),
            "{columns:?}"
        );
        assert!(
            columns.contains(&"max_active_bytes".to_string()),
            "{columns:?}"
        );
        Migrator::down(&db, Some(4))
            .await
            .expect("events, sizing, browser token and quota migrations down");
        let columns = owner_columns(&db).await;
        assert!(
            !columns.iter().any(|c| c.starts_with("max_active")),
            "{columns:?}"
        );
        assert!(columns.contains(&"name".to_string()));
        Migrator::up(&db, None).await.expect("up again");
        Migrator::down(&db, None).await.expect("all down");
        Migrator::up(&db, None).await.expect("from scratch");
    }
}
