//! Authorization-code rows: created at consent, spent once at the token
//! endpoint.

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter};

use super::clients::ClientAt;
use super::entities::{authorization_codes, clients};

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

/// One INSERT (no read-back: the row is what was given).
pub async fn create<C: ConnectionTrait>(db: &C, new: NewCode<'_>) -> Result<Code, DbErr> {
    let row = Code {
        id: super::new_id(),
        code_hash: new.code_hash,
        client_id: new.client_id.to_owned(),
        user_id: new.user_id.to_owned(),
        redirect_uri: new.redirect_uri.to_owned(),
        redirect_uri_given: new.redirect_uri_given,
        scope: new.scope.to_owned(),
        pkce: new.pkce,
        expires_at: new.expires_at,
        used_at: None,
        created_at: new.now,
    };
    authorization_codes::Entity::insert(row.clone().into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(row)
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
/// revocation (which waits for the row lock) sees it. Only `client` at its
/// revision can spend it: a client changed since it was read gets one of the
/// other answers, so whoever gets those checks the client first
/// (`clients::is_current`).
pub async fn redeem<C: ConnectionTrait>(
    db: &C,
    code: &str,
    client: ClientAt<'_>,
    now: i64,
) -> Result<Redeemed, DbErr> {
    if code.is_empty() || code.len() > MAX_CODE_LEN {
        return Ok(Redeemed::Unknown);
    }
    let hash = shared::secret::hash(code);
    use authorization_codes::Column;
    // Write first (see `refresh::rotate`), and read the spent row back in the
    // same statement: a fresh redemption is one `UPDATE … RETURNING`.
    let spend = Query::update()
        .table(authorization_codes::Entity)
        .value(Column::UsedAt, now)
        .and_where(Expr::col(Column::CodeHash).eq(hash.clone()))
        .and_where(Expr::col(Column::UsedAt).is_null())
        .and_where(Expr::col(Column::ExpiresAt).gt(now))
        // The presenting client is still as it was authenticated (not
        // changed by another process since it was cached): else the code is
        // not spent, and the caller checks the client before anything else.
        .and_where(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(clients::Entity)
                .and_where(Expr::col((clients::Entity, clients::Column::Id)).eq(client.id))
                .and_where(
                    Expr::col((clients::Entity, clients::Column::Revision)).eq(client.revision),
                )
                .to_owned(),
        ))
        .returning_all()
        .to_owned();
    let statement = db.get_database_backend().build(&spend);
    if let Some(row) = authorization_codes::Entity::find()
        .from_raw_sql(statement)
        .one(db)
        .await?
    {
        return Ok(Redeemed::Fresh(row));
    }
    // Not spent now: tell a replay from an expired or unknown code.
    let row = authorization_codes::Entity::find()
        .filter(Column::CodeHash.eq(hash))
        .one(db)
        .await?;
    Ok(match row {
        None => Redeemed::Unknown,
        Some(row) if row.used_at.is_some() => Redeemed::Replayed(row),
        Some(_) => Redeemed::Expired,
    })
}
