//! Database access. Every note query is scoped to its owner.

pub mod entity;
pub mod notes;
