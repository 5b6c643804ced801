//! The admin API's database operations: disable and enable a user, revoke
//! every token of a user or a client, list clients and audit events.

use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::clients::Client;
use super::entities::{audit_events, authorization_codes, clients, login_sessions, users};
use super::refresh;
use super::revocations;
use shared::revocation::{Record, SubjectKind};

/// `revoked_reason` of refresh tokens revoked because their user was disabled.
pub const REASON_USER_DISABLED: &str = "user_disabled";
/// `revoked_reason` of refresh tokens revoked by an admin.
pub const REASON_ADMIN_REVOKED: &str = "revoked_by_admin";

/// What revoking a user's or a client's tokens did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Refresh tokens revoked now (every family; already revoked ones not counted).
    pub refresh_tokens: u64,
    /// Authorization codes not yet exchanged, deleted.
    pub codes: u64,
    /// Access tokens of the subject issued before this (Unix seconds) are
    /// void (`token_revocations`); 0 when no record was written.
    pub not_before: i64,
    /// When that record expires.
    pub record_expires_at: i64,
}

impl Revoked {
    /// The revocation record written with this revocation, to publish.
    pub fn record(&self, kind: SubjectKind, subject: &str) -> Option<Record> {
        (self.not_before > 0).then(|| Record {
            kind,
            subject: subject.to_owned(),
            not_before: self.not_before,
            expires_at: self.record_expires_at,
        })
    }
}

/// What disabling a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disabled {
    /// When the account was disabled (the first time, if it already was).
    pub disabled_at: i64,
    /// False when the account was disabled already.
    pub changed: bool,
    pub sessions: u64,
    pub revoked: Revoked,
}

async fn discard_codes<C: ConnectionTrait>(
    db: &C,
    which: sea_orm::sea_query::SimpleExpr,
) -> Result<u64, DbErr> {
    // Only codes not yet exchanged: a spent code stays, so that presenting
    // it again is still recognised as a replay.
    authorization_codes::Entity::delete_many()
        .filter(which)
        .filter(authorization_codes::Column::UsedAt.is_null())
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

/// Disables user `id`: sets `disabled_at` (unless set), ends every login
/// session, revokes every refresh token, deletes unexchanged codes and
/// voids the user's access tokens issued so far (a `token_revocations`
/// record living `revocations::cover_secs(token_ttl_secs)`), in one
/// transaction. Idempotent: a second call changes nothing but what was
/// created since. None when there is no such user.
pub async fn disable_user<C: TransactionTrait>(
    db: &C,
    id: &str,
    now: i64,
    token_ttl_secs: i64,
) -> Result<Option<Disabled>, DbErr> {
    let txn = db.begin().await?;
    // The write comes first (see `refresh::rotate`).
    let changed = users::Entity::update_many()
        .col_expr(users::Column::DisabledAt, Expr::value(now))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(id.to_owned()))
        .filter(users::Column::DisabledAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    let Some(user) = users::Entity::find_by_id(id.to_owned()).one(&txn).await? else {
        txn.rollback().await?;
        return Ok(None);
    };
    let sessions = login_sessions::Entity::delete_many()
        .filter(login_sessions::Column::UserId.eq(id.to_owned()))
        .exec(&txn)
        .await?
        .rows_affected;
    let refresh_tokens = refresh::revoke_user(&txn, id, REASON_USER_DISABLED, now).await?;
    let codes = discard_codes(&txn, authorization_codes::Column::UserId.eq(id.to_owned())).await?;
    let record = revocations::record(
        &txn,
        SubjectKind::User,
        id,
        now,
        revocations::cover_secs(token_ttl_secs),
    )
    .await?;
    txn.commit().await?;
    Ok(Some(Disabled {
        disabled_at: user.disabled_at.unwrap_or(now),
        changed,
        sessions,
        revoked: Revoked {
            refresh_tokens,
            codes,
            not_before: record.not_before,
            record_expires_at: record.expires_at,
        },
    }))
}

/// Enables user `id` again (moving `updated_at` to `now`). Some(changed)
/// (false: it was enabled), or None when there is no such user.
pub async fn enable_user<C: ConnectionTrait>(
    db: &C,
    id: &str,
    now: i64,
) -> Result<Option<bool>, DbErr> {
    let changed = users::Entity::update_many()
        .col_expr(users::Column::DisabledAt, Expr::value(Option::<i64>::None))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(id.to_owned()))
        .filter(users::Column::DisabledAt.is_not_null())
        .exec(db)
        .await?
        .rows_affected
        == 1;
    if changed {
        return Ok(Some(true));
    }
    let exists = users::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .is_some();
    Ok(exists.then_some(false))
}

/// Revokes every refresh token of user `id` (all clients, all families),
/// ends their login sessions, deletes their unexchanged codes and voids
/// their access tokens issued so far (a `token_revocations` record living
/// `revocations::cover_secs(token_ttl_secs)`), in one transaction. None
/// when there is no such user.
pub async fn revoke_user_tokens<C: TransactionTrait>(
    db: &C,
    id: &str,
    now: i64,
    token_ttl_secs: i64,
) -> Result<Option<Revoked>, DbErr> {
    let txn = db.begin().await?;
    let refresh_tokens = refresh::revoke_user(&txn, id, REASON_ADMIN_REVOKED, now).await?;
    let codes = discard_codes(&txn, authorization_codes::Column::UserId.eq(id.to_owned())).await?;
    if users::Entity::find_by_id(id.to_owned())
        .one(&txn)
        .await?
        .is_none()
    {
        txn.rollback().await?;
        return Ok(None);
    }
    login_sessions::Entity::delete_many()
        .filter(login_sessions::Column::UserId.eq(id.to_owned()))
        .exec(&txn)
        .await?;
    let record = revocations::record(
        &txn,
        SubjectKind::User,
        id,
        now,
        revocations::cover_secs(token_ttl_secs),
    )
    .await?;
    txn.commit().await?;
    Ok(Some(Revoked {
        refresh_tokens,
        codes,
        not_before: record.not_before,
        record_expires_at: record.expires_at,
    }))
}

/// Revokes every refresh token issued to client `id` (all users), deletes
/// its unexchanged codes and voids the access tokens issued to it so far (a
/// `token_revocations` record matched against `client_id`, living
/// `revocations::cover_secs(token_ttl_secs)`), in one transaction. None
/// when there is no such client.
pub async fn revoke_client_tokens<C: TransactionTrait>(
    db: &C,
    id: &str,
    now: i64,
    token_ttl_secs: i64,
) -> Result<Option<Revoked>, DbErr> {
    use super::entities::refresh_tokens;
    if id.is_empty() || id.len() > 128 {
        return Ok(None);
    }
    let txn = db.begin().await?;
    let refresh_tokens = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
        .col_expr(
            refresh_tokens::Column::RevokedReason,
            Expr::value(REASON_ADMIN_REVOKED),
        )
        .filter(refresh_tokens::Column::ClientId.eq(id.to_owned()))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    let codes = discard_codes(
        &txn,
        authorization_codes::Column::ClientId.eq(id.to_owned()),
    )
    .await?;
    if clients::Entity::find_by_id(id.to_owned())
        .one(&txn)
        .await?
        .is_none()
    {
        txn.rollback().await?;
        return Ok(None);
    }
    let record = revocations::record(
        &txn,
        SubjectKind::Client,
        id,
        now,
        revocations::cover_secs(token_ttl_secs),
    )
    .await?;
    txn.commit().await?;
    Ok(Some(Revoked {
        refresh_tokens,
        codes,
        not_before: record.not_before,
        record_expires_at: record.expires_at,
    }))
}

/// A client as the admin API lists it, with its registration time.
pub struct ListedClient {
    pub client: Client,
    pub created_at: i64,
}

/// At most `limit` clients whose id sorts after `after`, by id.
pub async fn list_clients<C: ConnectionTrait>(
    db: &C,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<ListedClient>, DbErr> {
    let mut query = clients::Entity::find();
    if let Some(after) = after {
        query = query.filter(clients::Column::Id.gt(after.to_owned()));
    }
    query
        .order_by_asc(clients::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            let created_at = row.created_at;
            Client::from_row(row).map(|client| ListedClient { client, created_at })
        })
        .collect()
}

/// Which audit events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub kind: Option<String>,
    /// At or after (Unix seconds).
    pub since: Option<i64>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// Strictly older than this event (`at`, `id`): the page's cursor.
    pub before: Option<(i64, String)>,
}

/// At most `limit` events matching `filter`, newest first (ties by id,
/// descending), so that `before` pages through them without gaps.
pub async fn list_audit<C: ConnectionTrait>(
    db: &C,
    filter: &AuditFilter,
    limit: u64,
) -> Result<Vec<audit_events::Model>, DbErr> {
    let mut query = audit_events::Entity::find();
    if let Some(kind) = &filter.kind {
        query = query.filter(audit_events::Column::Kind.eq(kind.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::Column::At.gte(since));
    }
    if let Some(user_id) = &filter.user_id {
        query = query.filter(audit_events::Column::UserId.eq(user_id.clone()));
    }
    if let Some(client_id) = &filter.client_id {
        query = query.filter(audit_events::Column::ClientId.eq(client_id.clone()));
    }
    if let Some((at, id)) = &filter.before {
        query = query.filter(
            Condition::any().add(audit_events::Column::At.lt(*at)).add(
                Condition::all()
                    .add(audit_events::Column::At.eq(*at))
                    .add(audit_events::Column::Id.lt(id.clone())),
            ),
        );
    }
    query
        .order_by_desc(audit_events::Column::At)
        .order_by_desc(audit_events::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
