//! Refresh-token rows. The rules (who may use a token, what reuse means) live
//! in `oauth::refresh`; these are its atomic database operations.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, TransactionTrait,
};

use super::entities::refresh_tokens;

pub use refresh_tokens::Model as RefreshToken;

pub const REASON_REUSE: &str = "reuse_detected";
pub const REASON_CODE_REPLAY: &str = "code_replay";
pub const REASON_CLIENT_REVOKED: &str = "revoked_by_client";
pub const REASON_PASSWORD_RESET: &str = "password_reset";

/// Longest token string looked up (ours are 43 characters).
const MAX_TOKEN_LEN: usize = 512;

pub struct NewFamily<'a> {
    /// The plaintext token; only its hash is stored.
    pub token: &'a str,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub scope: &'a str,
    pub code_id: Option<&'a str>,
    /// Absolute end of the whole family.
    pub expires_at: i64,
    pub now: i64,
}

impl RefreshToken {
    /// Neither rotated, revoked nor past the family's lifetime.
    pub fn is_active(&self, now: i64) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }
}

/// Starts a new family with `new.token` as its first token.
pub async fn create_family<C: ConnectionTrait>(db: &C, new: NewFamily<'_>) -> Result<(), DbErr> {
    let row = refresh_tokens::ActiveModel {
        id: Set(super::new_id()),
        token_hash: Set(shared::secret::hash(new.token)),
        family_id: Set(super::new_id()),
        parent_id: Set(None),
        client_id: Set(new.client_id.to_owned()),
        user_id: Set(new.user_id.to_owned()),
        scope: Set(new.scope.to_owned()),
        code_id: Set(new.code_id.map(str::to_owned)),
        expires_at: Set(new.expires_at),
        created_at: Set(new.now),
        used_at: Set(None),
        revoked_at: Set(None),
        revoked_reason: Set(None),
        grace_replays: Set(0),
    };
    // No read-back of the row (sea-orm would SELECT it again on SQLite).
    refresh_tokens::Entity::insert(row)
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

pub async fn find<C: ConnectionTrait>(db: &C, token: &str) -> Result<Option<RefreshToken>, DbErr> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(shared::secret::hash(token)))
        .one(db)
        .await
}

/// A token claimed by [`claim`]: its row (with `used_at` now set) and the
/// `roles` and `tier` columns of its user, read by the same statement.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub row: RefreshToken,
    pub user_roles: String,
    pub user_tier: String,
}

/// The claim of [`claim`]. `$n` parameters: PostgreSQL's, and SQLite's
/// numbered form: `$1` now, `$2` the presented token's hash, `$3` the
/// client's id, `$4` its revision.
const CLAIM: &str = "UPDATE refresh_tokens SET used_at = $1 \
    WHERE token_hash = $2 AND client_id = $3 \
    AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
    AND EXISTS (SELECT 1 FROM users u \
        WHERE u.id = refresh_tokens.user_id AND u.disabled_at IS NULL) \
    AND EXISTS (SELECT 1 FROM clients c WHERE c.id = $3 AND c.revision = $4) \
    RETURNING id, token_hash, family_id, parent_id, client_id, user_id, scope, \
    code_id, expires_at, created_at, used_at, revoked_at, revoked_reason, grace_replays, \
    (SELECT u.roles FROM users u WHERE u.id = refresh_tokens.user_id) AS user_roles, \
    (SELECT u.tier FROM users u WHERE u.id = refresh_tokens.user_id) AS user_tier";

/// The common path of a rotation, in one statement: marks the token whose
/// hash is `hash_of(presented)` used, if it is `client`'s, unused,
/// unrevoked, unexpired at `now`, its user exists and is not disabled, and
/// the client's row is still at the revision it was authenticated against
/// (a client changed by another process since it was cached: not claimed);
/// returns the row and the user's roles and tier. None: not claimable (the
/// caller looks at the row to say why). Run it inside the transaction that
/// inserts the successor ([`insert_successor`]): of concurrent claims of
/// one token exactly one matches (PostgreSQL re-checks the conditions after
/// the row lock; SQLite has one writer).
///
/// The user is read in the statement rather than before it, so that a
/// token issued while the account was being disabled cannot be claimed
/// once the disabling committed, and no separate read is needed.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    presented: &str,
    client: crate::store::clients::ClientAt<'_>,
    now: i64,
) -> Result<Option<Claimed>, DbErr> {
    use sea_orm::Statement;
    if presented.is_empty() || presented.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let statement = Statement::from_sql_and_values(
        db.get_database_backend(),
        CLAIM,
        [
            now.into(),
            shared::secret::hash(presented).into(),
            client.id.into(),
            client.revision.into(),
        ],
    );
    match db.query_one(statement).await? {
        Some(result) => claimed(&result).map(Some),
        None => Ok(None),
    }
}

fn claimed(result: &sea_orm::QueryResult) -> Result<Claimed, DbErr> {
    use sea_orm::FromQueryResult;
    Ok(Claimed {
        row: RefreshToken::from_query_result(result, "")?,
        user_roles: result.try_get("", "user_roles")?,
        user_tier: result.try_get("", "user_tier")?,
    })
}

/// The successor's insert of [`claim_and_insert_sqlite`]: a copy of the
/// claimed row's family, client, user, scope, code and end, only if the
/// claim before it changed a row (`changes()`). `$5` the new row's id, `$6`
/// the successor's hash.
const INSERT_CLAIMED_SUCCESSOR: &str = "INSERT INTO refresh_tokens (id, token_hash, \
    family_id, parent_id, client_id, user_id, scope, code_id, expires_at, created_at, \
    used_at, revoked_at, revoked_reason, grace_replays) \
    SELECT $5, $6, family_id, id, client_id, user_id, scope, code_id, expires_at, $1, \
    NULL, NULL, NULL, 0 FROM refresh_tokens WHERE token_hash = $2 AND changes() = 1";

/// A whole common-path rotation on SQLite as one command:
/// `BEGIN IMMEDIATE`, [`claim`]'s statement, the successor's insert,
/// `COMMIT`.
static ROTATE_SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("BEGIN IMMEDIATE; {CLAIM}; {INSERT_CLAIMED_SUCCESSOR}; COMMIT")
});

/// [`claim`] and [`insert_successor`] in one transaction on SQLite, sent
/// to the connection's thread as one command instead of four (`BEGIN`, the
/// claim, the insert, `COMMIT`): sqlx runs each SQLite command on the
/// connection's own thread, and every hand-off costs two thread switches.
/// Same rules and answer as [`claim`]; `permit` is the writer's turn, held
/// until the command is over.
///
/// The command runs in a task of its own, so that it ends the same way
/// whether or not the request that asked for it is still waiting: committed
/// (the rotation is complete; a client that went away retries within the
/// grace window) or, on any error, rolled back on the same connection (the
/// token stays usable). Never half: a connection is never given back inside
/// the transaction (the pool's check would also catch one).
pub async fn claim_and_insert_sqlite(
    pool: &sea_orm::sqlx::SqlitePool,
    permit: migrations::db::WritePermit,
    presented: &str,
    client: crate::store::clients::ClientAt<'_>,
    successor: &str,
    now: i64,
) -> Result<Option<Claimed>, DbErr> {
    use sea_orm::sqlx::{self, Executor};
    if presented.is_empty() || presented.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let pool = pool.clone();
    let presented_hash = shared::secret::hash(presented);
    let client_id = client.id.to_owned();
    let revision = client.revision;
    let successor_id = super::new_id();
    let successor_hash = shared::secret::hash(successor);
    let task = tokio::spawn(async move {
        let _permit = permit;
        let mut conn = pool.acquire().await?;
        let rows = sqlx::query(ROTATE_SQLITE.as_str())
            .bind(now)
            .bind(presented_hash)
            .bind(client_id)
            .bind(revision)
            .bind(successor_id)
            .bind(successor_hash)
            .fetch_all(&mut *conn)
            .await;
        if rows.is_err() {
            // Whichever statement failed, nothing of it stays: outside a
            // transaction this fails harmlessly.
            let _ = conn.execute("ROLLBACK").await;
        }
        rows
    });
    let rows = task
        .await
        .map_err(|e| DbErr::Custom(format!("rotation task: {e}")))?
        .map_err(|e| DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)))?;
    match rows.into_iter().next() {
        Some(row) => claimed(&sea_orm::QueryResult::from(row)).map(Some),
        None => Ok(None),
    }
}

/// Inserts `successor` as the next token of `old`'s family (same client,
/// user, scope and absolute end): one INSERT.
pub async fn insert_successor<C: ConnectionTrait>(
    db: &C,
    old: &RefreshToken,
    successor: &str,
    now: i64,
) -> Result<(), DbErr> {
    let row = refresh_tokens::ActiveModel {
        id: Set(super::new_id()),
        token_hash: Set(shared::secret::hash(successor)),
        family_id: Set(old.family_id.clone()),
        parent_id: Set(Some(old.id.clone())),
        client_id: Set(old.client_id.clone()),
        user_id: Set(old.user_id.clone()),
        scope: Set(old.scope.clone()),
        code_id: Set(old.code_id.clone()),
        expires_at: Set(old.expires_at),
        created_at: Set(now),
        used_at: Set(None),
        revoked_at: Set(None),
        revoked_reason: Set(None),
        grace_replays: Set(0),
    };
    refresh_tokens::Entity::insert(row)
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

pub enum Rotation {
    Rotated,
    /// Somebody else rotated (or revoked) this token first, or it expired.
    Lost,
}

/// Rotates atomically (the slow path's rotation, by row; the common path
/// is [`claim`] + [`insert_successor`]): marks `old` used only if it still is unused, unrevoked
/// and unexpired, and inserts `successor` (same family, same absolute end) in
/// the same transaction. Of N concurrent rotations of one token exactly one
/// succeeds. Using a token also closes its parent's grace window.
pub async fn rotate<C: TransactionTrait>(
    db: &C,
    old: &RefreshToken,
    successor: &str,
    now: i64,
) -> Result<Rotation, DbErr> {
    let txn = db.begin().await?;
    // The write comes first: SQLite cannot upgrade a read snapshot that went
    // stale into a write, and PostgreSQL serialises on the row lock here.
    let claimed = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
        .filter(refresh_tokens::Column::Id.eq(old.id.clone()))
        .filter(refresh_tokens::Column::UsedAt.is_null())
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .filter(refresh_tokens::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(Rotation::Lost);
    }
    insert_successor(&txn, old, successor, now).await?;
    txn.commit().await?;
    Ok(Rotation::Rotated)
}

pub enum Replay {
    /// The successor is still live and this replay was counted.
    Granted,
    /// Past the window or the count, or the successor was used or revoked.
    Refused,
}

/// Counts one grace replay of the rotated token `old`, if it was rotated no
/// earlier than `used_since`, has been replayed fewer than `max_replays`
/// times, and its successor (`successor_hash`) is neither used nor revoked.
/// Both rows are written in one transaction, so a concurrent use of the
/// successor either happens after this replay or makes it fail.
pub async fn count_grace_replay<C: TransactionTrait>(
    db: &C,
    old: &RefreshToken,
    successor_hash: &str,
    used_since: i64,
    max_replays: i64,
    now: i64,
) -> Result<Replay, DbErr> {
    let txn = db.begin().await?;
    let counted = refresh_tokens::Entity::update_many()
        .col_expr(
            refresh_tokens::Column::GraceReplays,
            Expr::col(refresh_tokens::Column::GraceReplays).add(1),
        )
        .filter(refresh_tokens::Column::Id.eq(old.id.clone()))
        .filter(refresh_tokens::Column::UsedAt.gte(used_since))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .filter(refresh_tokens::Column::GraceReplays.lt(max_replays))
        .exec(&txn)
        .await?;
    if counted.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(Replay::Refused);
    }
    // A no-op write that locks the successor and checks that it is live.
    let live = refresh_tokens::Entity::update_many()
        .col_expr(
            refresh_tokens::Column::GraceReplays,
            Expr::col(refresh_tokens::Column::GraceReplays).into(),
        )
        .filter(refresh_tokens::Column::TokenHash.eq(successor_hash.to_owned()))
        .filter(refresh_tokens::Column::ParentId.eq(old.id.clone()))
        .filter(refresh_tokens::Column::UsedAt.is_null())
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .filter(refresh_tokens::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    if live.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(Replay::Refused);
    }
    txn.commit().await?;
    Ok(Replay::Granted)
}

/// Revokes every token of a family that is not revoked yet; returns how many.
pub async fn revoke_family<C: ConnectionTrait>(
    db: &C,
    family_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64, DbErr> {
    revoke_where(
        db,
        refresh_tokens::Column::FamilyId.eq(family_id.to_owned()),
        reason,
        now,
    )
    .await
}

/// Revokes every token of every family of a user (all clients).
pub async fn revoke_user<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64, DbErr> {
    revoke_where(
        db,
        refresh_tokens::Column::UserId.eq(user_id.to_owned()),
        reason,
        now,
    )
    .await
}

/// Revokes the families that a given authorization code started.
pub async fn revoke_by_code<C: ConnectionTrait>(
    db: &C,
    code_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64, DbErr> {
    revoke_where(
        db,
        refresh_tokens::Column::CodeId.eq(code_id.to_owned()),
        reason,
        now,
    )
    .await
}

async fn revoke_where<C: ConnectionTrait>(
    db: &C,
    which: sea_orm::sea_query::SimpleExpr,
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
