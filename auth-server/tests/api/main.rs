//! auth-server integration tests: the store's atomic operations under
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! concurrency, on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL.

mod helpers;
mod store;
