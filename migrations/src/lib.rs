//! The whole Portcullis schema, as sea-orm migrations that run on SQLite and PostgreSQL.
//!
//! Conventions: ids are text (UUIDs or random ids), times are Unix seconds
//! (BIGINT), secrets are stored only as SHA-256 hex (`*_hash`).

pub use sea_orm_migration::prelude::*;

pub mod db;
mod m20251125_000001_create_core;
mod m20251126_000001_grace_and_pending;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20251125_000001_create_core::Migration),
            Box::new(m20251126_000001_grace_and_pending::Migration),
        ]
    }
}
