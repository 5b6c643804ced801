//! End-to-end flows against the real `auth-server` and `resource-api`
//! binaries, each test on its own stack (ports 0, own SQLite file or own
//! PostgreSQL database).
//!
//! Every test runs on SQLite (`*_sqlite`) and, when `TEST_DATABASE_URL`
//! points at a PostgreSQL server, on a fresh database there (`*_postgres`;
//! without the variable those print `skipped: TEST_DATABASE_URL not set`).
//! Set `E2E_SKIP_BUILD=1` or `E2E_BIN_DIR` to use prebuilt binaries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// `both!(body => name_sqlite, name_postgres);` makes two tests that call
/// `async fn body(backend: Backend)`.
macro_rules! both {
    ($body:ident => $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $body($crate::support::Backend::Sqlite).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(backend) = $crate::support::Backend::postgres() else {
                migrations::test_support::skipped(
                    stringify!($postgres),
                    "TEST_DATABASE_URL not set",
                );
                return;
            };
            $body(backend).await;
        }
    };
}

#[path = "flows/support.rs"]
mod support;

#[path = "flows/abuse.rs"]
mod abuse;
#[path = "flows/browser.rs"]
mod browser;
#[path = "flows/browser_app.rs"]
mod browser_app;
#[path = "flows/chaos.rs"]
mod chaos;
#[path = "flows/cli.rs"]
mod cli;
#[path = "flows/dev_mode.rs"]
mod dev_mode;
#[path = "flows/discovery.rs"]
mod discovery;
#[path = "flows/forged.rs"]
mod forged;
#[path = "flows/grace.rs"]
mod grace;
#[path = "flows/happy.rs"]
mod happy;
#[path = "flows/hygiene.rs"]
mod hygiene;
#[path = "flows/interop.rs"]
mod interop;
#[path = "flows/logs.rs"]
mod logs;
#[path = "flows/resource_cli.rs"]
mod resource_cli;
#[path = "flows/tls.rs"]
mod tls;
#[path = "flows/wrong_way.rs"]
mod wrong_way;
