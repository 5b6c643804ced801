//! `users.updated_at` (Unix seconds): when the account last changed, for
//! the admin user search's `order_by=updated_at`. Existing rows take their
//! `created_at`; the store sets it on every insert and change (a new
//! password so far). NOT NULL with a default of 0 because SQLite adds a
//! NOT NULL column only with a default; no row keeps the 0.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    UpdatedAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(
                        ColumnDef::new(Users::UpdatedAt)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(Users::Table)
                    .value(Users::UpdatedAt, Expr::col(Users::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::UpdatedAt)
                    .to_owned(),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Statement};

    use super::Migration;
    use crate::{MigrationName, Migrator, MigratorTrait, db};

    #[tokio::test]
    async fn user_updated_at_takes_created_at_and_goes_away_again() {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-user-updated-at-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/m.db?mode=rwc", dir.display());
        // One connection: the schema changes and the reads that check them run
        // on the same connection (a pool of SQLite connections failed here now
        // and then with "no such column" under load).
        let db = db::connect_pool(&url, None, db::Deadlines::default(), 1)
            .await
            .unwrap();
        // Every migration before this one, then a user, then this one.
        let before = Migrator::migrations()
            .iter()
            .position(|m| m.name() == Migration.name())
            .unwrap();
        Migrator::up(&db, Some(u32::try_from(before).unwrap()))
            .await
            .unwrap();
        let backend = db.get_database_backend();
        db.execute(Statement::from_string(
            backend,
            "INSERT INTO users (id, email, name, password_hash, roles, created_at, tier) \
             VALUES ('u1', 'a@example.com', 'A', NULL, '', 1234, 'standard')",
        ))
        .await
        .unwrap();
        Migrator::up(&db, Some(1)).await.unwrap();
        let row = updated_at(&db).await.unwrap().unwrap();
        assert_eq!(row.try_get::<i64>("", "updated_at").unwrap(), 1234);
        Migrator::down(&db, Some(1)).await.unwrap();
        assert!(updated_at(&db).await.is_err());
        Migrator::up(&db, None).await.unwrap();
        db.close().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    async fn updated_at(
        db: &DatabaseConnection,
    ) -> Result<Option<QueryResult>, sea_orm_migration::sea_orm::DbErr> {
        db.query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT updated_at FROM users WHERE id = 'u1'",
        ))
        .await
    }
}
