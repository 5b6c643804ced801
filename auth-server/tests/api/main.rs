//! auth-server integration tests: the store's atomic operations under
//! concurrency, on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL.

mod helpers;
mod store;
