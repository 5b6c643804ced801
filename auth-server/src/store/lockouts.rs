//! Lockouts of sign-in after repeated failures: one row per locked IP (its
//! rate-limit key: the address, or an IPv6 /64) or account (the normalised
//! email), read by every instance.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entities::lockouts;

pub use lockouts::Model as Lockout;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ip,
    Account,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Account => "account",
        }
    }
}

/// A lockout as the CLI and the admin API show it.
pub fn view(row: &Lockout) -> serde_json::Value {
    serde_json::json!({
        "kind": row.kind,
        "subject": row.subject,
        "failures": row.failures,
        "locked_at": row.locked_at,
        "locked_until": row.locked_until,
    })
}

/// The row id of a subject: `ip:<key>` or `account:<email>`.
pub fn id(kind: Kind, subject: &str) -> String {
    format!("{}:{subject}", kind.as_str())
}

/// The lockout in force for any of `ids` that lasts longest.
pub async fn active<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
    now: i64,
) -> Result<Option<Lockout>, DbErr> {
    lockouts::Entity::find()
        .filter(lockouts::Column::Id.is_in(ids.iter().cloned()))
        .filter(lockouts::Column::LockedUntil.gt(now))
        .order_by_desc(lockouts::Column::LockedUntil)
        .one(db)
        .await
}

/// Locks `subject` until `until` (a later lock replaces an earlier one).
pub async fn lock<C: ConnectionTrait>(
    db: &C,
    kind: Kind,
    subject: &str,
    failures: i64,
    now: i64,
    until: i64,
) -> Result<(), DbErr> {
    let row = lockouts::ActiveModel {
        id: Set(id(kind, subject)),
        kind: Set(kind.as_str().to_owned()),
        subject: Set(subject.to_owned()),
        failures: Set(failures),
        locked_at: Set(now),
        locked_until: Set(until),
    };
    lockouts::Entity::insert(row)
        .on_conflict(
            OnConflict::column(lockouts::Column::Id)
                .update_columns([
                    lockouts::Column::Failures,
                    lockouts::Column::LockedAt,
                    lockouts::Column::LockedUntil,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

/// Lockouts in force, the latest first.
pub async fn list<C: ConnectionTrait>(db: &C, now: i64) -> Result<Vec<Lockout>, DbErr> {
    lockouts::Entity::find()
        .filter(lockouts::Column::LockedUntil.gt(now))
        .order_by_desc(lockouts::Column::LockedAt)
        .all(db)
        .await
}

/// Lifts the lockout of `subject` (kind and key as `id` makes them);
/// returns whether there was one.
pub async fn clear<C: ConnectionTrait>(db: &C, kind: Kind, subject: &str) -> Result<bool, DbErr> {
    lockouts::Entity::delete_by_id(id(kind, subject))
        .exec(db)
        .await
        .map(|r| r.rows_affected > 0)
}
