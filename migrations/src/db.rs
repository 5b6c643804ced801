//! One way to open the database for every binary and test: SQLite in WAL mode
//! with a busy timeout and foreign keys on; PostgreSQL with an optional schema.

use std::time::Duration;

use sea_orm_migration::sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// Opens a pool for `url` (`sqlite://…` or `postgres://…`). `schema` sets the
/// PostgreSQL search path (tests use a fresh schema each).
pub async fn connect(url: &str, schema: Option<&str>) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(16)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        let parent = sqlite_path(url)
            .and_then(|p| std::path::Path::new(&p).parent().map(|d| d.to_path_buf()));
        if let Some(parent) = parent.filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(&parent)
                .map_err(|e| DbErr::Custom(format!("creating {}: {e}", parent.display())))?;
        }
        options.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sqlx_sqlite_journal_wal())
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .synchronous(sea_orm_migration::sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
        });
    } else if let Some(schema) = schema {
        options.set_schema_search_path(schema.to_owned());
    }
    Database::connect(options).await
}

fn sqlx_sqlite_journal_wal() -> sea_orm_migration::sea_orm::sqlx::sqlite::SqliteJournalMode {
    sea_orm_migration::sea_orm::sqlx::sqlite::SqliteJournalMode::Wal
}

/// The file path of a `sqlite://PATH?…` URL, if it names a file.
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(path.to_owned())
    }
}
