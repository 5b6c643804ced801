use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Name,
    PasswordHash,
    Roles,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    Id,
    Name,
    SecretHash,
    RedirectUris,
    GrantTypes,
    Scopes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    Id,
    CodeHash,
    ClientId,
    UserId,
    RedirectUri,
    Scope,
    Pkce,
    ExpiresAt,
    UsedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    TokenHash,
    FamilyId,
    ParentId,
    ClientId,
    UserId,
    Scope,
    CodeId,
    ExpiresAt,
    CreatedAt,
    UsedAt,
    RevokedAt,
    RevokedReason,
}

#[derive(DeriveIden)]
enum LoginSessions {
    Table,
    Id,
    SessionHash,
    UserId,
    CsrfToken,
    CreatedAt,
    ExpiresAt,
    AuthenticatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    At,
    Kind,
    UserId,
    ClientId,
    Detail,
}

#[derive(DeriveIden)]
enum Notes {
    Table,
    Id,
    Owner,
    Title,
    Body,
    CreatedAt,
    UpdatedAt,
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string()
        .not_null()
        .primary_key()
        .to_owned()
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}

fn text_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().null().to_owned()
}

fn time(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().to_owned()
}

fn time_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id(Users::Id))
                    .col(text(Users::Email).unique_key().to_owned())
                    .col(text(Users::Name))
                    .col(text_null(Users::PasswordHash))
                    .col(text(Users::Roles))
                    .col(time(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Clients::Table)
                    .col(id(Clients::Id))
                    .col(text(Clients::Name))
                    .col(text_null(Clients::SecretHash))
                    .col(text(Clients::RedirectUris))
                    .col(text(Clients::GrantTypes))
                    .col(text(Clients::Scopes))
                    .col(time(Clients::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuthorizationCodes::Table)
                    .col(id(AuthorizationCodes::Id))
                    .col(text(AuthorizationCodes::CodeHash).unique_key().to_owned())
                    .col(text(AuthorizationCodes::ClientId))
                    .col(text(AuthorizationCodes::UserId))
                    .col(text(AuthorizationCodes::RedirectUri))
                    .col(text(AuthorizationCodes::Scope))
                    .col(text_null(AuthorizationCodes::Pkce))
                    .col(time(AuthorizationCodes::ExpiresAt))
                    .col(time_null(AuthorizationCodes::UsedAt))
                    .col(time(AuthorizationCodes::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(id(RefreshTokens::Id))
                    .col(text(RefreshTokens::TokenHash).unique_key().to_owned())
                    .col(text(RefreshTokens::FamilyId))
                    .col(text_null(RefreshTokens::ParentId))
                    .col(text(RefreshTokens::ClientId))
                    .col(text(RefreshTokens::UserId))
                    .col(text(RefreshTokens::Scope))
                    .col(text_null(RefreshTokens::CodeId))
                    .col(time(RefreshTokens::ExpiresAt))
                    .col(time(RefreshTokens::CreatedAt))
                    .col(time_null(RefreshTokens::UsedAt))
                    .col(time_null(RefreshTokens::RevokedAt))
                    .col(text_null(RefreshTokens::RevokedReason))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_tokens_family")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::FamilyId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_tokens_code")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::CodeId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginSessions::Table)
                    .col(id(LoginSessions::Id))
                    .col(text(LoginSessions::SessionHash).unique_key().to_owned())
                    .col(text_null(LoginSessions::UserId))
                    .col(text(LoginSessions::CsrfToken))
                    .col(time(LoginSessions::CreatedAt))
                    .col(time(LoginSessions::ExpiresAt))
                    .col(time_null(LoginSessions::AuthenticatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(id(AuditEvents::Id))
                    .col(time(AuditEvents::At))
                    .col(text(AuditEvents::Kind))
                    .col(text_null(AuditEvents::UserId))
                    .col(text_null(AuditEvents::ClientId))
                    .col(text(AuditEvents::Detail))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_at")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notes::Table)
                    .col(id(Notes::Id))
                    .col(text(Notes::Owner))
                    .col(text(Notes::Title))
                    .col(text(Notes::Body))
                    .col(time(Notes::CreatedAt))
                    .col(time(Notes::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_notes_owner")
                    .table(Notes::Table)
                    .col(Notes::Owner)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Notes::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            LoginSessions::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            AuthorizationCodes::Table.into_iden(),
            Clients::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
