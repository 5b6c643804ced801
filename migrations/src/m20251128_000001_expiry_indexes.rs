//! Indexes for the janitor's deletes (by expiry) and for the per-user
//! revocations of a password reset (refresh tokens and sessions by user):
//! without them each of those scans its whole table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (index, table, column)
const INDEXES: &[(&str, &str, &str)] = &[
    (
        "idx_authorization_codes_expires_at",
        "authorization_codes",
        "expires_at",
    ),
    (
        "idx_refresh_tokens_expires_at",
        "refresh_tokens",
        "expires_at",
    ),
    ("idx_refresh_tokens_user", "refresh_tokens", "user_id"),
    (
        "idx_login_sessions_expires_at",
        "login_sessions",
        "expires_at",
    ),
    ("idx_login_sessions_user", "login_sessions", "user_id"),
    (
        "idx_pending_authorizations_expires_at",
        "pending_authorizations",
        "expires_at",
    ),
    ("idx_lockouts_locked_until", "lockouts", "locked_until"),
    ("idx_mail_outbox_created_at", "mail_outbox", "created_at"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, column) in INDEXES {
            manager
                .create_index(
                    Index::create()
                        .name(*name)
                        .table(Alias::new(*table))
                        .col(Alias::new(*column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in INDEXES.iter().rev() {
            manager
                .drop_index(
                    Index::drop()
                        .name(*name)
                        .table(Alias::new(*table))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
