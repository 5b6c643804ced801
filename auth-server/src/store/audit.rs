use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entities::audit_events;

/// Audit event kinds.
pub const REFRESH_TOKEN_REUSE: &str = "refresh_token.reuse_detected";
pub const CODE_REPLAY: &str = "authorization_code.replay_detected";
pub const LOGIN_SUCCEEDED: &str = "login.succeeded";
pub const LOGIN_FAILED: &str = "login.failed";
/// An IP or account locked after repeated failed sign-ins.
pub const LOCKOUT: &str = "login.locked";
/// A lockout lifted by an admin.
pub const LOCKOUT_CLEARED: &str = "login.lock_cleared";
pub const TOKEN_REVOKED: &str = "token.revoked";
/// An access token (and maybe a refresh token) was issued at `/token`.
pub const TOKEN_ISSUED: &str = "token.issued";
pub const CONSENT_GRANTED: &str = "consent.granted";
pub const CONSENT_DENIED: &str = "consent.denied";
pub const REFRESH_TOKEN_GRACE_REPLAY: &str = "refresh_token.grace_replay";
/// A password was changed with a reset token (its sessions and refresh
/// tokens are gone).
pub const PASSWORD_RESET: &str = "password.reset";
/// A reset token was created and mailed to an existing user.
pub const PASSWORD_RESET_REQUESTED: &str = "password.reset_requested";
/// An account was created by self-registration (`POST /api/v2/users`).
pub const USER_REGISTERED: &str = "user.registered";
/// A search term holding an SQL-injection pattern, refused (422); written
/// by both services (`shared::search`).
pub const SUSPICIOUS_INPUT: &str = shared::search::AUDIT_KIND;
/// An admin disabled an account (its sessions and refresh tokens are gone).
pub const USER_DISABLED: &str = "user.disabled";
/// An admin enabled a disabled account again.
pub const USER_ENABLED: &str = "user.enabled";
/// An admin revoked every refresh token of a user or a client.
pub const TOKENS_REVOKED_BY_ADMIN: &str = "token.revoked_by_admin";
/// An operator deleted an account (`users delete`; its sessions, codes and
/// reset links are gone, its refresh tokens revoked, its audit rows stay).
pub const USER_DELETED: &str = "user.deleted";
/// An operator set a user's password (`users set-password`; sessions and
/// refresh tokens are gone, as after a reset).
pub const PASSWORD_SET_BY_ADMIN: &str = "password.set_by_admin";
/// An operator deleted a client (`clients delete`).
pub const CLIENT_DELETED: &str = "client.deleted";
/// An operator rotated a client's secret (`clients rotate-secret`).
pub const CLIENT_SECRET_ROTATED: &str = "client.secret_rotated";
/// A valid access token without the role an admin route requires.
pub const PERMISSION_DENIED: &str = shared::contract::AUDIT_PERMISSION_DENIED;

/// Writes one audit event. `detail` is JSON and never holds a secret.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    kind: &str,
    user_id: Option<&str>,
    client_id: Option<&str>,
    detail: serde_json::Value,
    now: i64,
) -> Result<(), DbErr> {
    log_event(kind, user_id, client_id);
    audit_events::ActiveModel {
        id: Set(super::new_id()),
        at: Set(now),
        kind: Set(kind.to_owned()),
        user_id: Set(user_id.map(str::to_owned)),
        client_id: Set(client_id.map(str::to_owned)),
        detail: Set(detail.to_string()),
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// The log line of an audit event (written once, when it is recorded).
pub fn log_event(kind: &str, user_id: Option<&str>, client_id: Option<&str>) {
    tracing::info!(
        audit = kind,
        user_id = user_id.unwrap_or("-"),
        client_id = client_id.unwrap_or("-"),
        "audit event"
    );
}

/// An audit event waiting to be written (`crate::audit::writer`).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// JSON, never holding a secret.
    pub detail: String,
    pub at: i64,
}

/// Writes `events` (at least one) in one multi-row `INSERT`: one statement,
/// so one transaction.
pub async fn record_many<C: ConnectionTrait>(db: &C, events: &[NewEvent]) -> Result<(), DbErr> {
    let rows = events.iter().map(|event| audit_events::ActiveModel {
        id: Set(super::new_id()),
        at: Set(event.at),
        kind: Set(event.kind.clone()),
        user_id: Set(event.user_id.clone()),
        client_id: Set(event.client_id.clone()),
        detail: Set(event.detail.clone()),
    });
    audit_events::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

/// The latest `limit` events at or after `since`, of `kind` when given,
/// oldest first (as a log is read).
pub async fn tail<C: ConnectionTrait>(
    db: &C,
    since: i64,
    kind: Option<&str>,
    limit: u64,
) -> Result<Vec<audit_events::Model>, DbErr> {
    let mut query = audit_events::Entity::find().filter(audit_events::Column::At.gte(since));
    if let Some(kind) = kind {
        query = query.filter(audit_events::Column::Kind.eq(kind));
    }
    let mut rows = query
        .order_by_desc(audit_events::Column::At)
        .limit(limit)
        .all(db)
        .await?;
    rows.reverse();
    Ok(rows)
}
