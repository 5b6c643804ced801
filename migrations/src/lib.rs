//! The whole Portcullis schema, as sea-orm migrations that run on SQLite and PostgreSQL.
//!
//! Conventions: ids are text (UUIDs or random ids), times are Unix seconds
//! (BIGINT), secrets are stored only as SHA-256 hex (`*_hash`).

pub use sea_orm_migration::prelude::*;

pub mod check;
pub mod db;
mod m20251125_000001_create_core;
mod m20251126_000001_grace_and_pending;
mod m20251127_000001_abuse_resistance;
mod m20251128_000001_expiry_indexes;
mod m20251129_000001_user_disable;
mod m20251129_000002_user_updated_at;
mod m20251130_000001_client_previous_secret;
mod m20251201_000001_api_keys;
mod m20251201_000002_signing_keys;
mod m20251201_000003_token_revocations;
mod m20251202_000001_client_revision;
mod m20251202_000002_readiness;
pub mod pg;
#[cfg(feature = "test-support")]
pub mod test_support;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20251125_000001_create_core::Migration),
            Box::new(m20251126_000001_grace_and_pending::Migration),
            Box::new(m20251127_000001_abuse_resistance::Migration),
            Box::new(m20251128_000001_expiry_indexes::Migration),
            Box::new(m20251129_000001_user_disable::Migration),
            Box::new(m20251129_000002_user_updated_at::Migration),
            Box::new(m20251130_000001_client_previous_secret::Migration),
            Box::new(m20251201_000001_api_keys::Migration),
            Box::new(m20251201_000002_signing_keys::Migration),
            Box::new(m20251201_000003_token_revocations::Migration),
            Box::new(m20251202_000001_client_revision::Migration),
            Box::new(m20251202_000002_readiness::Migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn migrations_go_down_and_up_again_on_sqlite() {
        let dir = std::env::temp_dir().join(format!("portcullis-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/m.db?mode=rwc", dir.display());
        let db = db::connect(&url, None).await.unwrap();
        db::up(&db, None).await.unwrap();
        db::down(&db, None).await.unwrap();
        db::up(&db, None).await.unwrap();
        assert_eq!(
            Migrator::get_pending_migrations(&db).await.unwrap().len(),
            0
        );
        db.close().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Schema changes across a pool of SQLite connections: run straight on
    /// the pool (`Migrator::up` / `down`), going down five and up again
    /// failed about one round in six here ("no such column", "duplicate
    /// column name": a connection with a schema cached before another
    /// connection's change); `db::up` / `db::down` run on one connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrations_go_down_and_up_on_a_pool_of_sqlite_connections() {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-migrate-pool-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        for round in 0..20 {
            let path = dir.join(format!("{round}"));
            std::fs::create_dir_all(&path).unwrap();
            let url = format!("sqlite://{}/m.db?mode=rwc", path.display());
            let db = db::connect(&url, None).await.unwrap();
            db::up(&db, None).await.unwrap();
            db::down(&db, Some(5)).await.unwrap();
            db::up(&db, None).await.unwrap();
            assert_eq!(
                Migrator::get_pending_migrations(&db).await.unwrap().len(),
                0
            );
            db.close().await.unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
