//! The rest of a user's and a client's life after `create`, for the CLI
//! (`users list|show|delete|set-password`, `clients list|show|delete|
//! rotate-secret`): each change is one transaction that also writes its
//! audit event (`by: cli`), so that nothing changes unaudited.

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::json;

use super::clients::Client;
use super::entities::{
    authorization_codes, clients, login_sessions, password_reset_tokens, pending_authorizations,
    refresh_tokens, users,
};
use super::users::User;
use super::{audit, lockouts, refresh};
use shared::revocation::SubjectKind;

/// `revoked_reason` of the refresh tokens of a deleted user.
pub const REASON_USER_DELETED: &str = "user_deleted";
/// `revoked_reason` of the refresh tokens of a user whose password an
/// operator set.
pub const REASON_PASSWORD_SET: &str = "password_set_by_admin";
/// `revoked_reason` of the refresh tokens of a deleted client.
pub const REASON_CLIENT_DELETED: &str = "client_deleted";

/// The longest grace a rotated-out client secret may get (30 days).
pub const MAX_SECRET_GRACE_SECS: i64 = 30 * 86_400;

/// At most `limit` users, oldest first (ties by id).
pub async fn list_users<C: ConnectionTrait>(db: &C, limit: u64) -> Result<Vec<User>, DbErr> {
    users::Entity::find()
        .order_by_asc(users::Column::CreatedAt)
        .order_by_asc(users::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// How many users there are.
pub async fn count_users<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    users::Entity::find().count(db).await
}

/// At most `limit` clients, oldest first (ties by id), with their
/// registration time.
pub async fn list_clients<C: ConnectionTrait>(
    db: &C,
    limit: u64,
) -> Result<Vec<(Client, i64)>, DbErr> {
    clients::Entity::find()
        .order_by_asc(clients::Column::CreatedAt)
        .order_by_asc(clients::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            let created_at = row.created_at;
            Client::from_row(row).map(|client| (client, created_at))
        })
        .collect()
}

/// How many clients there are.
pub async fn count_clients<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    clients::Entity::find().count(db).await
}

/// A client with its registration time, or None.
pub async fn find_client<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<(Client, i64)>, DbErr> {
    if id.is_empty() || id.len() > 128 {
        return Ok(None);
    }
    match clients::Entity::find_by_id(id.to_owned()).one(db).await? {
        Some(row) => {
            let created_at = row.created_at;
            Client::from_row(row).map(|client| Some((client, created_at)))
        }
        None => Ok(None),
    }
}

/// Live sign-in sessions and active refresh tokens (not used, revoked or
/// expired) of user `id`, at `now`.
pub async fn user_activity<C: ConnectionTrait>(
    db: &C,
    id: &str,
    now: i64,
) -> Result<(u64, u64), DbErr> {
    let sessions = login_sessions::Entity::find()
        .filter(login_sessions::Column::UserId.eq(id.to_owned()))
        .filter(login_sessions::Column::ExpiresAt.gt(now))
        .count(db)
        .await?;
    let tokens =
        active_refresh_tokens(db, refresh_tokens::Column::UserId.eq(id.to_owned()), now).await?;
    Ok((sessions, tokens))
}

/// Active refresh tokens (not used, revoked or expired) of client `id`.
pub async fn client_activity<C: ConnectionTrait>(db: &C, id: &str, now: i64) -> Result<u64, DbErr> {
    active_refresh_tokens(db, refresh_tokens::Column::ClientId.eq(id.to_owned()), now).await
}

async fn active_refresh_tokens<C: ConnectionTrait>(
    db: &C,
    which: SimpleExpr,
    now: i64,
) -> Result<u64, DbErr> {
    refresh_tokens::Entity::find()
        .filter(which)
        .filter(refresh_tokens::Column::UsedAt.is_null())
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .filter(refresh_tokens::Column::ExpiresAt.gt(now))
        .count(db)
        .await
}

/// Revokes the refresh tokens that `which` selects and are not revoked yet.
async fn revoke_tokens<C: ConnectionTrait>(
    db: &C,
    which: SimpleExpr,
    reason: &str,
    now: i64,
) -> Result<u64, DbErr> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
        .col_expr(
            refresh_tokens::Column::RevokedReason,
            Expr::value(reason.to_owned()),
        )
        .filter(which)
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

/// What deleting a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserDeleted {
    pub sessions: u64,
    pub refresh_tokens: u64,
    pub codes: u64,
    pub reset_tokens: u64,
}

/// Deletes user `id` in one transaction: ends their sign-in sessions,
/// revokes their refresh tokens (the rows stay, so that one presented again
/// is refused as revoked, until the janitor removes it), deletes their
/// unexchanged codes and reset links and the account, and records
/// `user.deleted`. Audit rows naming the user stay. None: no such user.
pub async fn delete_user<C: TransactionTrait>(
    db: &C,
    id: &str,
    now: i64,
) -> Result<Option<UserDeleted>, DbErr> {
    let txn = db.begin().await?;
    let Some(user) = users::Entity::find_by_id(id.to_owned()).one(&txn).await? else {
        txn.rollback().await?;
        return Ok(None);
    };
    // Of two concurrent deletes, one deletes the row; the other changes nothing.
    let deleted = users::Entity::delete_many()
        .filter(users::Column::Id.eq(id.to_owned()))
        .exec(&txn)
        .await?
        .rows_affected;
    if deleted != 1 {
        txn.rollback().await?;
        return Ok(None);
    }
    let sessions = login_sessions::Entity::delete_many()
        .filter(login_sessions::Column::UserId.eq(id.to_owned()))
        .exec(&txn)
        .await?
        .rows_affected;
    let refresh_tokens = revoke_tokens(
        &txn,
        refresh_tokens::Column::UserId.eq(id.to_owned()),
        REASON_USER_DELETED,
        now,
    )
    .await?;
    // A spent code stays, so that presenting it again is still a replay.
    let codes = authorization_codes::Entity::delete_many()
        .filter(authorization_codes::Column::UserId.eq(id.to_owned()))
        .filter(authorization_codes::Column::UsedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    let reset_tokens = password_reset_tokens::Entity::delete_many()
        .filter(password_reset_tokens::Column::UserId.eq(id.to_owned()))
        .exec(&txn)
        .await?
        .rows_affected;
    let done = UserDeleted {
        sessions,
        refresh_tokens,
        codes,
        reset_tokens,
    };
    audit::record(
        &txn,
        audit::USER_DELETED,
        Some(id),
        None,
        json!({
            "by": "cli",
            "email": user.email,
            "sessions_ended": sessions,
            "refresh_tokens_revoked": refresh_tokens,
            "codes_discarded": codes,
            "reset_links_discarded": reset_tokens,
        }),
        now,
    )
    .await?;
    void_access_tokens(&txn, SubjectKind::User, &user.id, now).await?;
    txn.commit().await?;
    Ok(Some(done))
}

/// Voids the subject's access tokens issued so far (`token_revocations`),
/// for as long as any access token can live: the CLI does not know the
/// server's configured lifetime.
async fn void_access_tokens<C: ConnectionTrait>(
    db: &C,
    kind: SubjectKind,
    id: &str,
    now: i64,
) -> Result<(), DbErr> {
    super::revocations::record(db, kind, id, now, super::revocations::max_cover_secs()).await?;
    Ok(())
}

/// What setting a password did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordSet {
    pub sessions: u64,
    pub refresh_tokens: u64,
}

/// Sets user `id`'s password hash in one transaction, with what a reset
/// does: ends their sessions, revokes their refresh tokens, discards their
/// reset links, lifts a lockout of the account, and records
/// `password.set_by_admin`. None: no such user.
pub async fn set_password<C: TransactionTrait>(
    db: &C,
    user: &User,
    password_hash: &str,
    now: i64,
) -> Result<Option<PasswordSet>, DbErr> {
    let txn = db.begin().await?;
    if !super::users::set_password_hash(&txn, &user.id, password_hash, now).await? {
        txn.rollback().await?;
        return Ok(None);
    }
    let refresh_tokens = refresh::revoke_user(&txn, &user.id, REASON_PASSWORD_SET, now).await?;
    let sessions = super::sessions::delete_user(&txn, &user.id).await?;
    password_reset_tokens::Entity::delete_many()
        .filter(password_reset_tokens::Column::UserId.eq(user.id.clone()))
        .exec(&txn)
        .await?;
    lockouts::clear(&txn, lockouts::Kind::Account, &user.email).await?;
    audit::record(
        &txn,
        audit::PASSWORD_SET_BY_ADMIN,
        Some(&user.id),
        None,
        json!({
            "by": "cli",
            "sessions_ended": sessions,
            "refresh_tokens_revoked": refresh_tokens,
        }),
        now,
    )
    .await?;
    void_access_tokens(&txn, SubjectKind::User, &user.id, now).await?;
    txn.commit().await?;
    Ok(Some(PasswordSet {
        sessions,
        refresh_tokens,
    }))
}

/// What deleting a client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientDeleted {
    pub refresh_tokens: u64,
    pub codes: u64,
    pub pending_authorizations: u64,
}

/// Deletes client `id` in one transaction: revokes every refresh token
/// issued to it (the rows stay until the janitor removes them), deletes its
/// authorization codes and pending authorizations and the registration, and
/// records `client.deleted`. None: no such client.
pub async fn delete_client<C: TransactionTrait>(
    db: &C,
    id: &str,
    now: i64,
) -> Result<Option<ClientDeleted>, DbErr> {
    if id.is_empty() || id.len() > 128 {
        return Ok(None);
    }
    let txn = db.begin().await?;
    let Some(client) = clients::Entity::find_by_id(id.to_owned()).one(&txn).await? else {
        txn.rollback().await?;
        return Ok(None);
    };
    // Of two concurrent deletes, one deletes the row; the other changes nothing.
    let deleted = clients::Entity::delete_many()
        .filter(clients::Column::Id.eq(id.to_owned()))
        .exec(&txn)
        .await?
        .rows_affected;
    if deleted != 1 {
        txn.rollback().await?;
        return Ok(None);
    }
    let refresh_tokens = revoke_tokens(
        &txn,
        refresh_tokens::Column::ClientId.eq(id.to_owned()),
        REASON_CLIENT_DELETED,
        now,
    )
    .await?;
    // Spent ones too: without the client, no request can present them.
    let codes = authorization_codes::Entity::delete_many()
        .filter(authorization_codes::Column::ClientId.eq(id.to_owned()))
        .exec(&txn)
        .await?
        .rows_affected;
    let pending_authorizations = pending_authorizations::Entity::delete_many()
        .filter(pending_authorizations::Column::ClientId.eq(id.to_owned()))
        .exec(&txn)
        .await?
        .rows_affected;
    audit::record(
        &txn,
        audit::CLIENT_DELETED,
        None,
        Some(id),
        json!({
            "by": "cli",
            "name": client.name,
            "refresh_tokens_revoked": refresh_tokens,
            "codes_discarded": codes,
        }),
        now,
    )
    .await?;
    void_access_tokens(&txn, SubjectKind::Client, id, now).await?;
    txn.commit().await?;
    crate::cache::forget_client(id);
    Ok(Some(ClientDeleted {
        refresh_tokens,
        codes,
        pending_authorizations,
    }))
}

/// What a secret rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// No client with this id.
    NotFound,
    /// A public client has no secret to rotate.
    Public,
    Rotated {
        /// Until when the secret before this rotation works; None: it
        /// stopped at once (a grace of 0).
        previous_expires_at: Option<i64>,
        /// Whether a still-live secret from the rotation before was dropped.
        dropped_older: bool,
    },
}

/// Gives client `id` the secret whose hash is `new_hash`; the current
/// secret stays valid for `grace_secs` (0: not at all) as its previous
/// secret, which replaces (drops) any earlier previous secret. One UPDATE
/// moves the hashes, so concurrent rotations never lose a secret halfway;
/// records `client.secret_rotated`.
pub async fn rotate_secret<C: TransactionTrait>(
    db: &C,
    id: &str,
    new_hash: &str,
    grace_secs: i64,
    now: i64,
) -> Result<Rotation, DbErr> {
    let grace_secs = grace_secs.clamp(0, MAX_SECRET_GRACE_SECS);
    let previous_expires_at = (grace_secs > 0).then(|| now.saturating_add(grace_secs));
    let previous_hash: SimpleExpr = if grace_secs > 0 {
        Expr::col(clients::Column::SecretHash).into()
    } else {
        Expr::value(Option::<String>::None)
    };
    let txn = db.begin().await?;
    let Some((before, _)) = find_client(&txn, id).await? else {
        txn.rollback().await?;
        return Ok(Rotation::NotFound);
    };
    if before.is_public() {
        txn.rollback().await?;
        return Ok(Rotation::Public);
    }
    let changed = clients::Entity::update_many()
        // In SQL, every right-hand side reads the row as it was.
        .col_expr(clients::Column::PreviousSecretHash, previous_hash)
        .col_expr(
            clients::Column::PreviousSecretExpiresAt,
            Expr::value(previous_expires_at),
        )
        .col_expr(
            clients::Column::SecretHash,
            Expr::value(new_hash.to_owned()),
        )
        // Servers that cached the client see the change at their next
        // request (`crate::cache`).
        .col_expr(
            clients::Column::Revision,
            Expr::col(clients::Column::Revision).add(1),
        )
        .filter(clients::Column::Id.eq(id.to_owned()))
        .filter(clients::Column::SecretHash.is_not_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if changed != 1 {
        // Deleted (or made public) since it was read.
        txn.rollback().await?;
        return Ok(Rotation::NotFound);
    }
    let dropped_older = before
        .previous_secret
        .as_ref()
        .is_some_and(|p| now < p.expires_at);
    audit::record(
        &txn,
        audit::CLIENT_SECRET_ROTATED,
        None,
        Some(id),
        json!({
            "by": "cli",
            "grace_secs": grace_secs,
            "previous_secret_expires_at": previous_expires_at,
            "older_secret_dropped": dropped_older,
        }),
        now,
    )
    .await?;
    txn.commit().await?;
    crate::cache::forget_client(id);
    Ok(Rotation::Rotated {
        previous_expires_at,
        dropped_older,
    })
}
