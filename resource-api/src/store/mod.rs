//! Database access. Every note query is scoped to its owner.

pub mod audit;
pub mod entity;
pub mod notes;
