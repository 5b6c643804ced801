//! What both Portcullis services use: token claims and the offline verifier,
//! the RS256 signer, HTTP security layers, serving with connection hygiene,
//! config loading, error shapes.

pub mod access;
pub mod alerts;
pub mod api_key;
pub mod client_ip;
pub mod config;
pub mod contract;
pub mod health;
pub mod http;
pub mod jwt;
pub mod limit;
pub mod metrics;
pub mod oauth_error;
pub mod paths;
pub mod problem;
pub mod revocation;
pub mod revocation_feed;
pub mod search;
pub mod secret;
pub mod serve;
pub mod startup;
pub mod telemetry;
pub mod text;
pub mod tls;

#[cfg(any(test, feature = "test-util"))]
pub mod test_tls;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
