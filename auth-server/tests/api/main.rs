//! auth-server integration tests: the store's atomic operations under
//! concurrency, on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;
mod store;
