use migrations::sea_orm::{ConnectionTrait, DatabaseConnection};
use migrations::{Migrator, MigratorTrait};

/// A migrated database that disappears with the value: a temp SQLite file, or
/// a fresh PostgreSQL schema.
pub struct TestDb {
    pub db: DatabaseConnection,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("db.sqlite").display()
        );
        let db = migrations::db::connect(&url, None).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        Self {
            db,
            _dir: Some(dir),
            schema: None,
        }
    }

    /// None (and a printed notice) when TEST_DATABASE_URL is unset.
    pub async fn postgres() -> Option<Self> {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            // Written past the test harness capture, so that it shows.
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("skipped: a PostgreSQL store test (TEST_DATABASE_URL not set)\n"),
            );
            return None;
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = migrations::db::connect(&url, None).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let db = migrations::db::connect(&url, Some(&schema)).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        Some(Self {
            db,
            _dir: None,
            schema: Some((url, schema)),
        })
    }

    pub async fn cleanup(self) {
        self.db.close().await.unwrap();
        if let Some((url, schema)) = self.schema {
            let admin = migrations::db::connect(&url, None).await.unwrap();
            admin
                .execute_unprepared(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .await
                .unwrap();
            admin.close().await.unwrap();
        }
    }
}
