use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter};

use super::entities::login_sessions;

pub use login_sessions::Model as Session;

/// Name of the session cookie.
pub const COOKIE: &str = "portcullis_session";

impl Session {
    /// The signed-in user, if any: the only way to read a session's user, so
    /// that an anonymous session can never stand for a user.
    pub fn user(&self) -> Option<&str> {
        match (&self.user_id, self.authenticated_at) {
            (Some(user), Some(_)) => Some(user),
            _ => None,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.user().is_some()
    }

    /// Constant-time check of a form's CSRF token against the session's.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            self.csrf_token.as_bytes(),
            presented.as_bytes(),
        )
        .is_ok()
    }
}

/// Creates a session (anonymous when `user_id` is None); returns the cookie
/// value, which only the browser keeps (the database has its hash).
pub async fn create<C: ConnectionTrait>(
    db: &C,
    user_id: Option<&str>,
    ttl_secs: i64,
    now: i64,
) -> anyhow::Result<(String, Session)> {
    let cookie = shared::secret::generate()?;
    let session = Session {
        id: super::new_id(),
        session_hash: shared::secret::hash(&cookie),
        user_id: user_id.map(str::to_owned),
        csrf_token: shared::secret::generate()?,
        created_at: now,
        expires_at: now + ttl_secs,
        authenticated_at: user_id.map(|_| now),
    };
    // One INSERT, no read-back: the row is what was given.
    login_sessions::Entity::insert(session.clone().into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok((cookie, session))
}

/// The live session for a cookie value.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    cookie: &str,
    now: i64,
) -> Result<Option<Session>, DbErr> {
    if cookie.is_empty() || cookie.len() > 128 {
        return Ok(None);
    }
    let session = login_sessions::Entity::find()
        .filter(login_sessions::Column::SessionHash.eq(shared::secret::hash(cookie)))
        .one(db)
        .await?;
    Ok(session.filter(|s| s.expires_at > now))
}

/// Gives the session a new CSRF token (after a failed attempt); returns it.
pub async fn rotate_csrf<C: ConnectionTrait>(db: &C, id: &str) -> anyhow::Result<String> {
    let token = shared::secret::generate()?;
    login_sessions::Entity::update_many()
        .col_expr(
            login_sessions::Column::CsrfToken,
            Expr::value(token.clone()),
        )
        .filter(login_sessions::Column::Id.eq(id.to_owned()))
        .exec(db)
        .await?;
    Ok(token)
}

pub async fn delete<C: ConnectionTrait>(db: &C, id: &str) -> Result<(), DbErr> {
    login_sessions::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await
        .map(|_| ())
}

/// Deletes every session of a user (signs them out everywhere); returns how
/// many.
pub async fn delete_user<C: ConnectionTrait>(db: &C, user_id: &str) -> Result<u64, DbErr> {
    login_sessions::Entity::delete_many()
        .filter(login_sessions::Column::UserId.eq(user_id.to_owned()))
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}
