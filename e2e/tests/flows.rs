//! End-to-end flows against the real `auth-server` and `resource-api`
//! binaries, each test on its own stack (ports 0, own SQLite file or own
//! PostgreSQL database).
//!
//! Every test runs on SQLite (`*_sqlite`) and, when `TEST_DATABASE_URL`
//! points at a PostgreSQL server, on a fresh database there (`*_postgres`;
//! without the variable at build time those are marked ignored, and the
//! summary counts them so: `test_gates::needs!`).
//! The binaries are those the test command built (`cargo test --workspace`
//! builds them; `e2e::binaries` says which command to run when one is
//! missing or older than its sources). `E2E_BIN_DIR` or `E2E_SKIP_BUILD=1`
//! use prebuilt binaries as they are; `E2E_BUILD=1` builds them first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// `both!(body => name_sqlite, name_postgres);` makes two tests that call
/// `async fn body(backend: Backend)`; the PostgreSQL one is ignored unless
/// `TEST_DATABASE_URL` was set when the tests were built.
/// `both!(body => name_sqlite, name_postgres; needs pyjwt);` also ignores
/// both without the given `test_gates` gates.
macro_rules! both {
    ($body:ident => $sqlite:ident, $postgres:ident $(; needs $($gate:ident),+)?) => {
        test_gates::needs! { [$($($gate),+)?]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $sqlite() {
                $body($crate::support::Backend::Sqlite).await;
            }
        }

        test_gates::needs! { [postgres $($(, $gate)+)?]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $postgres() {
                let backend = $crate::support::Backend::Postgres(
                    migrations::test_support::require_postgres_url(stringify!($postgres)),
                );
                $body(backend).await;
            }
        }
    };
}

#[path = "flows/support.rs"]
mod support;

#[path = "flows/abuse.rs"]
mod abuse;
#[path = "flows/alerts.rs"]
mod alerts;
#[path = "flows/api_keys_cli.rs"]
mod api_keys_cli;
#[path = "flows/browser.rs"]
mod browser;
#[path = "flows/browser_app.rs"]
mod browser_app;
#[path = "flows/chaos.rs"]
mod chaos;
#[path = "flows/cli.rs"]
mod cli;
#[path = "flows/cli_lifecycle.rs"]
mod cli_lifecycle;
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
#[path = "flows/key_rotation.rs"]
mod key_rotation;
#[path = "flows/logs.rs"]
mod logs;
#[path = "flows/readme.rs"]
mod readme;
#[path = "flows/resource_cli.rs"]
mod resource_cli;
#[path = "flows/revocation.rs"]
mod revocation;
#[path = "flows/stack_bin.rs"]
mod stack_bin;
#[path = "flows/startup.rs"]
mod startup;
#[path = "flows/tls.rs"]
mod tls;
#[path = "flows/wrong_way.rs"]
mod wrong_way;
