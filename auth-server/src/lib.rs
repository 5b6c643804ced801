//! Portcullis authorization server.

pub mod audit;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod fault;
pub mod http;
pub mod janitor;
pub mod keys;
pub mod limits;
pub mod mail;
pub mod oauth;
pub mod password;
pub mod register;
pub mod reset;
pub mod revocations;
pub mod signing_keys;
pub mod since;
pub mod startup;
pub mod state;
pub mod store;
