//! `clients.revision`: a number every change to a client's row moves on
//! (`clients rotate-secret` today; any later change to what authenticates or
//! authorises a client must move it too). Servers cache clients
//! (`auth_server::cache`) and check, in the statement that spends a refresh
//! token or an authorization code or with one read, that the revision they
//! authenticated against is still the row's: a change made by another process
//! (the CLI, another instance) is seen by the next request, not after the
//! cache's lifetime. Existing rows start at 0.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    Revision,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(
                        ColumnDef::new(Clients::Revision)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .drop_column(Clients::Revision)
                    .to_owned(),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};

    use super::Migration;
    use crate::{MigrationName, Migrator, MigratorTrait, db};

    async fn revision(db: &DatabaseConnection) -> Result<Option<i64>, DbErr> {
        let row = db
            .query_one(Statement::from_string(
                db.get_database_backend(),
                "SELECT revision FROM clients WHERE id = 'c1'",
            ))
            .await?;
        row.map(|r| r.try_get::<i64>("", "revision")).transpose()
    }

    /// Up on a database with a client: the row gets revision 0 and can move
    /// it on; down removes the column and keeps the row; up again works.
    #[tokio::test]
    async fn client_revision_column_comes_and_goes_on_sqlite() {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-client-revision-{}-{}",
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
            "INSERT INTO clients (id, name, secret_hash, redirect_uris, grant_types, scopes, \
             created_at, tier) VALUES ('c1', 'App', 'h1', '[]', 'client_credentials', \
             'notes:read', 1, 'standard')",
        ))
        .await
        .unwrap();
        assert!(
            revision(&db).await.is_err(),
            "no column before the migration"
        );
        Migrator::up(&db, Some(1)).await.unwrap();
        assert_eq!(revision(&db).await.unwrap(), Some(0));
        db.execute(Statement::from_string(
            backend,
            "UPDATE clients SET revision = revision + 1 WHERE id = 'c1'",
        ))
        .await
        .unwrap();
        assert_eq!(revision(&db).await.unwrap(), Some(1));
        Migrator::down(&db, Some(1)).await.unwrap();
        assert!(revision(&db).await.is_err(), "the column is gone");
        Migrator::up(&db, None).await.unwrap();
        assert_eq!(revision(&db).await.unwrap(), Some(0));
        db.close().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
