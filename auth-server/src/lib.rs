//! Portcullis authorization server.

pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod fault;
pub mod http;
pub mod keys;
pub mod oauth;
pub mod password;
pub mod startup;
pub mod state;
pub mod store;
