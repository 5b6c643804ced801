//! A future dropped while it begins a PostgreSQL transaction (its client went
//! away) must not leave the pooled connection inside that transaction: the
//! next user of the connection would write into it, be acknowledged, and
//! never be committed (`migrations::pg`).

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use migrations::test_support::TestDb;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

/// Rows with `x = n` in `probe`, read on a connection of another pool.
async fn committed(other: &sea_orm::DatabaseConnection, n: i64) -> i64 {
    let row = other
        .query_one(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM probe WHERE x = $1",
            [n.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

test_gates::needs! { [postgres]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_begin_leaves_no_transaction_for_the_next_user_postgres() {
        let test = TestDb::postgres("pg_pool").await.unwrap();
        let url = format!(
            "{}?application_name={}",
            test.admin_url().unwrap(),
            test.application_name().unwrap()
        );
        let schema = test.application_name().unwrap().to_owned();
        // One connection, so the next statement gets the one just dropped.
        let single = migrations::db::connect_pool(
            &url,
            Some(&schema),
            migrations::db::Deadlines::default(),
            1,
        )
        .await
        .unwrap();
        single
            .execute_unprepared("CREATE TABLE probe (x BIGINT NOT NULL)")
            .await
            .unwrap();
        // A healthy connection passes the check: the pool keeps handing out
        // the same one (a check that failed would replace it every time).
        let pid = |db: sea_orm::DatabaseConnection| async move {
            let row = db
                .query_one(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT pg_backend_pid() AS pid",
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i32>("", "pid").unwrap()
        };
        let first = pid(single.clone()).await;
        for _ in 0..5 {
            assert_eq!(pid(single.clone()).await, first, "a healthy connection was replaced");
        }
        let mut cx = Context::from_waker(Waker::noop());
        for n in 0..40_i64 {
            // Dropped after 1, 2, … polls: before BEGIN is sent, while its
            // answer is awaited, and after.
            let mut begin = Box::pin(single.begin());
            for _ in 0..=(n % 8) {
                if let Poll::Ready(txn) = begin.as_mut().poll(&mut cx) {
                    drop(txn);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            drop(begin);
            single
                .execute(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO probe (x) VALUES ($1)",
                    [n.into()],
                ))
                .await
                .unwrap();
            assert_eq!(
                committed(&test.db, n).await,
                1,
                "after a BEGIN dropped at poll {}, an acknowledged insert was not committed",
                n % 8
            );
        }
        single.close().await.unwrap();
        test.cleanup().await;
    }
}
