//! auth-server integration tests, in-process (`helpers::spawn_app`): the
//! store's atomic operations, the token endpoint's rules and graceful
//! rotation, on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod abuse;
mod admin;
mod admin_search;
mod alerts;
mod api_keys;
mod authorize;
mod cancel;
mod cors;
mod grace;
mod headers;
mod janitor;
mod lifecycle;
mod pg_pool;
mod register;
mod reset;
mod responses;
mod revocations;
mod rotation;
mod store;
mod token;
mod unavailable;
