//! Test databases, for the tests of every crate (feature `test-support`):
//! a temporary SQLite file, or a fresh PostgreSQL schema or database on the
//! server of `TEST_DATABASE_URL`, each gone when the value is dropped, also
//! when the test fails. And how a test that cannot run here fails
//! ([`missing`]; `test_gates::needs!` marks it ignored at build time).
#![allow(clippy::expect_used, clippy::panic)]

use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// `TEST_DATABASE_URL`, if set and not empty.
pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Fails the test `what` because `needed` is missing here: it was run
/// anyway (`--ignored`, `--include-ignored`, or the requirement went away
/// after the tests were built), and a test that cannot run must not pass.
#[track_caller]
pub fn missing(what: &str, needed: &str) -> ! {
    panic!(
        "{what}: {needed}. This test is marked ignored when that is missing at build \
         time (test-gates); it ran anyway, so it fails instead of passing without \
         testing anything (README.md, \"To run the tests\")."
    )
}

/// `TEST_DATABASE_URL` for the PostgreSQL variant `what`; fails the test
/// when it is unset (see [`missing`]).
#[track_caller]
pub fn require_postgres_url(what: &str) -> String {
    postgres_url().unwrap_or_else(|| {
        missing(
            what,
            "TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)",
        )
    })
}

/// `TEST_REDIS_URL` for the Redis variant `what`; fails the test when it
/// is unset (see [`missing`]).
#[track_caller]
pub fn require_redis_url(what: &str) -> String {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| {
            missing(
                what,
                "TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)",
            )
        })
}

/// Runs one statement on the admin connection from a thread of its own:
/// `Drop` cannot await, and may run inside a runtime.
fn run_detached(admin_url: String, sql: String) {
    let statement = sql.clone();
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let admin = Database::connect(&admin_url)
                .await
                .map_err(|e| e.to_string())?;
            admin
                .execute_unprepared(&statement)
                .await
                .map_err(|e| e.to_string())?;
            let _ = admin.close().await;
            Ok::<(), String>(())
        })
    })
    .join();
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: {sql}: {e}"),
        Err(_) => eprintln!("warning: {sql}: panicked"),
    }
}

async fn admin_execute(admin_url: &str, sql: &str) {
    let admin = Database::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connecting to TEST_DATABASE_URL: {e}"));
    admin
        .execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = admin.close().await;
}

fn fresh_name() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}

/// A schema `t_<uuid>`, dropped (`CASCADE`) on drop.
pub struct PgSchema {
    admin_url: String,
    name: String,
}

impl PgSchema {
    pub async fn create(admin_url: &str) -> Self {
        let name = fresh_name();
        admin_execute(admin_url, &format!("CREATE SCHEMA \"{name}\"")).await;
        Self {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        run_detached(
            self.admin_url.clone(),
            format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name),
        );
    }
}

/// A database `t_<uuid>` (for processes that take only a URL), dropped
/// (`WITH (FORCE)`) on drop.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl PgDatabase {
    pub async fn create(admin_url: &str) -> Self {
        let name = fresh_name();
        admin_execute(admin_url, &format!("CREATE DATABASE \"{name}\"")).await;
        let mut url = url::Url::parse(admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        run_detached(
            self.admin_url.clone(),
            format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
    }
}

/// A migrated database that disappears with the value.
pub struct TestDb {
    pub db: DatabaseConnection,
    _dir: Option<tempfile::TempDir>,
    schema: Option<PgSchema>,
}

impl TestDb {
    /// A temporary SQLite file.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("db.sqlite").display()
        );
        let db = crate::db::connect(&url, None).await.expect("sqlite");
        crate::db::up(&db, None).await.expect("migrations");
        Self {
            db,
            _dir: Some(dir),
            schema: None,
        }
    }

    /// A fresh schema on `TEST_DATABASE_URL`; fails the test `what` when
    /// it is unset (the PostgreSQL variants are marked ignored then, see
    /// [`missing`]). Always `Some`. The pool's `application_name` is the
    /// schema's name, so that a test finds its connections in
    /// `pg_stat_activity`.
    pub async fn postgres(what: &str) -> Option<Self> {
        let url = require_postgres_url(what);
        let schema = PgSchema::create(&url).await;
        let separator = if url.contains('?') { '&' } else { '?' };
        let named = format!("{url}{separator}application_name={}", schema.name());
        let db = crate::db::connect(&named, Some(schema.name()))
            .await
            .expect("postgres");
        crate::db::up(&db, None).await.expect("migrations");
        Some(Self {
            db,
            _dir: None,
            schema: Some(schema),
        })
    }

    /// The PostgreSQL `application_name` of this database's pool.
    pub fn application_name(&self) -> Option<&str> {
        self.schema.as_ref().map(PgSchema::name)
    }

    /// The server's URL, for an admin connection.
    pub fn admin_url(&self) -> Option<&str> {
        self.schema.as_ref().map(PgSchema::admin_url)
    }

    /// Closes the pool, then drops the schema.
    pub async fn cleanup(self) {
        let _ = self.db.close().await;
    }
}
