//! `token_revocations`: "access tokens of this user or client issued before
//! `not_before` are void" (`shared::revocation`). Written in the transaction
//! that revokes the subject's refresh tokens; served to resource APIs by
//! `GET /api/v2/revocations` and published on Redis
//! (`crate::revocations`).

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use shared::revocation::{Record, SubjectKind};

/// The longest any access token can live (the verifier's maximum lifetime)
/// plus the verifier's leeway: a record this old covers no valid token
/// whatever the access-token lifetime was when its tokens were issued.
pub fn max_cover_secs() -> i64 {
    let lifetime = shared::jwt::DEFAULT_MAX_TOKEN_LIFETIME.as_secs();
    let leeway = shared::contract::TOKEN_LEEWAY.as_secs();
    i64::try_from(lifetime.saturating_add(leeway)).unwrap_or(i64::MAX)
}

/// How long a record made now must live when access tokens live
/// `token_ttl_secs`: the lifetime plus the verifier's leeway.
pub fn cover_secs(token_ttl_secs: i64) -> i64 {
    let leeway = i64::try_from(shared::contract::TOKEN_LEEWAY.as_secs()).unwrap_or(60);
    token_ttl_secs.max(0).saturating_add(leeway)
}

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "token_revocations")]
    pub struct Model {
        /// `user` or `client`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject_kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject_id: String,
        /// Tokens with `iat` before this are void.
        pub not_before: i64,
        pub expires_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Records that the tokens of `subject` issued up to `now` are void for
/// `cover_secs` (see [`cover_secs`]). `not_before` is `now + 1`: `iat` has
/// whole seconds, so a token issued in the second of the revocation is void
/// too (a token issued after it may be refused for under a second). A
/// record already there moves forward, never back. Expired records are
/// deleted on the way, so the table holds only records in force. Returns
/// the record.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    kind: SubjectKind,
    subject: &str,
    now: i64,
    cover_secs: i64,
) -> Result<Record, DbErr> {
    delete_expired(db, now).await?;
    let not_before = now.saturating_add(1);
    let expires_at = not_before.saturating_add(cover_secs.max(0));
    let existing = entity::Entity::find_by_id((kind.as_str().to_owned(), subject.to_owned()))
        .one(db)
        .await?;
    let (not_before, expires_at) = match existing {
        Some(row) if row.expires_at > now => (
            row.not_before.max(not_before),
            row.expires_at.max(expires_at),
        ),
        _ => (not_before, expires_at),
    };
    let row = entity::ActiveModel {
        subject_kind: sea_orm::Set(kind.as_str().to_owned()),
        subject_id: sea_orm::Set(subject.to_owned()),
        not_before: sea_orm::Set(not_before),
        expires_at: sea_orm::Set(expires_at),
    };
    entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([entity::Column::SubjectKind, entity::Column::SubjectId])
                .update_columns([entity::Column::NotBefore, entity::Column::ExpiresAt])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(Record {
        kind,
        subject: subject.to_owned(),
        not_before,
        expires_at,
    })
}

/// The records still in force at `now` (`expires_at > now`) whose
/// `not_before` is at or after `since` (all when None), oldest first.
pub async fn active<C: ConnectionTrait>(
    db: &C,
    now: i64,
    since: Option<i64>,
) -> Result<Vec<Record>, DbErr> {
    let mut query = entity::Entity::find().filter(entity::Column::ExpiresAt.gt(now));
    if let Some(since) = since {
        query = query.filter(entity::Column::NotBefore.gte(since));
    }
    let rows = query
        .order_by_asc(entity::Column::NotBefore)
        .order_by_asc(entity::Column::SubjectId)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(Record {
                kind: SubjectKind::parse(&row.subject_kind)?,
                subject: row.subject_id,
                not_before: row.not_before,
                expires_at: row.expires_at,
            })
        })
        .collect())
}

/// The record of `subject` in force at `now`, if any.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    kind: SubjectKind,
    subject: &str,
    now: i64,
) -> Result<Option<Record>, DbErr> {
    let row = entity::Entity::find_by_id((kind.as_str().to_owned(), subject.to_owned()))
        .one(db)
        .await?;
    Ok(row.filter(|row| row.expires_at > now).map(|row| Record {
        kind,
        subject: row.subject_id,
        not_before: row.not_before,
        expires_at: row.expires_at,
    }))
}

/// Deletes the records expired at `now`; how many went.
pub async fn delete_expired<C: ConnectionTrait>(db: &C, now: i64) -> Result<u64, DbErr> {
    entity::Entity::delete_many()
        .filter(Expr::col(entity::Column::ExpiresAt).lte(now))
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use migrations::{Migrator, MigratorTrait};

    use super::*;

    async fn sqlite() -> (tempfile::TempDir, sea_orm::DatabaseConnection) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display());
        let db = migrations::db::connect(&url, None).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn record_voids_up_to_now_and_expires_after_ttl_plus_leeway() {
        let (_dir, db) = sqlite().await;
        let record = record(&db, SubjectKind::User, "u1", 1000, cover_secs(900))
            .await
            .unwrap();
        assert_eq!(record.not_before, 1001);
        assert_eq!(record.expires_at, 1001 + 900 + 60);
        assert_eq!(active(&db, 1000, None).await.unwrap(), vec![record.clone()]);
        // Gone once expired, for readers and then from the table.
        assert!(active(&db, 1961, None).await.unwrap().is_empty());
        assert_eq!(delete_expired(&db, 1961).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn record_moves_forward_never_back_and_keeps_kinds_apart() {
        let (_dir, db) = sqlite().await;
        record(&db, SubjectKind::User, "x", 1000, 100)
            .await
            .unwrap();
        let later = record(&db, SubjectKind::User, "x", 1050, 10).await.unwrap();
        // The later revocation wins `not_before`; the expiry never shrinks.
        assert_eq!((later.not_before, later.expires_at), (1051, 1101));
        let client = record(&db, SubjectKind::Client, "x", 1060, 100)
            .await
            .unwrap();
        let all = active(&db, 1060, None).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.contains(&client));
        let since = active(&db, 1060, Some(1061)).await.unwrap();
        assert_eq!(since, vec![client]);
        // A new record after expiry starts afresh, and sweeps the old ones.
        let fresh = record(&db, SubjectKind::User, "y", 5000, 10).await.unwrap();
        assert_eq!(active(&db, 5000, None).await.unwrap(), vec![fresh]);
    }

    #[test]
    fn max_cover_is_the_longest_lifetime_plus_leeway() {
        assert_eq!(max_cover_secs(), 3600 + 60);
        assert_eq!(cover_secs(-5), 60);
    }
}
