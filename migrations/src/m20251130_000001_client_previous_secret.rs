//! Client secret rotation (`auth-server clients rotate-secret`): the
//! secret a client had before its last rotation, `clients.previous_secret_hash`
//! (SHA-256 hex, like `secret_hash`), accepted by client authentication until
//! `clients.previous_secret_expires_at` (Unix seconds). Both NULL: no previous
//! secret. A rotation overwrites them, so at most one previous secret lives.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    PreviousSecretHash,
    PreviousSecretExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(ColumnDef::new(Clients::PreviousSecretHash).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(
                        ColumnDef::new(Clients::PreviousSecretExpiresAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Clients::PreviousSecretExpiresAt,
            Clients::PreviousSecretHash,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Clients::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sea_orm_migration::sea_orm::{
        ConnectionTrait, DatabaseConnection, DbErr, QueryResult, Statement,
    };

    use super::Migration;
    use crate::{MigrationName, Migrator, MigratorTrait, db};

    async fn previous(db: &DatabaseConnection) -> Result<Option<QueryResult>, DbErr> {
        db.query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT previous_secret_hash, previous_secret_expires_at FROM clients WHERE id = 'c1'",
        ))
        .await
    }

    /// Up on a database with a client: the columns start NULL and take
    /// values; down removes them and keeps the row; up again works.
    async fn previous_secret_columns_come_and_go(db: &DatabaseConnection) {
        let before = Migrator::migrations()
            .iter()
            .position(|m| m.name() == Migration.name())
            .unwrap();
        Migrator::up(db, Some(u32::try_from(before).unwrap()))
            .await
            .unwrap();
        let backend = db.get_database_backend();
        db.execute(Statement::from_string(
            backend,
            "INSERT INTO clients (id, name, secret_hash, redirect_uris, grant_types, scopes, \
             created_at, tier) VALUES ('c1', 'App', 'h1', '[]', 'client_credentials', \
             'notes:read', 1, 'standard')",
        ))
        .await
        .unwrap();
        Migrator::up(db, Some(1)).await.unwrap();
        let row = previous(db).await.unwrap().unwrap();
        assert_eq!(
            row.try_get::<Option<String>>("", "previous_secret_hash")
                .unwrap(),
            None
        );
        assert_eq!(
            row.try_get::<Option<i64>>("", "previous_secret_expires_at")
                .unwrap(),
            None
        );
        db.execute(Statement::from_string(
            backend,
            "UPDATE clients SET previous_secret_hash = 'h0', previous_secret_expires_at = 42 \
             WHERE id = 'c1'",
        ))
        .await
        .unwrap();
        let row = previous(db).await.unwrap().unwrap();
        assert_eq!(
            row.try_get::<Option<String>>("", "previous_secret_hash")
                .unwrap()
                .as_deref(),
            Some("h0")
        );
        assert_eq!(
            row.try_get::<Option<i64>>("", "previous_secret_expires_at")
                .unwrap(),
            Some(42)
        );
        Migrator::down(db, Some(1)).await.unwrap();
        assert!(previous(db).await.is_err(), "the columns are gone");
        let kept = db
            .query_one(Statement::from_string(
                backend,
                "SELECT secret_hash FROM clients WHERE id = 'c1'",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.try_get::<String>("", "secret_hash").unwrap(), "h1");
        Migrator::up(db, None).await.unwrap();
        assert!(previous(db).await.unwrap().is_some());
    }

    /// SQLite here; the PostgreSQL variant is in auth-server's tests
    /// (`rotate::previous_secret_migration_goes_down_and_up_*`), which have
    /// the test databases.
    #[tokio::test]
    async fn client_previous_secret_columns_come_and_go_on_sqlite() {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-client-previous-secret-{}-{}",
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
        previous_secret_columns_come_and_go(&db).await;
        db.close().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
