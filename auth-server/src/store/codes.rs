use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

use super::entities::authorization_codes;
use crate::clock;

pub use authorization_codes::Model as Code;

pub struct NewCode<'a> {
    pub code_hash: String,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub pkce: Option<String>,
    pub expires_at: i64,
}

pub async fn create<C: ConnectionTrait>(db: &C, new: NewCode<'_>) -> Result<Code, DbErr> {
    authorization_codes::ActiveModel {
        id: Set(super::new_id()),
        code_hash: Set(new.code_hash),
        client_id: Set(new.client_id.to_owned()),
        user_id: Set(new.user_id.to_owned()),
        redirect_uri: Set(new.redirect_uri.to_owned()),
        scope: Set(new.scope.to_owned()),
        pkce: Set(new.pkce),
        expires_at: Set(new.expires_at),
        used_at: Set(None),
        created_at: Set(clock::now()),
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

/// Spends a code atomically: of two concurrent redemptions one is `Fresh`.
pub async fn redeem<C: ConnectionTrait>(db: &C, code: &str) -> Result<Redeemed, DbErr> {
    let hash = shared::secret::hash(code);
    let Some(row) = authorization_codes::Entity::find()
        .filter(authorization_codes::Column::CodeHash.eq(hash))
        .one(db)
        .await?
    else {
        return Ok(Redeemed::Unknown);
    };
    if row.used_at.is_some() {
        return Ok(Redeemed::Replayed(row));
    }
    let now = clock::now();
    if row.expires_at <= now {
        return Ok(Redeemed::Expired);
    }
    let result = authorization_codes::Entity::update_many()
        .col_expr(authorization_codes::Column::UsedAt, Expr::value(now))
        .filter(authorization_codes::Column::Id.eq(row.id.clone()))
        .filter(authorization_codes::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    if result.rows_affected == 1 {
        Ok(Redeemed::Fresh(row))
    } else {
        Ok(Redeemed::Replayed(row))
    }
}

/// Deletes codes that expired more than a day ago.
pub async fn purge_expired<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    let cutoff = clock::now() - 86_400;
    authorization_codes::Entity::delete_many()
        .filter(authorization_codes::Column::ExpiresAt.lt(cutoff))
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}
