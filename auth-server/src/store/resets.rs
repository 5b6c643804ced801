//! Password-reset tokens: 256-bit random values of which only the SHA-256
//! is stored, single use, short-lived. The rules live in `crate::reset`;
//! these are its database operations.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

use super::entities::password_reset_tokens;

pub use password_reset_tokens::Model as ResetToken;

/// Longest token string looked up (ours are 43 characters): anything longer
/// is refused before it is hashed.
const MAX_TOKEN_LEN: usize = 128;

/// Creates a token for `user_id` that is valid until `now + ttl_secs`;
/// returns the token, which only the mail carries (the row has its hash).
pub async fn create<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    ttl_secs: i64,
    now: i64,
) -> anyhow::Result<String> {
    let token = shared::secret::generate()?;
    password_reset_tokens::ActiveModel {
        id: Set(super::new_id()),
        user_id: Set(user_id.to_owned()),
        token_hash: Set(shared::secret::hash(&token)),
        created_at: Set(now),
        expires_at: Set(now + ttl_secs),
        used_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(token)
}

/// The token's row if it is unused and unexpired.
pub async fn find_live<C: ConnectionTrait>(
    db: &C,
    token: &str,
    now: i64,
) -> Result<Option<ResetToken>, DbErr> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    password_reset_tokens::Entity::find()
        .filter(password_reset_tokens::Column::TokenHash.eq(shared::secret::hash(token)))
        .filter(password_reset_tokens::Column::UsedAt.is_null())
        .filter(password_reset_tokens::Column::ExpiresAt.gt(now))
        .one(db)
        .await
}

/// Marks the token used if it still is unused and unexpired: of concurrent
/// attempts exactly one gets true. Meant to run first in the transaction
/// that acts on the token.
pub async fn spend<C: ConnectionTrait>(db: &C, token_hash: &str, now: i64) -> Result<bool, DbErr> {
    let spent = password_reset_tokens::Entity::update_many()
        .col_expr(password_reset_tokens::Column::UsedAt, Expr::value(now))
        .filter(password_reset_tokens::Column::TokenHash.eq(token_hash.to_owned()))
        .filter(password_reset_tokens::Column::UsedAt.is_null())
        .filter(password_reset_tokens::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(spent.rows_affected == 1)
}

/// Deletes the user's reset tokens but `keep_id` (the one just spent, kept
/// as a record until it is purged); returns how many.
pub async fn delete_others<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    keep_id: &str,
) -> Result<u64, DbErr> {
    password_reset_tokens::Entity::delete_many()
        .filter(password_reset_tokens::Column::UserId.eq(user_id.to_owned()))
        .filter(password_reset_tokens::Column::Id.ne(keep_id.to_owned()))
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

/// Deletes expired tokens (used or not).
pub async fn purge_expired<C: ConnectionTrait>(db: &C, now: i64) -> Result<u64, DbErr> {
    password_reset_tokens::Entity::delete_many()
        .filter(password_reset_tokens::Column::ExpiresAt.lt(now))
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}
