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

/// SQLite takes one column change per ALTER TABLE.
async fn alter(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    change: AlterChange,
) -> Result<(), DbErr> {
    let mut statement = Table::alter();
    statement.table(table);
    match change {
        AlterChange::Add(column) => statement.add_column(*column),
        AlterChange::Drop(column) => statement.drop_column(column),
    };
    manager.alter_table(statement.to_owned()).await
}

enum AlterChange {
    Add(Box<ColumnDef>),
    Drop(DynIden),
}

fn not_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use AlterChange::Add;
        alter(
            manager,
            Clients::Table,
            Add(Box::new(
                ColumnDef::new(Clients::RefreshGraceSecs)
                    .big_integer()
                    .null()
                    .to_owned(),
            )),
        )
        .await?;
        alter(
            manager,
            RefreshTokens::Table,
            Add(Box::new(
                not_null(RefreshTokens::GraceReplays)
                    .big_integer()
                    .default(0)
                    .to_owned(),
            )),
        )
        .await?;
        alter(
            manager,
            AuthorizationCodes::Table,
            Add(Box::new(
                not_null(AuthorizationCodes::RedirectUriGiven)
                    .boolean()
                    .default(true)
                    .to_owned(),
            )),
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(PendingAuthorizations::Table)
                    .col(not_null(PendingAuthorizations::Id).string().primary_key())
                    .col(not_null(PendingAuthorizations::SessionId).string())
                    .col(not_null(PendingAuthorizations::ClientId).string())
                    .col(not_null(PendingAuthorizations::Request).string())
                    .col(not_null(PendingAuthorizations::CreatedAt).big_integer())
                    .col(not_null(PendingAuthorizations::ExpiresAt).big_integer())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use AlterChange::Drop;
        manager
            .drop_table(
                Table::drop()
                    .table(PendingAuthorizations::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        alter(
            manager,
            AuthorizationCodes::Table,
            Drop(AuthorizationCodes::RedirectUriGiven.into_iden()),
        )
        .await?;
        alter(
            manager,
            RefreshTokens::Table,
            Drop(RefreshTokens::GraceReplays.into_iden()),
        )
        .await?;
        alter(
            manager,
            Clients::Table,
            Drop(Clients::RefreshGraceSecs.into_iden()),
        )
        .await
    }
}
