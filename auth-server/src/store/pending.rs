//! Pending authorization requests: what a consent page asked the user,
//! bound to the session that saw it, approved at most once.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

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

pub async fn create<C: ConnectionTrait>(db: &C, new: NewPending<'_>) -> Result<(), DbErr> {
    pending_authorizations::ActiveModel {
        id: Set(shared::secret::hash(new.handle)),
        session_id: Set(new.session_id.to_owned()),
        client_id: Set(new.client_id.to_owned()),
        request: Set(new.request),
        created_at: Set(new.now),
        expires_at: Set(new.now + new.ttl_secs),
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// Takes the pending request named by `handle` for `session_id`: returns it
/// and deletes it, so that of two concurrent takes exactly one gets it.
/// Expired requests, other sessions' requests and unknown handles: None.
pub async fn take<C: ConnectionTrait>(
    db: &C,
    handle: &str,
    session_id: &str,
    now: i64,
) -> Result<Option<Pending>, DbErr> {
    if handle.is_empty() || handle.len() > 128 {
        return Ok(None);
    }
    let id = shared::secret::hash(handle);
    let Some(row) = pending_authorizations::Entity::find_by_id(id.clone())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if row.session_id != session_id {
        return Ok(None);
    }
    let deleted = pending_authorizations::Entity::delete_many()
        .filter(pending_authorizations::Column::Id.eq(id))
        .filter(pending_authorizations::Column::SessionId.eq(session_id.to_owned()))
        .exec(db)
        .await?;
    Ok((deleted.rows_affected == 1 && row.expires_at > now).then_some(row))
}
