//! Authorization-code rows: created at consent, spent once at the token
//! endpoint.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

use super::entities::authorization_codes;

pub use authorization_codes::Model as Code;

/// Longest code string looked up (ours are 43 characters).
const MAX_CODE_LEN: usize = 512;

/// How long a used code is kept past its expiry, so that presenting it again
/// is still recognised as a replay and revokes what it bought (RFC 6749
/// §4.1.2); the janitor deletes it after that.
pub const REPLAY_WINDOW_SECS: i64 = 86_400;

pub struct NewCode<'a> {
    pub code_hash: String,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub redirect_uri: &'a str,
    pub redirect_uri_given: bool,
    pub scope: &'a str,
    pub pkce: Option<String>,
    pub expires_at: i64,
    pub now: i64,
}

pub async fn create<C: ConnectionTrait>(db: &C, new: NewCode<'_>) -> Result<Code, DbErr> {
    authorization_codes::ActiveModel {
        id: Set(super::new_id()),
        code_hash: Set(new.code_hash),
        client_id: Set(new.client_id.to_owned()),
        user_id: Set(new.user_id.to_owned()),
        redirect_uri: Set(new.redirect_uri.to_owned()),
        redirect_uri_given: Set(new.redirect_uri_given),
        scope: Set(new.scope.to_owned()),
        pkce: Set(new.pkce),
        expires_at: Set(new.expires_at),
        used_at: Set(None),
        created_at: Set(new.now),
    }
    .insert(db)
    .await
}

pub enum Redeemed {
    /// First use: the code is now spent.
    Fresh(Code),
    /// Used before (or concurrently): a replay.
    Replayed(Code),
    Expired,
    Unknown,
}

/// Spends a code: of concurrent redemptions exactly one is `Fresh`. Run it in
/// the transaction that also creates what the code buys, so that a replay's
/// revocation (which waits for the row lock) sees it.
pub async fn redeem<C: ConnectionTrait>(db: &C, code: &str, now: i64) -> Result<Redeemed, DbErr> {
    if code.is_empty() || code.len() > MAX_CODE_LEN {
        return Ok(Redeemed::Unknown);
    }
    let hash = shared::secret::hash(code);
    // Write first (see `refresh::rotate`).
    let spent = authorization_codes::Entity::update_many()
        .col_expr(authorization_codes::Column::UsedAt, Expr::value(now))
        .filter(authorization_codes::Column::CodeHash.eq(hash.clone()))
        .filter(authorization_codes::Column::UsedAt.is_null())
        .filter(authorization_codes::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    let row = authorization_codes::Entity::find()
        .filter(authorization_codes::Column::CodeHash.eq(hash))
        .one(db)
        .await?;
    Ok(match row {
        None => Redeemed::Unknown,
        Some(row) if spent.rows_affected == 1 => Redeemed::Fresh(row),
        Some(row) if row.used_at.is_some() => Redeemed::Replayed(row),
        Some(_) => Redeemed::Expired,
    })
}
