//! PostgreSQL, on a pool built here rather than by sea-orm, for one guard:
//! a connection is never handed out inside a transaction.
//!
//! sqlx's PostgreSQL driver counts a transaction as open only once the
//! server has answered its `BEGIN`. A caller whose future is dropped while
//! it waits for that answer (a client that went away) returns the
//! connection to the pool with the transaction open on the server and
//! nothing in sqlx to roll it back: every later statement on that
//! connection would run inside it, be acknowledged, and never be committed.
//! Before a connection is handed out, one statement checks that the
//! transaction it runs in started with it (`transaction_timestamp()` equals
//! `statement_timestamp()` only in a statement's own implicit transaction);
//! a connection found inside an older transaction is closed, which makes
//! the server roll that transaction back. The check is sent with the simple
//! query protocol: with the extended one, the statement's timestamp moves
//! on at Bind and Execute, and every connection would look stale. The check also answers for the
//! connection's liveness, so sqlx's own ping (`test_before_acquire`) is off:
//! an acquire costs one round trip, as before.

use std::str::FromStr;

use sea_orm_migration::sea_orm::error::RuntimeErr;
use sea_orm_migration::sea_orm::sqlx;
use sea_orm_migration::sea_orm::{DatabaseConnection, DbErr, SqlxPostgresConnector};

use crate::db::Deadlines;

/// The check run before a connection is handed out: true outside any
/// transaction opened earlier on the connection.
pub const FRESH_TRANSACTION_SQL: &str = "SELECT transaction_timestamp() = statement_timestamp()";

/// A pool of `max_connections` for `url`, with `statement_timeout` set to the
/// statement deadline and, when given, `schema` as the search path.
pub async fn connect(
    url: &str,
    schema: Option<&str>,
    deadlines: Deadlines,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    use sqlx::ConnectOptions as _;
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    let conn_err = |e| DbErr::Conn(RuntimeErr::SqlxError(e));
    let millis = deadlines.statement.as_millis().to_string();
    let connect = PgConnectOptions::from_str(url)
        .map_err(conn_err)?
        .options([("statement_timeout", millis.as_str())])
        .disable_statement_logging();
    let search_path =
        schema.map(|schema| format!("SET search_path = \"{}\"", schema.replace('"', "\"\"")));
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(deadlines.acquire)
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let sql = search_path.clone();
            Box::pin(async move {
                if let Some(sql) = sql {
                    sqlx::Executor::execute(conn, sql.as_str()).await?;
                }
                Ok(())
            })
        })
        .before_acquire(|conn, _meta| {
            Box::pin(async move {
                use sqlx::Row as _;
                // The simple query protocol: one message, so a statement
                // outside any transaction block starts its own implicit
                // transaction when it starts (with the extended protocol,
                // Bind and Execute would move the statement's timestamp on).
                // (A plain string with no arguments is sent as a simple
                // Query message.)
                let row = sqlx::Executor::fetch_one(&mut *conn, FRESH_TRANSACTION_SQL).await?;
                let fresh: bool = row.try_get(0)?;
                if !fresh {
                    tracing::warn!(
                        "a pooled PostgreSQL connection was left inside a transaction \
                         (a caller dropped while it began one): closing it"
                    );
                }
                Ok(fresh)
            })
        })
        .connect_with(connect)
        .await
        .map_err(conn_err)?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}
