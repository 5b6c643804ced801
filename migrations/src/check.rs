//! Before a service binds or migrates: is the database there, can this
//! process write to it, and if not, why, in the driver's own terms
//! ("connection refused", "no such file", "read-only", "authentication
//! failed", "does not exist") with what to do about it.
//!
//! The messages name the database by host, port and name (PostgreSQL) or
//! path (SQLite), never by its URL, which may hold a password.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sea_orm_migration::sea_orm::error::{ConnAcquireErr, RuntimeErr};
use sea_orm_migration::sea_orm::sqlx;
use sea_orm_migration::sea_orm::{DatabaseConnection, DbErr};
use sqlx::Connection as _;

use crate::{Migrator, MigratorTrait};

/// How long the first connection may take before the start fails: a server
/// that does not answer (a firewall dropping packets) fails in this time,
/// one that refuses at once.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database cannot be used, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    /// What failed, with the root cause: `cannot connect to PostgreSQL at
    /// 127.0.0.1:1: connection refused`.
    pub message: String,
    /// What to do: `Start PostgreSQL, or fix the host and port in DATABASE_URL`.
    pub fix: String,
}

impl CheckError {
    fn new(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CheckError {}

/// Which database a URL names, for messages.
#[derive(Debug, Clone)]
enum Target {
    Postgres { place: String, user: String },
    Sqlite { path: PathBuf, create: bool },
}

impl Target {
    fn of(url: &str) -> Result<Self, CheckError> {
        if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).map_err(|e| {
                CheckError::new(
                    format!("DATABASE_URL is not a valid SQLite URL ({e})"),
                    "Use sqlite://PATH?mode=rwc",
                )
            })?;
            let query = url.split_once('?').map_or("", |(_, q)| q);
            let create = query.split('&').any(|pair| pair == "mode=rwc");
            return Ok(Self::Sqlite {
                path: options.get_filename().to_path_buf(),
                create,
            });
        }
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| {
                CheckError::new(
                    format!("DATABASE_URL is not a valid PostgreSQL URL ({e})"),
                    "Use postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                )
            })?;
            let place = match options.get_socket() {
                Some(socket) => socket.display().to_string(),
                None => format!("{}:{}", options.get_host(), options.get_port()),
            };
            let place = match options.get_database() {
                Some(db) => format!("{place}/{db}"),
                None => place,
            };
            return Ok(Self::Postgres {
                place,
                user: options.get_username().to_owned(),
            });
        }
        Err(CheckError::new(
            "DATABASE_URL is neither sqlite:// nor postgres://",
            "Use sqlite://PATH?mode=rwc or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
        ))
    }

    fn name(&self) -> String {
        match self {
            Self::Postgres { place, .. } => format!("PostgreSQL at {place}"),
            Self::Sqlite { path, .. } => format!("SQLite file {}", path.display()),
        }
    }
}

/// Connects once (within [`CHECK_TIMEOUT`]) and checks that the database
/// takes writes; creates nothing but what `DATABASE_URL` asks for (a SQLite
/// file with `?mode=rwc`).
pub async fn check(url: &str) -> Result<(), CheckError> {
    let target = Target::of(url)?;
    match &target {
        Target::Sqlite { path, create } => check_sqlite(url, &target, path, *create).await,
        Target::Postgres { .. } => check_postgres(url, &target).await,
    }
}

async fn check_postgres(url: &str, target: &Target) -> Result<(), CheckError> {
    use sqlx::postgres::{PgConnectOptions, PgConnection};
    let options = PgConnectOptions::from_str(url).map_err(|e| explain_sqlx(&e, target))?;
    let mut conn = connect_within(PgConnection::connect_with(&options), target).await?;
    let read_only: Result<(String,), _> = sqlx::query_as("SHOW transaction_read_only")
        .fetch_one(&mut conn)
        .await;
    let _ = conn.close().await;
    match read_only {
        Ok((value,)) if value == "on" => Err(CheckError::new(
            format!(
                "{} is read-only (a standby, or default_transaction_read_only is on)",
                target.name()
            ),
            "Point DATABASE_URL at the primary server",
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(explain_sqlx(&e, target)),
    }
}

async fn check_sqlite(
    url: &str,
    target: &Target,
    path: &Path,
    create: bool,
) -> Result<(), CheckError> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
    let memory = path.as_os_str().is_empty() || path == Path::new(":memory:");
    if !memory {
        check_sqlite_file(path, create)?;
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| explain_sqlx(&e, target))?
        .journal_mode(SqliteJournalMode::Wal);
    if create && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            CheckError::new(
                format!(
                    "cannot create the folder {} of the SQLite file: {}",
                    parent.display(),
                    io_cause(&e)
                ),
                "Create the folder, or point DATABASE_URL at a writable place",
            )
        })?;
    }
    let mut conn = connect_within(SqliteConnection::connect_with(&options), target).await?;
    // A write rolled back: fails on a read-only database (`BEGIN
    // IMMEDIATE` alone does not, on a file already in WAL mode).
    let probe = async {
        sqlx::query("BEGIN").execute(&mut conn).await?;
        let write = sqlx::query("CREATE TABLE portcullis_write_check (x INTEGER)")
            .execute(&mut conn)
            .await;
        let rollback = sqlx::query("ROLLBACK").execute(&mut conn).await;
        write.and(rollback)
    }
    .await;
    let _ = conn.close().await;
    probe.map(|_| ()).map_err(|e| explain_sqlx(&e, target))
}

/// What the file system says before SQLite does (SQLite reports all of
/// these as "unable to open database file").
fn check_sqlite_file(path: &Path, create: bool) -> Result<(), CheckError> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(CheckError::new(
            format!("the SQLite path {shown} is a folder"),
            "Point DATABASE_URL at a file: sqlite://PATH/portcullis.db?mode=rwc",
        )),
        Ok(_) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(|_| ())
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    CheckError::new(
                        format!("the SQLite file {shown} is read-only for this user"),
                        "Make the file and its folder writable by this user (chmod u+w, chown), or fix DATABASE_URL",
                    )
                } else {
                    CheckError::new(
                        format!("cannot open the SQLite file {shown}: {}", io_cause(&e)),
                        "Fix the file or DATABASE_URL",
                    )
                }
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            match parent {
                Some(parent) if !parent.exists() => Err(CheckError::new(
                    format!(
                        "the SQLite file {shown} does not exist: no such directory {}",
                        parent.display()
                    ),
                    format!(
                        "Add ?mode=rwc to DATABASE_URL to create the file and its folder (sqlite://{shown}?mode=rwc), or fix the path"
                    ),
                )),
                _ => Err(CheckError::new(
                    format!("the SQLite file {shown} does not exist: no such file"),
                    format!(
                        "Add ?mode=rwc to DATABASE_URL to create it (sqlite://{shown}?mode=rwc), or fix the path"
                    ),
                )),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CheckError::new(
            format!("cannot read the SQLite file {shown}: {}", io_cause(&e)),
            "Fix the permissions of its folder, or DATABASE_URL",
        )),
    }
}

async fn connect_within<C>(
    connect: impl Future<Output = Result<C, sqlx::Error>>,
    target: &Target,
) -> Result<C, CheckError> {
    match tokio::time::timeout(CHECK_TIMEOUT, connect).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(explain_sqlx(&e, target)),
        Err(_) => Err(CheckError::new(
            format!(
                "cannot connect to {}: no answer within {} s",
                target.name(),
                CHECK_TIMEOUT.as_secs()
            ),
            "Check the host and port in DATABASE_URL, and that no firewall drops the connection",
        )),
    }
}

/// An I/O error's cause in lower case without the `(os error N)` tail.
fn io_cause(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::NotFound => "no such file or directory".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::TimedOut => "timed out".into(),
        ErrorKind::ReadOnlyFilesystem => "read-only file system".into(),
        _ => {
            let text = error.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

/// A driver error as what failed, its root cause and what to do.
fn explain_sqlx(error: &sqlx::Error, target: &Target) -> CheckError {
    let name = target.name();
    match error {
        sqlx::Error::Io(io) => {
            let cause = io_cause(io);
            let text = io.to_string();
            if text.contains("lookup address") || text.contains("resolve") {
                return CheckError::new(
                    format!("cannot connect to {name}: cannot resolve the host name ({cause})"),
                    "Fix the host in DATABASE_URL",
                );
            }
            let fix = match (target, io.kind()) {
                (Target::Postgres { .. }, std::io::ErrorKind::ConnectionRefused) => {
                    "Start PostgreSQL, or fix the host and port in DATABASE_URL"
                }
                (Target::Postgres { .. }, _) => {
                    "Check that PostgreSQL runs and that DATABASE_URL names it"
                }
                (Target::Sqlite { .. }, _) => "Check the SQLite file and its folder",
            };
            CheckError::new(format!("cannot connect to {name}: {cause}"), fix)
        }
        sqlx::Error::Tls(e) => CheckError::new(
            format!("TLS with {name} failed: {e}"),
            "Check sslmode and sslrootcert in DATABASE_URL",
        ),
        sqlx::Error::Configuration(e) => {
            CheckError::new(format!("DATABASE_URL: {e}"), "Fix DATABASE_URL")
        }
        sqlx::Error::PoolTimedOut => CheckError::new(
            format!("no connection to {name} in time"),
            "Check that the database runs and answers",
        ),
        sqlx::Error::Database(db) => explain_database(db.as_ref(), target),
        other => CheckError::new(
            format!("{name}: {other}"),
            "Check the database and DATABASE_URL",
        ),
    }
}

fn explain_database(db: &dyn sqlx::error::DatabaseError, target: &Target) -> CheckError {
    let name = target.name();
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    match target {
        Target::Postgres { user, .. } => match code.as_str() {
            "28P01" | "28000" => CheckError::new(
                format!("cannot connect to {name}: authentication failed for user {user:?}"),
                "Fix the user name and password in DATABASE_URL (percent-encode special characters)",
            ),
            "3D000" => CheckError::new(
                format!("cannot connect to {name}: the database does not exist"),
                "Create it (createdb NAME) or fix the database name in DATABASE_URL",
            ),
            "25006" => CheckError::new(
                format!("{name} is read-only (a standby?)"),
                "Point DATABASE_URL at the primary server",
            ),
            "53300" => CheckError::new(
                format!("cannot connect to {name}: too many connections"),
                "Raise max_connections on the server or stop other clients",
            ),
            c if c.starts_with("57P0") => CheckError::new(
                format!("cannot connect to {name}: the server is starting or shutting down"),
                "Wait for PostgreSQL to be up, then start again",
            ),
            _ => CheckError::new(
                format!("{name}: {} (SQLSTATE {code})", db.message()),
                "Check the database and DATABASE_URL",
            ),
        },
        Target::Sqlite { path, create } => {
            let shown = path.display();
            match code.parse::<i64>().map(|n| n & 0xff) {
                // SQLITE_READONLY
                Ok(8) => CheckError::new(
                    format!("the SQLite file {shown} is read-only"),
                    "Make the file and its folder writable by this user, and do not use mode=ro in DATABASE_URL",
                ),
                // SQLITE_CANTOPEN
                Ok(14) if !create && !path.exists() => CheckError::new(
                    format!("the SQLite file {shown} does not exist: no such file"),
                    format!(
                        "Add ?mode=rwc to DATABASE_URL to create it (sqlite://{shown}?mode=rwc), or fix the path"
                    ),
                ),
                Ok(14) => CheckError::new(
                    format!("cannot open the SQLite file {shown}"),
                    "Check that the file and its folder exist and are readable and writable by this user",
                ),
                // SQLITE_NOTADB
                Ok(26) => CheckError::new(
                    format!("{shown} is not a SQLite database"),
                    "Fix DATABASE_URL",
                ),
                // SQLITE_BUSY, SQLITE_LOCKED
                Ok(5 | 6) => CheckError::new(
                    format!("the SQLite file {shown} is locked by another process"),
                    "Stop the other process, or retry",
                ),
                _ => CheckError::new(
                    format!("{name}: {}", db.message()),
                    "Check the SQLite file and DATABASE_URL",
                ),
            }
        }
    }
}

/// A sea-orm error of the service's own connect or migration, explained
/// as [`check`] would, when it is a driver error; `None` otherwise.
pub fn explain(url: &str, error: &DbErr) -> Option<CheckError> {
    let target = Target::of(url).ok()?;
    match error {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(explain_sqlx(e, &target)),
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => Some(CheckError::new(
            format!("no connection to {} in time", target.name()),
            "Check that the database runs and answers",
        )),
        _ => None,
    }
}

/// Applies the pending migrations, first logging `migrating the database
/// (N pending)…` when there are any (on a big database they take a while).
/// Returns how many ran.
pub async fn migrate(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let pending = Migrator::get_pending_migrations(db).await?.len();
    if pending == 0 {
        return Ok(0);
    }
    tracing::info!("migrating the database ({pending} pending)…");
    crate::db::up(db, None).await?;
    Ok(pending)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn check_refuses_a_missing_sqlite_file_without_mode_rwc_and_creates_nothing() {
        let dir = tempfile_dir();
        let path = dir.join("missing").join("db.sqlite");
        let error = check(&format!("sqlite://{}", path.display()))
            .await
            .unwrap_err();
        assert!(error.message.contains("no such directory"), "{error:?}");
        assert!(error.fix.contains("?mode=rwc"), "{error:?}");
        assert!(!dir.join("missing").exists());
        let path = dir.join("db.sqlite");
        let error = check(&format!("sqlite://{}", path.display()))
            .await
            .unwrap_err();
        assert!(error.message.contains("no such file"), "{error:?}");
        assert!(!path.exists());
        check(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        assert!(path.exists());
        let error = check(&format!("sqlite://{}?mode=ro", path.display()))
            .await
            .unwrap_err();
        assert!(error.message.contains("read-only"), "{error:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn check_says_connection_refused_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let started = std::time::Instant::now();
        let error = check(&format!("postgres://u:secret@127.0.0.1:{port}/db"))
            .await
            .unwrap_err();
        assert_eq!(
            error.message,
            format!("cannot connect to PostgreSQL at 127.0.0.1:{port}/db: connection refused")
        );
        assert!(!error.message.contains("secret") && !error.fix.contains("secret"));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-check-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
