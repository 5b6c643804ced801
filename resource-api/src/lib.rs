//! Portcullis resource API: verifies RS256 access tokens offline and serves
//! each user's notes under `/api/v2` (and the deprecated `/api/v1`,
//! `http::versions`).

pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod revocations;
pub mod startup;
pub mod state;
pub mod store;

pub use config::Settings;
pub use startup::{Application, BuildOptions};
