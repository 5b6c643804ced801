//! Disabled accounts: `users.disabled_at` (Unix seconds; NULL = enabled).
//! A disabled user cannot sign in, refresh or have a code exchanged; an
//! admin sets and clears it (`POST /api/v2/admin/users/{id}/disable`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    DisabledAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(ColumnDef::new(Users::DisabledAt).big_integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::DisabledAt)
                    .to_owned(),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

    use crate::{Migrator, MigratorTrait, db};

    async fn disabled_at_of(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Option<i64> {
        let row = db
            .query_one(Statement::from_string(
                db.get_database_backend(),
                "SELECT disabled_at FROM users WHERE id = 'u1'",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "disabled_at").unwrap()
    }

    #[tokio::test]
    async fn user_disable_adds_a_nullable_column_and_removes_it_again() {
        let dir = tempfile_dir();
        let url = format!("sqlite://{}/m.db?mode=rwc", dir.display());
        // One connection: the schema changes and the reads that check them run
        // on the same connection (a pool of SQLite connections failed here now
        // and then with "no such column" under load).
        let db = db::connect_pool(&url, None, db::Deadlines::default(), 1)
            .await
            .unwrap();
        Migrator::up(&db, None).await.unwrap();
        let backend = db.get_database_backend();
        db.execute(Statement::from_string(
            backend,
            "INSERT INTO users (id, email, name, password_hash, roles, created_at, tier) \
             VALUES ('u1', 'a@example.com', 'A', NULL, '', 1, 'standard')",
        ))
        .await
        .unwrap();
        // Existing and new rows start enabled (NULL).
        assert_eq!(disabled_at_of(&db).await, None);
        db.execute(Statement::from_string(
            backend,
            "UPDATE users SET disabled_at = 42 WHERE id = 'u1'",
        ))
        .await
        .unwrap();
        assert_eq!(disabled_at_of(&db).await, Some(42));
        // Down to before this migration (newer ones go first): the column
        // is gone, the row stays.
        let newer = Migrator::migrations()
            .iter()
            .rev()
            .position(|m| crate::MigrationName::name(m.as_ref()) == "m20251129_000001_user_disable")
            .unwrap();
        Migrator::down(&db, Some(u32::try_from(newer + 1).unwrap()))
            .await
            .unwrap();
        assert!(
            db.query_one(Statement::from_string(
                backend,
                "SELECT disabled_at FROM users"
            ))
            .await
            .is_err()
        );
        let count = db
            .query_one(Statement::from_string(
                backend,
                "SELECT COUNT(*) AS n FROM users",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count.try_get::<i64>("", "n").unwrap(), 1);
        Migrator::up(&db, None).await.unwrap();
        assert_eq!(disabled_at_of(&db).await, None);
        db.close().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-user-disable-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
