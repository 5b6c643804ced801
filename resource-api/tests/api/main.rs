//! Integration tests of the resource API over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_keys;
mod auth;
mod authz;
mod health;
mod helpers;
mod jwks;
mod limits;
mod metrics;
mod notes;
mod postgres;
mod responses;
mod search;
mod security;
mod versions;
