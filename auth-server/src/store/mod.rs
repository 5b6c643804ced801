//! Database access. Every function takes a connection or a transaction; ids
//! are UUID text, times Unix seconds, secrets SHA-256 hex.

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod clients;
pub mod codes;
pub mod entities;
pub mod lifecycle;
pub mod lockouts;
pub mod outbox;
pub mod pending;
pub mod refresh;
pub mod resets;
pub mod revocations;
pub mod sessions;
pub mod user_search;
pub mod users;

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
