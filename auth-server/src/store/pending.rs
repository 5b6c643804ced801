//! Pending authorization requests: what a consent page asked the user,
//! bound to the session that saw it, approved at most once.

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, IntoActiveModel};

use super::entities::pending_authorizations;

pub use pending_authorizations::Model as Pending;

pub struct NewPending<'a> {
    /// The one-time handle the page carries; only its hash is stored.
    pub handle: &'a str,
    pub session_id: &'a str,
    pub client_id: &'a str,
    pub request: String,
    pub now: i64,
    pub ttl_secs: i64,
}

/// One INSERT (no read-back: nothing uses the stored row).
pub async fn create<C: ConnectionTrait>(db: &C, new: NewPending<'_>) -> Result<(), DbErr> {
    let row = Pending {
        id: shared::secret::hash(new.handle),
        session_id: new.session_id.to_owned(),
        client_id: new.client_id.to_owned(),
        request: new.request,
        created_at: new.now,
        expires_at: new.now + new.ttl_secs,
    };
    pending_authorizations::Entity::insert(row.into_active_model())
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

/// Takes the pending request named by `handle` for `session_id`: returns it
/// and deletes it, so that of two concurrent takes exactly one gets it.
/// Expired requests, other sessions' requests and unknown handles: None
/// (an expired one of this session is deleted all the same; another
/// session's is left alone). One statement: `DELETE … RETURNING`.
pub async fn take<C: ConnectionTrait>(
    db: &C,
    handle: &str,
    session_id: &str,
    now: i64,
) -> Result<Option<Pending>, DbErr> {
    if handle.is_empty() || handle.len() > 128 {
        return Ok(None);
    }
    use pending_authorizations::Column;
    let delete = Query::delete()
        .from_table(pending_authorizations::Entity)
        .and_where(Expr::col(Column::Id).eq(shared::secret::hash(handle)))
        .and_where(Expr::col(Column::SessionId).eq(session_id))
        .returning_all()
        .to_owned();
    let statement = db.get_database_backend().build(&delete);
    let row = pending_authorizations::Entity::find()
        .from_raw_sql(statement)
        .one(db)
        .await?;
    Ok(row.filter(|row| row.expires_at > now))
}
