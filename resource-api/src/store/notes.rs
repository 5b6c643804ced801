//! Notes, always filtered by owner: another user's note looks like a missing one.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};
use uuid::Uuid;

use super::entity::note::{self, Entity as Notes};
use crate::clock::Clock;
use crate::domain::{NoteBody, NoteTitle};

pub use note::Model as Note;

/// A partial update.
#[derive(Debug, Clone, Default)]
pub struct NotePatch {
    pub title: Option<NoteTitle>,
    pub body: Option<NoteBody>,
}

/// The owner's notes, newest first.
#[tracing::instrument(skip_all)]
pub async fn list<C: ConnectionTrait>(db: &C, owner: &str) -> Result<Vec<Note>, DbErr> {
    Notes::find()
        .filter(note::Column::Owner.eq(owner))
        .order_by_desc(note::Column::CreatedAt)
        .order_by_desc(note::Column::Id)
        .all(db)
        .await
}

#[tracing::instrument(skip_all)]
pub async fn create<C: ConnectionTrait>(
    db: &C,
    clock: &Clock,
    owner: &str,
    title: NoteTitle,
    body: NoteBody,
) -> Result<Note, DbErr> {
    let now = clock.unix_seconds();
    let model = note::ActiveModel {
        id: Set(new_id(clock).to_string()),
        owner: Set(owner.to_owned()),
        title: Set(title.into()),
        body: Set(body.into()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    model.insert(db).await
}

#[tracing::instrument(skip_all, fields(note_id = %id))]
pub async fn get<C: ConnectionTrait>(db: &C, owner: &str, id: Uuid) -> Result<Option<Note>, DbErr> {
    Notes::find_by_id(id.to_string())
        .filter(note::Column::Owner.eq(owner))
        .one(db)
        .await
}

/// Applies `patch`; `None` when the owner has no such note. An empty patch
/// changes nothing, not even `updated_at`.
#[tracing::instrument(skip_all, fields(note_id = %id))]
pub async fn update<C: ConnectionTrait>(
    db: &C,
    clock: &Clock,
    owner: &str,
    id: Uuid,
    patch: NotePatch,
) -> Result<Option<Note>, DbErr> {
    let Some(existing) = get(db, owner, id).await? else {
        return Ok(None);
    };
    if patch.title.is_none() && patch.body.is_none() {
        return Ok(Some(existing));
    }
    let mut model: note::ActiveModel = existing.into();
    if let Some(title) = patch.title {
        model.title = Set(title.into());
    }
    if let Some(body) = patch.body {
        model.body = Set(body.into());
    }
    model.updated_at = Set(clock.unix_seconds());
    model.update(db).await.map(Some)
}

/// Whether a note of the owner was deleted.
#[tracing::instrument(skip_all, fields(note_id = %id))]
pub async fn delete<C: ConnectionTrait>(db: &C, owner: &str, id: Uuid) -> Result<bool, DbErr> {
    let result = Notes::delete_many()
        .filter(note::Column::Id.eq(id.to_string()))
        .filter(note::Column::Owner.eq(owner))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// A version 7 UUID: its text form sorts by creation time (millisecond).
fn new_id(clock: &Clock) -> Uuid {
    let random = Uuid::new_v4();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&random.as_bytes()[..10]);
    uuid::Builder::from_unix_timestamp_millis(clock.unix_millis(), &bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_id_is_v7_and_sorts_by_time() {
        let a = new_id(&Clock::fixed(1_700_000_000_000));
        let b = new_id(&Clock::fixed(1_700_000_000_001));
        assert_eq!(a.get_version_num(), 7);
        assert!(a.to_string() < b.to_string());
    }
}
