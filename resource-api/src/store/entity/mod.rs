//! sea-orm entities for the tables the resource API uses.

pub mod note;
