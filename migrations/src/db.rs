//! One way to open the database for every binary and test: SQLite in WAL mode
//! with a busy timeout and foreign keys on; PostgreSQL with an optional schema.

use std::time::Duration;

use sea_orm_migration::sea_orm::error::{ConnAcquireErr, RuntimeErr};
use sea_orm_migration::sea_orm::sqlx;
use sea_orm_migration::sea_orm::{DatabaseConnection, DbErr};

/// How long a request may wait for the database: for a pooled connection,
/// and for one statement (PostgreSQL `statement_timeout`, SQLite's busy
/// timeout). A request that cannot get its answer in time fails fast as
/// "unavailable" (see [`is_unavailable`]) instead of hanging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub acquire: Duration,
    pub statement: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            acquire: Duration::from_millis(DEFAULT_ACQUIRE_TIMEOUT_MS),
            statement: Duration::from_millis(DEFAULT_STATEMENT_TIMEOUT_MS),
        }
    }
}

impl Deadlines {
    /// From `DATABASE_ACQUIRE_TIMEOUT_MS` and `DATABASE_STATEMENT_TIMEOUT_MS`,
    /// each 50 ms to 60 s.
    pub fn from_millis(acquire: u64, statement: u64) -> Result<Self, DbErr> {
        for (name, value) in [
            ("DATABASE_ACQUIRE_TIMEOUT_MS", acquire),
            ("DATABASE_STATEMENT_TIMEOUT_MS", statement),
        ] {
            if !(50..=60_000).contains(&value) {
                return Err(DbErr::Custom(format!(
                    "{name} must be between 50 and 60000 milliseconds, not {value}"
                )));
            }
        }
        Ok(Self {
            acquire: Duration::from_millis(acquire),
            statement: Duration::from_millis(statement),
        })
    }
}

/// How long a pooled SQLite connection lives before it is replaced.
pub const SQLITE_CONNECTION_LIFETIME: Duration = Duration::from_secs(10);

/// Default of `DATABASE_ACQUIRE_TIMEOUT_MS`.
pub const DEFAULT_ACQUIRE_TIMEOUT_MS: u64 = 1_000;
/// Default of `DATABASE_STATEMENT_TIMEOUT_MS`.
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 2_000;

/// Opens a pool for `url` (`sqlite://…` or `postgres://…`) with the default
/// deadlines. `schema` sets the PostgreSQL search path (tests use a fresh
/// schema each).
pub async fn connect(url: &str, schema: Option<&str>) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, schema, Deadlines::default()).await
}

/// Connections of a service's main pool.
pub const POOL_SIZE: u32 = 16;

/// Opens a pool of [`POOL_SIZE`] with these deadlines. Connections are
/// checked before they are handed out, so a broken one is replaced rather
/// than reused.
pub async fn connect_with(
    url: &str,
    schema: Option<&str>,
    deadlines: Deadlines,
) -> Result<DatabaseConnection, DbErr> {
    connect_pool(url, schema, deadlines, POOL_SIZE).await
}

/// [`connect_with`] with `max_connections` connections (a small side pool,
/// such as the audit writer's, that must not compete with requests).
pub async fn connect_pool(
    url: &str,
    schema: Option<&str>,
    deadlines: Deadlines,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    let max_connections = max_connections.max(1);
    if url.starts_with("sqlite:") {
        return connect_sqlite(url, deadlines, max_connections).await;
    }
    // PostgreSQL: the pool of `crate::pg` (never hands out a connection
    // left inside a transaction).
    crate::pg::connect(url, schema, deadlines, max_connections).await
}

/// The readiness probe of "the database takes a write": a write that
/// reaches the disk every time (one row of `readiness`, created if missing,
/// its counter moved on). A statement that changes nothing is no such
/// check: SQLite runs it on a connection opened before the file became
/// read-only without writing anything.
pub const PROBE_WRITE: &str = "INSERT INTO readiness (id, probes) VALUES (1, 1) \
    ON CONFLICT (id) DO UPDATE SET probes = readiness.probes + 1";

/// A readiness probe: runs `sql` (a read, or a write that changes nothing).
/// The error says only the class of the failure, never the database's own
/// message, which goes to the log.
pub async fn probe(db: &DatabaseConnection, sql: &str) -> Result<(), String> {
    use sea_orm_migration::sea_orm::ConnectionTrait;
    match db.execute_unprepared(sql).await {
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::warn!(error = %error, "readiness: database probe failed");
            Err(if is_unavailable(&error) {
                "unreachable, read-only or too slow".to_owned()
            } else {
                "error (see the log)".to_owned()
            })
        }
    }
}

/// Whether an error means "the database cannot be reached or did not answer
/// in time" (a 503 with `Retry-After` for the client), as opposed to a fault
/// of the request or of the code (a 500).
pub fn is_unavailable(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            true
        }
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => sqlx_unavailable(e),
        DbErr::Conn(_) => true,
        _ => false,
    }
}

fn sqlx_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => {
            let code = e.code();
            let code = code.as_deref().unwrap_or_default();
            // PostgreSQL: 57014 query_canceled (statement_timeout), class 08
            // connection exceptions, 57P01-57P03 shutdown / cannot connect
            // now, 53xxx insufficient resources, 25006 read-only transaction.
            // SQLite (primary result code in the extended one): 5 BUSY,
            // 6 LOCKED, 8 READONLY, 10 IOERR, 13 FULL, 14 CANTOPEN.
            code == "57014"
                || code.starts_with("08")
                || code.starts_with("57P0")
                || code.starts_with("53")
                || code == "25006"
                || code
                    .parse::<i64>()
                    .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
        }
        _ => false,
    }
}

/// SQLite, on a pool built here rather than by sea-orm, for two guards:
/// - connections live at most [`SQLITE_CONNECTION_LIFETIME`]: one opened
///   while the file was read-only does not outlive the fault;
/// - before a connection is handed out, it must not be inside a transaction.
///   After a COMMIT fails with an I/O error (a read-only or full disk),
///   SQLite has rolled back but sqlx still counts the transaction as open; a
///   later `begin` then opens a SAVEPOINT, and a rollback of it leaves SQLite
///   inside a transaction in which every later "commit" only releases a
///   savepoint: writes acknowledged, never saved. The probe (`BEGIN`, then
///   `ROLLBACK`) fails on such a connection, and the pool drops it.
///
/// Each check is a round trip to the connection's worker thread (a thread
/// hand-off each way), so an acquire costs one: the probe is sent as one
/// command (`BEGIN; ROLLBACK`, which stops at a failing `BEGIN`), and sqlx's
/// own liveness ping (`test_before_acquire`) is off, as the probe already
/// fails on a connection whose worker is gone. A local file connection does
/// not go stale the way a network one does.
async fn connect_sqlite(
    url: &str,
    deadlines: Deadlines,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    use std::str::FromStr;

    use sqlx::ConnectOptions as _;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};

    // The folder is created only with `mode=rwc`, which asks for the file
    // to be created too; without it a missing file is an error.
    let creates = url
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair == "mode=rwc"));
    let parent = sqlite_path(url)
        .filter(|_| creates)
        .and_then(|p| std::path::Path::new(&p).parent().map(|d| d.to_path_buf()));
    if let Some(parent) = parent.filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(&parent)
            .map_err(|e| DbErr::Custom(format!("creating {}: {e}", parent.display())))?;
    }
    let connect = SqliteConnectOptions::from_str(url)
        .map_err(|e| DbErr::Custom(format!("DATABASE_URL: {e}")))?
        .journal_mode(sqlx_sqlite_journal_wal())
        .busy_timeout(deadlines.statement)
        .foreign_keys(true)
        .synchronous(SqliteSynchronous::Normal)
        .disable_statement_logging();
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(deadlines.acquire)
        .max_lifetime(SQLITE_CONNECTION_LIFETIME)
        .idle_timeout(SQLITE_CONNECTION_LIFETIME)
        .test_before_acquire(false)
        .before_acquire(|conn, _meta| {
            Box::pin(async move {
                use sqlx::Executor;
                // Fails (at `BEGIN`, before the `ROLLBACK`) when the
                // connection is inside a transaction.
                Ok(conn.execute("BEGIN; ROLLBACK").await.is_ok())
            })
        })
        .connect_with(connect)
        .await
        .map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(e)))?;
    Ok(sea_orm_migration::sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
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

/// The write transactions of the hot paths (refresh rotation, code
/// exchange), serialised in this process on SQLite.
///
/// SQLite has one writer at a time. Without this, concurrent writers on
/// the pool's connections each wait in SQLite's busy handler, which sleeps
/// and polls (and, past the busy timeout, fails) instead of queueing. Here
/// they wait, in arrival order, on an async mutex, and only the holder
/// opens its transaction. A writer that cannot get its turn within the
/// acquire deadline fails as "unavailable" ([`is_unavailable`]: a 503), like
/// one that cannot get a pooled connection. Writers elsewhere (admin, the
/// janitor, sessions) are not queued here; they still meet these in the
/// busy handler, as before.
///
/// PostgreSQL is left as it is: its row locks already queue writers of the
/// same row, and writers of different rows run in parallel.
#[derive(Clone)]
pub struct Writer {
    db: DatabaseConnection,
    /// Some on SQLite.
    turn: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
    wait: Duration,
}

/// The right to write, on SQLite: held until dropped.
pub struct WritePermit {
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// A transaction opened through a [`Writer`]: the transaction itself (by
/// `Deref`) and, on SQLite, the writer's turn. Dropped without a commit, it
/// rolls back (sea-orm's transaction) and then gives the turn up (fields
/// drop in order).
pub struct WriteTxn {
    txn: sea_orm_migration::sea_orm::DatabaseTransaction,
    _permit: WritePermit,
}

impl Writer {
    /// `wait`: how long a writer may queue for its turn (the acquire deadline).
    pub fn new(db: DatabaseConnection, wait: Duration) -> Self {
        use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
        let turn = (db.get_database_backend() == DbBackend::Sqlite)
            .then(|| std::sync::Arc::new(tokio::sync::Mutex::new(())));
        Self { db, turn, wait }
    }

    /// The pool the transactions run on.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Waits for the turn to write (SQLite; at once on PostgreSQL), at most
    /// the acquire deadline.
    pub async fn permit(&self) -> Result<WritePermit, DbErr> {
        let Some(turn) = &self.turn else {
            return Ok(WritePermit { _turn: None });
        };
        match tokio::time::timeout(self.wait, turn.clone().lock_owned()).await {
            Ok(guard) => Ok(WritePermit { _turn: Some(guard) }),
            Err(_) => Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
        }
    }

    /// Runs `write` (a statement or a few, not a transaction of its own)
    /// once it is this writer's turn, and gives the turn up when it is
    /// done: on SQLite a write of the sign-in or authorization pages then
    /// waits in line with rotations, code exchanges and audit batches instead
    /// of meeting them in SQLite's busy handler. Waiting longer than the
    /// acquire deadline is "unavailable", as for [`Writer::begin`]. Never
    /// call it while holding this writer's turn.
    pub async fn run<T, E: From<DbErr>>(
        &self,
        write: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let _turn = self.permit().await?;
        write.await
    }

    /// Opens a transaction once it is this writer's turn.
    ///
    /// On PostgreSQL `BEGIN` runs in a task of its own: sqlx's PostgreSQL
    /// driver counts a transaction as open only once `BEGIN` has been
    /// answered, so a caller dropped while it waits for that answer would put
    /// the connection back in the pool inside a transaction that nothing
    /// rolls back (later statements on it would never be committed). There a
    /// dropped caller leaves the task to finish, and the transaction it
    /// opened is then dropped, which queues its rollback.
    ///
    /// SQLite needs no task (one spawn and a wake-up saved per transaction):
    /// sqlx-sqlite's worker rolls a `BEGIN` back itself when its answer can
    /// no longer be delivered, and sea-orm's transaction, built before the
    /// `BEGIN` is sent, queues a rollback when dropped, which the worker runs
    /// after the `BEGIN` (a no-op when there is no transaction). Either way
    /// the connection goes back to the pool outside a transaction (and the
    /// pool's probe checks it).
    pub async fn begin(&self) -> Result<WriteTxn, DbErr> {
        use sea_orm_migration::sea_orm::TransactionTrait;
        let permit = self.permit().await?;
        let txn = if self.turn.is_some() {
            self.db.begin().await?
        } else {
            let db = self.db.clone();
            tokio::spawn(async move { db.begin().await })
                .await
                .map_err(|e| DbErr::Custom(format!("beginning a transaction: {e}")))??
        };
        Ok(WriteTxn {
            txn,
            _permit: permit,
        })
    }
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), DbErr> {
        let Self { txn, _permit } = self;
        txn.commit().await
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        let Self { txn, _permit } = self;
        txn.rollback().await
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = sea_orm_migration::sea_orm::DatabaseTransaction;

    fn deref(&self) -> &Self::Target {
        &self.txn
    }
}

/// `Migrator::up(db, steps)` on one connection. On SQLite the migrations
/// run in one transaction: SQLite checks a connection's cached schema when a
/// statement reads a table, not when a schema change is prepared, so an
/// `ALTER TABLE` sent to a pooled connection that loaded the schema before
/// another connection changed it fails ("no such column", "duplicate column
/// name"; seen when several migrations ran across a pool). One transaction
/// also applies all of them or none. PostgreSQL runs each migration in a
/// transaction of its own already.
pub async fn up(db: &DatabaseConnection, steps: Option<u32>) -> Result<(), DbErr> {
    use crate::{Migrator, MigratorTrait};
    use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
    if db.get_database_backend() != DbBackend::Sqlite {
        return Migrator::up(db, steps).await;
    }
    let txn = db.begin().await?;
    Migrator::up(&txn, steps).await?;
    txn.commit().await
}

/// `Migrator::down(db, steps)`, on one connection as [`up`].
pub async fn down(db: &DatabaseConnection, steps: Option<u32>) -> Result<(), DbErr> {
    use crate::{Migrator, MigratorTrait};
    use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
    if db.get_database_backend() != DbBackend::Sqlite {
        return Migrator::down(db, steps).await;
    }
    let txn = db.begin().await?;
    Migrator::down(&txn, steps).await?;
    txn.commit().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sea_orm_migration::sea_orm::sqlx::Executor;

    async fn marked(conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>) -> bool {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM temp.marker")
            .fetch_one(&mut **conn)
            .await
            .is_ok()
    }

    /// The acquire probe (one `BEGIN; ROLLBACK`, no ping): a healthy
    /// connection is handed out again, outside a transaction; one handed
    /// back inside a transaction that sqlx does not know of is dropped and
    /// replaced, never handed out.
    #[tokio::test]
    async fn sqlite_pool_probe_replaces_a_connection_left_inside_a_transaction() {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-db-probe-{}-{}",
            std::process::id(),
            uuid_free_suffix()
        ));
        let url = format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display());
        let db = connect_pool(&url, None, Deadlines::default(), 1)
            .await
            .unwrap();
        let pool = db.get_sqlite_connection_pool();

        // A connection-scoped marker: a TEMP table lives with its connection.
        let mut conn = pool.acquire().await.unwrap();
        conn.execute("CREATE TEMP TABLE marker (x)").await.unwrap();
        drop(conn);

        // Healthy: the same connection again, and outside a transaction
        // (the probe's ROLLBACK ran: a BEGIN is accepted).
        let mut conn = pool.acquire().await.unwrap();
        assert!(marked(&mut conn).await, "a healthy connection was replaced");
        conn.execute("BEGIN").await.unwrap();
        // Handed back inside that transaction (sqlx counts none).
        drop(conn);

        let mut conn = pool.acquire().await.unwrap();
        assert!(
            !marked(&mut conn).await,
            "a connection inside a transaction was handed out"
        );
        conn.execute("BEGIN").await.unwrap();
        conn.execute("ROLLBACK").await.unwrap();
        drop(conn);
        db.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The SQLite write turn: a second writer waits, and one that cannot
    /// get its turn within the deadline fails as "unavailable" (a 503, not
    /// a hang); once the turn is given back the next writer gets it.
    #[tokio::test]
    async fn sqlite_writer_turn_times_out_as_unavailable_and_is_given_back() {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-db-turn-{}-{}",
            std::process::id(),
            uuid_free_suffix()
        ));
        let url = format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display());
        let db = connect_pool(&url, None, Deadlines::default(), 2)
            .await
            .unwrap();
        let writer = Writer::new(db.clone(), Duration::from_millis(50));
        let held = writer.begin().await.unwrap();
        let error = writer.permit().await.err().unwrap();
        assert!(is_unavailable(&error), "{error:?}");
        held.rollback().await.unwrap();
        let again = writer.begin().await.unwrap();
        again.commit().await.unwrap();
        db.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn uuid_free_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    }
}
