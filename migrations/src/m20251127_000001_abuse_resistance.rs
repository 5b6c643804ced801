//! Abuse resistance: rate-limit tiers of users and clients, lockout records,
//! password-reset tokens and the dev mail outbox.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    /// `standard` or `premium`: the resource API's rate-limit tier.
    Tier,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    Tier,
}

#[derive(DeriveIden)]
enum Lockouts {
    Table,
    /// `ip:<address>` or `account:<normalised email>`.
    Id,
    Kind,
    Subject,
    Failures,
    LockedAt,
    LockedUntil,
}

#[derive(DeriveIden)]
enum PasswordResetTokens {
    Table,
    Id,
    UserId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
    Id,
    Recipient,
    Subject,
    Body,
    CreatedAt,
}

fn not_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).not_null().to_owned()
}

fn tier(col: impl IntoIden) -> ColumnDef {
    not_null(col).string().default("standard").to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column change per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(tier(Users::Tier))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(tier(Clients::Tier))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Lockouts::Table)
                    .col(not_null(Lockouts::Id).string().primary_key())
                    .col(not_null(Lockouts::Kind).string())
                    .col(not_null(Lockouts::Subject).string())
                    .col(not_null(Lockouts::Failures).big_integer())
                    .col(not_null(Lockouts::LockedAt).big_integer())
                    .col(not_null(Lockouts::LockedUntil).big_integer())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PasswordResetTokens::Table)
                    .col(not_null(PasswordResetTokens::Id).string().primary_key())
                    .col(not_null(PasswordResetTokens::UserId).string())
                    .col(
                        not_null(PasswordResetTokens::TokenHash)
                            .string()
                            .unique_key(),
                    )
                    .col(not_null(PasswordResetTokens::CreatedAt).big_integer())
                    .col(not_null(PasswordResetTokens::ExpiresAt).big_integer())
                    .col(
                        ColumnDef::new(PasswordResetTokens::UsedAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_password_reset_tokens_expires_at")
                    .table(PasswordResetTokens::Table)
                    .col(PasswordResetTokens::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MailOutbox::Table)
                    .col(not_null(MailOutbox::Id).string().primary_key())
                    .col(not_null(MailOutbox::Recipient).string())
                    .col(not_null(MailOutbox::Subject).string())
                    .col(not_null(MailOutbox::Body).text())
                    .col(not_null(MailOutbox::CreatedAt).big_integer())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MailOutbox::Table.into_iden(),
            PasswordResetTokens::Table.into_iden(),
            Lockouts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .drop_column(Clients::Tier)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::Tier)
                    .to_owned(),
            )
            .await
    }
}
