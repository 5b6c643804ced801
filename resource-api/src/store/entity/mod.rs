//! sea-orm entities for the tables the resource API uses.

pub mod audit_event;
pub mod note;
