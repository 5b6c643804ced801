use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};

use super::entities::refresh_tokens;
use crate::clock;

pub use refresh_tokens::Model as RefreshToken;

pub const REASON_REUSE: &str = "reuse_detected";
pub const REASON_CODE_REPLAY: &str = "code_replay";
pub const REASON_CLIENT_REVOKED: &str = "revoked_by_client";

pub struct NewFamily<'a> {
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub scope: &'a str,
    pub code_id: Option<&'a str>,
    /// Absolute lifetime of the whole family.
    pub ttl_secs: i64,
}

impl RefreshToken {
    /// Neither rotated, revoked nor past the family's lifetime.
    pub fn is_active(&self, now: i64) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }
}

/// Where a new token stands in its family.
struct Lineage {
    family_id: String,
    parent_id: Option<String>,
    code_id: Option<String>,
    expires_at: i64,
}

fn row(
    token: &str,
    lineage: Lineage,
    client_id: &str,
    user_id: &str,
    scope: &str,
) -> refresh_tokens::ActiveModel {
    let Lineage {
        family_id,
        parent_id,
        code_id,
        expires_at,
    } = lineage;
    refresh_tokens::ActiveModel {
        id: Set(super::new_id()),
        token_hash: Set(shared::secret::hash(token)),
        family_id: Set(family_id),
        parent_id: Set(parent_id),
        client_id: Set(client_id.to_owned()),
        user_id: Set(user_id.to_owned()),
        scope: Set(scope.to_owned()),
        code_id: Set(code_id),
        expires_at: Set(expires_at),
        created_at: Set(clock::now()),
        used_at: Set(None),
        revoked_at: Set(None),
        revoked_reason: Set(None),
    }
}

/// Starts a new family; returns the plaintext token (never stored).
pub async fn create_family<C: ConnectionTrait>(
    db: &C,
    new: NewFamily<'_>,
) -> anyhow::Result<String> {
    let token = shared::secret::generate()?;
    let lineage = Lineage {
        family_id: super::new_id(),
        parent_id: None,
        code_id: new.code_id.map(str::to_owned),
        expires_at: clock::now() + new.ttl_secs,
    };
    row(&token, lineage, new.client_id, new.user_id, new.scope)
        .insert(db)
        .await?;
    Ok(token)
}

pub async fn find<C: ConnectionTrait>(db: &C, token: &str) -> Result<Option<RefreshToken>, DbErr> {
    if token.is_empty() || token.len() > 512 {
        return Ok(None);
    }
    refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(shared::secret::hash(token)))
        .one(db)
        .await
}

pub enum Rotation {
    Rotated(String),
    /// Somebody else rotated (or revoked) this token first.
    Lost,
}

/// Rotates atomically: marks `old` used only if it still is unused and
/// unrevoked, and inserts its successor in the same transaction. Of N
/// concurrent rotations of one token exactly one succeeds.
pub async fn rotate<C: TransactionTrait>(
    db: &C,
    old: &RefreshToken,
    scope: &str,
) -> anyhow::Result<Rotation> {
    let token = shared::secret::generate()?;
    let txn = db.begin().await?;
    let now = clock::now();
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
    let lineage = Lineage {
        family_id: old.family_id.clone(),
        parent_id: Some(old.id.clone()),
        code_id: old.code_id.clone(),
        expires_at: old.expires_at,
    };
    row(&token, lineage, &old.client_id, &old.user_id, scope)
        .insert(&txn)
        .await?;
    txn.commit().await?;
    Ok(Rotation::Rotated(token))
}

/// Revokes every token of a family that is not revoked yet; returns how many.
pub async fn revoke_family<C: ConnectionTrait>(
    db: &C,
    family_id: &str,
    reason: &str,
) -> Result<u64, DbErr> {
    revoke_where(
        db,
        refresh_tokens::Column::FamilyId.eq(family_id.to_owned()),
        reason,
    )
    .await
}

/// Revokes the families that a given authorization code started.
pub async fn revoke_by_code<C: ConnectionTrait>(
    db: &C,
    code_id: &str,
    reason: &str,
) -> Result<u64, DbErr> {
    revoke_where(
        db,
        refresh_tokens::Column::CodeId.eq(code_id.to_owned()),
        reason,
    )
    .await
}

async fn revoke_where<C: ConnectionTrait>(
    db: &C,
    which: sea_orm::sea_query::SimpleExpr,
    reason: &str,
) -> Result<u64, DbErr> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(clock::now()))
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
