//! `readiness`: one row that `/readyz` writes (`crate::db::probe_write`), so
//! that "the database takes a write" is checked with a write that reaches
//! the disk. A statement that changes nothing (the probe before) succeeded
//! on a SQLite connection opened before the file became read-only, so the
//! check depended on which pooled connection answered.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Readiness {
    Table,
    Id,
    Probes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Readiness::Table)
                    .col(
                        ColumnDef::new(Readiness::Id)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Readiness::Probes)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Readiness::Table).to_owned())
            .await
    }
}
