//! Graceful refresh rotation, the redirect-URI rule of RFC 6749 §4.1.3, and
//! pending authorization requests bound to a session (consent binding).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    /// Per-client refresh grace window in seconds; NULL = the server default.
    RefreshGraceSecs,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    /// How many times the token was replayed inside its grace window.
    GraceReplays,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    /// Whether the authorization request carried `redirect_uri`: only then
    /// must the token request repeat it (RFC 6749 §4.1.3).
    RedirectUriGiven,
}

#[derive(DeriveIden)]
enum PendingAuthorizations {
    Table,
    Id,
    SessionId,
    ClientId,
    Request,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one ADD COLUMN per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(
                        ColumnDef::new(Clients::RefreshGraceSecs)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshTokens::Table)
                    .add_column(
                        ColumnDef::new(RefreshTokens::GraceReplays)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuthorizationCodes::Table)
                    .add_column(
                        ColumnDef::new(AuthorizationCodes::RedirectUriGiven)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PendingAuthorizations::Table)
                    .col(
                        ColumnDef::new(PendingAuthorizations::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(PendingAuthorizations::SessionId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PendingAuthorizations::ClientId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PendingAuthorizations::Request)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PendingAuthorizations::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PendingAuthorizations::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(PendingAuthorizations::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuthorizationCodes::Table)
                    .drop_column(AuthorizationCodes::RedirectUriGiven)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshTokens::Table)
                    .drop_column(RefreshTokens::GraceReplays)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .drop_column(Clients::RefreshGraceSecs)
                    .to_owned(),
            )
            .await
    }
}
