//! Database access. Every note query is scoped to its owner.

pub mod api_keys;
pub mod audit;
pub mod entity;
pub mod notes;
