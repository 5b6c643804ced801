//! Instant revocation of access tokens: `token_revocations` holds one row
//! per revoked subject, "access tokens of this subject issued before
//! `not_before` are void". `subject_kind` is `user` (matched against a
//! token's `sub`) or `client` (against its `client_id`); `not_before` and
//! `expires_at` are Unix seconds. A row is useless once `expires_at` has
//! passed (no token it covers can still be valid) and the janitor or the
//! next revocation may delete it. One row per subject: a newer revocation
//! moves `not_before` and `expires_at` forward.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TokenRevocations {
    Table,
    SubjectKind,
    SubjectId,
    NotBefore,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TokenRevocations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(TokenRevocations::SubjectKind)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TokenRevocations::SubjectId)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TokenRevocations::NotBefore)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TokenRevocations::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TokenRevocations::SubjectKind)
                            .col(TokenRevocations::SubjectId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_token_revocations_expires_at")
                    .table(TokenRevocations::Table)
                    .col(TokenRevocations::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TokenRevocations::Table).to_owned())
            .await
    }
}
