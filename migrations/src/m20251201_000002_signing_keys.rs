//! Which signing key signs, recorded in the database so that every
//! auth-server instance agrees (`auth-server keys rotate|retire|list`).
//!
//! `signing_keys`: one row per key the server knows (`kid` = the RFC 7638
//! thumbprint, its PEM file is `<kid>.pem` in `AUTH_KEYS_DIR`). `state` is
//! `published` (in the JWKS, signing from `activates_at`), `active` (signing
//! from `activates_at`; recorded for a key that already signed when the
//! table was created) or `retired` (out of the JWKS since `retired_at`). The
//! key that signs is the non-retired one whose `activates_at` has passed,
//! the latest such. Times are Unix seconds.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    State,
    PublishedAt,
    ActivatesAt,
    RetiredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SigningKeys::Kid)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(SigningKeys::State).text().not_null())
                    .col(
                        ColumnDef::new(SigningKeys::PublishedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SigningKeys::ActivatesAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SigningKeys::RetiredAt).big_integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SigningKeys::Table).to_owned())
            .await
    }
}
